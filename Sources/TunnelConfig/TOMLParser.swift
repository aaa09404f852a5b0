/// A TOML 1.0 syntax error or a redefinition, at a line and column.
struct TOMLError: Error, Equatable, Sendable, CustomStringConvertible {
    var position: TOMLPosition
    var message: String

    var description: String { "\(position): \(message)" }
}

/// A TOML 1.0 parser that keeps the position of every key and value, which
/// TOMLKit does not expose and every config diagnostic needs.
///
/// It works on UTF-8 bytes and stops at the first error: after a syntax error
/// the rest of a TOML document cannot be read reliably.
struct TOMLParser {
    /// The deepest nesting of arrays and tables (inline, dotted or by header)
    /// the parser accepts; deeper input is an error at the structure that
    /// would be level 101, so nothing that walks the result can run out of stack.
    static let maxNesting = 100

    /// Parses a whole document.
    static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        let result = parsePartially(bytes: Array(text.utf8))
        if let error = result.error { throw error }
        return result.table
    }

    /// Parses raw file contents, which must be UTF-8.
    static func parse(bytes: [UInt8]) throws(TOMLError) -> TOMLTable {
        let result = parsePartially(bytes: bytes)
        if let error = result.error { throw error }
        return result.table
    }

    /// Parses as far as possible: on an error, also returns what was read before
    /// it, so callers can still list the names defined up to that point.
    static func parsePartially(bytes: [UInt8]) -> (table: TOMLTable, error: TOMLError?) {
        var parser = TOMLParser(bytes: bytes)
        do {
            try parser.parseDocument()
            return (parser.root.freeze(), nil)
        } catch {
            return (parser.root.freeze(), error)
        }
    }

    // MARK: - State

    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var lineStart = 0
    private let root = MutableTable(origin: .header, position: TOMLPosition(line: 1, column: 1), path: [], level: 0)
    /// The last column computed on the current line, so positions along a long
    /// line cost their distance from the previous one, not from the line start.
    private let columns = ColumnCache()
    /// The table that `key = value` lines go into: the last header's.
    private var current: MutableTable

    private init(bytes: [UInt8]) {
        self.bytes = bytes
        self.current = root
    }

    // MARK: - Cursor

    private var byte: UInt8? { index < bytes.count ? bytes[index] : nil }

    private func peek(_ offset: Int) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private mutating func advance() {
        if bytes[index] == ASCII.newline {
            line += 1
            lineStart = index + 1
        }
        index += 1
    }

    private mutating func advance(_ count: Int) {
        for _ in 0..<count { advance() }
    }

    /// Position of the byte at `index` (must be on the current line or at its end).
    private func position(at index: Int) -> TOMLPosition {
        var column = 1
        var i = lineStart
        if columns.lineStart == lineStart && columns.index <= index {
            column = columns.column
            i = columns.index
        }
        while i < index {
            if bytes[i] & 0xC0 != 0x80 { column += 1 }  // count scalars, not continuation bytes
            i += 1
        }
        columns.lineStart = lineStart
        columns.index = index
        columns.column = column
        return TOMLPosition(line: line, column: column)
    }

    /// Throws when a structure at `level` (1 for a top-level array or table)
    /// would be nested deeper than `maxNesting`.
    private func checkNesting(_ level: Int, at position: TOMLPosition? = nil) throws(TOMLError) {
        guard level > TOMLParser.maxNesting else { return }
        throw error("nesting too deep: more than \(TOMLParser.maxNesting) levels of arrays and tables", at: position)
    }

    private var here: TOMLPosition { position(at: index) }

    private func error(_ message: String, at position: TOMLPosition? = nil) -> TOMLError {
        TOMLError(position: position ?? here, message: message)
    }

    /// The character at the cursor, for "found X" in messages.
    private var foundDescription: String {
        guard let b = byte else { return "the end of the file" }
        switch b {
        case ASCII.newline, ASCII.carriageReturn: return "the end of the line"
        case ASCII.hash: return "a comment"
        default:
            if b < 0x20 || b == 0x7F { return controlName(b) }
            return quoted(scalarText(at: index))
        }
    }

    /// The whole scalar starting at `i` (which may be several UTF-8 bytes).
    private func scalarText(at i: Int) -> String {
        var end = i + 1
        while end < bytes.count && bytes[end] & 0xC0 == 0x80 { end += 1 }
        return String(decoding: bytes[i..<end], as: UTF8.self)
    }

    // MARK: - Document

    private mutating func parseDocument() throws(TOMLError) {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3; lineStart = 3 }  // UTF-8 BOM
        if let bad = firstInvalidUTF8(bytes, from: index) {
            let p = position(atAnyIndex: bad)
            throw error("the file is not valid UTF-8 (byte 0x\(String(bytes[bad], radix: 16, uppercase: true)))", at: p)
        }
        while true {
            skipWhitespace()
            guard let b = byte else { return }
            switch b {
            case ASCII.newline, ASCII.carriageReturn:
                try parseNewline()
                continue
            case ASCII.hash:
                try skipComment()
                continue
            case ASCII.openBracket:
                try parseTableHeader()
            default:
                try parseKeyValue(into: current)
            }
            try expectEndOfLine()
        }
    }

    /// Position of any byte, for errors found before parsing reaches it.
    private func position(atAnyIndex target: Int) -> TOMLPosition {
        var line = 1
        var column = 1
        var i = 0
        while i < target {
            if bytes[i] == ASCII.newline {
                line += 1
                column = 1
            } else if bytes[i] & 0xC0 != 0x80 {
                column += 1
            }
            i += 1
        }
        return TOMLPosition(line: line, column: column)
    }

    private mutating func expectEndOfLine() throws(TOMLError) {
        skipWhitespace()
        if byte == ASCII.hash { try skipComment() }
        guard let b = byte else { return }
        if b == ASCII.newline || b == ASCII.carriageReturn {
            try parseNewline()
            return
        }
        throw error("expected the end of the line, found \(foundDescription)")
    }

    private mutating func skipWhitespace() {
        while let b = byte, b == ASCII.space || b == ASCII.tab { index += 1 }
    }

    /// Consumes "\n" or "\r\n".
    private mutating func parseNewline() throws(TOMLError) {
        if byte == ASCII.carriageReturn {
            guard peek(1) == ASCII.newline else {
                throw error("a carriage return must be followed by a line feed")
            }
            index += 1
        }
        advance()
    }

    /// Skips `# ...` up to (not including) the line break.
    private mutating func skipComment() throws(TOMLError) {
        index += 1
        while let b = byte {
            if b == ASCII.newline { return }
            if b == ASCII.carriageReturn && peek(1) == ASCII.newline { return }
            if isForbiddenControl(b) {
                throw error("\(controlName(b)) is not allowed in a comment")
            }
            index += 1
        }
    }

    /// Skips whitespace, line breaks and comments, as allowed inside arrays.
    private mutating func skipWhitespaceNewlinesAndComments() throws(TOMLError) {
        while let b = byte {
            switch b {
            case ASCII.space, ASCII.tab: index += 1
            case ASCII.newline, ASCII.carriageReturn: try parseNewline()
            case ASCII.hash: try skipComment()
            default: return
            }
        }
    }

    // MARK: - Keys

    typealias KeyPart = (name: String, position: TOMLPosition)

    /// `simple-key ( ws "." ws simple-key )*`, leaving the cursor after trailing whitespace.
    private mutating func parseKey() throws(TOMLError) -> [KeyPart] {
        var parts: [KeyPart] = []
        while true {
            let start = here
            let name = try parseSimpleKey()
            parts.append((name, start))
            skipWhitespace()
            guard byte == ASCII.dot else { return parts }
            index += 1
            skipWhitespace()
        }
    }

    private mutating func parseSimpleKey() throws(TOMLError) -> String {
        guard let b = byte else { throw error("expected a key, found the end of the file") }
        switch b {
        case ASCII.quote:
            if peek(1) == ASCII.quote && peek(2) == ASCII.quote {
                throw error("a key cannot be a multi-line string")
            }
            return try parseBasicString()
        case ASCII.apostrophe:
            if peek(1) == ASCII.apostrophe && peek(2) == ASCII.apostrophe {
                throw error("a key cannot be a multi-line string")
            }
            return try parseLiteralString()
        default:
            let start = index
            while let c = byte, isBareKeyByte(c) { index += 1 }
            if index == start {
                if b == ASCII.equals { throw error("expected a key before \"=\"") }
                throw error("expected a key, found \(foundDescription) (bare keys may contain only letters, digits, \"_\" and \"-\"; quote other keys)")
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }
    }

    // MARK: - Tables

    private mutating func parseTableHeader() throws(TOMLError) {
        let start = here
        index += 1
        let isArray = byte == ASCII.openBracket
        if isArray { index += 1 }
        skipWhitespace()
        let parts = try parseKey()
        guard byte == ASCII.closeBracket else {
            throw error("expected \"\(isArray ? "]]" : "]")\" to close the table header, found \(foundDescription)")
        }
        index += 1
        if isArray {
            guard byte == ASCII.closeBracket else {
                throw error("expected \"]]\" to close the array-of-tables header, found \(foundDescription)")
            }
            index += 1
        }
        let header = isArray ? "[[\(keyPath(parts.map(\.name)))]]" : "[\(keyPath(parts.map(\.name)))]"

        // Walk to the parent, creating implicit tables; arrays of tables stand for their last element.
        var table = root
        for part in parts.dropLast() {
            if let existing = table.entries[part.name] {
                switch existing.value {
                case .table(let sub):
                    table = sub
                case .tableArray(let array):
                    table = array.tables[array.tables.count - 1]
                case .value:
                    throw error("cannot define \(header): \(quoted(keyPath(table.path + [part.name]))) is already \(existing.value.typeName) (defined at \(existing.keyPosition))", at: part.position)
                }
            } else {
                try checkNesting(table.level + 1, at: part.position)
                let sub = MutableTable(origin: .implicit, position: part.position, path: table.path + [part.name], level: table.level + 1)
                table.insert(part.name, keyPosition: part.position, .table(sub))
                table = sub
            }
        }

        let last = parts[parts.count - 1]
        let fullPath = table.path + [last.name]
        if isArray {
            // The array of tables is one level and each of its tables another.
            try checkNesting(table.level + 2, at: last.position)
            let element = MutableTable(origin: .header, position: start, path: fullPath, level: table.level + 2)
            if let existing = table.entries[last.name] {
                guard case .tableArray(let array) = existing.value else {
                    throw error("cannot define \(header): \(quoted(keyPath(fullPath))) is already \(existing.value.typeName) (defined at \(existing.definedAt))", at: start)
                }
                array.tables.append(element)
            } else {
                table.insert(last.name, keyPosition: last.position, .tableArray(MutableTableArray(position: start, first: element)))
            }
            current = element
            return
        }

        if let existing = table.entries[last.name] {
            guard case .table(let sub) = existing.value else {
                throw error("cannot define \(header): \(quoted(keyPath(fullPath))) is already \(existing.value.typeName) (defined at \(existing.definedAt))", at: start)
            }
            switch sub.origin {
            case .implicit:
                // Created along the way by an earlier header such as [a.b]; [a] may define it once.
                sub.origin = .header
                sub.position = start
                current = sub
            case .header:
                throw error("table \(header) is already defined at \(sub.position)", at: start)
            case .dotted:
                throw error("table \(header) is already defined by dotted keys at \(existing.keyPosition)", at: start)
            }
        } else {
            try checkNesting(table.level + 1, at: last.position)
            let sub = MutableTable(origin: .header, position: start, path: fullPath, level: table.level + 1)
            table.insert(last.name, keyPosition: last.position, .table(sub))
            current = sub
        }
    }

    /// `key = value`, into `table` (the current header's table or an inline table).
    private mutating func parseKeyValue(into table: MutableTable) throws(TOMLError) {
        let parts = try parseKey()
        // Resolve the target before reading the value, so a duplicate key is reported at the key.
        let target = try tableForDottedKey(parts, in: table)
        let last = parts[parts.count - 1]
        if let existing = target.entries[last.name] {
            throw error("duplicate key \(quoted(keyPath(target.path + [last.name]))) (first defined at \(existing.keyPosition))", at: last.position)
        }
        guard byte == ASCII.equals else {
            throw error("expected \"=\" after the key \(quoted(keyPath(parts.map(\.name)))), found \(foundDescription)")
        }
        index += 1
        skipWhitespace()
        let value = try parseValue(level: target.level + 1)
        target.insert(last.name, keyPosition: last.position, .value(value))
    }

    /// The table a dotted key `a.b.c` writes into, creating `a` and `a.b` as needed.
    private mutating func tableForDottedKey(_ parts: [KeyPart], in start: MutableTable) throws(TOMLError) -> MutableTable {
        var table = start
        for part in parts.dropLast() {
            let path = table.path + [part.name]
            if let existing = table.entries[part.name] {
                switch existing.value {
                case .table(let sub):
                    switch sub.origin {
                    case .dotted, .implicit:
                        // Once extended by dotted keys, a header may no longer define it.
                        sub.origin = .dotted
                        table = sub
                    case .header:
                        throw error("cannot add to table [\(keyPath(path))] with a dotted key: it is defined by a header at \(sub.position)", at: part.position)
                    }
                case .tableArray:
                    throw error("cannot add to \(quoted(keyPath(path))) with a dotted key: it is an array of tables", at: part.position)
                case .value:
                    throw error("cannot use \(quoted(keyPath(path))) as a table: it is already \(existing.value.typeName) (defined at \(existing.keyPosition))", at: part.position)
                }
            } else {
                try checkNesting(table.level + 1, at: part.position)
                let sub = MutableTable(origin: .dotted, position: part.position, path: path, level: table.level + 1)
                table.insert(part.name, keyPosition: part.position, .table(sub))
                table = sub
            }
        }
        return table
    }

    // MARK: - Values

    /// A value; `level` is the nesting level it would have as an array or table.
    private mutating func parseValue(level: Int) throws(TOMLError) -> TOMLValue {
        let start = here
        guard let b = byte else { throw error("expected a value, found the end of the file") }
        switch b {
        case ASCII.newline, ASCII.carriageReturn, ASCII.hash:
            throw error("expected a value, found \(foundDescription)")
        case ASCII.quote:
            let s: String
            if peek(1) == ASCII.quote && peek(2) == ASCII.quote {
                s = try parseMultilineBasicString()
            } else {
                s = try parseBasicString()
            }
            return TOMLValue(kind: .string(s), position: start)
        case ASCII.apostrophe:
            let s: String
            if peek(1) == ASCII.apostrophe && peek(2) == ASCII.apostrophe {
                s = try parseMultilineLiteralString()
            } else {
                s = try parseLiteralString()
            }
            return TOMLValue(kind: .string(s), position: start)
        case ASCII.openBracket:
            try checkNesting(level)
            return try parseArray(level: level)
        case ASCII.openBrace:
            try checkNesting(level)
            return try parseInlineTable(level: level)
        default:
            return try parseScalarToken()
        }
    }

    /// Booleans, numbers, dates and times: read as one token, then classified.
    private mutating func parseScalarToken() throws(TOMLError) -> TOMLValue {
        let start = here
        let startIndex = index
        while let b = byte, isTokenByte(b) { index += 1 }
        // A date and a time may be separated by one space: "1979-05-27 07:32:00".
        if index - startIndex == 10, looksLikeDate(bytes[startIndex..<index]),
           byte == ASCII.space, let d1 = peek(1), let d2 = peek(2), isDigit(d1), isDigit(d2), peek(3) == ASCII.colon {
            index += 1
            while let b = byte, isTokenByte(b) { index += 1 }
        }
        let token = String(decoding: bytes[startIndex..<index], as: UTF8.self)
        if token.isEmpty {
            throw error("expected a value, found \(foundDescription)")
        }
        if let kind = try classify(token, at: start) {
            return TOMLValue(kind: kind, position: start)
        }
        let looksLikeWord = token.utf8.first.map { isLetter($0) } ?? false
        throw error("invalid value \(quoted(token))" + (looksLikeWord ? " (strings must be in quotes)" : ""), at: start)
    }

    private func classify(_ token: String, at start: TOMLPosition) throws(TOMLError) -> TOMLValue.Kind? {
        switch token {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan": return .float(.nan)
        case "-nan": return .float(-.nan)
        default: break
        }
        let u = Array(token.utf8)
        if looksLikeDate(u) {
            guard isValidDateTime(u) else { throw error("invalid date or time \(quoted(token))", at: start) }
            return .datetime(token)
        }
        if u.count >= 3 && isDigit(u[0]) && isDigit(u[1]) && u[2] == ASCII.colon {
            guard isValidDateTime(u) else { throw error("invalid time \(quoted(token))", at: start) }
            return .datetime(token)
        }
        let first = u[0]
        guard isDigit(first) || ((first == ASCII.plus || first == ASCII.minus) && u.count > 1) else { return nil }
        return try parseNumber(u, token: token, at: start)
    }

    private func parseNumber(_ u: [UInt8], token: String, at start: TOMLPosition) throws(TOMLError) -> TOMLValue.Kind {
        let hasSign = u[0] == ASCII.plus || u[0] == ASCII.minus
        let body = hasSign ? Array(u.dropFirst()) : u

        // Hexadecimal, octal, binary: no sign, digits after the prefix.
        if body.count >= 2 && body[0] == ASCII.zero, let radix = radixPrefix(body[1]) {
            if hasSign { throw error("invalid integer \(quoted(token)): a sign is not allowed on \(radix.name) integers", at: start) }
            let digits = Array(body.dropFirst(2))
            guard !digits.isEmpty else {
                throw error("invalid integer \(quoted(token)): expected \(radix.name) digits after \"\(String(decoding: body.prefix(2), as: UTF8.self))\"", at: start)
            }
            guard underscoresAreBetweenDigits(digits, isDigit: { digitValue($0, radix: radix.base) != nil }) else {
                throw error("invalid integer \(quoted(token)): expected \(radix.name) digits, with \"_\" only between digits", at: start)
            }
            var value: UInt64 = 0
            for d in digits where d != ASCII.underscore {
                let (times, o1) = value.multipliedReportingOverflow(by: UInt64(radix.base))
                let (sum, o2) = times.addingReportingOverflow(UInt64(digitValue(d, radix: radix.base)!))
                if o1 || o2 || sum > UInt64(Int64.max) {
                    throw error("integer \(quoted(token)) does not fit in 64 bits", at: start)
                }
                value = sum
            }
            return .integer(Int64(value))
        }

        // Decimal integer or float: int-part [ "." digits ] [ e [sign] digits ].
        var i = 0
        let intStart = i
        while i < body.count && (isDigit(body[i]) || body[i] == ASCII.underscore) { i += 1 }
        let intPart = Array(body[intStart..<i])
        guard !intPart.isEmpty else { throw error("invalid number \(quoted(token))", at: start) }
        guard underscoresAreBetweenDigits(intPart, isDigit: isDigit) else {
            throw error("invalid number \(quoted(token)): \"_\" must be between digits", at: start)
        }
        if intPart.count > 1 && intPart[0] == ASCII.zero {
            throw error("invalid number \(quoted(token)): leading zeros are not allowed", at: start)
        }
        var isFloat = false
        if i < body.count && body[i] == ASCII.dot {
            isFloat = true
            i += 1
            let fracStart = i
            while i < body.count && (isDigit(body[i]) || body[i] == ASCII.underscore) { i += 1 }
            let frac = Array(body[fracStart..<i])
            guard !frac.isEmpty, underscoresAreBetweenDigits(frac, isDigit: isDigit) else {
                throw error("invalid float \(quoted(token)): expected digits after \".\"", at: start)
            }
        }
        if i < body.count && (body[i] == ASCII.lowerE || body[i] == ASCII.upperE) {
            isFloat = true
            i += 1
            if i < body.count && (body[i] == ASCII.plus || body[i] == ASCII.minus) { i += 1 }
            let expStart = i
            while i < body.count && (isDigit(body[i]) || body[i] == ASCII.underscore) { i += 1 }
            let exp = Array(body[expStart..<i])
            guard !exp.isEmpty, underscoresAreBetweenDigits(exp, isDigit: isDigit) else {
                throw error("invalid float \(quoted(token)): expected digits in the exponent", at: start)
            }
        }
        guard i == body.count else { throw error("invalid number \(quoted(token))", at: start) }

        let clean = String(decoding: u.filter { $0 != ASCII.underscore }, as: UTF8.self)
        if isFloat {
            guard let d = Double(clean), d.isFinite else {
                throw error("float \(quoted(token)) is out of range", at: start)
            }
            return .float(d)
        }
        guard let n = Int64(clean) else {
            throw error("integer \(quoted(token)) does not fit in 64 bits", at: start)
        }
        return .integer(n)
    }

    private mutating func parseArray(level: Int) throws(TOMLError) -> TOMLValue {
        let start = here
        index += 1
        var items: [TOMLValue] = []
        while true {
            try skipWhitespaceNewlinesAndComments()
            guard let b = byte else { throw error("unterminated array: missing \"]\"", at: start) }
            if b == ASCII.closeBracket { index += 1; break }
            items.append(try parseValue(level: level + 1))
            try skipWhitespaceNewlinesAndComments()
            guard let next = byte else { throw error("unterminated array: missing \"]\"", at: start) }
            if next == ASCII.comma { index += 1; continue }
            if next == ASCII.closeBracket { index += 1; break }
            throw error("expected \",\" or \"]\" in the array, found \(foundDescription)")
        }
        return TOMLValue(kind: .array(items), position: start)
    }

    private mutating func parseInlineTable(level: Int) throws(TOMLError) -> TOMLValue {
        let start = here
        index += 1
        // Inline tables are self-contained: built here and frozen, so nothing can extend them later.
        let table = MutableTable(origin: .dotted, position: start, path: [], level: level)
        skipWhitespace()
        if byte == ASCII.closeBrace {
            index += 1
            return TOMLValue(kind: .table(table.freeze()), position: start)
        }
        while true {
            skipWhitespace()
            guard let b = byte else { throw error("unterminated inline table: missing \"}\"", at: start) }
            if b == ASCII.newline || b == ASCII.carriageReturn {
                throw error("an inline table must be on one line")
            }
            try parseKeyValue(into: table)
            skipWhitespace()
            guard let next = byte else { throw error("unterminated inline table: missing \"}\"", at: start) }
            if next == ASCII.closeBrace { index += 1; break }
            if next == ASCII.comma {
                index += 1
                skipWhitespace()
                if byte == ASCII.closeBrace { throw error("a trailing comma is not allowed in an inline table") }
                continue
            }
            if next == ASCII.newline || next == ASCII.carriageReturn {
                throw error("an inline table must be on one line")
            }
            throw error("expected \",\" or \"}\" in the inline table, found \(foundDescription)")
        }
        return TOMLValue(kind: .table(table.freeze()), position: start)
    }

    // MARK: - Strings

    private mutating func parseBasicString() throws(TOMLError) -> String {
        let start = here
        index += 1
        var out: [UInt8] = []
        while true {
            guard let b = byte, b != ASCII.newline, b != ASCII.carriageReturn else {
                throw error("unterminated string: missing closing \"", at: start)
            }
            switch b {
            case ASCII.quote:
                index += 1
                return String(decoding: out, as: UTF8.self)
            case ASCII.backslash:
                try parseEscape(into: &out)
            default:
                if isForbiddenControl(b) { throw error("\(controlName(b)) must be escaped in a string") }
                out.append(b)
                index += 1
            }
        }
    }

    private mutating func parseMultilineBasicString() throws(TOMLError) -> String {
        let start = here
        index += 3
        try skipNewlineAfterOpeningDelimiter()
        var out: [UInt8] = []
        while true {
            guard let b = byte else { throw error("unterminated multi-line string: missing closing \"\"\"", at: start) }
            switch b {
            case ASCII.quote:
                if try closesMultiline(ASCII.quote, into: &out) { return String(decoding: out, as: UTF8.self) }
            case ASCII.backslash:
                if isLineEndingBackslash() {
                    // "\" at the end of a line joins lines: skip the break and all leading whitespace.
                    index += 1
                    while let c = byte, c == ASCII.space || c == ASCII.tab || c == ASCII.newline || c == ASCII.carriageReturn {
                        if c == ASCII.carriageReturn || c == ASCII.newline { try parseNewline() } else { index += 1 }
                    }
                } else {
                    try parseEscape(into: &out)
                }
            case ASCII.newline, ASCII.carriageReturn:
                try parseNewline()
                out.append(ASCII.newline)  // CRLF becomes LF
            default:
                if isForbiddenControl(b) { throw error("\(controlName(b)) must be escaped in a string") }
                out.append(b)
                index += 1
            }
        }
    }

    private mutating func parseLiteralString() throws(TOMLError) -> String {
        let start = here
        index += 1
        let contentStart = index
        while true {
            guard let b = byte, b != ASCII.newline, b != ASCII.carriageReturn else {
                throw error("unterminated string: missing closing '", at: start)
            }
            if b == ASCII.apostrophe {
                let s = String(decoding: bytes[contentStart..<index], as: UTF8.self)
                index += 1
                return s
            }
            if isForbiddenControl(b) { throw error("\(controlName(b)) is not allowed in a literal string") }
            index += 1
        }
    }

    private mutating func parseMultilineLiteralString() throws(TOMLError) -> String {
        let start = here
        index += 3
        try skipNewlineAfterOpeningDelimiter()
        var out: [UInt8] = []
        while true {
            guard let b = byte else { throw error("unterminated multi-line string: missing closing '''", at: start) }
            switch b {
            case ASCII.apostrophe:
                if try closesMultiline(ASCII.apostrophe, into: &out) { return String(decoding: out, as: UTF8.self) }
            case ASCII.newline, ASCII.carriageReturn:
                try parseNewline()
                out.append(ASCII.newline)
            default:
                if isForbiddenControl(b) { throw error("\(controlName(b)) is not allowed in a literal string") }
                out.append(b)
                index += 1
            }
        }
    }

    /// A line break right after `"""` or `'''` is not part of the string.
    private mutating func skipNewlineAfterOpeningDelimiter() throws(TOMLError) {
        if byte == ASCII.newline || byte == ASCII.carriageReturn { try parseNewline() }
    }

    /// At a run of quotes inside a multi-line string: three end it, and up to two
    /// more just before them belong to the content (`"""a"""""` is `a""`).
    private mutating func closesMultiline(_ quote: UInt8, into out: inout [UInt8]) throws(TOMLError) -> Bool {
        var run = 0
        while peek(run) == quote { run += 1 }
        if run < 3 {
            out.append(contentsOf: repeatElement(quote, count: run))
            index += run
            return false
        }
        if run > 5 {
            throw error("too many quotes: at most two may directly precede the closing delimiter", at: position(at: index + 5))
        }
        out.append(contentsOf: repeatElement(quote, count: run - 3))
        index += run
        return true
    }

    private func isLineEndingBackslash() -> Bool {
        var i = index + 1
        while i < bytes.count && (bytes[i] == ASCII.space || bytes[i] == ASCII.tab) { i += 1 }
        guard i < bytes.count else { return false }
        return bytes[i] == ASCII.newline || (bytes[i] == ASCII.carriageReturn && i + 1 < bytes.count && bytes[i + 1] == ASCII.newline)
    }

    private mutating func parseEscape(into out: inout [UInt8]) throws(TOMLError) {
        let start = here
        index += 1
        guard let c = byte else { throw error("unterminated string: missing closing \"") }
        index += 1
        switch c {
        case ASCII.lowerB: out.append(0x08)
        case ASCII.lowerT: out.append(0x09)
        case ASCII.lowerN: out.append(0x0A)
        case ASCII.lowerF: out.append(0x0C)
        case ASCII.lowerR: out.append(0x0D)
        case ASCII.quote: out.append(ASCII.quote)
        case ASCII.backslash: out.append(ASCII.backslash)
        case ASCII.lowerU, ASCII.upperU:
            let count = c == ASCII.lowerU ? 4 : 8
            var value: UInt32 = 0
            for _ in 0..<count {
                guard let h = byte, let d = digitValue(h, radix: 16) else {
                    throw error("invalid escape: \\\(c == ASCII.lowerU ? "u" : "U") must be followed by \(count) hexadecimal digits", at: start)
                }
                value = value &* 16 &+ UInt32(d)
                index += 1
            }
            guard let scalar = Unicode.Scalar(value) else {
                let hex = String(value, radix: 16, uppercase: true)
                throw error("invalid escape: U+\(hex) is not a Unicode scalar value", at: start)
            }
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            let shown = isForbiddenControl(c) || c == ASCII.newline || c == ASCII.carriageReturn ? "\\ followed by " + controlName(c) : "\\" + scalarText(at: index - 1)
            throw error("invalid escape sequence \(shown) (valid: \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX)", at: start)
        }
    }
}

