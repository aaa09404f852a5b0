import Glibc
import TunnelSSH
import TunnelTestSupport
import XCTest
@testable import TunnelEngine

final class SocksHandshakeTests: XCTestCase {
    // MARK: messages

    private let greeting: [UInt8] = [0x05, 0x01, 0x00]
    private let methodAccepted: SocksHandshake.Action = .send([0x05, 0x00])
    private let socks5Success: [UInt8] = [0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]
    private let socks4Success: [UInt8] = [0x00, 0x5A, 0, 0, 0, 0, 0, 0]
    private let socks4Failure: [UInt8] = [0x00, 0x5B, 0, 0, 0, 0, 0, 0]

    private func socks5Reply(_ code: UInt8) -> [UInt8] { [0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0] }

    private func socks5Request(command: UInt8 = 1, ipv4: [UInt8], port: UInt16) -> [UInt8] {
        [0x05, command, 0x00, 0x01] + ipv4 + [UInt8(port >> 8), UInt8(port & 0xFF)]
    }

    private func socks5Request(command: UInt8 = 1, ipv6: [UInt8], port: UInt16) -> [UInt8] {
        [0x05, command, 0x00, 0x04] + ipv6 + [UInt8(port >> 8), UInt8(port & 0xFF)]
    }

    private func socks5Request(command: UInt8 = 1, name: [UInt8], port: UInt16) -> [UInt8] {
        [0x05, command, 0x00, 0x03, UInt8(name.count)] + name + [UInt8(port >> 8), UInt8(port & 0xFF)]
    }

    private func socks4Request(command: UInt8 = 1, ipv4: [UInt8], port: UInt16, user: [UInt8] = Array("alice".utf8)) -> [UInt8] {
        [0x04, command, UInt8(port >> 8), UInt8(port & 0xFF)] + ipv4 + user + [0]
    }

    private func socks4aRequest(command: UInt8 = 1, name: [UInt8], port: UInt16, user: [UInt8] = Array("alice".utf8)) -> [UInt8] {
        [0x04, command, UInt8(port >> 8), UInt8(port & 0xFF), 0, 0, 0, 1] + user + [0] + name + [0]
    }

