import ArgumentParser

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Preflight a profile step by step.")
    @OptionGroup var global: GlobalOptions
    @Argument var names: [String] = []
    func run() throws { throw fail("not implemented yet") }
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Work with the profiles file.")
    @OptionGroup var global: GlobalOptions
    func run() throws { throw fail("not implemented yet") }
}