// MARK: - Building tables

/// Tables while parsing: reference types, so headers and dotted keys can reach
/// into them; frozen into `TOMLTable` values at the end.
private final class MutableTable {
    enum Origin {
        /// Created as a parent by a header such as `[a.b]` (for `a`); `[a]` may still define it.
        case implicit
        /// Defined by its own `[header]` (or `[[header]]`); can't be defined again.
        case header
        /// Created by a dotted key or an inline table; headers can't define it.
        case dotted
    }

    struct Entry {
        var keyPosition: TOMLPosition
        var value: Value

        var definedAt: TOMLPosition {
            switch value {
            case .table(let t): return t.position
            case .tableArray(let a): return a.position
            case .value: return keyPosition
            }
        }
    }

    enum Value {
        case value(TOMLValue)
        case table(MutableTable)
        case tableArray(MutableTableArray)

        var typeName: String {
            switch self {
            case .value(let v): return v.table != nil ? "an inline table" : v.typeName
            case .table: return "a table"
            case .tableArray: return "an array of tables"
            }
        }
    }

    var origin: Origin
    var position: TOMLPosition
    let path: [String]
    /// Arrays and tables around it, itself included (the root is 0).
    let level: Int
    var keys: [String] = []
    var entries: [String: Entry] = [:]

