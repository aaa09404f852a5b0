import ArgumentParser
import TunnelConfig

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Bring tunnels up (in the background supervisor, or --foreground).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Profile names.")
    var names: [String]

    @Flag(name: .long, help: "Run in this process until interrupted, logging to stderr.")
    var foreground = false

    @Option(name: .long, help: "Seconds to wait for the tunnels to come up.")
    var timeout: Double?

    func validate() throws {
        if names.isEmpty { throw ValidationError("name at least one profile") }
        if foreground && names.count > 1 { throw ValidationError("--foreground runs one profile") }
        if let timeout, timeout <= 0 { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        let config = try global.loadConfig()
        if foreground {
            let profile: Profile
            do { profile = try config.profile(named: names[0]) } catch { throw fail(error.description) }
            throw ExitCode(runForeground(profile: profile, environment: global.environment))
        }
        throw ExitCode(try runBackgroundUp(names: names, config: config, global: global, timeout: timeout))
    }
}
