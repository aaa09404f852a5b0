import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Bring tunnels up (in the background supervisor, or --foreground).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Profile names; with -L, -D or -R, one DESTINATION ([user@]host[:port], ssh://user@host:port or an ssh_config alias).")
    var names: [String]

    // Unconditional: "-L -1:h:2" is a bad spec to name, not a missing value.
    @Option(name: .customShort("L"), parsing: .unconditionalSingleValue, help: "A forward as `ssh -L` writes it ([bind:]port:host:hostport), for a tunnel no profile describes; repeatable.")
    var localForwards: [String] = []

    // Unconditional: "-L -1:h:2" is a bad spec to name, not a missing value.
    @Option(name: .customShort("D"), parsing: .unconditionalSingleValue, help: "A SOCKS proxy as `ssh -D` writes it ([bind:]port), for a tunnel no profile describes; repeatable.")
    var dynamicForwards: [String] = []

    // Unconditional: "-L -1:h:2" is a bad spec to name, not a missing value.
    @Option(name: .customShort("R"), parsing: .unconditionalSingleValue, help: "A remote forward as `ssh -R` writes it ([bind:]port:host:hostport: the server listens on port, 0 for one it picks; connections come back to host:hostport here), for a tunnel no profile describes; repeatable.")
    var remoteForwards: [String] = []

    @Option(name: .customShort("J"), help: "Jump hosts, as `ssh -J` (with -L, -D or -R).")
    var jump: String?

    @Option(name: .customShort("i"), help: "Private key (with -L, -D or -R).")
    var identity: String?

    @Option(name: .customShort("p"), help: "SSH port of DESTINATION (with -L, -D or -R).")
    var port: UInt16?

    @Option(name: .long, help: "The tunnel's name (with -L, -D or -R; default: DESTINATION).")
    var name: String?

    @Flag(name: .long, help: "Run in this process until interrupted, logging to stderr.")
    var foreground = false

    // Unconditional: "--timeout -1" is a bad value to name, not a missing one.
    @Option(name: .long, parsing: .unconditional, help: "Seconds to wait for the tunnels to come up.")
    var timeout: Double?

    /// -L, -D or -R: a tunnel no profile describes.
    private var isAdHoc: Bool { !localForwards.isEmpty || !dynamicForwards.isEmpty || !remoteForwards.isEmpty }

    func validate() throws {
        if names.isEmpty { throw ValidationError(isAdHoc ? "give the DESTINATION after -L, -D or -R" : "name at least one profile") }
        if isAdHoc && names.count > 1 { throw ValidationError("with -L, -D or -R, give one DESTINATION, not \(names.count)") }
        if !isAdHoc && (jump != nil || identity != nil || port != nil || name != nil) {
            throw ValidationError("-J, -i, -p and --name go with -L, -D or -R")
        }
        if port == 0 { throw ValidationError("-p must be 1-65535") }
        if foreground && names.count > 1 { throw ValidationError("--foreground runs one profile") }
        // The wait becomes whole nanoseconds: NaN, infinity or centuries cannot.
        if let timeout, !(timeout > 0 && timeout <= Up.longestTimeout) {
            throw ValidationError("--timeout must be a number of seconds from above 0 to \(Int(Up.longestTimeout)) (a day)")
        }
        if let name {
            // What a DESTINATION can hold (user@host:port, [v6]), nothing that
            // could reorder a terminal line (U+202E) or read as a path.
            let allowed = name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-@:[]+".unicodeScalars.contains($0)) }
            if name.isEmpty || name.count > Up.longestName || !allowed || name.hasPrefix(".") || name.hasPrefix("-") {
                throw ValidationError("--name must be 1-\(Up.longestName) of the characters A-Z a-z 0-9 . _ - @ : [ ] +, not starting with . or -")
            }
            if Config.reservedProfileNames.contains(name) { throw ValidationError("--name \(name) is reserved (the [\(name)] table of the profiles file)") }
        }
        if let jump, jump.split(separator: ",", omittingEmptySubsequences: false).contains(where: { $0.allSatisfy(\.isWhitespace) }) {
            throw ValidationError("-J \"\(jump)\": a jump host is empty; write hops as user@host[:port],user@host[:port]")
        }
        if let identity {
            // Checked now, not by a supervisor that would save a tunnel doomed to fail.
            guard !identity.isEmpty else { throw ValidationError("-i needs a key file") }
            let path = identity.hasPrefix("~/") ? homeDirectory(global.environment) + identity.dropFirst() : identity
            switch Files.kind(of: path) {
            case .regularFile: break
            case .missing: throw ValidationError("-i \(identity): no such file")
            case .directory: throw ValidationError("-i \(identity): is a directory, not a key file")
            case .other(let kind): throw ValidationError("-i \(identity): is \(kind), not a key file")
            }
        }
    }

    static let longestTimeout: Double = 86_400
    static let longestName = 100

    func run() throws {
        if isAdHoc {
            // DESTINATION may be an alias: read ssh_config where the profiles' `[defaults] ssh_config` says, as `up ALIAS` does.
            let source = (try? Config.load(path: global.configPath, environment: global.environment))?.sshConfig ?? .standard
            let adHoc = AdHocTunnel(name: name, destination: names[0], forwards: localForwards, dynamic: dynamicForwards, remote: remoteForwards,
                                    jump: jump, identity: identity, port: port, origin: .commandLine, sshConfig: source)
            throw ExitCode(try runAdHoc(adHoc))
        }
        // A name no profile has may be an ssh_config alias with LocalForward, DynamicForward or RemoteForward lines.
        let loaded = try? Config.load(path: global.configPath, environment: global.environment)
        var aliasProblem: SSHConfigError?
        if names.count == 1, loaded?.profileNames.contains(names[0]) != true {
            let lookup: SSHConfigAliasTunnel.Lookup
            do throws(SSHConfigError) { lookup = try SSHConfigAliasTunnel.lookup(names[0], source: loaded?.sshConfig ?? .standard) } catch {
                throw fail(error.message)
            }
            switch lookup {
            case .none:
                if let hint = SSHConfigAliasTunnel.withoutForwards(names[0], source: loaded?.sshConfig ?? .standard, home: homeDirectory(global.environment)) {
                    throw fail("\(hint.problem): \(hint.fix)")
                }
            case .unreadable(let error): aliasProblem = error
            case .tunnel(let adHoc, let notes):
                for line in notes { note("tunnel: \(line)") }
                throw ExitCode(try runAdHoc(adHoc))
            }
        }
        let config: Config
        do { config = try Config.load(path: global.configPath, environment: global.environment) } catch {
            // No profiles file (or none readable): the names may still be tunnels saved from the command line.
            let saved = names.compactMap { SavedTunnels.adHoc(named: $0, in: global.runtimeDirectory) }
            guard !foreground, !saved.isEmpty, saved.count == Set(names).count else { throw fail(error.description) }
            throw ExitCode(try upSaved(saved, global: global, timeout: timeout))
        }
        // Not a profile, and ssh_config, which might have made it an alias, fails: say what ssh said.
        if let aliasProblem, !config.profileNames.contains(names[0]) {
            throw fail("no profile named \(names[0]) in \(config.path), and ssh_config cannot be read for it: \(aliasProblem)")
        }
        if foreground {
            let profile: Profile
            do { profile = try config.profile(named: names[0]) } catch { throw fail(error.description) }
            try refuseIfSupervised(profile.name)
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

    /// A tunnel no profile describes: checked here, then run in the
    /// foreground or handed to the supervisor, which saves it like any other.
    private func runAdHoc(_ adHoc: AdHocTunnel) throws -> Int32 {
        let environment = global.environment
        let profile: Profile
        do { profile = try adHoc.profile(home: homeDirectory(environment), environment: environment) } catch { throw fail(error.message) }
        if foreground {
            try refuseIfSupervised(profile.name)
            do throws(SSHConfigError) {
                let resolved = try profile.applyingSSHConfig(profile.sshConfig, home: homeDirectory(environment)).profile
                return runForeground(profile: resolved, environment: environment)
            } catch {
                throw fail("\(profile.name): \(error)")
            }
        }
        var request = ControlRequest(command: .up)
        request.adHoc = adHoc
        return try sendUp(request, profiles: [adHoc.name: profile], global: global, timeout: timeout)
    }

    /// `--foreground` of a tunnel the supervisor runs would only find its
    /// ports taken: say that it runs there instead.
    private func refuseIfSupervised(_ name: String) throws {
        guard let listed = try? global.client.request(ControlRequest(command: .list), timeout: 5),
              let running = listed.tunnels.first(where: { $0.name == name }) else { return }
        let pid = global.runtimeDirectory.recordedPID().map { " (pid \($0))" } ?? ""
        throw fail("\(name) is \(running.state) in the supervisor\(pid); `tunnel down \(name)` first to run it in the foreground")
    }
}

/// `tunnel up NAME...` without --foreground.
func runBackgroundUp(names: [String], config: Config, global: GlobalOptions, timeout: Double?) throws -> Int32 {
    // Profile problems are reported here, with file:line, before the supervisor is involved.
    var failed = false
    var good: [String] = []
    var savedAdHoc: [AdHocTunnel] = []
    for name in names {
        // No profile of that name, but a tunnel from the command line saved
        // under it: the same tunnel again (retried if it failed).
        if !config.profileNames.contains(name), !config.stoppedEarly, let adHoc = SavedTunnels.adHoc(named: name, in: global.runtimeDirectory) {
            if !savedAdHoc.contains(adHoc) { savedAdHoc.append(adHoc) }
            continue
        }
        do {
            _ = try config.profile(named: name)
            good.append(name)
        } catch {
            for line in error.description.split(separator: "\n") { writeLine(2, "tunnel: \(name): \(line)") }
            failed = true
        }
    }
    // A typo or a broken profile among several starts none: nothing half-done to undo.
    if failed {
        if !good.isEmpty || !savedAdHoc.isEmpty { writeLine(2, "tunnel: nothing was started") }
        return 1
    }
    let status = try upSaved(savedAdHoc, global: global, timeout: timeout)
    guard !good.isEmpty else { return savedAdHoc.isEmpty ? 1 : status }
    var request = ControlRequest(command: .up)
    request.names = good
    request.config = config.path
    // A name given twice is one tunnel.
    let profiles = Dictionary(good.compactMap { name in (try? config.profile(named: name)).map { (name, $0) } }, uniquingKeysWith: { first, _ in first })
    return try sendUp(request, profiles: profiles, global: global, timeout: timeout) | status
}

/// Brings up again tunnels from the command line saved under their names.
func upSaved(_ saved: [AdHocTunnel], global: GlobalOptions, timeout: Double?) throws -> Int32 {
    var status: Int32 = 0
    let environment = global.environment
    for adHoc in saved {
        let profile: Profile
        do { profile = try adHoc.profile(home: homeDirectory(environment), environment: environment) } catch {
            writeLine(2, "tunnel: \(adHoc.name): \(error.message)")
            status = 1
            continue
        }
        var request = ControlRequest(command: .up)
        request.adHoc = adHoc
        status |= try sendUp(request, profiles: [adHoc.name: profile], global: global, timeout: timeout)
    }
    return status
}

/// Sends an `up` request (starting the supervisor if need be) and prints each outcome; the exit status.
func sendUp(_ request: ControlRequest, profiles: [String: Profile], global: GlobalOptions, timeout: Double?) throws -> Int32 {
    var failed = false
    let environment = global.environment
    var request = request
    // The supervisor runs elsewhere: a relative socket path means this shell's directory.
    request.agentSocket = environment["SSH_AUTH_SOCK"].map { $0.isEmpty ? $0 : absolutePath($0) }
    request.home = homeDirectory(environment)
    let wait = timeout ?? 60
    let response: ControlResponse
    let started: Bool
    do {
        let connection = try global.client.connectStarting(executable: ProcessControl.executablePath, environment: environment,
                                                           configPath: global.configPath)
        started = connection.started
        response = try global.client.send(request, over: connection.socket, timeout: wait)
    } catch {
        guard error.noReplyInTime else { throw fail(error.message) }
        // Still connecting, if the supervisor answers at all: ask it something it answers at once.
        let alive = (try? global.client.request(ControlRequest(command: .hello), timeout: 5)) != nil
        guard alive else { throw fail(error.message + ", but it does not answer now either (stopped? overloaded?)") }
        for name in request.adHoc.map({ [$0.name] }) ?? request.names {
            writeLine(2, "tunnel: \(name): not up within \(ControlClient.seconds(wait)) s; still connecting in the background (`tunnel ls` shows it, `tunnel down \(name)` stops it)")
        }
        return 1
    }
    // A supervisor this command started, left with nothing to run: stop it
    // again rather than leave a daemon behind a failed `up`.
    if started && response.outcomes.allSatisfy({ $0.result == .failed }),
       let listed = try? global.client.request(ControlRequest(command: .list), timeout: 10), listed.tunnels.isEmpty {
        _ = try? global.client.request(ControlRequest(command: .stop), timeout: 10)
    }
    if !response.ok { throw fail(response.error ?? "the supervisor refused the request") }
    for var outcome in response.outcomes {
        // Messages quote outside text (an SSH_AUTH_SOCK path, a server's words): one line each on the terminal.
        outcome.message = outcome.message?.escapingControlCharacters
        outcome.remoteProblems = outcome.remoteProblems?.map(\.escapingControlCharacters)
        let profile = profiles[outcome.name]
        let routes = ((outcome.routes ?? zip(profile?.forwards ?? [], outcome.local).map { "\($1) -> \($0.remoteDescription)" })
            + (outcome.remote ?? []).map { "remote \($0)" }).joined(separator: ", ")
        let via = (outcome.via ?? profile?.via).map { " via \($0)" } ?? ""
        if outcome.result == .up || outcome.result == .alreadyUp || outcome.result == .idle {
            for spec in profile?.forwards ?? [] where spec.isPublic {
                writeLine(2, "warning: \(outcome.name): \(spec.localDescription) is not a loopback address: the service is reachable from the network; protect it with firewall rules")
            }
            for spec in profile?.remoteForwards ?? [] where spec.isPublic {
                writeLine(2, "warning: \(outcome.name): remote \(spec.listenDescription()) is not a loopback address on the server: \(spec.targetDescription) here is reachable from its network")
            }
        }
        switch outcome.result {
        case .up, .alreadyUp:
            // Its only forwards may be remote ones the server refused (below).
            let shown = routes.isEmpty ? " (no forward in place yet)" : ": \(routes)"
            say("\(outcome.name): \(outcome.result == .up ? "up" : "already up")\(shown)\(via)")
            if let note = outcome.message { writeLine(2, "note: \(outcome.name): \(note)") }
            // A remote forward the server does not listen on: the tunnel
            // stays up and keeps asking, but what was asked for is not there.
            for problem in outcome.remoteProblems ?? [] {
                writeLine(2, "tunnel: \(outcome.name): \(problem) (`tunnel down \(outcome.name)` to stop)")
                failed = true
            }
        case .idle:
            say("\(outcome.name): idle, connects when the first client arrives: \(routes)\(via)")
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