    init(origin: Origin, position: TOMLPosition, path: [String], level: Int) {
        self.origin = origin
        self.position = position
        self.path = path
        self.level = level
    }

    func insert(_ key: String, keyPosition: TOMLPosition, _ value: Value) {
        keys.append(key)
        entries[key] = Entry(keyPosition: keyPosition, value: value)
    }

    func freeze() -> TOMLTable {
        TOMLTable(entries: keys.map { key in
            let entry = entries[key]!
            let value: TOMLValue
            switch entry.value {
            case .value(let v):
                value = v
            case .table(let t):
                value = TOMLValue(kind: .table(t.freeze()), position: t.position)
            case .tableArray(let a):
                value = TOMLValue(kind: .array(a.tables.map { TOMLValue(kind: .table($0.freeze()), position: $0.position) }),
                                  position: a.position)
            }
            return TOMLTable.Entry(key: key, keyPosition: entry.keyPosition, value: value)
        })
    }
}

/// See `TOMLParser.position(at:)`.
private final class ColumnCache {
    var lineStart = -1
    var index = 0
    var column = 1
}

private final class MutableTableArray {
    let position: TOMLPosition
    var tables: [MutableTable]

    init(position: TOMLPosition, first: MutableTable) {
        self.position = position
        self.tables = [first]
    }
}

