// The strict reading of a request head (request line and header fields) that
// http_server applies before a request reaches the library or a route, as
// RFC 9112 asks of a server that may sit behind a proxy: a message whose
// framing two parsers could read differently is refused, never guessed at.
//
//   auto v = check_request_head(head, limits);   // head: up to "\r\n\r\n"
//   if (v.status != 0) reply v.status and close;
//
// Refused with 400: a request line other than `METHOD SP target SP
// HTTP/1.x`; a target with a control byte, a space, a byte above 0x7E or an
// encoded NUL (%00), or not in origin form ("/..."), absolute form
// ("http://host/..."), "*" (OPTIONS) or authority form (CONNECT); a header
// line without a colon, with whitespace before it, a name that is not a
// token, a control byte in its value or an obsolete line folding; a bare CR
// or LF; Content-Length twice, as a list, signed, empty or above 2^64 - 1;
// Transfer-Encoding other than one `chunked` (codings such as `gzip,
// chunked` or `identity` included), or with HTTP/1.0; Content-Length together
// with Transfer-Encoding; HTTP/1.1 without exactly one Host. 414: a request
// line above max_request_line. 431: more headers than max_headers or their
// names and values above max_header_bytes.
#pragma once

#include <cstddef>
#include <string_view>

namespace tasker::health::http {

struct head_limits {
  size_t max_request_line = 4096;
  size_t max_header_bytes = 8192;
  size_t max_headers = 64;
};

struct head_verdict {
  /// 0: acceptable; otherwise the status to answer (the connection closes).
  int status = 0;
  /// Why, for the log ("content-length twice", ...).
  std::string_view reason;
};

/// Checks `head`: the bytes from the request line up to, not including, the
/// blank line's "\r\n\r\n".
head_verdict check_request_head(std::string_view head, const head_limits& l);

/// Bytes a complete head may take under `l` (request line, header lines with
/// their separators, the blank line): a head not complete by then is refused.
size_t max_head_bytes(const head_limits& l);

/// The path of a request target in absolute form ("http://host/p?q" ->
/// "/p?q", "http://host" -> "/"); other targets unchanged.
std::string_view origin_form(std::string_view target);

} // namespace tasker::health::http
