import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

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
