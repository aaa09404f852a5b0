/// A line and column inside a TOML document (1-based; columns count Unicode scalars).
struct TOMLPosition: Hashable, Sendable, CustomStringConvertible {
    var line: Int
    var column: Int

    var description: String { "\(line):\(column)" }

    func location(in file: String) -> SourceLocation {
        SourceLocation(file: file, line: line, column: column)
    }
}

/// A parsed TOML value together with where it starts in the document.
struct TOMLValue: Equatable, Sendable {
    enum Kind: Equatable, Sendable {
        case string(String)
        case integer(Int64)
        case float(Double)
        case boolean(Bool)
        /// Offset or local date-time, local date or local time, as written. Kept
        /// as text: profiles never use dates, but type errors should name them.
        case datetime(String)
        /// Also used for arrays of tables (`[[name]]`).
        case array([TOMLValue])
        case table(TOMLTable)
    }

    var kind: Kind
    /// For a table defined by a header, the header's `[`; for a table created
    /// implicitly by a dotted key or header, that key; otherwise the value's first character.
    var position: TOMLPosition

    var string: String? { if case .string(let s) = kind { return s }; return nil }
    var integer: Int64? { if case .integer(let i) = kind { return i }; return nil }
    var float: Double? { if case .float(let d) = kind { return d }; return nil }
    var boolean: Bool? { if case .boolean(let b) = kind { return b }; return nil }
    var datetime: String? { if case .datetime(let s) = kind { return s }; return nil }
    var array: [TOMLValue]? { if case .array(let a) = kind { return a }; return nil }
    var table: TOMLTable? { if case .table(let t) = kind { return t }; return nil }

    /// "a string", "an integer", ...: for "expected X, found Y" messages.
    var typeName: String {
        switch kind {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .boolean: return "a boolean"
        case .datetime(let text):
            let hasDate = text.contains("-") && text.count >= 10
            let hasTime = text.contains(":")
            if hasDate && hasTime { return "a date-time" }
            return hasDate ? "a date" : "a time"
        case .array(let items):
            if !items.isEmpty, items.allSatisfy({ $0.table != nil }) { return "an array of tables" }
            return "an array"
        case .table: return "a table"
        }
    }

    /// The type plus the value itself when it is short, e.g. `a string ("abc")`.
    var foundDescription: String {
        switch kind {
        case .string(let s):
            return "\(typeName) (\(quoted(s.count > 40 ? String(s.prefix(40)) + "…" : s)))"
        case .integer(let i): return "\(typeName) (\(i))"
        case .float(let d): return "\(typeName) (\(d))"
        case .boolean(let b): return "\(typeName) (\(b))"
        case .datetime(let s): return "\(typeName) (\(s))"
        case .array, .table: return typeName
        }
    }
}

/// A TOML table: keys in definition order, each with the position of its key.
struct TOMLTable: Equatable, Sendable {
    struct Entry: Equatable, Sendable {
        var key: String
        var keyPosition: TOMLPosition
        var value: TOMLValue
    }

    private(set) var entries: [Entry] = []
    private var indexByKey: [String: Int] = [:]

    init(entries: [Entry] = []) {
        for entry in entries { append(entry) }
    }

    var keys: [String] { entries.map(\.key) }
    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    subscript(key: String) -> TOMLValue? { entry(key)?.value }

    func entry(_ key: String) -> Entry? {
        indexByKey[key].map { entries[$0] }
    }

    /// Follows a dotted path, e.g. `["tunnels", "db", "host"]`.
    subscript(path path: [String]) -> TOMLValue? {
        guard let first = path.first, let value = self[first] else { return nil }
        if path.count == 1 { return value }
        return value.table?[path: Array(path.dropFirst())]
    }

    private mutating func append(_ entry: Entry) {
        precondition(indexByKey[entry.key] == nil, "duplicate TOML key \(entry.key)")
        indexByKey[entry.key] = entries.count
        entries.append(entry)
    }
}

/// A string in double quotes with TOML-style escapes, for messages.
func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// A key path as TOML would write it: bare parts as they are, others quoted.
func keyPath(_ parts: [String]) -> String {
    parts.map { isBareKey($0) ? $0 : quoted($0) }.joined(separator: ".")
}

func isBareKey(_ s: String) -> Bool {
    !s.isEmpty && s.utf8.allSatisfy(isBareKeyByte)
}

@inline(__always)
func isBareKeyByte(_ b: UInt8) -> Bool {
    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D
}
