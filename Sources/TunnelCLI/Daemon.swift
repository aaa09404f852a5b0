import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

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
        var environment = global.environment
        if detached {
            // Started by `tunnel up`, not by systemd: a NOTIFY_SOCKET or
            // JOURNAL_STREAM it inherited belongs to whatever ran that shell.
            for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"] { environment[key] = nil }
        }
        let code = Supervisor.run(dir: global.runtimeDirectory, alsoStderr: !detached, environment: environment,
                                  configPath: global.configPath)
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
