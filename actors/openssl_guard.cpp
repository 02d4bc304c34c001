#include "actors/openssl_guard.hpp"

#include "core/log.hpp"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <dlfcn.h>

struct ssl_st; // OpenSSL's SSL, opaque here

namespace {

using io_fn = int (*)(ssl_st*, void*, int);
using write_fn = int (*)(ssl_st*, const void*, int);
using handshake_fn = int (*)(ssl_st*);
using clear_fn = void (*)();

/// A function pointer from dlsym (memcpy: ISO C++ has no cast from an
/// object pointer to a function pointer).
template<class F>
F as_function(void* p) {
  F f = nullptr;
  static_assert(sizeof(F) == sizeof(void*));
  std::memcpy(&f, &p, sizeof(f));
  return f;
}

/// OpenSSL's own `name` (the next definition after this program's).
template<class F>
F openssl_function(const char* name) {
  auto f = as_function<F>(::dlsym(RTLD_NEXT, name));
  if (f == nullptr) {
    // Called through this definition, so the program uses OpenSSL: its
    // library must be loaded.
    std::fprintf(stderr, "tasker-health: cannot find OpenSSL's %s\n", name);
    std::abort();
  }
  return f;
}

void clear_error_queue() {
  static const auto clear
      = as_function<clear_fn>(::dlsym(RTLD_DEFAULT, "ERR_clear_error"));
  if (clear != nullptr)
    clear();
}

} // namespace

extern "C" {

int SSL_read(ssl_st* ssl, void* buf, int num) {
  static const auto real = openssl_function<io_fn>("SSL_read");
  clear_error_queue();
  return real(ssl, buf, num);
}

int SSL_write(ssl_st* ssl, const void* buf, int num) {
  static const auto real = openssl_function<write_fn>("SSL_write");
  clear_error_queue();
  return real(ssl, buf, num);
}

int SSL_accept(ssl_st* ssl) {
  static const auto real = openssl_function<handshake_fn>("SSL_accept");
  clear_error_queue();
  return real(ssl);
}

int SSL_connect(ssl_st* ssl) {
  static const auto real = openssl_function<handshake_fn>("SSL_connect");
  clear_error_queue();
  return real(ssl);
}

} // extern "C"

namespace tasker::health {

bool openssl_error_queue_guard_active() {
  static const bool active = [] {
    auto bound = as_function<io_fn>(::dlsym(RTLD_DEFAULT, "SSL_read"));
    bool ok = bound == &SSL_read;
    if (!ok)
      logger()->warn(
          "event=openssl_guard_inactive note=\"SSL_read is not bound to the "
          "guard (actors/openssl_guard.hpp): with CAF 0.17, one failed TLS "
          "handshake can close this node's healthy TLS connections\"");
    return ok;
  }();
  return active;
}

} // namespace tasker::health
