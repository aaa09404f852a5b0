import FoundationEssentials
import TunnelConfig
import TunnelPOSIX

/// The tunnels the user wants up, saved so a restarted supervisor (crash,
/// upgrade, reboot under systemd) brings them back.
struct DesiredState: Codable, Equatable {
    struct Entry: Codable, Equatable {
        var name: String
        var config: String
        /// The ssh-agent socket and home of the `tunnel up` that started it:
        /// a restored tunnel authenticates as it did then, not with whatever
        /// agent the restarted supervisor happens to inherit.
        var agentSocket: String?
        var home: String?
        /// A tunnel from the command line or ssh_config, not from `config`.
        var adHoc: AdHocTunnel?
    }
    var version = 1
    var tunnels: [Entry] = []
}

struct StateStore {
    let path: String

    func load() -> DesiredState {
        guard let bytes = try? Files.read(path), let state = JSONLine.decode(DesiredState.self, bytes) else { return DesiredState() }
        return state
    }

    func save(_ state: DesiredState) throws(SystemError) {
        try Files.replace(path, with: String(decoding: JSONLine.encode(state), as: UTF8.self))
    }
}
