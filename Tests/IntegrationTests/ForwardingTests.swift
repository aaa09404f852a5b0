import Foundation
import XCTest
import Synchronization

/// End to end through a real sshd: bytes, half-close, concurrency, PostgreSQL.
final class ForwardingTests: SSHTestCase {
    var foreground: Background?

    override func tearDown() {
        stopForeground()
        super.tearDown()
    }

    private func stopForeground() {
        foreground?.signal(SIGTERM)
        _ = foreground?.wait(timeout: 3)
        foreground?.stop()
        foreground = nil
    }

    private func up(_ forwards: [String], name: String = "db", extra: String = "", env: [String: String] = [:], waitFor port: UInt16) throws {
        harness.writeConfig(harness.profile(name, server: server, forwards: forwards, extra: extra))
        foreground = try harness.foreground(name, waitFor: port, env: env)
    }

    func testForeground_psqlQuery_reachesPostgresThroughTheTunnel() throws {
        let pg = try Postgres()
        defer { pg.stop() }
        let local = Net.isListening(5433) ? Net.freePort() : 5433
        try up(["\(local):localhost:\(pg.port)"], waitFor: local)
        let result = Postgres.query("select 40 + 2, current_setting('port')", port: local)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertEqual(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "42|\(pg.port)")
    }

    func testOneConnection_64MiBEachWay_arrivesByteExact() throws {
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(echo.port)"], waitFor: local)
        Self.assertEchoes(randomBytes(64 << 20, seed: 7), through: local)
    }

    /// libssh2 1.10 ciphers 16 bytes per EVP_Cipher call; tunnel answers those
    /// calls from an AES-CTR keystream made 8 KiB at a time (Sources/CCryptoCalls).
    /// The server here rekeys every MiB, so the keystream is replaced dozens
    /// of times mid-transfer; one wrong byte would fail the MAC and drop the link.
    func testBulkTransfer_throughTheBatchedKeystream_survivesServerRekeysEveryMiB() throws {
        try replaceServer(extraConfig: "RekeyLimit 1M\nLogLevel DEBUG1")
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let local = Net.freePort()
        // Two SSH connections on two threads: their cipher contexts are set
        // up, used and replaced concurrently.
        try up(["\(local):127.0.0.1:\(echo.port)"], extra: "sessions = 2", waitFor: local)
        let upLines = { (self.foreground?.log ?? "").components(separatedBy: "info: up:").count - 1 }
        XCTAssertTrue(eventually(timeout: 15) { upLines() == 2 }, foreground?.log ?? "")
        Self.assertEchoes([randomBytes(16 << 20, seed: 11), randomBytes(16 << 20, seed: 13)], through: local)
        let log = try XCTUnwrap(foreground?.log)
        let shortcuts = "\(DefaultAlgorithms.pair) (whole-packet cipher, batched keystream, prefetched HMAC digest, kept HMAC keys, pooled padding)"
        XCTAssertEqual(log.components(separatedBy: shortcuts).count - 1, 2, "libssh2's libcrypto calls did not reach CCryptoCalls on both links: \(log)")
        XCTAssertEqual(log.components(separatedBy: "info: libcrypto shortcuts for libssh2: on: libssh2 1.").count - 1, 1, "logged once per process: \(log)")
        XCTAssertEqual(upLines(), 2, "a link was re-established: \(log)")
        let rekeys = read(server.logPath).components(separatedBy: "SSH2_MSG_NEWKEYS received").count - 1
        XCTAssertGreaterThan(rekeys, 20, "the server did not rekey as configured")
    }

