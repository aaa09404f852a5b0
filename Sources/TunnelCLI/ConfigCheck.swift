import ArgumentParser
import FoundationEssentials
import TunnelConfig
import TunnelEngine
import TunnelPOSIX
import TunnelSupervisor

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Work with the profiles file.",
                                                    subcommands: [ConfigCheck.self])
}

struct ConfigCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check",
        abstract: "Validate the whole profiles file: syntax, types, unknown keys, duplicates, overlapping forwards.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let config = try global.loadConfig()
        guard config.errors.isEmpty else {
            for error in config.errors { writeLine(2, error.description) }
            throw fail("\(config.errors.count) problem\(config.errors.count == 1 ? "" : "s") in \(config.path)")
        }
        let names = config.profileNames
        say("\(config.path): ok, \(names.count) profile\(names.count == 1 ? "" : "s")\(names.isEmpty ? "" : ": " + names.joined(separator: ", "))")
        for profile in config.validProfiles {
            for spec in profile.forwards where spec.isPublic {
                writeLine(2, "warning: \(profile.location): \(profile.name) listens on \(spec.localDescription): reachable from the network (public = true)")
            }
            for spec in profile.remoteForwards where spec.isPublic {
                writeLine(2, "warning: \(profile.location): \(profile.name) asks the server to listen on \(spec.listenDescription()): "
                          + "\(spec.targetDescription) here becomes reachable from the server's network (public = true)")
            }
        }
    }
}
