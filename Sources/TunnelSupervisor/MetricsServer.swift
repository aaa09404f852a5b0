import Glibc
import Logging
import TunnelConfig
import TunnelEngine
import TunnelPOSIX

/// One scrape's HTTP exchange as a value: bytes in, an action out. The
/// server performs the actions; this decides them (and is tested alone).
struct ScrapeExchange: Equatable {
    /// The request head may be at most this long.
    static let headLimit = 8 * 1024

    enum Reply: Equatable {
        case metrics
        case notFound
        case methodNotAllowed
        case badRequest
        case headTooLarge

        var statusLine: String {
            switch self {
            case .metrics: return "200 OK"
            case .notFound: return "404 Not Found"
            case .methodNotAllowed: return "405 Method Not Allowed"
            case .badRequest: return "400 Bad Request"
            case .headTooLarge: return "431 Request Header Fields Too Large"
            }
        }
    }

    enum State: Equatable {
        case reading(head: [UInt8])
        case replying
        case closed
    }

    enum Action: Equatable {
        /// Wait for more bytes.
        case readMore
        /// Send this reply (its head only, for HEAD), then close.
        case reply(Reply, headOnly: Bool = false)
        /// Close without replying (the peer left before a whole request).
        case close
    }

    private(set) var state = State.reading(head: [])

    /// Takes bytes read from the peer.
    mutating func received(_ bytes: some Collection<UInt8>) -> Action {
        guard case .reading(var head) = state else { return .readMore }  // bytes after the request are ignored
        let scanFrom = max(0, head.count - 3)
        head += bytes
        if let end = Self.endOfHead(head, from: scanFrom), end <= Self.headLimit {
            state = .replying
            let (reply, isHead) = Self.route(head[..<end])
            return .reply(reply, headOnly: isHead)
        }
        if head.count > Self.headLimit {
            state = .replying
            return .reply(.headTooLarge)
        }
        state = .reading(head: head)
        return .readMore
    }

    /// The peer closed its side (or the connection failed).
    mutating func peerClosed() -> Action {
        guard case .reading = state else { return .readMore }
        state = .closed
        return .close
    }

    /// Index just past the blank line that ends the head ("\r\n\r\n", or "\n\n" from lax clients).
    static func endOfHead(_ bytes: [UInt8], from start: Int) -> Int? {
        var i = start
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\n") {
                if i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "\n") { return i + 2 }
                if i + 2 < bytes.count && bytes[i + 1] == UInt8(ascii: "\r") && bytes[i + 2] == UInt8(ascii: "\n") { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    /// The reply to a request head (its request line decides), and whether
    /// it is a HEAD request (answered as GET, without the body).
    static func route(_ head: ArraySlice<UInt8>) -> (Reply, isHead: Bool) {
        let lineEnd = head.firstIndex(of: UInt8(ascii: "\n")) ?? head.endIndex
        var line = head[head.startIndex..<lineEnd]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[1].first == UInt8(ascii: "/"),
              parts[2].starts(with: Array("HTTP/".utf8)) else { return (.badRequest, false) }
        let isHead = parts[0].elementsEqual("HEAD".utf8)
        guard isHead || parts[0].elementsEqual("GET".utf8) else { return (.methodNotAllowed, false) }
        let target = parts[1]
        let path = target[target.startIndex..<(target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex)]
        return (path.elementsEqual("/metrics".utf8) ? .metrics : .notFound, isHead)
    }

    /// The whole response (without its body for HEAD, with the body's
    /// length); `body` is called for `.metrics` only.
    static func response(_ reply: Reply, headOnly: Bool = false, body: () -> String) -> [UInt8] {
        let content: String
        var headers = ""
        switch reply {
        case .metrics:
            content = body()
            headers = "Content-Type: \(MetricsExposition.contentType)\r\n"
        case .methodNotAllowed:
            content = "only GET and HEAD are served\n"
            headers = "Allow: GET, HEAD\r\nContent-Type: text/plain; charset=utf-8\r\n"
        case .notFound:
            content = "metrics are at /metrics\n"
            headers = "Content-Type: text/plain; charset=utf-8\r\n"
        case .badRequest, .headTooLarge:
            content = ""
        }
        let bodyBytes = Array(content.utf8)
        let head = "HTTP/1.1 \(reply.statusLine)\r\n\(headers)Content-Length: \(bodyBytes.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + (headOnly ? [] : bodyBytes)
    }
}

/// The Prometheus endpoint, on the supervisor's loop: non-blocking sockets,
/// at most `maxScrapers` at a time, each dropped `deadline` seconds after it
/// connected whatever it was doing, so a slow or silent scraper never holds
/// anything up. When all places are taken, the one that has waited longest
/// without sending a whole request makes room for the newcomer: silent
/// connections cannot keep real scrapes out.
final class MetricsServer {
    static let maxScrapers = 16
    static let deadline = 5.0

