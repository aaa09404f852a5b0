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
            // No supervisor: forget what was saved, or the next one would bring it back.
            let forgotten: [String]
            do {
                guard let removed = try SavedTunnels.forget(names, all: all, in: global.runtimeDirectory) else {
                    throw fail("a supervisor is starting for \(global.runtimeDirectory.path); run the command again")
                }
                forgotten = removed
            } catch let error as SystemError {
                throw fail("cannot update the saved tunnels in \(global.runtimeDirectory.path): \(error)")
            }
            for name in forgotten { say("\(name): down (no supervisor was running; it will not be restored)") }
            for name in names where !forgotten.contains(name) { say("\(name): not up (no supervisor is running)") }
            if all && forgotten.isEmpty { say("nothing is up (no supervisor is running)") }
            return
        }
        if all && response.outcomes.isEmpty { say("nothing is up") }
        for outcome in response.outcomes {
            say(outcome.result == .down ? "\(outcome.name): down" : "\(outcome.name): not up")
        }
    }
}
