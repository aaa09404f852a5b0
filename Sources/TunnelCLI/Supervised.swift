import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

extension GlobalOptions {
    var runtimeDirectory: RuntimeDirectory { RuntimeDirectory.resolve(explicit: runtimeDir, environment: environment) }
    var client: ControlClient { ControlClient(dir: runtimeDirectory) }

    /// A request to the running supervisor; nil when none is running.
    func ask(_ request: ControlRequest, timeout: Double = 30) throws -> ControlResponse? {
        do {
            guard let response = try client.request(request, timeout: timeout) else { return nil }
            if !response.ok { throw fail(response.error ?? "the supervisor refused the request") }
            return response
        } catch let error as ControlClient.Failure {
            throw fail(error.message)
        }
    }
}

/// `tunnel up NAME...` without --foreground.
func runBackgroundUp(names: [String], config: Config, global: GlobalOptions, timeout: Double?) throws -> Int32 {
    // Profile problems are reported here, with file:line, before the supervisor is involved.
    var failed = false
    var good: [String] = []
    for name in names {
        do {
            _ = try config.profile(named: name)
            good.append(name)
        } catch {
            for line in error.description.split(separator: "\n") { writeLine(2, "tunnel: \(name): \(line)") }
            failed = true
        }
    }
    guard !good.isEmpty else { return 1 }
    let environment = global.environment
    var request = ControlRequest(command: .up)
    request.names = good
    request.config = config.path
    request.agentSocket = environment["SSH_AUTH_SOCK"]
    request.home = homeDirectory(environment)
    let wait = timeout ?? 60
    let response: ControlResponse
    do {
        let socket = try global.client.connectStarting(executable: ProcessControl.executablePath, environment: environment)
        response = try global.client.send(request, over: socket, timeout: wait)
    } catch {
        throw fail(error.message)
    }
    if !response.ok { throw fail(response.error ?? "the supervisor refused the request") }
    for outcome in response.outcomes {
        let profile = try? config.profile(named: outcome.name)
        let routes = zip(profile?.forwards ?? [], outcome.local).map { "\($1) -> \($0.remoteDescription)" }.joined(separator: ", ")
        let via = profile.map { " via \($0.via)" } ?? ""
        if outcome.result == .up || outcome.result == .alreadyUp {
            for spec in profile?.forwards ?? [] where spec.isPublic {
                writeLine(2, "warning: \(outcome.name): \(spec.localDescription) is not a loopback address: the service is reachable from the network; protect it with firewall rules")
            }
        }
        switch outcome.result {
        case .up:
            say("\(outcome.name): up: \(routes)\(via)")
            if let note = outcome.message { writeLine(2, "note: \(outcome.name): \(note)") }
        case .alreadyUp:
            say("\(outcome.name): already up: \(routes)\(via)")
            if let note = outcome.message { writeLine(2, "note: \(outcome.name): \(note)") }
        case .retrying:
            writeLine(2, "tunnel: \(outcome.name): \(outcome.message ?? "not connected"); still retrying in the background (`tunnel down \(outcome.name)` to stop)")
            failed = true
        default:
            writeLine(2, "tunnel: \(outcome.name): \(outcome.message ?? outcome.result.rawValue)")
            failed = true
        }
    }
    return failed ? 1 : 0
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Close the listeners and SSH sessions of tunnels.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Profile names.") var names: [String] = []
    @Flag(name: .long, help: "Every tunnel.") var all = false

    func validate() throws {
        if names.isEmpty && !all { throw ValidationError("name the tunnels to take down, or --all") }
        if !names.isEmpty && all { throw ValidationError("give names or --all, not both") }
    }

    func run() throws {
        var request = ControlRequest(command: .down)
        request.names = names
        request.all = all
        guard let response = try global.ask(request) else {
            for name in names { say("\(name): not up (no supervisor is running)") }
            if all { say("nothing is up (no supervisor is running)") }
            return
        }
        if all && response.outcomes.isEmpty { say("nothing is up") }
        for outcome in response.outcomes {
            say(outcome.result == .down ? "\(outcome.name): down" : "\(outcome.name): not up")
        }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Re-read the profiles: restart changed tunnels, leave unchanged ones alone, take removed ones down.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        guard let response = try global.ask(ControlRequest(command: .reload), timeout: 60) else {
            say("no supervisor is running; nothing to reload")
            return
        }
        var failed = false
        for o in response.outcomes {
            let detail = o.message.map { ": \($0)" } ?? ""
            if o.result == .failed || o.result == .retrying {
                writeLine(2, "tunnel: \(o.name): \(o.result.rawValue)\(detail)")
                failed = true
            } else {
                say("\(o.name): \(o.result.rawValue)\(detail)")
            }
        }
        if failed { throw ExitCode(1) }
    }
}

struct Daemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the supervisor in the foreground (what systemd starts), or stop it.",
        subcommands: [DaemonRun.self, DaemonStop.self],
        defaultSubcommand: DaemonRun.self
    )
}

struct DaemonRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the supervisor in the foreground.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: .hidden) var detached = false

    func run() throws {
        let code = Supervisor.run(dir: global.runtimeDirectory, alsoStderr: !detached, environment: global.environment)
        if code != 0 { throw ExitCode(code) }
    }
}

struct DaemonStop: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop the running supervisor gracefully (its tunnels come back when it starts again).")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        guard let response = try global.ask(ControlRequest(command: .stop)) else {
            say("no supervisor is running")
            return
        }
        if let pid = response.pid {
            let deadline = Instant.now().adding(seconds: 5)
            while ProcessControl.isAlive(pid) && Instant.now() < deadline { usleep(20_000) }
            if ProcessControl.isAlive(pid) { throw fail("the supervisor (pid \(pid)) did not stop within 5 s") }
        }
        say("supervisor stopped")
    }
}

struct Logs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the supervisor's log, optionally for one tunnel.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only this tunnel's lines.") var name: String?
    @Flag(name: .shortAndLong, help: "Keep printing new lines.") var follow = false
    @Option(name: .shortAndLong, help: "Show the last N lines first.") var lines: Int = 200

    func run() throws {
        let path = global.runtimeDirectory.logPath
        let tag = name.map { "[\($0)] " }
        func matches(_ line: Substring) -> Bool { tag.map { line.contains($0) } ?? true }
        let initial: [UInt8]?
        do { initial = try Files.read(path) } catch { throw fail("cannot read \(path): \(error.errno)") }
        guard initial != nil || follow else { throw fail("no log at \(path) (has a supervisor run with this runtime directory?)") }
        var consumed = initial?.count ?? 0
        let all = String(decoding: initial ?? [], as: UTF8.self).split(separator: "\n").filter(matches)
        for line in all.suffix(lines) { say(String(line)) }
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
