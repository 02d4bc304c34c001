// A workaround for CAF 0.17.6 as Debian builds it (CAF_LOG_LEVEL_QUIET) with
// OpenSSL 3, linked into every program that uses the publisher or the links
// (they reference openssl_error_queue_anchor(), which pulls this object out
// of the static library; nothing else to do for an embedder).
//
// The defect: when an SSL call of caf::openssl fails, CAF clears the
// thread's OpenSSL error queue only inside a log statement
// (`CAF_LOG_INFO(... << get_ssl_error())`), which the quiet build compiles
// out. OpenSSL 3 reports a peer that closes without close_notify (a killed
// process, a CLI that exits, CAF's own close of a redundant connection) as
// an error "unexpected eof while reading" and leaves it queued. The next
// SSL_get_error() on the multiplexer thread, for any other, healthy
// session, then sees that stale entry and says SSL_ERROR_SSL where the
// answer is "want read", and CAF closes the healthy connection too: one
// client exiting dropped every other TLS link of the node, and two nodes
// watching each other over TLS reconnected forever (measured: 50 drops in
// 10 s).
//
// The fix does what CAF meant to do: this definition of SSL_get_error
// takes precedence over libssl's (the executable comes first in symbol
// lookup, and ld exports the definition because libcaf_openssl uses it). It
// asks libssl, and when the answer is a failure it clears the queue, so that
// the error stays with the call that caused it; an unexpected EOF is
// reported as the orderly end of the connection it is.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <dlfcn.h>

namespace tasker::health {

/// Referenced by the publisher and the link so that this object is linked.
void openssl_error_queue_anchor() noexcept {}

} // namespace tasker::health

extern "C" int SSL_get_error(const SSL* ssl, int ret) {
  using fn = int (*)(const SSL*, int);
  static fn real = reinterpret_cast<fn>(dlsym(RTLD_NEXT, "SSL_get_error"));
  auto result = real(ssl, ret);
  if (result == SSL_ERROR_SSL || result == SSL_ERROR_SYSCALL) {
    auto code = ERR_peek_error();
    if (ERR_GET_LIB(code) == ERR_LIB_SSL
        && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      result = SSL_ERROR_ZERO_RETURN;
    ERR_clear_error();
  }
  return result;
}
