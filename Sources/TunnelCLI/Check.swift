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

    func run() throws {
        let environment = global.environment
        let config = try global.loadConfig()
        // Which ports the supervisor holds, so they are not reported as foreign.
        let supervisor = try? global.client.request(ControlRequest(command: .list), timeout: 5)
        var reports: [Report] = []
        for name in names {
            var steps: [CheckStep] = []
            var profile: Profile
            do {
                profile = try config.profile(named: name)
                steps.append(CheckStep("profile", .ok, "\(profile.location) parses and validates"))
            } catch {
                steps.append(CheckStep("profile", .fail, error.description, fix: "run `tunnel config check` and fix the file"))
                reports.append(Report(name: name, ok: false, steps: steps))
                continue
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
            let context = Preflight.Context(
                options: Connector.Options(agentSocket: environment["SSH_AUTH_SOCK"].flatMap { $0.isEmpty ? nil : $0 }, home: homeDirectory(environment)),
                supervisorPID: supervisor?.pid, runningState: runningState)
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
