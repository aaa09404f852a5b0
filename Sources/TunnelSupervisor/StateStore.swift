import FoundationEssentials
import TunnelConfig
import TunnelEngine
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
        /// The ports it picked where its profile leaves that to the kernel or
        /// the server: the next supervisor asks for them again.
        var ports: PreferredPorts?
    }
    var version = 1
    var tunnels: [Entry] = []
}

struct StateStore {
    let path: String

    func load() -> DesiredState { loadReporting().state }

    /// The saved state, and why a file that exists could not be used.
    func loadReporting() -> (state: DesiredState, problem: String?) {
        let bytes: [UInt8]?
        do { bytes = try Files.read(path) } catch { return (DesiredState(), "cannot read \(path): \(error.errno)") }
        guard let bytes else { return (DesiredState(), nil) }
        guard let state = JSONLine.decode(DesiredState.self, bytes) else { return (DesiredState(), "\(path) is not a list of saved tunnels") }
        return (state, nil)
    }

    func save(_ state: DesiredState) throws(SystemError) {
        try Files.replace(path, with: String(decoding: JSONLine.encode(state), as: UTF8.self))
    }
}

/// The saved tunnels, edited while no supervisor runs: `tunnel down` then
/// forgets them, so the next supervisor does not bring them back.
public enum SavedTunnels {
    /// Removes `names` (every one with `all`) from the saved state and returns
    /// those that were saved; nil when a supervisor holds the directory's lock
    /// (it is starting: ask it instead).
    public static func forget(_ names: [String], all: Bool, in dir: RuntimeDirectory) throws(SystemError) -> [String]? {
        guard Files.exists(dir.statePath) else { return [] }
        guard let lock = try FileLock(path: dir.lockPath) else { return nil }
        defer { lock.release() }
        let store = StateStore(path: dir.statePath)
        var state = store.load()
        let removed = state.tunnels.map(\.name).filter { all || names.contains($0) }
        guard !removed.isEmpty else { return [] }
        state.tunnels.removeAll { removed.contains($0.name) }
        try store.save(state)
        return removed
    }

    /// The names saved to be brought up by the next supervisor, in order.
    public static func names(in dir: RuntimeDirectory) -> [String] {
        StateStore(path: dir.statePath).load().tunnels.map(\.name)
    }

    /// The saved command-line or ssh_config tunnel of that name, if any: what
    /// `tunnel up NAME` brings up again when no profile has the name.
    public static func adHoc(named name: String, in dir: RuntimeDirectory) -> AdHocTunnel? {
        StateStore(path: dir.statePath).load().tunnels.first { $0.name == name }?.adHoc
    }
}
