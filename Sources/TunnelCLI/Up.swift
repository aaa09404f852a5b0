import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

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
            let resolved: Profile
            do throws(SSHConfigError) {
                resolved = try profile.applyingSSHConfig(profile.sshConfig, home: homeDirectory(global.environment)).profile
            } catch {
                throw fail("\(profile.name): \(error)")
            }
            throw ExitCode(runForeground(profile: resolved, environment: global.environment))
        }
        throw ExitCode(try runBackgroundUp(names: names, config: config, global: global, timeout: timeout))
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
