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
            let unknown = unknownNames(names.filter { !forgotten.contains($0) })
            for name in names where !forgotten.contains(name) && !unknown.contains(name) { say("\(name): not up (no supervisor is running)") }
            if all && forgotten.isEmpty { say("nothing is up (no supervisor is running)") }
            try failForUnknown(unknown)
            return
        }
        if all && response.outcomes.isEmpty { say("nothing is up") }
        let unknown = unknownNames(response.outcomes.filter { $0.result != .down }.map(\.name))
        for outcome in response.outcomes where !unknown.contains(outcome.name) {
            say(outcome.result == .down ? "\(outcome.name): down" : "\(outcome.name): not up")
        }
        try failForUnknown(unknown)
    }

    /// Of names that are not up, those no profile has either: most likely a
    /// typo, which an exit status of 0 would hide. A profile that is merely
    /// down is not an error (`down` twice is fine). When the profiles file
    /// cannot be read, none is called unknown.
    private func unknownNames(_ notUp: [String]) -> Set<String> {
        guard !notUp.isEmpty, let config = try? Config.load(path: global.configPath, environment: global.environment),
              !config.stoppedEarly else { return [] }
        return Set(notUp.filter { !config.profileNames.contains($0) })
    }

    private func failForUnknown(_ unknown: Set<String>) throws {
        guard !unknown.isEmpty else { return }
        for name in names where unknown.contains(name) {
            writeLine(2, "tunnel: \(name): no such tunnel: it is not up and \(global.configPath) has no profile of that name")
        }
        throw ExitCode(1)
    }
}