    /// 2001:db8::1
    private let documentationIPv6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1]

    /// Feeds `bytes` in pieces of `chunk` bytes; the actions in order and the total consumed.
    private func feed(_ handshake: inout SocksHandshake, _ bytes: [UInt8], chunk: Int = .max) -> SocksHandshake.Outcome {
        var total = SocksHandshake.Outcome()
        var start = 0
        repeat {
            let end = min(bytes.count, start + max(1, min(chunk, bytes.count)))
            let outcome = handshake.receive(bytes[start..<end])
            XCTAssertLessThanOrEqual(outcome.consumed, end - start)
            XCTAssertLessThanOrEqual(handshake.bufferedCount, SocksHandshake.maxBuffered)
            total.consumed += outcome.consumed
            total.actions += outcome.actions
            start = end
        } while start < bytes.count
        return total
    }

    private func lastCloses(_ actions: [SocksHandshake.Action], file: StaticString = #filePath, line: UInt = #line) {
        guard case .close(let reason)? = actions.last else {
            return XCTFail("expected a close at the end of \(actions)", file: file, line: line)
        }
        XCTAssertFalse(reason.isEmpty, file: file, line: line)
    }

    // MARK: happy paths

    func testSocks5_ipv4Connect_repliesToTheGreeting_thenAsksForTheChannel() {
        var handshake = SocksHandshake()
        XCTAssertTrue(handshake.isNegotiating)
        XCTAssertEqual(handshake.receive(greeting), .init(consumed: 3, actions: [methodAccepted]))
        XCTAssertEqual(handshake.version, .socks5)
        XCTAssertTrue(handshake.isNegotiating)
        let request = socks5Request(ipv4: [192, 0, 2, 10], port: 5432)
        XCTAssertEqual(handshake.receive(request),
                       .init(consumed: 10, actions: [.openChannel(SocksTarget(host: "192.0.2.10", port: 5432, kind: .ipv4))]))
        XCTAssertEqual(handshake.state, .awaitingChannel)
        XCTAssertFalse(handshake.isNegotiating)
        XCTAssertEqual(handshake.bufferedCount, 0)
        XCTAssertEqual(handshake.channelOpened(), [.send(socks5Success), .forward])
        XCTAssertEqual(handshake.state, .forwarding)
    }

    func testSocks5_ipv6Connect_givesTheLiteralWithoutBrackets() {
        var handshake = SocksHandshake()
        let outcome = handshake.receive(greeting + socks5Request(ipv6: documentationIPv6, port: 443))
        let target = SocksTarget(host: "2001:db8::1", port: 443, kind: .ipv6)
        XCTAssertEqual(outcome, .init(consumed: 3 + 22, actions: [methodAccepted, .openChannel(target)]))
        XCTAssertEqual(target.description, "[2001:db8::1]:443")
        XCTAssertEqual(handshake.channelOpened(), [.send(socks5Success), .forward])
    }

    func testSocks5_domainConnect_leavesTheNameToTheServer() {
        var handshake = SocksHandshake()
        _ = handshake.receive(greeting)
        let outcome = handshake.receive(socks5Request(name: Array("db.internal.example".utf8), port: 5432))
        XCTAssertEqual(outcome.consumed, 4 + 1 + 19 + 2)
        XCTAssertEqual(outcome.actions, [.openChannel(SocksTarget(host: "db.internal.example", port: 5432, kind: .domainName))])
        XCTAssertEqual(SocksTarget(host: "db.internal.example", port: 5432, kind: .domainName).description, "db.internal.example:5432")
    }

    func testSocks5_nameOf255Bytes_isTheLongestRequest_andAccepted() {
        var handshake = SocksHandshake()
        _ = handshake.receive(greeting)
        let name = [UInt8](repeating: UInt8(ascii: "a"), count: 255)
        let outcome = handshake.receive(socks5Request(name: name, port: 80))
        XCTAssertEqual(outcome.consumed, 262)
        XCTAssertEqual(outcome.actions, [.openChannel(SocksTarget(host: String(repeating: "a", count: 255), port: 80, kind: .domainName))])
    }

    func testSocks5_greetingOfferingSeveralMethods_acceptsNoAuthentication() {
        var handshake = SocksHandshake()
        XCTAssertEqual(handshake.receive([0x05, 0x03, 0x02, 0x01, 0x00]), .init(consumed: 5, actions: [methodAccepted]))
        XCTAssertTrue(handshake.isNegotiating)
    }

    func testSocks4_connect_ignoresTheUserID() {
        var handshake = SocksHandshake()
        let outcome = handshake.receive(socks4Request(ipv4: [10, 1, 2, 3], port: 22))
        XCTAssertEqual(outcome, .init(consumed: 8 + 6, actions: [.openChannel(SocksTarget(host: "10.1.2.3", port: 22, kind: .ipv4))]))
        XCTAssertEqual(handshake.version, .socks4)
        XCTAssertEqual(handshake.channelOpened(), [.send(socks4Success), .forward])
        XCTAssertEqual(handshake.state, .forwarding)
    }

    func testSocks4_emptyUserID_isFine() {
        var handshake = SocksHandshake()
        let outcome = handshake.receive(socks4Request(ipv4: [10, 0, 0, 1], port: 80, user: []))
        XCTAssertEqual(outcome, .init(consumed: 9, actions: [.openChannel(SocksTarget(host: "10.0.0.1", port: 80, kind: .ipv4))]))
    }

    func testSocks4a_addressZeroZeroZeroX_readsTheHostNameAfterTheUserID() {
        var handshake = SocksHandshake()
        let request = socks4aRequest(name: Array("example.org".utf8), port: 8080)
        let outcome = handshake.receive(request)
        XCTAssertEqual(outcome, .init(consumed: request.count, actions: [.openChannel(SocksTarget(host: "example.org", port: 8080, kind: .domainName))]))
        XCTAssertEqual(handshake.channelOpened(), [.send(socks4Success), .forward])
    }

    func testSocks4_addressZero_isNotSocks4a() {
        // 0.0.0.0 has x == 0: a plain SOCKS4 request, nothing is read after the user id.
        var handshake = SocksHandshake()
        let outcome = handshake.receive(socks4Request(ipv4: [0, 0, 0, 0], port: 80) + [0x41])
        XCTAssertEqual(outcome.consumed, 14)
        XCTAssertEqual(outcome.actions, [.openChannel(SocksTarget(host: "0.0.0.0", port: 80, kind: .ipv4))])
    }

    func testSocks4_userIDOf255Bytes_isAccepted_andSocks4aNameOf255Too() {
        var handshake = SocksHandshake()
        let user = [UInt8](repeating: UInt8(ascii: "u"), count: 255)
        let name = [UInt8](repeating: UInt8(ascii: "h"), count: 255)
        let request = socks4aRequest(name: name, port: 1, user: user)
        XCTAssertEqual(request.count, SocksHandshake.maxBuffered)
        let outcome = feed(&handshake, request, chunk: 7)
        XCTAssertEqual(outcome.consumed, request.count)
        XCTAssertEqual(outcome.actions, [.openChannel(SocksTarget(host: String(repeating: "h", count: 255), port: 1, kind: .domainName))])
    }

    func testReceive_takesAnUnsafeRawBufferPointer() {
        var handshake = SocksHandshake()
        let bytes = greeting + socks5Request(ipv4: [127, 0, 0, 1], port: 9)
        let outcome = bytes.withUnsafeBytes { handshake.receive($0) }
        XCTAssertEqual(outcome.consumed, 13)
        XCTAssertEqual(outcome.actions.last, .openChannel(SocksTarget(host: "127.0.0.1", port: 9, kind: .ipv4)))
    }

    // MARK: byte at a time

    private func assertByteAtATime(_ bytes: [UInt8], expect expected: [SocksHandshake.Action], actionAt positions: [Int],
                                   file: StaticString = #filePath, line: UInt = #line) {
        var handshake = SocksHandshake()
        var actions: [SocksHandshake.Action] = []
        for (offset, byte) in bytes.enumerated() {
            let outcome = handshake.receive([byte])
            XCTAssertEqual(outcome.consumed, 1, "byte \(offset)", file: file, line: line)
            XCTAssertEqual(outcome.actions.isEmpty, !positions.contains(offset), "byte \(offset)", file: file, line: line)
            XCTAssertLessThanOrEqual(handshake.bufferedCount, SocksHandshake.maxBuffered, file: file, line: line)
            actions += outcome.actions
        }
        XCTAssertEqual(actions, expected, file: file, line: line)
        XCTAssertEqual(handshake.state, .awaitingChannel, file: file, line: line)
    }

    func testByteAtATime_socks5IPv4() {
        let bytes = greeting + socks5Request(ipv4: [1, 2, 3, 4], port: 80)
        assertByteAtATime(bytes, expect: [methodAccepted, .openChannel(SocksTarget(host: "1.2.3.4", port: 80, kind: .ipv4))],
                          actionAt: [2, bytes.count - 1])
    }

    func testByteAtATime_socks5IPv6() {
        let bytes = greeting + socks5Request(ipv6: documentationIPv6, port: 80)
        assertByteAtATime(bytes, expect: [methodAccepted, .openChannel(SocksTarget(host: "2001:db8::1", port: 80, kind: .ipv6))],
                          actionAt: [2, bytes.count - 1])
    }

    func testByteAtATime_socks5Domain() {
        let bytes = greeting + socks5Request(name: Array("a.example".utf8), port: 80)
        assertByteAtATime(bytes, expect: [methodAccepted, .openChannel(SocksTarget(host: "a.example", port: 80, kind: .domainName))],
                          actionAt: [2, bytes.count - 1])
    }

    func testByteAtATime_socks4() {
        let bytes = socks4Request(ipv4: [10, 0, 0, 7], port: 7)
        assertByteAtATime(bytes, expect: [.openChannel(SocksTarget(host: "10.0.0.7", port: 7, kind: .ipv4))],
                          actionAt: [bytes.count - 1])
    }

    func testByteAtATime_socks4a() {
        let bytes = socks4aRequest(name: Array("b.example".utf8), port: 7)
        assertByteAtATime(bytes, expect: [.openChannel(SocksTarget(host: "b.example", port: 7, kind: .domainName))],
                          actionAt: [bytes.count - 1])
    }

    // MARK: pipelined payload

    func testSocks5_greetingRequestAndPayloadInOneRead_consumesOnlyTheHandshake() {
        var handshake = SocksHandshake()
        let payload = Array("GET / HTTP/1.1\r\n\r\n".utf8)
        let bytes = greeting + socks5Request(name: Array("example.com".utf8), port: 80) + payload
        let outcome = handshake.receive(bytes)
        XCTAssertEqual(outcome.actions, [methodAccepted, .openChannel(SocksTarget(host: "example.com", port: 80, kind: .domainName))])
        XCTAssertEqual(Array(bytes[outcome.consumed...]), payload)
    }

    func testSocks4a_payloadAfterTheName_isNotConsumed() {
        var handshake = SocksHandshake()
        let payload: [UInt8] = [0x00, 0x01, 0x02]  // starts with a NUL, which must not be read as a terminator
        let request = socks4aRequest(name: Array("example.net".utf8), port: 443)
        let outcome = handshake.receive(request + payload)
        XCTAssertEqual(outcome.consumed, request.count)
        XCTAssertEqual(outcome.actions, [.openChannel(SocksTarget(host: "example.net", port: 443, kind: .domainName))])
    }

    func testSocks4_payloadAfterTheUserID_isNotConsumed() {
        var handshake = SocksHandshake()
        let request = socks4Request(ipv4: [10, 0, 0, 1], port: 80)
        let outcome = handshake.receive(request + [0x16, 0x03, 0x01])
        XCTAssertEqual(outcome.consumed, request.count)
    }

    func testPayloadInTheReadThatEndsTheRequest_afterASplitRequest() {
        var handshake = SocksHandshake()
        let request = greeting + socks5Request(ipv4: [8, 8, 4, 4], port: 53)
        XCTAssertEqual(handshake.receive(request[0..<7]).consumed, 7)
        let outcome = handshake.receive(request[7...] + [0xAA, 0xBB])
        XCTAssertEqual(outcome.consumed, request.count - 7)
        XCTAssertEqual(outcome.actions, [.openChannel(SocksTarget(host: "8.8.4.4", port: 53, kind: .ipv4))])
    }

    func testBytesWhileAwaitingTheChannel_andWhileForwarding_areAllPayload() {
        var handshake = SocksHandshake()
        _ = handshake.receive(socks4Request(ipv4: [10, 0, 0, 1], port: 80))
        XCTAssertEqual(handshake.receive([0x05, 0x01, 0x00]), .init(consumed: 0, actions: []))
        XCTAssertEqual(handshake.state, .awaitingChannel)
        _ = handshake.channelOpened()
        XCTAssertEqual(handshake.receive([0x04, 0x01]), .init(consumed: 0, actions: []))
        XCTAssertEqual(handshake.state, .forwarding)
    }

    // MARK: channel results

    func testSocks5_eachFailure_getsItsReplyCode_thenClose() {
        let cases: [(SocksFailure, UInt8)] = [(.general, 0x01), (.notAllowed, 0x02), (.hostUnreachable, 0x04), (.connectionRefused, 0x05)]
        for (failure, code) in cases {
            var handshake = SocksHandshake()
            _ = handshake.receive(greeting + socks5Request(ipv4: [10, 0, 0, 1], port: 80))
            let actions = handshake.channelFailed(failure)
            XCTAssertEqual(actions.first, .send(socks5Reply(code)), "\(failure)")
            XCTAssertEqual(actions.count, 2)
            lastCloses(actions)
            XCTAssertEqual(handshake.state, .closed)
            XCTAssertEqual(handshake.channelOpened(), [], "a late success changes nothing")
        }
    }

    func testSocks4_everyFailure_is5B() {
        for failure in [SocksFailure.general, .notAllowed, .hostUnreachable, .connectionRefused] {
            var handshake = SocksHandshake()
            _ = handshake.receive(socks4aRequest(name: Array("x.example".utf8), port: 80))
            let actions = handshake.channelFailed(failure)
            XCTAssertEqual(actions.first, .send(socks4Failure), "\(failure)")
            lastCloses(actions)
            XCTAssertEqual(handshake.state, .closed)
        }
    }

    func testChannelResults_beforeTheRequest_doNothing() {
        var handshake = SocksHandshake()
        _ = handshake.receive(greeting)
        XCTAssertEqual(handshake.channelOpened(), [])
        XCTAssertEqual(handshake.channelFailed(.general), [])
        XCTAssertEqual(handshake.state, .negotiating)
    }

    func testSocksFailure_fromTheSSHRefusal() {
        XCTAssertEqual(SocksFailure(ChannelOpenRefusal.connectFailed), .general, "refused, unresolvable or unreachable: libssh2 does not say which")
        XCTAssertEqual(SocksFailure(ChannelOpenRefusal.administrativelyProhibited), .notAllowed)
        XCTAssertEqual(SocksFailure(ChannelOpenRefusal.unknownChannelType), .general)
        XCTAssertEqual(SocksFailure(ChannelOpenRefusal.resourceShortage), .general)
        XCTAssertEqual(SocksFailure(ChannelOpenRefusal.unspecified), .general)
        XCTAssertEqual(SocksFailure(nil), .general, "no answer from the server, e.g. the link dropped")
    }

    // MARK: refused commands and methods

    func testSocks5_bindAndUDPAssociate_andUnknownCommands_get07_thenClose() {
        for command: UInt8 in [2, 3, 9] {
            var handshake = SocksHandshake()
            let outcome = handshake.receive(greeting + socks5Request(command: command, ipv4: [10, 0, 0, 1], port: 80))
            XCTAssertEqual(outcome.actions.dropLast(), [methodAccepted, .send(socks5Reply(0x07))], "command \(command)")
            lastCloses(outcome.actions)
            XCTAssertEqual(handshake.state, .closed)
        }
    }

    func testSocks5_bindToAName_alsoGets07() {
        var handshake = SocksHandshake()
        _ = handshake.receive(greeting)
        let actions = handshake.receive(socks5Request(command: 2, name: Array("x y".utf8), port: 0)).actions
        XCTAssertEqual(actions.first, .send(socks5Reply(0x07)), "the command is checked before the name and the port")
        lastCloses(actions)
    }

    func testSocks4_bind_gets5B_thenClose() {
        var handshake = SocksHandshake()
        let actions = handshake.receive(socks4Request(command: 2, ipv4: [10, 0, 0, 1], port: 80)).actions
        XCTAssertEqual(actions.first, .send(socks4Failure))
        XCTAssertEqual(actions.count, 2)
        lastCloses(actions)
        XCTAssertEqual(handshake.state, .closed)
    }

    func testSocks5_noAcceptableMethod_getsFF_thenClose_andLaterBytesAreIgnored() {
        var handshake = SocksHandshake()
        let outcome = handshake.receive([0x05, 0x02, 0x02, 0x01] + socks5Request(ipv4: [1, 1, 1, 1], port: 80))
        XCTAssertEqual(outcome.consumed, 4)
        XCTAssertEqual(outcome.actions.first, .send([0x05, 0xFF]))
        XCTAssertEqual(outcome.actions.count, 2)
        lastCloses(outcome.actions)
        XCTAssertEqual(handshake.state, .closed)
        XCTAssertEqual(handshake.receive(socks5Request(ipv4: [1, 1, 1, 1], port: 80)), .init(consumed: 0, actions: []))
    }

    func testPortZero_isRefusedWithAReply() {
        var five = SocksHandshake()
        let actions5 = five.receive(greeting + socks5Request(ipv4: [10, 0, 0, 1], port: 0)).actions
        XCTAssertEqual(actions5.dropLast(), [methodAccepted, .send(socks5Reply(0x02))])
        lastCloses(actions5)

        var four = SocksHandshake()
        let actions4 = four.receive(socks4aRequest(name: Array("x.example".utf8), port: 0)).actions
        XCTAssertEqual(actions4.first, .send(socks4Failure))
        lastCloses(actions4)
        XCTAssertEqual(four.state, .closed)
    }

    func testHostNameWithANULOrControlBytes_isRefused_notCutShort() {
        for name in [Array("evil\u{0}good".utf8), Array("a b".utf8), [0x61, 0x0A, 0x62], Array("é.example".utf8)] {
            var handshake = SocksHandshake()
            let actions = handshake.receive(greeting + socks5Request(name: name, port: 80)).actions
            XCTAssertEqual(actions.dropLast(), [methodAccepted, .send(socks5Reply(0x04))], "\(name)")
            lastCloses(actions)
            XCTAssertEqual(handshake.state, .closed)
        }
        var four = SocksHandshake()
        let actions4 = four.receive(socks4aRequest(name: [0x61, 0x1B, 0x62], port: 80)).actions
        XCTAssertEqual(actions4.first, .send(socks4Failure))
        lastCloses(actions4)
    }

    // MARK: malformed input

    /// Feeds `bytes` whole and one byte at a time; both must end in a bare close (no reply).
    private func assertClosesWithoutReply(_ bytes: [UInt8], afterGreetingReply: Bool = false, _ message: String,
                                          file: StaticString = #filePath, line: UInt = #line) {
        for chunk in [Int.max, 1] {
            var handshake = SocksHandshake()
            let actions = feed(&handshake, bytes, chunk: chunk).actions
            XCTAssertEqual(actions.count, afterGreetingReply ? 2 : 1, "\(message): \(actions)", file: file, line: line)
            if afterGreetingReply { XCTAssertEqual(actions.first, methodAccepted, message, file: file, line: line) }
            lastCloses(actions, file: file, line: line)
            XCTAssertEqual(handshake.state, .closed, message, file: file, line: line)
            XCTAssertEqual(handshake.bufferedCount, 0, message, file: file, line: line)
        }
    }

    func testUnknownVersionByte_closes() {
        assertClosesWithoutReply(Array("GET / HTTP/1.1\r\n".utf8), "HTTP")
        assertClosesWithoutReply([0x00], "zero")
        assertClosesWithoutReply([0x16, 0x03, 0x01], "TLS")
    }

    func testSocks5_noMethods_closes() {
        assertClosesWithoutReply([0x05, 0x00, 0x00], "NMETHODS 0")
    }

    func testSocks5_requestWithAnotherVersionByte_closes() {
        assertClosesWithoutReply(greeting + [0x04, 0x01, 0x00, 0x01, 1, 2, 3, 4, 0, 80], afterGreetingReply: true, "version 4 in the request")
    }

    func testSocks5_reservedByteNotZero_closes() {
        assertClosesWithoutReply(greeting + [0x05, 0x01, 0x01, 0x01, 1, 2, 3, 4, 0, 80], afterGreetingReply: true, "reserved 1")
    }

    func testSocks5_emptyName_closes() {
        assertClosesWithoutReply(greeting + [0x05, 0x01, 0x00, 0x03, 0x00, 0, 80], afterGreetingReply: true, "name of length 0")
    }

    func testSocks5_unknownAddressType_gets08_thenClose() {
        var handshake = SocksHandshake()
        let outcome = handshake.receive(greeting + [0x05, 0x01, 0x00, 0x02, 1, 2, 3, 4, 0, 80])
        XCTAssertEqual(outcome.actions.dropLast(), [methodAccepted, .send(socks5Reply(0x08))])
        lastCloses(outcome.actions)
        XCTAssertEqual(handshake.state, .closed)
    }

    func testSocks4_userIDOver255Bytes_closes_withoutBufferingMore() {
        let request = [0x04, 0x01, 0x00, 0x50, 10, 0, 0, 1] + [UInt8](repeating: 0x75, count: 1000)
        assertClosesWithoutReply(request, "user id of 1000 bytes")
        var handshake = SocksHandshake()
        let outcome = handshake.receive(request)
        XCTAssertEqual(outcome.consumed, 8 + 256, "reads only up to the cap")
    }

    func testSocks4a_nameOver255Bytes_closes() {
        let request = [0x04, 0x01, 0x00, 0x50, 0, 0, 0, 1, 0x00] + [UInt8](repeating: 0x68, count: 256) + [0]
        assertClosesWithoutReply(request, "name of 256 bytes")
    }

    func testSocks4a_emptyName_closes() {
        assertClosesWithoutReply([0x04, 0x01, 0x00, 0x50, 0, 0, 0, 1, 0x61, 0x00, 0x00], "empty name")
    }

    // MARK: the greeting timer

    func testTimedOut_whileNegotiating_closes_andAfterTheRequest_doesNothing() {
        XCTAssertEqual(SocksHandshake.greetingTimeout, 10)
        var slow = SocksHandshake()
        _ = slow.receive([0x05, 0x01])
        XCTAssertEqual(slow.bufferedCount, 2)
        let actions = slow.timedOut()
        XCTAssertEqual(actions.count, 1)
        lastCloses(actions)
        XCTAssertEqual(slow.state, .closed)
        XCTAssertEqual(slow.bufferedCount, 0)

        var done = SocksHandshake()
        _ = done.receive(socks4Request(ipv4: [10, 0, 0, 1], port: 80))
        XCTAssertEqual(done.timedOut(), [])
        XCTAssertEqual(done.state, .awaitingChannel)
    }

    // MARK: IPv6 text

    func testIPv6Text_followsRFC5952() {
        func text(_ groups: [UInt16]) -> String {
            SocksHandshake.ipv6Text(ArraySlice(groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }))
        }
        XCTAssertEqual(text([0, 0, 0, 0, 0, 0, 0, 0]), "::")
        XCTAssertEqual(text([0, 0, 0, 0, 0, 0, 0, 1]), "::1")
        XCTAssertEqual(text([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), "2001:db8::")
        XCTAssertEqual(text([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1]), "2001:db8:0:1::1", "the longer run")
        XCTAssertEqual(text([0x2001, 0, 0, 1, 0, 0, 1, 1]), "2001::1:0:0:1:1", "the first of equal runs")
        XCTAssertEqual(text([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1]), "2001:db8:0:1:1:1:1:1", "one zero group stays")
        XCTAssertEqual(text([0xFE80, 0, 0, 0, 0xABCD, 0x12, 0x3400, 0xF]), "fe80::abcd:12:3400:f")
    }

    func testIPv6Text_randomAddresses_parseBackToTheSameBytes() {
        var generator = SplitMix64(seed: 0x6_6666)
        for round in 0..<2000 {
            // Mostly zero groups, so runs of every length and position come up.
            var bytes: [UInt8] = []
            for _ in 0..<8 {
                let group: UInt16 = generator.next() % 3 == 0 ? UInt16(truncatingIfNeeded: generator.next()) : 0
                bytes += [UInt8(group >> 8), UInt8(group & 0xFF)]
            }
            let text = SocksHandshake.ipv6Text(ArraySlice(bytes))
            var parsed = in6_addr()
            XCTAssertEqual(inet_pton(AF_INET6, text, &parsed), 1, "round \(round): \(text)")
            let back = withUnsafeBytes(of: &parsed) { Array($0) }
            XCTAssertEqual(back, bytes, "round \(round): \(text)")
            XCTAssertFalse(text.contains(":::"), text)
        }
    }

    // MARK: fuzz

    /// Random input in random pieces: the machine never buffers more than its
    /// bound, never consumes more than it is given, ends in exactly one of
    /// `.openChannel` or `.close` (the timer's, if the input stops early), and
    /// does nothing after.
    func testFuzz_randomInput_alwaysEndsInATargetOrAClose() {
        var generator = SplitMix64(seed: 20_240_601)
        let seeds: [[UInt8]] = [
            greeting + socks5Request(ipv4: [1, 2, 3, 4], port: 80),
            greeting + socks5Request(ipv6: documentationIPv6, port: 80),
            greeting + socks5Request(name: Array("example.com".utf8), port: 80),
            socks4Request(ipv4: [1, 2, 3, 4], port: 80),
            socks4aRequest(name: Array("example.com".utf8), port: 80),
        ]
        var ends: [SocksHandshake.State: Int] = [:]
        for round in 0..<20_000 {
            var input: [UInt8]
            func nonZero(_ range: ClosedRange<Int>) -> [UInt8] {
                (0..<(range.lowerBound + Int(generator.next() % UInt64(range.count)))).map { _ in UInt8(1 + generator.next() % 255) }
            }
            switch generator.next() % 5 {
            case 0:
                // Pure noise, led by a version byte half the time so the parsers get past the first byte.
                input = (0..<Int(generator.next() % 600)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                if !input.isEmpty && generator.next() % 2 == 0 { input[0] = generator.next() % 2 == 0 ? 4 : 5 }
            case 1:
                // SOCKS4a with a user id and a name around the caps: the longest buffer there is.
                input = [0x04, 0x01, 0x00, 0x50, 0, 0, 0, 1] + nonZero(250...260) + [0] + nonZero(250...260) + [0]
            default:
                // A valid request with a few bytes changed, cut or extended.
                input = seeds[Int(generator.next() % UInt64(seeds.count))]
                for _ in 0..<Int(generator.next() % 4) {
                    input[Int(generator.next() % UInt64(input.count))] = UInt8(truncatingIfNeeded: generator.next())
                }
                if generator.next() % 4 == 0 { input = Array(input.prefix(Int(generator.next() % UInt64(input.count + 1)))) }
                if generator.next() % 4 == 0 { input += (0..<Int(generator.next() % 300)).map { _ in UInt8(truncatingIfNeeded: generator.next()) } }
            }

            var handshake = SocksHandshake()
            var actions: [SocksHandshake.Action] = []
            var start = 0
            var consumedTotal = 0
            while start < input.count {
                let end = min(input.count, start + 1 + Int(generator.next() % 40))
                let outcome = handshake.receive(input[start..<end])
                XCTAssertTrue((0...(end - start)).contains(outcome.consumed), "round \(round)")
                XCTAssertLessThanOrEqual(handshake.bufferedCount, SocksHandshake.maxBuffered, "round \(round)")
                if !handshake.isNegotiating { XCTAssertEqual(handshake.bufferedCount, 0, "round \(round)") }
                if handshake.isNegotiating { XCTAssertEqual(outcome.consumed, end - start, "round \(round): a negotiating machine takes all it is given") }
                consumedTotal += outcome.consumed
                actions += outcome.actions
                start = end
            }
            XCTAssertLessThanOrEqual(consumedTotal, input.count)
            actions += handshake.timedOut()

            let endings = actions.filter {
                switch $0 {
                case .openChannel, .close: return true
                case .send, .forward: return false
                }
            }
            XCTAssertEqual(endings.count, 1, "round \(round): \(input) gave \(actions)")
            switch endings.first {
            case .openChannel(let target)?:
                XCTAssertEqual(handshake.state, .awaitingChannel)
                XCTAssertEqual(actions.last, endings.first, "nothing after the target")
                XCTAssertNotEqual(target.port, 0)
                XCTAssertFalse(target.host.isEmpty)
            case .close?:
                XCTAssertEqual(handshake.state, .closed)
                XCTAssertEqual(actions.last, endings.first, "nothing after the close")
            default:
                XCTFail("round \(round): no ending")
            }
            ends[handshake.state, default: 0] += 1
            XCTAssertEqual(handshake.receive(input), .init(consumed: 0, actions: []), "inert after the handshake")
        }
        // The mutations must reach both endings often, or the fuzz proves little.
        XCTAssertGreaterThan(ends[.awaitingChannel] ?? 0, 2000)
        XCTAssertGreaterThan(ends[.closed] ?? 0, 2000)
    }

    /// Random valid requests, split at random, with random payload after:
    /// the target is the one encoded and the payload comes back untouched.
    func testFuzz_validRequestsInRandomPieces_giveTheirTarget_andLeaveThePayload() {
        var generator = SplitMix64(seed: 1928)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789-.".utf8)
        for round in 0..<5000 {
            let port = UInt16(1 + generator.next() % 65535)
            let nameLength = 1 + Int(generator.next() % 255)
            let name = (0..<nameLength).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            let address = (0..<16).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let user = (0..<Int(generator.next() % 256)).map { _ in UInt8(1 + generator.next() % 255) }
            let request: [UInt8]
            let expected: SocksTarget
            switch generator.next() % 5 {
            case 0:
                request = greeting + socks5Request(ipv4: Array(address[0..<4]), port: port)
                expected = SocksTarget(host: address[0..<4].map(String.init).joined(separator: "."), port: port, kind: .ipv4)
            case 1:
                request = greeting + socks5Request(ipv6: address, port: port)
                expected = SocksTarget(host: SocksHandshake.ipv6Text(ArraySlice(address)), port: port, kind: .ipv6)
            case 2:
                request = [0x05, 0x02, 0x02, 0x00] + socks5Request(name: name, port: port)
                expected = SocksTarget(host: String(decoding: name, as: UTF8.self), port: port, kind: .domainName)
            case 3:
                var ip = Array(address[0..<4])
                if ip[0] == 0 { ip[0] = 1 }  // not a SOCKS4a address
                request = socks4Request(ipv4: ip, port: port, user: user)
                expected = SocksTarget(host: ip.map(String.init).joined(separator: "."), port: port, kind: .ipv4)
            default:
                request = socks4aRequest(name: name, port: port, user: user)
                expected = SocksTarget(host: String(decoding: name, as: UTF8.self), port: port, kind: .domainName)
            }
            let payload = (0..<Int(generator.next() % 64)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let input = request + payload

            var handshake = SocksHandshake()
            var leftover: [UInt8] = []
            var target: SocksTarget?
            var start = 0
            while start < input.count {
                let end = min(input.count, start + 1 + Int(generator.next() % 50))
                let outcome = handshake.receive(input[start..<end])
                XCTAssertLessThanOrEqual(handshake.bufferedCount, SocksHandshake.maxBuffered)
                for case .openChannel(let opened) in outcome.actions { target = opened }
                leftover += input[(start + outcome.consumed)..<end]
                start = end
            }
            XCTAssertEqual(target, expected, "round \(round)")
            XCTAssertEqual(leftover, payload, "round \(round)")
        }
    }
}
