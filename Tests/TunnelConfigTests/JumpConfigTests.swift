import XCTest
@testable import TunnelConfig

final class JumpConfigTests: XCTestCase {
    func testHop_parsesTheSSHJForms() throws {
        XCTAssertEqual(try JumpHop.parse("ops@bastion:2222"), JumpHop(user: "ops", host: "bastion", port: 2222))
        XCTAssertEqual(try JumpHop.parse("bastion"), JumpHop(user: nil, host: "bastion", port: 22))
        XCTAssertEqual(try JumpHop.parse("ssh://ops@10.0.0.1:2200"), JumpHop(user: "ops", host: "10.0.0.1", port: 2200))
        XCTAssertEqual(try JumpHop.parse("[2001:db8::1]:22"), JumpHop(user: nil, host: "2001:db8::1", port: 22))
        XCTAssertEqual(try JumpHop.parse("me@corp.example@bastion"), JumpHop(user: "me@corp.example", host: "bastion", port: 22))
        // What `ssh -G` prints for ProxyJump ssh://root@127.0.0.1:2201, and what ssh -J accepts.
        XCTAssertEqual(try JumpHop.parse("root@[127.0.0.1]:2201"), JumpHop(user: "root", host: "127.0.0.1", port: 2201))
        XCTAssertEqual(try JumpHop.parse("[bastion.example]:2222"), JumpHop(user: nil, host: "bastion.example", port: 2222))
        XCTAssertEqual(try JumpHop.parse("[bastion]"), JumpHop(user: nil, host: "bastion", port: 22))
    }

    func testHop_badForms_sayWhy() {
        let cases: [(String, String)] = [
            ("ops@", "no host"), ("@bastion", "empty user before @"), ("bastion:0", #"port "0" is not 1-65535"#),
            ("bastion:ssh", #"port "ssh" is not 1-65535"#), ("2001:db8::1", "write an IPv6 host in brackets: [2001:db8::1]:22"),
            ("[::1", "unclosed [ in an IPv6 address"), ("bas tion", "must not contain whitespace or control characters"),
            ("[1:2]:22", #""1:2" is not an IPv6 address"#), ("[]:22", "no host"),
        ]
        for (text, reason) in cases {
            XCTAssertThrowsError(try JumpHop.parse(text), text) { XCTAssertEqual(($0 as? JumpHop.ParseError)?.reason, reason, text) }
        }
    }

    private func db(_ jump: String) -> String {
        "[tunnels.db]\nhost = \"10.0.2.2\"\nuser = \"root\"\nforward = \"5433:localhost:5432\"\njump = \(jump)\n"
    }

    func testJump_asAStringOrAnArray_firstHopFirst_andVia() throws {
        let fromString = try profile("db", in: parseConfig(db(#""ops@bastion:22, second""#)))
        XCTAssertEqual(fromString.jump, [JumpHop(user: "ops", host: "bastion", port: 22), JumpHop(user: nil, host: "second", port: 22)])
        let fromArray = try profile("db", in: parseConfig(db(#"["ops@bastion:22", "second"]"#)))
        XCTAssertEqual(fromArray.jump, fromString.jump)
        XCTAssertEqual(fromArray.via, "root@10.0.2.2:22 via root@second:22 via ops@bastion:22", "a hop without a user takes the profile's")
        XCTAssertEqual(fromArray.hops.map(\.description), ["ops@bastion:22", "root@second:22", "root@10.0.2.2:22"])
        XCTAssertEqual(try profile("db", in: parseConfig(db(#""b""#).replacingOccurrences(of: "jump = \"b\"\n", with: ""))).jump, [])
    }

    func testJump_errorsAtTheirPosition() {
        assertSingleError(db(#""ops@""#), #"5:8: tunnels.db.jump: "ops@": no host"#)
        assertSingleError(db(#"["a", 3]"#), "5:14: tunnels.db.jump[1]: expected a string, found an integer (3)")
        assertSingleError(db(#""a:22,b,a""#), "5:8: tunnels.db.jump: a:22 appears twice: the chain would loop")
        assertSingleError(db(#""a,b,c,d,e,f,g,h""#), "5:8: tunnels.db.jump: 8 jump hosts: a chain has at most 8 hops, the target included")
        assertSingleError(db("22"), #"5:8: tunnels.db.jump: expected a string ("user@bastion:22,ops@second") or an array of strings, found an integer (22)"#)
    }

    func testOpenSSHSpelling_pointsAtJump() {
        assertSingleError("[tunnels.db]\nhost = \"h\"\nforward = \"1:h:2\"\nProxyJump = \"b\"\n",
                          #"4:1: tunnels.db: unknown key "ProxyJump" (did you mean "jump"?)"#)
    }
}

final class AdHocTunnelTests: XCTestCase {
    func testLocalForwardAsSSHGPrintsIt_becomesAnLSpec() {
        XCTAssertEqual(AdHocTunnel.forwards(fromLocalForward: ["5433 [127.0.0.1]:5432", "[127.0.0.1]:6380 [redis.internal]:6379", "9000 [::1]:9000"]),
                       ["5433:127.0.0.1:5432", "127.0.0.1:6380:redis.internal:6379", "9000:[::1]:9000"])
    }

    func testProfile_fromDestinationAndFlags_writesOnlyWhatWasGiven() throws {
        let env = ["USER": "me", "HOME": "/home/me"]
        let plain = try AdHocTunnel(name: nil, destination: "db-alias", forwards: ["5433:localhost:5432"], origin: .commandLine)
            .profile(home: "/home/me", environment: env)
        XCTAssertEqual(plain.name, "db-alias")
        XCTAssertEqual(plain.written, ["forward"], "ssh_config fills the rest")
        XCTAssertEqual(plain.user, "me")
        let full = try AdHocTunnel(name: "db", destination: "ssh://ops@10.0.0.5:2222", forwards: ["5433:localhost:5432"],
                                   jump: "b1, ops@b2:22", identity: "~/.ssh/k", origin: .commandLine)
            .profile(home: "/home/me", environment: env)
        XCTAssertEqual(full.via, "ops@10.0.0.5:2222 via ops@b2:22 via ops@b1:22")
        XCTAssertEqual(full.identity, "/home/me/.ssh/k")
        XCTAssertEqual(full.written, ["forward", "user", "port", "identity", "jump"])
        XCTAssertThrowsError(try AdHocTunnel(name: nil, destination: "h", forwards: ["0.0.0.0:80:h:80"], origin: .commandLine)
            .profile(home: "/", environment: env)) { XCTAssertTrue("\($0)".contains("non-loopback"), "\($0)") }
        // -p and a port in the destination must agree (ssh -p 2222 ssh://h:22 would be ambiguous).
        XCTAssertThrowsError(try AdHocTunnel(name: nil, destination: "ops@10.0.0.5:22", forwards: ["5433:localhost:5432"], port: 2222, origin: .commandLine)
            .profile(home: "/", environment: env)) { XCTAssertEqual("\($0)", "-p 2222 and destination ops@10.0.0.5:22 name different ports") }
        let same = try AdHocTunnel(name: nil, destination: "ops@10.0.0.5:2222", forwards: ["5433:localhost:5432"], port: 2222, origin: .commandLine)
            .profile(home: "/", environment: env)
        XCTAssertEqual(same.port, 2222)
    }
}
