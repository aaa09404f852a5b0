import Glibc
import Logging
import TunnelConfig
import TunnelPOSIX

/// A running ProxyCommand: `/bin/sh -c "exec COMMAND"` as OpenSSH runs it
/// (the command replaces the shell), with %h %p %r %n %% expanded, its
/// stdin and stdout the SSH session's transport, its stderr logged line by
/// line on the tunnel's loop. Whoever holds it (the connector, then the
/// lane) ends it with `terminate`: TERM, then KILL a second later, and the
/// process is reaped either way.
final class ProxyCommand {
    let command: String
    private let process: ChildProcess
    private let loop: EventLoop
    private let logger: Logger
    private var registration: EventLoop.Registration?
    private var partialLine: [UInt8] = []
    /// The last line it wrote to stderr: the reason when it exits early.
    private(set) var lastStderrLine: String?
    private var terminating = false

    /// `%h` host, `%p` port, `%r` user, `%n` the host as written, `%%` a percent sign.
    static func expand(_ template: String, host: String, port: UInt16, user: String, original: String) -> String {
        var out = ""
        var iterator = template.makeIterator()
        while let c = iterator.next() {
            guard c == "%" else { out.append(c); continue }
            switch iterator.next() {
            case "h": out += host
            case "p": out += String(port)
            case "r": out += user
            case "n": out += original
            case "%": out += "%"
            case let other?: out += "%" + String(other)
            case nil: out += "%"
            }
        }
        return out
    }

    /// Starts it; the returned socket is the session's transport.
    static func start(_ command: String, loop: EventLoop, logger: Logger) throws(SystemError) -> (ProxyCommand, Socket) {
        let (process, socket) = try ChildProcess.spawnShell("exec " + command, environment: currentEnvironment())
        let proxy = ProxyCommand(command: command, process: process, loop: loop, logger: logger)
        do {
            proxy.registration = try loop.register(fd: process.stderr.raw, events: .readable) { [weak proxy] _ in proxy?.readStderr() }
        } catch {
            proxy.terminate()
            socket.close()
            throw error
        }
        return (proxy, socket)
    }

    private init(command: String, process: ChildProcess, loop: EventLoop, logger: Logger) {
        self.command = command
        self.process = process
        self.loop = loop
        self.logger = logger
    }

    var pid: pid_t { process.pid }

    /// Why the transport ended, if the command has exited: its status and
    /// last stderr line. Its output may close a moment before its exit is
    /// reapable: this waits up to `seconds` for that (failure paths only).
    func exitReason(waitingUpTo seconds: Double) -> String? {
        let deadline = Instant.now().adding(seconds: seconds)
        while !process.reap() {
            guard Instant.now() < deadline else { return nil }
            usleep(10_000)
        }
        readStderr()
        return "proxy command exited with status \(process.exitStatus ?? -1)" + (lastStderrLine.map { ": \($0)" } ?? "")
    }

    private func readStderr() {
        while let result = process.readStderr() {
            guard case .done(let bytes) = result else { return }
            partialLine += bytes
            while let newline = partialLine.firstIndex(of: UInt8(ascii: "\n")) {
                emit(Array(partialLine[..<newline]))
                partialLine.removeFirst(newline + 1)
            }
            if partialLine.count > 4096 { emit(partialLine); partialLine = [] }
        }
        // End of stderr: the command (and whatever it started) closed it.
        if !partialLine.isEmpty { emit(partialLine); partialLine = [] }
        if let registration { loop.deregister(registration) }
        registration = nil
    }

    private func emit(_ bytes: [UInt8]) {
        let line = String(decoding: bytes, as: UTF8.self).trimmingTrailingWhitespace.escapingControlCharacters
        guard !line.isEmpty else { return }
        lastStderrLine = line
        logger.info("proxy command: \(line)")
    }

    /// Ends it: TERM now, KILL after a second if it is still there; reaped
    /// either way, also when this tunnel's loop has stopped.
    func terminate() {
        guard !terminating else { return }
        terminating = true
        if let registration { loop.deregister(registration) }
        registration = nil
        process.stderr.close()
        process.terminate()
    }
}

extension String {
    var trimmingTrailingWhitespace: String {
        var s = Substring(self)
        while let last = s.last, last.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
