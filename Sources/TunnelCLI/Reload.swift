import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Re-read the profiles: restart changed tunnels, leave unchanged ones alone, take removed ones down.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        var request = ControlRequest(command: .reload)
        // Its profiles that are not up are listed too; the running ones reload from their own files.
        request.config = global.configPath
        guard let response = try global.ask(request, timeout: 60) else {
            say("no supervisor is running; nothing to reload")
            return
        }
        var failed = false
        for o in response.outcomes {
            let detail = o.message.map { ": \($0)" } ?? ""
            if o.result == .failed || o.result == .retrying {
                writeLine(2, "tunnel: \(o.name): \(o.result.rawValue)\(detail)")
                failed = true
            } else {
                say("\(o.name): \(o.result.rawValue)\(detail)")
            }
        }
        if failed { throw ExitCode(1) }
    }
}