    /// tunnel's libssh2 (Patches/libssh2) ciphers a whole packet per call, in
    /// place, where Debian's ciphers 16 bytes at a time. Every cipher tunnel
    /// offers, with payloads that end on and off a block boundary and a rekey
    /// every 256 KiB: one wrong byte would fail the MAC and drop the link, and
    /// the "whole-packet cipher" in the up line proves this build of libssh2
    /// (not the system's) did the work.
    func testEveryCipherTunnelOffers_wholePacketsBothWays_arriveByteExact() throws {
        for (i, cipher) in ["aes128-ctr", "aes192-ctr", "aes256-ctr"].enumerated() {
            try replaceServer(extraConfig: "Ciphers \(cipher)\nRekeyLimit 256K\nLogLevel DEBUG1")
            let echo = TestServer(.echo)
            defer { echo.stop() }
            let local = Net.freePort()
            try up(["\(local):127.0.0.1:\(echo.port)"], waitFor: local)
            let sizes = [1, 15, 16, 17, 4095, 32_768, 32_769, 3 << 20]
            Self.assertEchoes(sizes.enumerated().map { randomBytes($0.element, seed: UInt64(100 * i + $0.offset + 1)) }, through: local)
            let log = try XCTUnwrap(foreground?.log)
            // Eight clients at once also open an extra SSH connection (session=2).
            let upLines = log.split(separator: "\n").filter { $0.contains("info: up:") }
            XCTAssertFalse(upLines.isEmpty, log)
            for line in upLines {
                XCTAssertTrue(line.contains(" \(cipher)/") && line.contains("(whole-packet cipher, "),
                              "\(cipher): not the whole-packet build of libssh2 (run Scripts/libssh2 .build/debug): \(line)")
            }
            XCTAssertEqual(upLines.filter { !$0.contains("session=") }.count, 1, "\(cipher): the link was re-established: \(log)")
            let serverLog = read(server.logPath)
            XCTAssertTrue(serverLog.contains("kex: client->server cipher: \(cipher)"), serverLog)
            XCTAssertGreaterThan(serverLog.components(separatedBy: "SSH2_MSG_NEWKEYS received").count - 1, 4, "\(cipher): the server did not rekey")
            stopForeground()
        }
    }

    /// TUNNEL_CTR_BATCH=0, TUNNEL_HMAC_PREFETCH=0, TUNNEL_HMAC_KEYS=0 and TUNNEL_RANDOM_POOL=0
    /// are the way back to libssh2's own libcrypto calls, one at a time.
    func testCryptoShortcuts_switchedOff_bytesStillArriveExact() throws {
        let switches = ["TUNNEL_CTR_BATCH": "batched keystream", "TUNNEL_HMAC_PREFETCH": "prefetched HMAC digest",
                        "TUNNEL_HMAC_KEYS": "kept HMAC keys", "TUNNEL_RANDOM_POOL": "pooled padding"]
        for (variable, shortcut) in switches.sorted(by: { $0.key < $1.key }) {
            let echo = TestServer(.echo)
            defer { echo.stop() }
            let local = Net.freePort()
            try up(["\(local):127.0.0.1:\(echo.port)"], env: [variable: "0"], waitFor: local)
            Self.assertEchoes(randomBytes(4 << 20, seed: 12), through: local)
            let log = try XCTUnwrap(foreground?.log)
            let upLine = try XCTUnwrap(log.split(separator: "\n").first { $0.contains("info: up:") }, log)
            XCTAssertTrue(upLine.contains("\(DefaultAlgorithms.pair) ("), log)
            XCTAssertFalse(upLine.contains(shortcut), "\(variable)=0: \(log)")
            XCTAssertTrue(log.contains("libcrypto shortcuts for libssh2: on: libssh2 1.") && log.contains("; switched off: \(shortcut)"), "\(variable)=0: \(log)")
            for other in switches.values where other != shortcut {
                XCTAssertTrue(upLine.contains(other), "\(variable)=0 switched off \(other) too: \(log)")
            }
            stopForeground()
        }
    }

    /// Heap reuse between bursts (buffers kept instead of freed and faulted
    /// in again); the page faults it saves are counted by the benchmark, not
    /// here. This proves a second burst on the same link, after the first
    /// left the heap at its working size, still arrives byte-exact.
    func testBulkTransfer_secondBurstOnTheSameLink_arrivesByteExact() throws {
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(echo.port)"], waitFor: local)
        Self.assertEchoes(randomBytes(8 << 20, seed: 3), through: local)
        Self.assertEchoes(randomBytes(64 << 20, seed: 5), through: local)
        XCTAssertEqual(foreground?.log.components(separatedBy: "info: up:").count, 2, "one link carried both bursts: \(foreground?.log ?? "")")
    }

