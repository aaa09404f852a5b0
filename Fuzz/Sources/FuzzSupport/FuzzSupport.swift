import Glibc
#if FUZZING
import CLibFuzzer
#endif

/// Keeps the optimizer from dropping work whose result is otherwise unused.
@inline(never)
public func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// The fuzzer's `main`: under libFuzzer (a build with -DFUZZING and
/// -sanitize=fuzzer) hands `body` to libFuzzer with the command line's options;
/// otherwise runs it on each file named on the command line.
///
/// libFuzzer's own `main` cannot be used: SwiftPM links every executable with
/// `main` aliased to the module's entry point, so the entry point calls
/// libFuzzer's driver instead.
public func fuzzMain(_ body: @escaping ([UInt8]) -> Void) -> Never {
    #if FUZZING
    target = body
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        target!(Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    })
    #else
    runOnFiles(body)
    exit(0)
    #endif
}

#if FUZZING
/// The function libFuzzer's C callback calls; set once, before it starts.
nonisolated(unsafe) private var target: (([UInt8]) -> Void)?
#endif

/// Without libFuzzer: runs `body` on the bytes of each file named on the
/// command line, to reproduce a crash (`FuzzConfig crash-1234`) or to replay a
/// corpus (`FuzzConfig Fuzz/corpus/config/*`) under a debugger.
func runOnFiles(_ body: ([UInt8]) -> Void) {
    let paths = CommandLine.arguments.dropFirst()
    if paths.isEmpty {
        printError("usage: \(CommandLine.arguments[0]) FILE...")
        exit(2)
    }
    for path in paths {
        guard let file = fopen(path, "rb") else {
            printError("cannot open \(path)")
            exit(1)
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        fclose(file)
        body(bytes)
        print("\(path): ok (\(bytes.count) bytes)")
    }
}

private func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
