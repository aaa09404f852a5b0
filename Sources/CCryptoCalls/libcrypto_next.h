#ifndef TUNNEL_LIBCRYPTO_NEXT_H
#define TUNNEL_LIBCRYPTO_NEXT_H

/// libcrypto's own definition of `name` (the next one after the executable's),
/// OpenSSL 3 version first. Aborts when there is none: without it no call
/// could be answered.
void *tunnel_libcrypto_next(const char *name);

/// False when the environment variable `name` is "0".
int tunnel_setting_enabled(const char *name);

#endif
