import ArgumentParser
import TunnelConfig

struct Down: ParsableCommand { static let configuration = CommandConfiguration(abstract: "Take tunnels down."); @OptionGroup var global: GlobalOptions; func run() throws {} }
struct List: ParsableCommand { static let configuration = CommandConfiguration(commandName: "ls", abstract: "List tunnels."); @OptionGroup var global: GlobalOptions; func run() throws {} }
struct Reload: ParsableCommand { @OptionGroup var global: GlobalOptions; func run() throws {} }
struct Daemon: ParsableCommand { @OptionGroup var global: GlobalOptions; func run() throws {} }
struct Logs: ParsableCommand { @OptionGroup var global: GlobalOptions; func run() throws {} }
struct Check: ParsableCommand { @OptionGroup var global: GlobalOptions; func run() throws {} }
struct ConfigCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "config"); @OptionGroup var global: GlobalOptions; func run() throws {} }
func runBackgroundUp(names: [String], config: Config, global: GlobalOptions, timeout: Double?) throws -> Int32 { 1 }
