import FuzzSupport
import TunnelConfig

/// What `tunnel config check` and `tunnel up` do with a profiles file once it
/// is read: TOML parsing, validation, forward specs, every message. Also each
/// line of the input as a forward spec (-L and -R) and the input as ~/.ssh/config.
func fuzzConfig(_ bytes: [UInt8]) {
    let config = Config.parse(bytes: bytes, path: "/fuzz/tunnels.toml", environment: ["HOME": "/home/fuzz", "USER": "fuzz"])
    var printed = config.errors.map(\.description)
    for name in config.profileNames {
        do {
            let profile = try config.profile(named: name)
            printed.append("\(profile.location) \(profile.via) \(profile.forwards.map(\.description))")
            for spec in profile.forwards {
                // A valid spec reads back the same from its own text.
                precondition((try? ForwardSpec.parse(spec.text)) == spec, "\(spec.text) does not read back")
                if spec.isPublic { printed.append(spec.localDescription) }
            }
            for spec in profile.remoteForwards {
                precondition((try? RemoteForwardSpec.parse(spec.text)) == spec, "\(spec.text) does not read back")
                printed.append(spec.description)
            }
        } catch {
            printed.append(error.description)
        }
    }
    printed.append("\(config.validProfiles.count)")
    if let error = try? config.profile(named: "no such profile") { printed.append("\(error)") }

    let text = String(decoding: bytes, as: UTF8.self)
    for line in text.split(separator: "\n", omittingEmptySubsequences: true).prefix(32) {
        do {
            let spec = try ForwardSpec.parse(String(line))
            printed.append(spec.description)
        } catch {
            printed.append(error.description)
        }
        do throws(RemoteForwardSpecError) {
            printed.append(try RemoteForwardSpec.parse(String(line)).description)
        } catch {
            printed.append(error.description)
        }
    }
    if let alias = SSHConfigAlias.find(host: "db", configText: text, displayPath: "~/.ssh/config") {
        printed.append(alias.hint(for: "db", .turnedOff))
    }
    blackHole(printed)
}

@main
enum Main {
    static func main() { fuzzMain(fuzzConfig) }
}