    /// Sends `payload` through `port` while reading the echo concurrently,
    /// then half-closes; the echo must come back whole and in order.
    private static func assertEchoes(_ payload: [UInt8], through port: UInt16, file: StaticString = #filePath, line: UInt = #line) {
        Self.assertEchoes([payload], through: port, file: file, line: line)
    }

    /// One connection per payload, all sending at once.
    private static func assertEchoes(_ payloads: [[UInt8]], through port: UInt16, file: StaticString = #filePath, line: UInt = #line) {
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in payloads {
            guard let fd = Net.connect(port, timeout: 60) else { return XCTFail("connect", file: file, line: line) }
            fds.append(fd)
        }
        let echoed = payloads.map { _ in Atomic<[UInt8]>([]) }
        let sent = payloads.map { _ in Atomic(false) }
        var threads: [Thread] = []
        for (i, fd) in fds.enumerated() {
            threads.append(Thread { echoed[i].value = Net.readToEOF(fd).bytes })
            threads.append(Thread {
                sent[i].value = Net.sendAll(fd, payloads[i])
                shutdown(fd, Int32(SHUT_WR))
            })
        }
        threads.forEach { $0.start() }
        XCTAssertTrue(eventually(timeout: 120) { threads.allSatisfy(\.isFinished) }, "the echo did not finish", file: file, line: line)
        for (i, payload) in payloads.enumerated() {
            XCTAssertTrue(sent[i].value, "connection \(i): send failed", file: file, line: line)
            XCTAssertEqual(echoed[i].value.count, payload.count, "connection \(i)", file: file, line: line)
            XCTAssertEqual(checksum(echoed[i].value), checksum(payload), "connection \(i): the echoed bytes differ", file: file, line: line)
        }
    }

    func test200ConcurrentConnections_eachEchoesByteExact() throws {
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(echo.port)"], waitFor: local)
        let count = 200
        let failures = Atomic<[String]>([])
        let group = DispatchGroup()
        for i in 0..<count {
            group.enter()
            let t = Thread {
                defer { group.leave() }
                let payload = randomBytes(256 * 1024 + i * 97, seed: UInt64(i + 1))
                guard let fd = Net.connect(local, timeout: 60) else {
                    failures.mutate { $0.append("\(i): connect") }
                    return
                }
                defer { close(fd) }
                let echoed = Atomic<[UInt8]>([])
                let reader = Thread { echoed.value = Net.readToEOF(fd).bytes }
                reader.start()
                _ = Net.sendAll(fd, payload)
                shutdown(fd, Int32(SHUT_WR))
                while !reader.isFinished { usleep(5_000) }
                if echoed.value != payload {
                    failures.mutate { $0.append("\(i): got \(echoed.value.count) of \(payload.count) bytes") }
                }
            }
            t.stackSize = 1 << 20
            t.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success, "connections did not finish")
        XCTAssertEqual(failures.value, [])
    }

    /// Channels quiet for a while are checked less often than busy ones: data
    /// and EOF that arrive for them later must still be delivered, while a
    /// bulk transfer runs beside them.
    func testManyQuietConnections_dataAndEOFArrivingLater_reachEveryOne_besideAByteExactBulkTransfer() throws {
        let greeting = randomBytes(3000, seed: 21)
        let late = TestServer(.sendLater(delay: 2, data: greeting))
        defer { late.stop() }
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let quietPort = Net.freePort(), bulkPort = Net.freePort()
        try up(["\(quietPort):127.0.0.1:\(late.port)", "\(bulkPort):127.0.0.1:\(echo.port)"], waitFor: quietPort)

        let count = 300
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<count {
            fds.append(try XCTUnwrap(Net.connect(quietPort)))
        }
        let bulk = Thread { Self.assertEchoes(randomBytes(32 << 20, seed: 22), through: bulkPort) }
        bulk.start()
        // Each quiet client said nothing; its server speaks after 2 s, then sends EOF.
        var delivered = 0
        let deadline = Date().addingTimeInterval(30)
        for fd in fds {
            Net.setTimeout(fd, max(0.1, deadline.timeIntervalSinceNow))
            let (bytes, cleanEOF) = Net.readToEOF(fd)
            if bytes == greeting && cleanEOF { delivered += 1 }
        }
        XCTAssertEqual(delivered, count)
        XCTAssertTrue(eventually(timeout: 120) { bulk.isFinished })
    }

