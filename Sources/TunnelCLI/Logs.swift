import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

struct Logs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the supervisor's log, optionally for one tunnel.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only this tunnel's lines.") var name: String?
    @Flag(name: .shortAndLong, help: "Keep printing new lines.") var follow = false
    // Unconditional: "--lines -5" is a bad value to name, not a missing one.
    @Option(name: .shortAndLong, parsing: .unconditional, help: "Show the last N lines first.") var lines: Int = 200

    func validate() throws {
        if lines < 0 { throw ValidationError("--lines must be 0 or more") }
    }

    func run() throws {
        try journal()
        let path = global.runtimeDirectory.logPath
        let tag = name.map { "[\($0)] " }
        func matches(_ line: Substring) -> Bool { tag.map { line.contains($0) } ?? true }
        let initial: [UInt8]?
        do { initial = try Files.read(path) } catch { throw fail("cannot read \(path): \(error.errno)") }
        guard initial != nil || follow else { throw fail("no log at \(path) (has a supervisor run with this runtime directory?)") }
        if initial == nil { note("(no log at \(path) yet; waiting for a supervisor to write it)") }
        var consumed = initial?.count ?? 0
        let all = String(decoding: initial ?? [], as: UTF8.self).split(separator: "\n").filter(matches)
        for line in all.suffix(lines) { say(String(line)) }
        if let name, all.isEmpty {
            guard follow else { throw fail("no lines for \(name) in \(path)") }
            note("(no lines for \(name) yet; waiting for them)")
        }
        guard follow else { return }
        var partial = ""
        while true {
            usleep(200_000)
            // Read only what was appended since the last look.
            guard let size = Files.size(path) else { continue }
            if size < consumed { consumed = 0; partial = "" } // rotated
            guard size > consumed, let fresh = (try? Files.read(path, from: consumed)) ?? nil else { continue }
            consumed += fresh.count
            var parts = (partial + String(decoding: fresh, as: UTF8.self)).split(separator: "\n", omittingEmptySubsequences: false)
            partial = String(parts.removeLast())
            for line in parts where matches(line) { say(String(line)) }
        }
    }
}

extension Logs {
    /// A supervisor under systemd logs to the journal (it leaves a note in
    /// the runtime directory saying which unit): read it through journalctl
    /// when there is one, else say how. Returns when there is no such note.
    func journal() throws {
        guard let selector = try? Files.readText(global.runtimeDirectory.journalPath) else { return }
        let options = selector.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        let command = "journalctl " + options.joined(separator: " ")
        guard let journalctl = ProcessControl.which("journalctl") else {
            throw fail("the supervisor logs to the journal: use `\(command)`")
        }
        var args = options + ["--no-pager", "--lines", String(lines)]
        if follow { args.append("--follow") }
        // Its lines as the log file has them: `[NAME] level: message`.
        if let name { args += ["--case-sensitive=true", "--grep", "\\[" + Self.regexEscaped(name) + "\\] "] }
        note("(the supervisor logs to the journal: \(command))")
        throw fail("cannot run \(journalctl): \(ProcessControl.exec(journalctl, args))")
    }

    /// `name` as a PCRE matching itself.
    static func regexEscaped(_ name: String) -> String {
        var out = ""
        for c in name.unicodeScalars {
            if !(c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_") { out.append("\\") }
            out.unicodeScalars.append(c)
        }
        return out
    }
}