// MARK: - Bytes

enum ASCII {
    static let tab: UInt8 = 0x09
    static let newline: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let hash: UInt8 = 0x23
    static let apostrophe: UInt8 = 0x27
    static let plus: UInt8 = 0x2B
    static let comma: UInt8 = 0x2C
    static let minus: UInt8 = 0x2D
    static let dot: UInt8 = 0x2E
    static let zero: UInt8 = 0x30
    static let colon: UInt8 = 0x3A
    static let equals: UInt8 = 0x3D
    static let upperE: UInt8 = 0x45
    static let upperU: UInt8 = 0x55
    static let openBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let closeBracket: UInt8 = 0x5D
    static let underscore: UInt8 = 0x5F
    static let lowerB: UInt8 = 0x62
    static let lowerE: UInt8 = 0x65
    static let lowerF: UInt8 = 0x66
    static let lowerN: UInt8 = 0x6E
    static let lowerR: UInt8 = 0x72
    static let lowerT: UInt8 = 0x74
    static let lowerU: UInt8 = 0x75
    static let openBrace: UInt8 = 0x7B
    static let closeBrace: UInt8 = 0x7D
}

@inline(__always) private func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
@inline(__always) private func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }

/// Bytes that can appear in an unquoted value: numbers, booleans, dates, inf/nan.
@inline(__always) private func isTokenByte(_ b: UInt8) -> Bool {
    isBareKeyByte(b) || b == ASCII.plus || b == ASCII.dot || b == ASCII.colon
}

