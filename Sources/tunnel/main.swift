import TunnelCLI
TunnelCommand.main()
