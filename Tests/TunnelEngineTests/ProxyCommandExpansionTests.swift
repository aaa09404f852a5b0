import XCTest
@testable import TunnelEngine

final class ProxyCommandExpansionTests: XCTestCase {
    func testTokens_areExpandedAsOpenSSHDoes() {
        XCTAssertEqual(ProxyCommand.expand("ssh -W %h:%p -l %r jump # %n %%", host: "10.0.0.5", port: 2222, user: "ops", original: "db"),
                       "ssh -W 10.0.0.5:2222 -l ops jump # db %")
    }

    func testUnknownTokenAndTrailingPercent_areKept() {
        XCTAssertEqual(ProxyCommand.expand("nc %x %", host: "h", port: 1, user: "u", original: "n"), "nc %x %")
    }
}
