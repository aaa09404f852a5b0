// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "tunnel",
    products: [
        .executable(name: "tunnel", targets: ["tunnel"]),
        // For the fuzzers in Fuzz/ (a separate package that depends on this one).
        .library(name: "TunnelConfig", targets: ["TunnelConfig"]),
        .library(name: "TunnelSSH", targets: ["TunnelSSH"]),
        .library(name: "TunnelSupervisor", targets: ["TunnelSupervisor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // The Linux calls Glibc does not export (epoll, eventfd, signalfd,
        // timerfd, accept4, SO_PEERCRED, TCP_INFO, mallopt); TunnelPOSIX only.
        .systemLibrary(name: "CLinuxShim"),
        // libssh2.h alone; TunnelSSH only.
        .systemLibrary(
            name: "CLibSSH2",
            pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]
        ),
        // RSA keys signed with SHA-2, SHA-256 and HMAC-SHA1, with OpenSSL's
        // types kept behind the header; TunnelSSH only.
        .target(name: "COpenSSLKeys", linkerSettings: [.linkedLibrary("crypto")]),
        // libssh2 1.10 calls libcrypto per 16-byte block and several times per
        // packet; this answers the costly calls: AES-CTR from a keystream made
        // 8 KiB at a time, HMAC digests fetched once, padding from a random pool.
        .target(name: "CCryptoCalls", linkerSettings: [.linkedLibrary("crypto")]),
        // The only module that touches errno: syscall wrappers, fds, sockets, epoll.
        .target(name: "TunnelPOSIX", dependencies: ["CLinuxShim"]),
        // The only module that calls libssh2. Whatever links it looks for
        // libssh2.so.1 in ../lib/tunnel first: the patched build Scripts/libssh2
        // puts there (and the package in /usr/lib/tunnel); without it, the
        // system's libssh2 (same ABI: both are 1.10 from Debian's source).
        .target(
            name: "TunnelSSH",
            dependencies: ["CLibSSH2", "CCryptoCalls", "COpenSSLKeys", "TunnelPOSIX"],
            linkerSettings: [.unsafeFlags(["-Xlinker", "-rpath", "-Xlinker", "$ORIGIN/../lib/tunnel"])]
        ),
        // Profiles: TOML with source positions, forward specs, validation.
        .target(name: "TunnelConfig", dependencies: ["TunnelPOSIX"]),
        // Event loop, listeners, the byte pump, one tunnel's session lifecycle.
        .target(name: "TunnelEngine", dependencies: [
            "TunnelPOSIX", "TunnelSSH", "TunnelConfig",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The background daemon: many tunnels, control socket, restarts.
        .target(name: "TunnelSupervisor", dependencies: [
            "TunnelPOSIX", "TunnelEngine", "TunnelConfig",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Commands; the executable below only calls into this.
        .target(name: "TunnelCLI", dependencies: [
            "TunnelPOSIX", "TunnelConfig", "TunnelEngine", "TunnelSupervisor",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "tunnel", dependencies: ["TunnelCLI"]),

        .testTarget(name: "TunnelConfigTests", dependencies: ["TunnelConfig", "TunnelPOSIX", "TunnelTestSupport"]),
        // The deprecated HMAC_CTX calls libssh2 makes, wrapped for the Swift tests.
        .target(name: "CTestSupport", path: "Tests/CTestSupport", linkerSettings: [.linkedLibrary("crypto")]),
        // Helpers the unit test targets share (test targets cannot share sources).
        .target(name: "TunnelTestSupport", path: "Tests/TunnelTestSupport"),
        .testTarget(name: "TunnelSSHTests", dependencies: ["TunnelSSH", "TunnelPOSIX", "CTestSupport", "TunnelTestSupport"]),
        .testTarget(name: "TunnelPOSIXTests", dependencies: ["TunnelPOSIX", "TunnelTestSupport"]),
        .testTarget(name: "TunnelEngineTests", dependencies: ["TunnelEngine", "TunnelPOSIX", "TunnelTestSupport"]),
        .testTarget(name: "TunnelSupervisorTests", dependencies: [
            "TunnelSupervisor", "TunnelPOSIX", "TunnelConfig", "TunnelEngine", .product(name: "Logging", package: "swift-log"),
        ]),
        // Drives the built `tunnel` executable against real sshd and PostgreSQL.
        .testTarget(name: "IntegrationTests", dependencies: ["TunnelTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
