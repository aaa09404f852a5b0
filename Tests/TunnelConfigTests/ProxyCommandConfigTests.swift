import XCTest
@testable import TunnelConfig

final class ProxyCommandConfigTests: XCTestCase {
    func testProxyCommand_isReadFromTheProfileOrDefaults_andIsAbsentByDefault() throws {
        let config = parseConfig("""
        [defaults]
        proxy_command = "ssh -W %h:%p bastion"
        [tunnels.db]
        host = "10.0.0.5"
        forward = "5433:localhost:5432"
        [tunnels.web]
        host = "10.0.0.6"
        forward = "8080:localhost:80"
        proxy_command = "nc -X connect -x proxy:3128 %h %p"
        """)
        XCTAssertEqual(try profile("db", in: config).proxyCommand, "ssh -W %h:%p bastion")
        XCTAssertEqual(try profile("web", in: config).proxyCommand, "nc -X connect -x proxy:3128 %h %p")
        let plain = parseConfig("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\n")
        XCTAssertNil(try profile("db", in: plain).proxyCommand)
    }

    func testProxyCommand_mustBeANonEmptyString() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nproxy_command = 3\n",
                          "4:17: tunnels.db.proxy_command: expected a string, found an integer (3)")
    }

    func testOpenSSHSpelling_pointsAtTheKey() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nProxyCommand = \"x\"\n",
                          #"4:1: tunnels.db: unknown key "ProxyCommand" (did you mean "proxy_command"?)"#)
    }
}
