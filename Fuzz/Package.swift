// swift-tools-version:6.0
// libFuzzer targets for tunnel's parsers of untrusted text: the profiles file,
// known_hosts and the control protocol. A package of its own, so the root
// package's builds and tests never build it. Scripts/fuzz builds and runs them;
// see docs/DEVELOPMENT.md.
import PackageDescription

// A path dependency is identified by its directory's name, which is wherever
// the repository was checked out ("tunnel", a worktree's name, ...).
let root = Context.packageDirectory.split(separator: "/").dropLast().last.map(String.init) ?? "tunnel"

func fuzzer(_ name: String, _ product: String) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport", .product(name: product, package: root)])
}

let package = Package(
    name: "tunnel-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        // libFuzzer's LLVMFuzzerRunDriver, declared for Swift.
        .target(name: "CLibFuzzer"),
        // Runs the fuzz function under libFuzzer (built with -DFUZZING) or on files.
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"]),
        fuzzer("FuzzConfig", "TunnelConfig"),
        fuzzer("FuzzKnownHosts", "TunnelSSH"),
        fuzzer("FuzzControl", "TunnelSupervisor"),
    ],
    swiftLanguageModes: [.v6]
)
