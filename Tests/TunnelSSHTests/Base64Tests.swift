import XCTest
import TunnelSSH

final class Base64Tests: XCTestCase {
    /// RFC 4648 section 10.
    private let vectors: [(String, String)] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ]

    func testBase64_encode_matchesRFC4648TestVectors() {
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.encode(Array(plain.utf8)), encoded, "encode(\(plain))")
        }
    }

    func testBase64_encodeUnpadded_dropsOnlyThePadding() {
        for (plain, encoded) in vectors {
            let unpadded = String(encoded.prefix { $0 != "=" })
            XCTAssertEqual(Base64.encode(Array(plain.utf8), padded: false), unpadded, "encode(\(plain), padded: false)")
        }
    }

    func testBase64_decode_matchesRFC4648TestVectors() {
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.decode(encoded), Array(plain.utf8), "decode(\(encoded))")
        }
    }

    func testBase64_decodeUnpaddedInput_givesTheSameBytes() {
        for (plain, encoded) in vectors {
            let unpadded = encoded.replacingOccurrences(of: "=", with: "")
            XCTAssertEqual(Base64.decode(unpadded), Array(plain.utf8), "decode(\(unpadded))")
        }
    }

    func testBase64_encodeThenDecode_roundTripsEveryLengthAndEveryByteValue() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...100 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            XCTAssertEqual(Base64.decode(Base64.encode(bytes)), bytes, "length \(length)")
            XCTAssertEqual(Base64.decode(Base64.encode(bytes, padded: false)), bytes, "unpadded length \(length)")
        }
        let all = (0...255).map { UInt8($0) }
        XCTAssertEqual(Base64.decode(Base64.encode(all)), all)
    }

    func testBase64_encode_usesPlusAndSlashForTheLastTwoDigits() {
        XCTAssertEqual(Base64.encode([0xfb, 0xff, 0xbf]), "+/+/")
        XCTAssertEqual(Base64.decode("+/+/"), [0xfb, 0xff, 0xbf])
    }

    func testBase64_encodedLength_isFourCharactersPerThreeBytesRoundedUp() {
        for length in 0...30 {
            let encoded = Base64.encode([UInt8](repeating: 0xa5, count: length))
            XCTAssertEqual(encoded.count, (length + 2) / 3 * 4, "length \(length)")
        }
    }

    func testBase64_decode_ignoresWhitespaceAndLineBreaks() {
        XCTAssertEqual(Base64.decode("Zm9v\nYmFy"), Array("foobar".utf8))
        XCTAssertEqual(Base64.decode(" Zm9v\r\n\tYmE= "), Array("fooba".utf8))
    }

    func testBase64_decode_rejectsCharactersOutsideTheAlphabet() {
        XCTAssertNil(Base64.decode("Zm9v!"))
        XCTAssertNil(Base64.decode("Zm-8"), "URL-safe '-' is not standard base64")
        XCTAssertNil(Base64.decode("Zm_8"), "URL-safe '_' is not standard base64")
        XCTAssertNil(Base64.decode("Zm9v.YmFy"))
        XCTAssertNil(Base64.decode("Zm9vé"))
        XCTAssertNil(Base64.decode("Zm9v\0"))
    }

    func testBase64_decodeOfASubstringField_decodesJustThatField() {
        let line = "ssh-ed25519 Zm9vYmFy comment"
        let field = line.split(separator: " ")[1]
        XCTAssertEqual(Base64.decode(field), Array("foobar".utf8))
    }
}
