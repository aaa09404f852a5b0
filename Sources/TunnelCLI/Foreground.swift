import Glibc
import Logging
import TunnelConfig
import TunnelEngine
import TunnelPOSIX
import TunnelSupervisor

/// `tunnel up NAME --foreground`: one tunnel on this process's main thread,
/// logging to stderr. Exits 0 on SIGINT/SIGTERM (within 2 s), non-zero if the
/// first connection fails or a failure that retrying cannot fix happens later.
func runForeground(profile: Profile, environment: [String: String]) -> Int32 {
    signal(SIGPIPE, SIG_IGN)
    // Each client costs a descriptor: use all the hard limit allows.
    ProcessControl.raiseFileLimit()
    let sink = LogSink(fd: 2, minimumLevel: environment["TUNNEL_DEBUG"] != nil ? .debug : .info)
    var logger = Logger(label: "tunnel") { LineLogHandler(label: $0, sink: sink) }
    logger[metadataKey: "tunnel"] = "\(profile.name)"

    let loop: EventLoop
    let signals: SignalFD
    do {
        loop = try EventLoop()
        signals = try SignalFD(signals: [SIGINT, SIGTERM, SIGHUP])
    } catch {
        writeLine(2, "tunnel: \(error)")
        return 1
    }
    defer { signals.close() }

    let options = Connector.Options(agentSocket: environment["SSH_AUTH_SOCK"], home: homeDirectory(environment))
    // The first SSH connection runs on this thread; more (`sessions`, `max_sessions`) on a group started on demand.
    let runtime = TunnelRuntime(profile: profile, loop: loop, group: EventLoopGroup(), options: options, logger: logger)
    final class RunState { var exitCode: Int32 = 0; var announced = false }
    let run = RunState()

    runtime.onStatusChange = { status in
        switch status.phase {
        case .up:
            // Like `tunnel up`: announced once every SSH connection has answered.
            // Remote forwards: once the server answered each request.
            if !run.announced && status.sessionsConnecting == 0 && status.remoteListeners.allSatisfy(\.settled) {
                run.announced = true
                for (spec, address) in zip(profile.forwards, status.boundAddresses) {
                    writeLine(2, "tunnel \(profile.name): \(address) -> \(spec.remoteDescription) via \(profile.via) (up; Ctrl-C to stop)")
                }
                for (spec, listener) in zip(profile.remoteForwards, status.remoteListeners) {
                    if let port = listener.boundPort {
                        writeLine(2, "tunnel \(profile.name): remote \(spec.listenDescription(boundPort: port)) -> \(spec.targetDescription) via \(profile.via) (up; Ctrl-C to stop)")
                    } else {
                        writeLine(2, "tunnel: \(profile.name): \(listener.problem ?? "remote \(spec.listenDescription()): not listening")")
                    }
                }
            }
        case .idle:
            if !run.announced {
                run.announced = true
                for (spec, address) in zip(profile.forwards, status.boundAddresses) {
                    writeLine(2, "tunnel \(profile.name): \(address) -> \(spec.remoteDescription) via \(profile.via) (idle: connects when the first client arrives; Ctrl-C to stop)")
                }
            }
        case .failed, .reconnecting:
            // Before the first success nothing is retried in the foreground:
            // the user is watching and wants the reason now.
            if !status.everUp || status.phase == .failed {
                writeLine(2, "tunnel: \(profile.name): \(status.lastError ?? "failed")")
                run.exitCode = 1
                runtime.stop(graceful: false) { loop.stop() }
            }
        default:
            break
        }
    }

    var signalRegistration: EventLoop.Registration?
    do {
        signalRegistration = try loop.register(fd: signals.fd, events: .readable) { _ in
            // SIGHUP too: its terminal is gone (ssh -N exits the same way), and a
            // forward left running there would hold its port with no one to stop it.
            while let signo = signals.next() {
                logger.info("signal \(signo): stopping")
                runtime.stop(graceful: true) { loop.stop() }
            }
        }
    } catch {
        writeLine(2, "tunnel: \(error)")
        return 1
    }

    // First thing once the loop runs (this thread is the loop's).
    loop.schedule(after: 0) {
        do {
            try runtime.start()
        } catch {
            writeLine(2, "tunnel: \(profile.name): \(error)")
            run.exitCode = 1
            loop.stop()
        }
    }
    // Address and route changes and sleep, as the supervisor watches them.
    let network = NetworkWatch(loop: loop, logger: logger) { change in runtime.networkChanged(change) }
    loop.run()
    network.close()
    runtime.onStatusChange = nil
    if let signalRegistration { loop.deregister(signalRegistration) }
    return run.exitCode
}
