import ArgumentParser
import Glibc
import TunnelConfig
import TunnelPOSIX
import TunnelSupervisor

extension GlobalOptions {
    var runtimeDirectory: RuntimeDirectory { RuntimeDirectory.resolve(explicit: runtimeDir, environment: environment) }
    var client: ControlClient { ControlClient(dir: runtimeDirectory) }

    /// A request to the running supervisor; nil when none is running.
    func ask(_ request: ControlRequest, timeout: Double = 30) throws -> ControlResponse? {
        do {
            guard let response = try client.request(request, timeout: timeout) else { return nil }
            if !response.ok { throw fail(response.error ?? "the supervisor refused the request") }
            return response
        } catch let error as ControlClient.Failure {
            throw fail(error.message)
        }
    }
}

