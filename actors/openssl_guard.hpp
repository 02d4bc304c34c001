// A guard against a CAF 0.17 caf::openssl defect that lets one failed TLS
// handshake close healthy connections.
//
// OpenSSL keeps a per-thread error queue, and SSL_get_error() reports
// SSL_ERROR_SSL whenever that queue is not empty: callers must empty it
// before every SSL I/O call. CAF 0.17's openssl session never does, and it
// leaves the errors of a failed handshake in the queue of the multiplexer
// thread that serves every connection of the node. The next SSL_read of any
// healthy connection that merely has nothing to read (SSL_ERROR_WANT_READ)
// is then taken for a fatal error and the connection is closed. Measured:
// one `openssl s_client` without a certificate against a publisher made it
// drop its authenticated subscribers; a link failing its handshake with a
// misconfigured peer dropped the node's links to good peers.
//
// The guard defines SSL_read, SSL_write, SSL_accept and SSL_connect in this
// program. The dynamic linker binds CAF's calls (and those of any other
// library, which do the same or no harm) to them; each empties the calling
// thread's error queue (ERR_clear_error) and calls OpenSSL's own function
// (dlsym RTLD_NEXT). Nothing is linked against OpenSSL for it: both are
// looked up at run time.
#pragma once

namespace tasker::health {

/// True when this program's calls to SSL_read, SSL_write, SSL_accept and
/// SSL_connect go through the guard (it is linked in and exported). Logs a
/// warning once when not, e.g. when the program hides its symbols from the
/// dynamic linker. Called by the publisher and the links before TLS is used.
bool openssl_error_queue_guard_active();

} // namespace tasker::health
