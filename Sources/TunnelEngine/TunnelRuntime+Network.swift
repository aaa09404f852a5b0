extension TunnelRuntime {
    /// The network changed (or the machine resumed): every lane judges what
    /// it means for its own SSH connection.
    public func networkChanged(_ change: NetworkChange) {
        precondition(loop.inLoopThread)
        guard !isStopped else { return }
        for lane in lanes.values { lane.send(.networkChanged(change)) }
    }
}