    private final class Scraper {
        let socket: Socket
        var registration: EventLoop.Registration?
        var timer: EventLoop.TimerID?
        var exchange = ScrapeExchange()
        var output: [UInt8] = []
        var sent = 0
        /// Arrival order, for choosing whom to drop when all places are taken.
        let serial: UInt64
        init(socket: Socket, serial: UInt64) {
            self.socket = socket
            self.serial = serial
        }
        var hasWholeRequest: Bool {
            if case .reading = exchange.state { return false }
            return true
        }
    }

    private struct Listening {
        let address: MetricsAddress
        let socket: Socket
        let registration: EventLoop.Registration
    }

    private let loop: EventLoop
    private let logger: Logger
    private let render: () -> String
    private var listening: Listening?
    private var scrapers: [ObjectIdentifier: Scraper] = [:]
    private var arrivals: UInt64 = 0
    /// Scrapes refused because every place was answering one: logged at
    /// once, then at most once a minute with the count, so a flood cannot
    /// fill the log.
    private var refusedUnlogged = 0
    private var nextRefusalLog = Instant(nanoseconds: 0)

    /// Where it listens; nil while it does not.
    var address: MetricsAddress? { listening?.address }

    /// Each scrape's time to finish, from its connect.
    private let scrapeDeadline: Double

    init(loop: EventLoop, logger: Logger, scrapeDeadline: Double = MetricsServer.deadline, render: @escaping () -> String) {
        self.loop = loop
        self.logger = logger
        self.scrapeDeadline = scrapeDeadline
        self.render = render
    }

    /// Listens on `address` instead of where it listened: the new socket is
    /// bound first, so a failure leaves the old one serving. Moving within
    /// one port (127.0.0.1 to 0.0.0.0) needs the old one closed first; if
    /// the new bind then fails, the old address is bound again.
    func listen(on address: MetricsAddress) throws(SystemError) {
        guard address != listening?.address else { return }
        do {
            let fresh = try bind(address)
            stopListening()
            listening = fresh
        } catch {
            guard error.errno == .addressInUse, let old = listening?.address, old.port == address.port else { throw error }
            stopListening()
            do { listening = try bind(address) } catch {
                listening = try? bind(old)
                throw error
            }
        }
    }

    /// Closes the listener; scrapes under way finish.
    func stopListening() {
        guard let l = listening else { return }
        loop.deregister(l.registration)
        l.socket.close()
        listening = nil
    }

    /// Closes everything.
    func close() {
        stopListening()
        for scraper in Array(scrapers.values) { drop(scraper) }
    }

    private func bind(_ address: MetricsAddress) throws(SystemError) -> Listening {
        guard let socketAddress = SocketAddress(ip: address.host, port: address.port) else {
            throw SystemError("bind(\(address))", Errno(EINVAL))  // parse() lets only IP literals through
        }
        let socket = try Socket.tcp(family: socketAddress.family)
        do {
            // A restarted supervisor must get its port back while old scrapes sit in TIME_WAIT.
            try socket.setReuseAddress()
            try socket.bind(socketAddress)
            try socket.listen(backlog: 64)
            let registration = try loop.register(fd: socket.fd, events: .readable) { [unowned self] _ in self.acceptScrapers() }
            return Listening(address: address, socket: socket, registration: registration)
        } catch {
            socket.close()
            throw error
        }
    }

