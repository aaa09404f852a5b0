/// Text from outside (a server's banner or error text, a peer's request)
/// shown on a terminal or written to a log: control characters could move
/// the cursor, rewrite earlier lines or forge a log line, so each becomes
/// visible text (`\n`, `\t`, `\x1b`, `\u{9b}`).
extension String {
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: \.isControlCharacter) else { return self }
        var out = ""
        for scalar in unicodeScalars {
            guard scalar.isControlCharacter else {
                out.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                let hex = String(scalar.value, radix: 16)
                out += scalar.value < 0x80 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
            }
        }
        return out
    }
}

extension Unicode.Scalar {
    /// C0 and C1 control codes and DEL.
    var isControlCharacter: Bool { value < 0x20 || (0x7f...0x9f).contains(value) }
}
