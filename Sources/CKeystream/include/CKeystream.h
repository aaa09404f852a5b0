#ifndef TUNNEL_CKEYSTREAM_H
#define TUNNEL_CKEYSTREAM_H

#include <stdint.h>

/// AES-CTR contexts this thread has switched to the batched keystream.
/// A session compares it across its handshake: the thread that runs the
/// handshake is the one libssh2 creates the session's cipher contexts on.
uint64_t tunnel_keystream_contexts_on_this_thread(void);

/// Keystream bytes generated in batches so far, all threads.
uint64_t tunnel_keystream_bytes(void);

/// 0 when TUNNEL_CTR_BATCH=0 switched batching off for this process.
int tunnel_keystream_enabled(void);

#endif
