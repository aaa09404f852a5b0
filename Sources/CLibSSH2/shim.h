#ifndef TUNNEL_CLIBSSH2_SHIM_H
#define TUNNEL_CLIBSSH2_SHIM_H

// libssh2 alone, imported by TunnelSSH only.
#include <libssh2.h>

#endif
