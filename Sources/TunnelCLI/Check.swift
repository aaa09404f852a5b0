import ArgumentParser
import FoundationEssentials
import TunnelConfig
import TunnelEngine
import TunnelPOSIX
import TunnelSupervisor

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Preflight tunnels step by step: profile, local ports, privileges, TCP reach, host key, authentication, remote targets. Changes nothing.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Profile names.") var names: [String]
    @Flag(name: .long, help: "Print the steps as JSON.") var json = false

    struct Report: Codable {
        let name: String
        let ok: Bool
        let steps: [CheckStep]
    }

    /// What a name no profile has stands for.
    private enum NonProfile {
        case none
        /// A tunnel saved from the command line, or an ssh_config alias with
        /// forward lines (as `tunnel up` reads them), and where it comes from.
        case tunnel(AdHocTunnel, String)
        /// ssh_config names it but cannot be used for it: why, and the fix.
        case broken(String, fix: String)
    }

    private func nonProfile(_ name: String, config: Config?) -> NonProfile {
        guard config?.profileNames.contains(name) != true, config?.stoppedEarly != true else { return .none }
        if let saved = SavedTunnels.adHoc(named: name, in: global.runtimeDirectory) {
            return .tunnel(saved, "brought up \(saved.origin.fromWhere) (\(saved.destination)), not a profile")
        }
        do throws(SSHConfigError) {
            switch try SSHConfigAliasTunnel.lookup(name, source: config?.sshConfig ?? .standard) {
            case .none: return .none
            case .unreadable(let error):
                let place = config.map { " in \($0.path)" } ?? ""
                return .broken("no profile named \(name)\(place), and ssh_config cannot be read for it: \(error)", fix: "fix the ssh_config line that ssh names")
            case .tunnel(let adHoc, let notes):
                return .tunnel(adHoc, "the ssh_config alias \(name) with forward lines" + notes.map { "; \($0)" }.joined())
            }
        } catch {
            return .broken(error.message, fix: "fix its forward lines in ssh_config")
        }
    }

    func run() throws {
        let environment = global.environment
        // Without a profiles file, names may still be saved command-line tunnels or ssh_config aliases.
        let config: Config?
        let configProblem: ConfigErrors?
        do { (config, configProblem) = (try Config.load(path: global.configPath, environment: global.environment), nil) } catch { (config, configProblem) = (nil, error) }
        // Which ports the supervisor holds, so they are not reported as foreign.
        let supervisor = try? global.client.request(ControlRequest(command: .list), timeout: 5)
        var reports: [Report] = []
        for name in names {
            var steps: [CheckStep] = []
            var profile: Profile
            let other = nonProfile(name, config: config)
            if case .broken(let problem, let fix) = other {
                steps.append(CheckStep("profile", .fail, problem, fix: fix))
                reports.append(Report(name: name, ok: false, steps: steps))
                continue
            }
            if case .tunnel(let adHoc, let origin) = other {
                do { profile = try adHoc.profile(home: homeDirectory(environment), environment: environment) } catch {
                    steps.append(CheckStep("profile", .fail, error.message, fix: "bring it up again with corrected arguments"))
                    reports.append(Report(name: name, ok: false, steps: steps))
                    continue
                }
                steps.append(CheckStep("profile", .ok, origin))
            } else {
                guard let config else { throw fail(configProblem!.description) }
                do {
                    profile = try config.profile(named: name)
                    steps.append(CheckStep("profile", .ok, "\(profile.location) parses and validates"))
                } catch {
                    if !config.profileNames.contains(name), let hint = SSHConfigAliasTunnel.withoutForwards(name, source: config.sshConfig, home: homeDirectory(environment)) {
                        steps.append(CheckStep("profile", .fail, hint.problem, fix: hint.fix))
                        reports.append(Report(name: name, ok: false, steps: steps))
                        continue
                    }
                    steps.append(CheckStep("profile", .fail, error.description, fix: "run `tunnel config check` and fix the file"))
                    reports.append(Report(name: name, ok: false, steps: steps))
                    continue
                }
            }
            do {
                let (resolved, notes) = try profile.applyingSSHConfig(profile.sshConfig, home: homeDirectory(environment))
                if resolved != profile { steps.append(CheckStep("ssh_config", .ok, notes.joined(separator: "; "))) }
                profile = resolved
            } catch {
                steps.append(CheckStep("ssh_config", .fail, error.description, fix: "run `ssh -G \(profile.host)` and fix what it reports"))
                reports.append(Report(name: name, ok: false, steps: steps))
                continue
            }
            // Whatever its state, a tunnel the supervisor runs holds its listeners.
            let runningState = supervisor?.tunnels.first { $0.name == name }?.state
            var others: [String: String] = [:]
            for tunnel in supervisor?.tunnels ?? [] where tunnel.name != name {
                for forward in tunnel.forwards where forward.kind != "remote" {
                    for address in [forward.local] + (forward.also_local.map { [$0] } ?? []) { others[address] = tunnel.name }
                }
            }
            let context = Preflight.Context(
                options: Connector.Options(agentSocket: environment["SSH_AUTH_SOCK"].flatMap { $0.isEmpty ? nil : $0 }, home: homeDirectory(environment)),
                supervisorPID: supervisor?.pid, runningState: runningState, otherTunnels: others)
            steps += Preflight.run(profile, context: context)
            reports.append(Report(name: name, ok: !steps.contains { $0.outcome == .fail }, steps: steps))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            say(String(decoding: (try? encoder.encode(reports)) ?? Data("[]".utf8), as: UTF8.self))
        } else {
            for report in reports {
                say("\(report.name):")
                let width = report.steps.map(\.step.count).max() ?? 0
                for step in report.steps {
                    let mark = step.outcome == .ok ? "ok  " : step.outcome == .fail ? "FAIL" : "skip"
                    say("  [\(mark)] \(step.step.padding(width))  \(step.detail)")
                    if let fix = step.fix, step.outcome == .fail { say("         \(String(repeating: " ", count: width))  fix: \(fix)") }
                }
            }
        }
        if reports.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}