/// Control characters TOML forbids unescaped: all but tab (line breaks are handled separately).
@inline(__always) private func isForbiddenControl(_ b: UInt8) -> Bool {
    (b < 0x20 && b != ASCII.tab) || b == 0x7F
}

private func controlName(_ b: UInt8) -> String {
    let hex = String(b, radix: 16, uppercase: true)
    return "control character U+" + String(repeating: "0", count: 4 - hex.count) + hex
}

private func digitValue(_ b: UInt8, radix: Int) -> Int? {
    let v: Int
    switch b {
    case 0x30...0x39: v = Int(b - 0x30)
    case 0x61...0x66: v = Int(b - 0x61 + 10)
    case 0x41...0x46: v = Int(b - 0x41 + 10)
    default: return nil
    }
    return v < radix ? v : nil
}

private func radixPrefix(_ b: UInt8) -> (base: Int, name: String)? {
    switch b {
    case 0x78: return (16, "hexadecimal")  // x
    case 0x6F: return (8, "octal")         // o
    case 0x62: return (2, "binary")        // b
    default: return nil
    }
}

/// Non-empty, and every "_" has a digit on both sides.
private func underscoresAreBetweenDigits(_ digits: [UInt8], isDigit: (UInt8) -> Bool) -> Bool {
    guard let first = digits.first, let last = digits.last, isDigit(first), isDigit(last) else { return false }
    for (i, d) in digits.enumerated() {
        if d == ASCII.underscore {
            if !isDigit(digits[i - 1]) || !isDigit(digits[i + 1]) { return false }
        } else if !isDigit(d) {
            return false
        }
    }
    return true
}

