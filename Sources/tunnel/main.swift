import TunnelCLI
TunnelCommand.start()
