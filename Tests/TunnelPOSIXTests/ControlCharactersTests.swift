import TunnelPOSIX
import XCTest

final class ControlCharactersTests: XCTestCase {
    func testPlainText_isUnchanged() {
        XCTAssertEqual("SSH-2.0-OpenSSH_9.2p1 Debian-2 ünïcødé ✓".escapingControlCharacters, "SSH-2.0-OpenSSH_9.2p1 Debian-2 ünïcødé ✓")
    }

    func testC0_DEL_andC1_becomeVisible() {
        XCTAssertEqual("a\u{1b}[2Jb".escapingControlCharacters, "a\\x1b[2Jb")
        XCTAssertEqual("x\n\r\ty".escapingControlCharacters, "x\\n\\r\\ty")
        XCTAssertEqual("\u{0}\u{7}\u{7f}".escapingControlCharacters, "\\x00\\x07\\x7f")
        XCTAssertEqual("\u{9b}31m".escapingControlCharacters, "\\u{9b}31m", "C1 CSI drives some terminals too")
    }
}