private func looksLikeDate<C: Collection>(_ u: C) -> Bool where C.Element == UInt8, C.Index == Int {
    guard u.count >= 10 else { return false }
    let s = u.startIndex
    return (0..<4).allSatisfy { isDigit(u[s + $0]) } && u[s + 4] == ASCII.minus
        && isDigit(u[s + 5]) && isDigit(u[s + 6]) && u[s + 7] == ASCII.minus
        && isDigit(u[s + 8]) && isDigit(u[s + 9])
}

/// RFC 3339 as TOML 1.0 allows it: offset date-time, local date-time, local date, local time.
private func isValidDateTime(_ u: [UInt8]) -> Bool {
    var i = 0
    func number(_ count: Int) -> Int? {
        guard i + count <= u.count else { return nil }
        var n = 0
        for k in 0..<count {
            guard isDigit(u[i + k]) else { return nil }
            n = n * 10 + Int(u[i + k] - 0x30)
        }
        i += count
        return n
    }
    func expect(_ b: UInt8) -> Bool {
        guard i < u.count, u[i] == b else { return false }
        i += 1
        return true
    }
    func time() -> Bool {
        guard let h = number(2), h <= 23, expect(ASCII.colon), let m = number(2), m <= 59,
              expect(ASCII.colon), let s = number(2), s <= 60 else { return false }
        if i < u.count && u[i] == ASCII.dot {
            i += 1
            let fracStart = i
            while i < u.count && isDigit(u[i]) { i += 1 }
            if i == fracStart { return false }
        }
        return true
    }

    if looksLikeDate(u) {
        guard let y = number(4), expect(ASCII.minus), let mo = number(2), (1...12).contains(mo),
              expect(ASCII.minus), let d = number(2), d >= 1, d <= daysInMonth(mo, year: y) else { return false }
        if i == u.count { return true }  // local date
        let sep = u[i] | 0x20
        guard sep == ASCII.lowerT || u[i] == ASCII.space else { return false }
        i += 1
        guard time() else { return false }
        if i == u.count { return true }  // local date-time
        if u[i] | 0x20 == 0x7A { return i + 1 == u.count }  // Z or z
        guard u[i] == ASCII.plus || u[i] == ASCII.minus else { return false }
        i += 1
        guard let oh = number(2), oh <= 23, expect(ASCII.colon), let om = number(2), om <= 59 else { return false }
        return i == u.count
    }
    return time() && i == u.count  // local time
}

private func daysInMonth(_ month: Int, year: Int) -> Int {
    switch month {
    case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

/// Index of the first byte that does not start a valid UTF-8 sequence, if any.
func firstInvalidUTF8(_ b: [UInt8], from start: Int = 0) -> Int? {
    var i = start
    while i < b.count {
        let c = b[i]
        if c < 0x80 { i += 1; continue }
        let need: Int
        var scalar: UInt32
        let minimum: UInt32
        switch c {
        case 0xC2...0xDF: need = 1; scalar = UInt32(c & 0x1F); minimum = 0x80
        case 0xE0...0xEF: need = 2; scalar = UInt32(c & 0x0F); minimum = 0x800
        case 0xF0...0xF4: need = 3; scalar = UInt32(c & 0x07); minimum = 0x10000
        default: return i
        }
        guard i + need < b.count else { return i }
        for k in 1...need {
            let cc = b[i + k]
            guard cc & 0xC0 == 0x80 else { return i }
            scalar = scalar << 6 | UInt32(cc & 0x3F)
        }
        if scalar < minimum || scalar > 0x10FFFF || (0xD800...0xDFFF).contains(scalar) { return i }
        i += need + 1
    }
    return nil
}
