import TunnelPOSIX

/// TCP service names ↔ ports: /etc/services first (as ssh resolves them), then a
/// built-in table so common names work on systems with a sparse /etc/services.
public enum ServiceNames {
    /// The port for a service name or alias, e.g. "postgresql" or "postgres" → 5432.
    public static func port(named name: String) -> UInt16? {
        if let port = system.portByName[name] ?? builtin.portByName[name] { return port }
        let lower = name.lowercased()
        return system.portByName[lower] ?? builtin.portByName[lower]
    }

    /// The usual name of a port, for display, e.g. 5432 → "postgresql": the
    /// built-in table of common services, else /etc/services for ports below
    /// 1024 only; above, it registers thousands of names nobody runs there
    /// (17004 "sgi-cad"), which would mislabel a port typed as a number.
    public static func name(forPort port: UInt16) -> String? {
        builtin.nameByPort[port] ?? (port < 1024 ? system.nameByPort[port] : nil)
    }

    /// Read once, on first use; a missing or unreadable file just means an empty table.
    static let system: ServiceTable = {
        guard let bytes = try? Files.read("/etc/services") else { return ServiceTable() }
        return ServiceTable(parsingServicesFile: String(decoding: bytes, as: UTF8.self))
    }()

    /// The first name listed for a port is the one shown for it.
    static let builtin = ServiceTable(pairs: [
        ("ftp", 21), ("ssh", 22), ("telnet", 23), ("smtp", 25), ("dns", 53), ("domain", 53),
        ("http", 80), ("pop3", 110), ("imap", 143), ("ldap", 389), ("https", 443),
        ("smtps", 465), ("submission", 587), ("ldaps", 636), ("imaps", 993), ("pop3s", 995),
        ("mssql", 1433), ("ms-sql-s", 1433), ("oracle", 1521), ("mqtt", 1883), ("nfs", 2049),
        ("zookeeper", 2181), ("docker", 2375), ("etcd", 2379), ("mysql", 3306), ("rdp", 3389),
        ("nats", 4222), ("postgresql", 5432), ("postgres", 5432), ("amqp", 5672),
        ("couchdb", 5984), ("vnc", 5900), ("redis", 6379), ("kubernetes", 6443), ("neo4j", 7687),
        ("http-alt", 8080), ("influxdb", 8086), ("consul", 8500), ("cassandra", 9042),
        ("prometheus", 9090), ("kafka", 9092), ("elasticsearch", 9200), ("memcached", 11211),
        ("rabbitmq-management", 15672), ("mongodb", 27017), ("mongo", 27017),
    ])
}

struct ServiceTable: Sendable {
    var portByName: [String: UInt16] = [:]
    var nameByPort: [UInt16: String] = [:]

    init() {}

    init(pairs: [(String, UInt16)]) {
        for (name, port) in pairs { add(name, port, primary: true) }
    }

    /// `name port/protocol [aliases...] [# comment]`; tcp entries only, first one wins.
    init(parsingServicesFile text: String) {
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let content = rawLine.prefix { $0 != "#" }
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2 else { continue }
            let portAndProtocol = fields[1].split(separator: "/")
            guard portAndProtocol.count == 2, portAndProtocol[1] == "tcp",
                  let port = UInt16(portAndProtocol[0]), port > 0 else { continue }
            add(String(fields[0]), port, primary: true)
            for alias in fields.dropFirst(2) { add(String(alias), port, primary: false) }
        }
    }

    private mutating func add(_ name: String, _ port: UInt16, primary: Bool) {
        if portByName[name] == nil { portByName[name] = port }
        if primary && nameByPort[port] == nil { nameByPort[port] = name }
    }
}
