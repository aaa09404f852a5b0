import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

public struct TunnelCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tunnel",
        abstract: "SSH local port forwards (ssh -L) that stay up.",
        version: tunnelVersion,
        subcommands: [Up.self, Down.self, List.self, Status.self, Reload.self, Daemon.self, Logs.self, Check.self, ConfigCommand.self]
    )

    public init() {}

    /// The executable's entry point.
    public static func start() {
        Allocator.keepFreedHeapForStreams()
        main()
    }
}


/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Profiles file (default: $TUNNEL_CONFIG, else $XDG_CONFIG_HOME/tunnel/tunnels.toml, else ~/.config/tunnel/tunnels.toml).", valueName: "path"))
    var config: String?

    @Option(name: .customLong("runtime-dir"), help: ArgumentHelp("Supervisor's runtime directory (default: $TUNNEL_RUNTIME_DIR, else $XDG_RUNTIME_DIR/tunnel, else /tmp/tunnel-UID).", valueName: "dir"))
    var runtimeDir: String?

    var environment: [String: String] { currentEnvironment() }

    func validate() throws {
        // An empty value would silently mean the default file or directory.
        if config == "" { throw ValidationError("--config needs a path") }
        if runtimeDir == "" { throw ValidationError("--runtime-dir needs a directory") }
    }

    var configPath: String { absolutePath(Config.resolvePath(explicit: config, environment: environment)) }

    /// Loads the profiles file; any problem is printed and ends the command.
    func loadConfig() throws -> Config {
        do {
            return try Config.load(path: configPath, environment: environment)
        } catch {
            throw fail(error.description)
        }
    }
}

/// Prints a one-line error to stderr and returns the exit code to throw.
func fail(_ message: String, code: Int32 = 1) -> ExitCode {
    for line in message.split(separator: "\n") { writeLine(2, "tunnel: \(line)") }
    return ExitCode(code)
}

func say(_ message: String) { writeLine(1, message) }
func note(_ message: String) { writeLine(2, message) }

func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX))
    guard getcwd(&buf, buf.count) != nil else { return path }
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
}
