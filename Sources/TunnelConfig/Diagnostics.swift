/// A position in a config file. Lines and columns are 1-based; columns count
/// Unicode scalars, so a tab or a non-ASCII letter is one column.
/// Line 0 means "the file as a whole" (no position inside it).
public struct SourceLocation: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// "file:line:column", the form editors and compilers use, so terminals can jump to it.
    public var description: String {
        line > 0 ? "\(file):\(line):\(column)" : file
    }
}

/// One problem in a config file.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public let location: SourceLocation?
    public let message: String

    public init(location: SourceLocation?, message: String) {
        self.location = location
        self.message = message
    }

    /// "file:line:col: message", "file: message" for a whole-file location, or just the message.
    public var description: String {
        guard let location else { return message }
        return "\(location): \(message)"
    }
}

/// Every problem that stops an operation, reported together so one run shows them all.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    /// Sorted by position; errors without a position come first.
    public let errors: [ConfigError]

    public init(_ errors: [ConfigError]) {
        self.errors = sortedByPosition(errors)
    }

    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}

/// Stable sort by (file, line, column): errors are collected key by key, and
/// ties keep that order.
func sortedByPosition(_ errors: [ConfigError]) -> [ConfigError] {
    errors.enumerated().sorted { a, b in
        switch (a.element.location, b.element.location) {
        case (nil, nil): return a.offset < b.offset
        case (nil, _): return true
        case (_, nil): return false
        case let (la?, lb?):
            if la.file != lb.file { return la.file < lb.file }
            if la.line != lb.line { return la.line < lb.line }
            if la.column != lb.column { return la.column < lb.column }
            return a.offset < b.offset
        }
    }.map(\.element)
}