    func testHalfClose_clientShutsWriteAfterRequest_stillGetsTheWholeReply() throws {
        let reply = randomBytes(3 << 20, seed: 11)
        let server2 = TestServer(.replyAfterEOF(reply: reply))
        defer { server2.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(server2.port)"], waitFor: local)
        let request = Array("GET /everything HTTP/1.0\r\n\r\n".utf8)
        for _ in 0..<3 {
            guard let fd = Net.connect(local, timeout: 30) else { return XCTFail("connect") }
            XCTAssertTrue(Net.sendAll(fd, request))
            shutdown(fd, Int32(SHUT_WR))
            let (got, clean) = Net.readToEOF(fd)
            close(fd)
            XCTAssertTrue(clean, "the reply did not end with a clean EOF")
            XCTAssertEqual(got.count, reply.count)
            XCTAssertEqual(checksum(got), checksum(reply))
        }
        XCTAssertEqual(server2.received.count, 3)
        XCTAssertTrue(server2.received.allSatisfy { $0 == request })
    }

    func testHalfClose_remoteEOF_becomesLocalEOF_whileTheClientCanStillSend() throws {
        let greeting = randomBytes(1 << 20, seed: 3)
        let server2 = TestServer(.sendThenRead(data: greeting))
        defer { server2.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(server2.port)"], waitFor: local)
        guard let fd = Net.connect(local, timeout: 30) else { return XCTFail("connect") }
        defer { close(fd) }
        // The server's EOF arrives after all of its bytes...
        guard let first = Net.readExactly(fd, greeting.count) else { return XCTFail("short read") }
        XCTAssertEqual(checksum(first), checksum(greeting))
        var one: UInt8 = 0
        XCTAssertEqual(recv(fd, &one, 1, 0), 0, "expected EOF after the server's data")
        // ...and the other direction is still open.
        let upload = randomBytes(2 << 20, seed: 5)
        XCTAssertTrue(Net.sendAll(fd, upload))
        shutdown(fd, Int32(SHUT_WR))
        XCTAssertTrue(eventually(timeout: 30) { server2.received.count == 1 })
        XCTAssertEqual(server2.received.first.map(checksum), checksum(upload))
    }

    /// The target ends its side first and then reads slowly, so tunnel waits
    /// on the channel's window while the client's last bytes and its FIN
    /// arrive: with tunnel's own write side already shut, the socket then
    /// reports HUP. That is a finished half-close, not a broken connection:
    /// every byte still reaches the target, and the client gets a clean end.
    func testHalfClose_clientFinishesWhileTheWindowIsClosed_afterTheTargetEnded_everyByteArrives() throws {
        let target = TestServer(.endThenReadLater(delay: 3))
        defer { target.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(target.port)"], waitFor: local)
        guard let fd = Net.connect(local, timeout: 30) else { return XCTFail("connect") }
        defer { close(fd) }
        var one: UInt8 = 0
        XCTAssertEqual(recv(fd, &one, 1, 0), 0, "the target's EOF first")
        let upload = randomBytes(24 << 20, seed: 11)
        XCTAssertTrue(Net.sendAll(fd, upload), "tunnel cut the client off while it was still sending")
        shutdown(fd, Int32(SHUT_WR))
        Net.setTimeout(fd, 60)
        XCTAssertEqual(Net.readToEnd(fd).end, .eof, "a clean end, not a reset")
        XCTAssertTrue(eventually(timeout: 60) { target.received.count == 1 })
        XCTAssertEqual(target.received.first?.count, upload.count)
        XCTAssertEqual(target.received.first.map(checksum), checksum(upload))
    }

    func testServerRekeyingEveryMiB_keepsEveryByteInOrder() throws {
        try replaceServer(extraConfig: "LogLevel DEBUG\nRekeyLimit 1M")
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(echo.port)"], waitFor: local)
        Self.assertEchoes(randomBytes(24 << 20, seed: 42), through: local)
        let rekeys = server.log.components(separatedBy: "SSH2_MSG_KEXINIT received").count - 1
        XCTAssertGreaterThan(rekeys, 10, "the server did not rekey: \(server.log.suffix(2000))")
        XCTAssertTrue(foreground!.isRunning)
    }

    /// Re-keys while clients read slowly, so the tunnel holds data back and
    /// libssh2's window adjusts meet the key exchange: every byte arrives, in
    /// order. (libssh2 1.10 counts a window adjust it sent during a re-key by
    /// the length of the read that finished sending it; a zero-length
    /// transport read there dropped whole packets as "window full".)
    func testServerRekeying_whileClientsReadSlowly_everyByteArrives() throws {
        try replaceServer(extraConfig: "LogLevel DEBUG\nRekeyLimit 256K")
        let data = randomBytes(12 << 20, seed: 77)
        let source = TestServer(.sendThenRead(data: data))
        defer { source.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(source.port)"], waitFor: local)
        let results = Mutex<[Int: (Int, Bool, Bool)]>([:])
        let group = DispatchGroup()
        for client in 0..<3 {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let fd = Net.connect(local, timeout: 60) else { return }
                defer { close(fd) }
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 64 << 10)
                var clean = false
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if n == 0 { clean = true; break }
                    if n < 0 { if errno == EINTR { continue }; break }
                    received += buffer[0..<n]
                    usleep(1_000)  // a slow reader: the tunnel holds the rest back
                }
                results.withLock { $0[client] = (received.count, received == data, clean) }
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 300), .success)
        for client in 0..<3 {
            let result = results.withLock { $0[client] }
            XCTAssertEqual(result?.0, data.count, "client \(client): bytes")
            XCTAssertEqual(result?.1, true, "client \(client): the bytes in order")
            XCTAssertEqual(result?.2, true, "client \(client): a clean end")
        }
        let rekeys = server.log.components(separatedBy: "SSH2_MSG_KEXINIT received").count - 1
        XCTAssertGreaterThan(rekeys, 20, "the server did not rekey: \(server.log.suffix(2000))")
        XCTAssertTrue(foreground!.isRunning)
    }

    func testTwoForwardsInOneProfile_shareOneSessionAndBothWork() throws {
        let echo = TestServer(.echo)
        let replies = TestServer(.replyAfterEOF(reply: Array("pong".utf8)))
        defer { echo.stop(); replies.stop() }
        let a = Net.freePort(), b = Net.freePort()
        try up(["\(a):127.0.0.1:\(echo.port)", "127.0.0.1:\(b):127.0.0.1:\(replies.port)"], waitFor: a)
        XCTAssertTrue(Net.isListening(b))
        guard let fa = Net.connect(a), let fb = Net.connect(b) else { return XCTFail("connect") }
        defer { close(fa); close(fb) }
        XCTAssertTrue(Net.sendAll(fa, Array("hello".utf8)))
        XCTAssertEqual(Net.readExactly(fa, 5).map { String(decoding: $0, as: UTF8.self) }, "hello")
        XCTAssertTrue(Net.sendAll(fb, Array("ping".utf8)))
        shutdown(fb, Int32(SHUT_WR))
        XCTAssertEqual(String(decoding: Net.readToEOF(fb).bytes, as: UTF8.self), "pong")
        // One SSH session carries both forwards.
        let sessions = server.log.components(separatedBy: "Accepted publickey").count - 1
        XCTAssertEqual(sessions, 1, server.log)
    }

    func testRemoteTargetRefuses_thatClientIsClosedAtOnce_andTheTunnelStaysUp() throws {
        let closedPort = Net.freePort()
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let bad = Net.freePort(), good = Net.freePort()
        try up(["\(bad):127.0.0.1:\(closedPort)", "\(good):127.0.0.1:\(echo.port)"], waitFor: bad)
        for _ in 0..<3 {
            // Closed by the tunnel (a clean EOF), not left open until our 10 s read timeout.
            guard let fd = Net.connect(bad, timeout: 10) else { return XCTFail("connect") }
            let (bytes, cleanEOF) = Net.readToEOF(fd)
            close(fd)
            XCTAssertEqual(bytes.count, 0)
            XCTAssertTrue(cleanEOF, "the refused client was not closed")
        }
        // libssh2 names the server's reason code (SSH_OPEN_CONNECT_FAILED), not sshd's text.
        // (The target's description may carry a service name from /etc/services: left out.)
        let refusal = " refused: Channel open failure (connect failed); closing that client local=127.0.0.1:\(bad)"
        XCTAssertTrue(eventually(timeout: 5) { self.foreground!.log.components(separatedBy: refusal).count - 1 == 3 }, foreground!.log)
        // Still up: the next connection through the other forward works.
        guard let fd = Net.connect(good) else { return XCTFail("connect") }
        defer { close(fd) }
        XCTAssertTrue(Net.sendAll(fd, Array("still here".utf8)))
        XCTAssertEqual(Net.readExactly(fd, 10).map { String(decoding: $0, as: UTF8.self) }, "still here")
        XCTAssertTrue(foreground!.isRunning)
    }

    /// Two forwards: `stuck` to a port that drops SYNs (sshd's connect there
    /// hangs), `good` to an echo server.
    private func upWithATargetThatNeverAnswers() throws -> (stuck: UInt16, good: UInt16, hole: BlackHole, echo: TestServer) {
        let hole = BlackHole(), echo = TestServer(.echo)
        let stuck = Net.freePort(), good = Net.freePort()
        try up(["\(stuck):127.0.0.1:\(hole.port)", "\(good):127.0.0.1:\(echo.port)"], waitFor: stuck)
        return (stuck, good, hole, echo)
    }

    /// sshd's connect to a target that drops packets hangs for minutes, and
    /// libssh2 stops waiting for the server's answer to that channel open
    /// after 60 s. Only that client fails: the link, and a connection already
    /// open over it, carry on (they used to be cut with the link).
    func testTargetThatNeverAnswers_failsOnlyThatClient_andTheLinkStays() throws {
        let (stuck, good, hole, echo) = try upWithATargetThatNeverAnswers()
        defer { hole.close(); echo.stop() }
        guard let open = Net.connect(good) else { return XCTFail("connect") }
        defer { close(open) }
        func roundTrip(_ text: String) -> String? {
            guard Net.sendAll(open, Array(text.utf8)) else { return nil }
            return Net.readExactly(open, text.utf8.count).map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(roundTrip("before"), "before")

        guard let fd = Net.connect(stuck) else { return XCTFail("connect") }
        defer { close(fd) }
        Net.setTimeout(fd, 150)
        let (bytes, _) = Net.readToEOF(fd)
        XCTAssertEqual(bytes.count, 0)
        let log = foreground!.log
        XCTAssertTrue(log.contains("failed: the server did not answer within 60 s (its connection to the target hangs?); closing that client"), log)
        XCTAssertFalse(log.contains("link lost"), log)
        XCTAssertEqual(roundTrip("after"), "after", "the connection open over the link survived")
        XCTAssertTrue(foreground!.isRunning)
    }

    /// libssh2 keeps one channel open in flight per SSH connection. While one
    /// waits for a target that never answers, the clients after it go to
    /// another SSH connection instead of queueing behind it for 60 s.
    func testClientsBehindAHangingOpen_goToAnotherSSHConnection() throws {
        let (stuck, good, hole, echo) = try upWithATargetThatNeverAnswers()
        defer { hole.close(); echo.stop() }
        guard let first = Net.connect(stuck) else { return XCTFail("connect") }
        defer { close(first) }
        guard let other = Net.connect(good, timeout: 20) else { return XCTFail("connect") }
        defer { close(other) }
        Net.setTimeout(other, 30)
        XCTAssertTrue(Net.sendAll(other, Array("through".utf8)))
        XCTAssertEqual(Net.readExactly(other, 7).map { String(decoding: $0, as: UTF8.self) }, "through", foreground!.log)
        // Answered while the first client's open still waits (libssh2 gives up on it after 60 s).
        var byte: UInt8 = 0
        XCTAssertEqual(recv(first, &byte, 1, Int32(MSG_DONTWAIT)), -1)
        XCTAssertTrue(errno == EAGAIN || errno == EWOULDBLOCK, "the first client is still waiting for its channel")
        let log = foreground!.log
        XCTAssertTrue(log.contains("a channel open has waited 2 s for the server; new clients go to another SSH connection"), log)
        XCTAssertTrue(log.contains("a channel open hangs on 1 of 1 SSH connection(s), 1 more client(s) arriving: opening extra SSH connection 2"), log)
        XCTAssertTrue(log.contains("extra SSH connection 2 up"), log)
    }

    /// The server freezes (its session process stopped) just before a client
    /// comes: the client's open goes unanswered, and with nothing else heard
    /// from the server a probe declares the connection dead in seconds, so
    /// the client is served by a new one before hold_timeout (10 s), not
    /// reset after keepalive × keepalive_count (here 90 s).
    func testServerFrozenBeforeAClient_theUnansweredOpenProbes_andTheClientIsServedBeforeHoldTimeout() throws {
        let local = Net.freePort()
        let text = harness.profile("db", server: server, forwards: ["\(local):127.0.0.1:\(echo.port)"])
        XCTAssertTrue(text.contains("keepalive = 2\n"))
        harness.writeConfig(text.replacingOccurrences(of: "keepalive = 2\n", with: "keepalive = 30\n"))
        foreground = try harness.foreground("db", waitFor: local)
        XCTAssertTrue(eventually(timeout: 10) { !self.server.sessionPIDs.isEmpty })
        let frozen = server.sessionPIDs
        for pid in frozen { kill(pid, SIGSTOP) }
        defer { for pid in frozen { kill(pid, SIGKILL) } }

        guard let client = Net.connect(local) else { return XCTFail("connect") }
        defer { close(client) }
        // Not a deadline: unserved, the client would be closed at hold_timeout and read nothing.
        Net.setTimeout(client, 30)
        XCTAssertTrue(Net.sendAll(client, Array("after the freeze".utf8)))
        XCTAssertEqual(Net.readExactly(client, 16).map { String(decoding: $0, as: UTF8.self) }, "after the freeze", foreground!.log)
        let log = foreground!.log
        XCTAssertTrue(log.contains("no answer within 5 s after a channel open unanswered for 2 s"), log)
        XCTAssertFalse(log.contains("no data from the server for"), log)
    }

    func testSIGTERMAndSIGINTAndSIGHUP_stopWithExitZero_andCloseTheListener() throws {
        let echo = TestServer(.echo)
        defer { echo.stop() }
        for signo in [SIGTERM, SIGINT, SIGHUP] {
            let local = Net.freePort()
            try up(["\(local):127.0.0.1:\(echo.port)"], waitFor: local)
            // An open connection must not hold the exit up.
            let fd = Net.connect(local)
            XCTAssertNotNil(fd)
            foreground!.signal(signo)
            let status = foreground!.wait(timeout: 5)
            XCTAssertEqual(status, 0, foreground!.log)
            XCTAssertFalse(Net.isListening(local))
            if let fd { close(fd) }
            foreground = nil
        }
    }

    func testServerWithoutSessionChannels_stillForwards_warns_andStaysUpWhenIdle() throws {
        try replaceServer(extraConfig: "MaxSessions 0")
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(echo.port)"], waitFor: local)
        guard let fd = Net.connect(local) else { return XCTFail("connect") }
        XCTAssertTrue(Net.sendAll(fd, Array("no session channel".utf8)))
        XCTAssertEqual(Net.readExactly(fd, 18).map { String(decoding: $0, as: UTF8.self) }, "no session channel")
        close(fd)
        XCTAssertTrue(eventually(timeout: 5) { self.foreground!.log.contains("refused a session channel") }, foreground!.log)
        // Idle with no channel at all, past the keepalive interval (2 s): with no
        // ping channel the link must not be declared dead. (Whether the idle
        // loop spins is CPU time: the benchmark measures it.)
        sleep(3)
        XCTAssertTrue(foreground!.isRunning)
        guard let again = Net.connect(local) else { return XCTFail("connect after idling") }
        defer { close(again) }
        XCTAssertTrue(Net.sendAll(again, Array("after idling".utf8)))
        XCTAssertEqual(Net.readExactly(again, 12).map { String(decoding: $0, as: UTF8.self) }, "after idling")
        XCTAssertFalse(foreground!.log.contains("link lost"), foreground!.log)
    }

    /// Memory with stalled and idle clients is measured by the benchmark; here,
    /// that backpressure stops the writer and the tunnel still serves others.
    func testSlowReader_backpressureStopsTheWriter_andIdleConnectionsLeaveTheTunnelServing() throws {
        let echo = TestServer(.echo)
        defer { echo.stop() }
        let local = Net.freePort()
        try up(["\(local):127.0.0.1:\(echo.port)"], waitFor: local)

        // A client that writes and never reads: the echo fills every buffer
        // back to it, then everything must stall instead of growing.
        guard let fd = Net.connect(local, timeout: 3) else { return XCTFail("connect") }
        defer { close(fd) }
        let chunk = randomBytes(1 << 20, seed: 1)
        var sent = 0
        while sent < 512 << 20 {
            let ok = chunk.withUnsafeBytes { raw -> Bool in
                let n = send(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
                if n > 0 { sent += n }
                return n > 0
            }
            if !ok { break } // SO_SNDTIMEO: the pipeline is full
        }
        XCTAssertLessThan(sent, 512 << 20, "512 MiB went in without anyone reading: no backpressure")

        // 500 idle connections beside the stalled one; a new client is still echoed.
        var idle: [Int32] = []
        for _ in 0..<500 { if let c = Net.connect(local) { idle.append(c) } }
        defer { idle.forEach { close($0) } }
        XCTAssertEqual(idle.count, 500)
        guard let fresh = Net.connect(local, timeout: 30) else { return XCTFail("connect") }
        defer { close(fresh) }
        XCTAssertTrue(Net.sendAll(fresh, Array("still served".utf8)))
        XCTAssertEqual(Net.readExactly(fresh, 12).map { String(decoding: $0, as: UTF8.self) }, "still served")
        XCTAssertTrue(foreground!.isRunning)
    }

    func testIPv6BindAndTarget_inBrackets_forward() throws {
        let local = Net.freePort()
        // Local side on ::1, remote target given as a bracketed IPv6 literal resolved by sshd.
        let v6Echo = TestServerV6Echo()
        defer { v6Echo.stop() }
        try up(["[::1]:\(local):[::1]:\(v6Echo.port)"], waitFor: local)
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_port = local.bigEndian
        inet_pton(AF_INET6, "::1", &addr.sin6_addr)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        XCTAssertEqual(rc, 0, "connect to [::1]:\(local)")
        Net.setTimeout(fd, 10)
        XCTAssertTrue(Net.sendAll(fd, Array("over IPv6".utf8)))
        XCTAssertEqual(Net.readExactly(fd, 9).map { String(decoding: $0, as: UTF8.self) }, "over IPv6")
        XCTAssertTrue(foreground!.log.contains("[::1]:\(local)"), foreground!.log)
    }
}

/// A one-connection-at-a-time IPv6 echo server on [::1].
final class TestServerV6Echo {
    let port: UInt16
    private let fd: Int32

    init() {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        inet_pton(AF_INET6, "::1", &addr.sin6_addr)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        listen(fd, 16)
        var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin6_port)
        Thread {
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { return }
                var buf = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { break }
                    _ = buf.withUnsafeBytes { Net.sendAll(c, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                }
                close(c)
            }
        }.start()
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
