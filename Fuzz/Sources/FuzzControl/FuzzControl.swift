import FuzzSupport
import TunnelSupervisor

/// A request line as the supervisor reads it from its control socket (any
/// local client of the same uid can send one): the version, then the request.
func fuzzControl(_ bytes: [UInt8]) {
    switch ControlProtocol.decodeRequest(bytes) {
    case .request(let request):
        blackHole("\(request.command.rawValue) \(request.names) \(request.all) \(request.config ?? "") \(request.agentSocket ?? "") \(request.home ?? "") \(request.clientVersion ?? "")")
    case .otherVersion(let version):
        precondition(version != ControlProtocol.version)
        blackHole("v\(version)")
    case .malformed:
        blackHole("malformed")
    }
}

@main
enum Main {
    static func main() { fuzzMain(fuzzControl) }
}