    private func acceptScrapers() {
        guard let listener = listening?.socket else { return }
        while true {
            let accepted: IOResult<(Socket, SocketAddress?)>
            do { accepted = try listener.accept() } catch {
                // EMFILE and friends: leave the rest queued for the next round.
                logger.warning("metrics: \(error)")
                return
            }
            guard case .done(let (socket, _)) = accepted else { return }
            if scrapers.count >= Self.maxScrapers {
                guard let oldest = scrapers.values.filter({ !$0.hasWholeRequest }).min(by: { $0.serial < $1.serial }) else {
                    socket.close()  // every place is answering a whole request: closed at once, nothing read
                    refused()
                    continue
                }
                drop(oldest)
            }
            arrivals += 1
            let scraper = Scraper(socket: socket, serial: arrivals)
            do {
                scraper.registration = try loop.register(fd: socket.fd, events: .readable) { [unowned self, unowned scraper] events in
                    self.event(scraper, events)
                }
            } catch {
                socket.close()
                continue
            }
            scraper.timer = loop.schedule(after: scrapeDeadline) { [weak self, weak scraper] in
                guard let self, let scraper else { return }
                scraper.timer = nil
                self.drop(scraper)
            }
            scrapers[ObjectIdentifier(scraper)] = scraper
        }
    }

    private func refused() {
        refusedUnlogged += 1
        let now = Instant.now()
        guard now >= nextRefusalLog else { return }
        let count = refusedUnlogged == 1 ? "a scrape" : "\(refusedUnlogged) scrapes"
        logger.warning("metrics: refused \(count): all \(Self.maxScrapers) places were answering requests (clients slow to read their replies)")
        refusedUnlogged = 0
        nextRefusalLog = now.adding(seconds: 60)
    }

    private func event(_ scraper: Scraper, _ events: IOEvents) {
        if case .replying = scraper.exchange.state { return flush(scraper) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let result: IOResult<Int>
            do { result = try buffer.withUnsafeMutableBytes { raw throws(SystemError) in try scraper.socket.recv(into: raw.baseAddress!, count: raw.count) } } catch {
                return drop(scraper)
            }
            guard case .done(let n) = result else { return }
            let action = n == 0 ? scraper.exchange.peerClosed() : scraper.exchange.received(buffer[0..<n])
            switch action {
            case .readMore: continue
            case .close: return drop(scraper)
            case .reply(let reply, let headOnly):
                scraper.output = ScrapeExchange.response(reply, headOnly: headOnly, body: render)
                if let registration = scraper.registration { loop.setInterest(registration, .writable) }
                return flush(scraper)
            }
        }
    }

    /// Writes what the socket takes; the rest waits for writability.
    private func flush(_ scraper: Scraper) {
        while scraper.sent < scraper.output.count {
            let result: IOResult<Int>
            do {
                result = try scraper.output.withUnsafeBytes { raw throws(SystemError) in
                    try scraper.socket.send(raw.baseAddress! + scraper.sent, count: raw.count - scraper.sent)
                }
            } catch {
                return drop(scraper)
            }
            guard case .done(let n) = result else { return }
            scraper.sent += n
        }
        scraper.socket.shutdown(Socket.shutdownWrite)
        drop(scraper)
    }

    private func drop(_ scraper: Scraper) {
        guard scrapers.removeValue(forKey: ObjectIdentifier(scraper)) != nil else { return }
        loop.cancel(scraper.timer)
        scraper.timer = nil
        if let registration = scraper.registration { loop.deregister(registration) }
        scraper.registration = nil
        scraper.socket.close()
    }

    /// Scrapes connected now (for tests and logs).
    var scraperCount: Int { scrapers.count }
}
