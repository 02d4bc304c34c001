#include "apps/http/request_head.hpp"

#include <cstdint>

namespace tasker::health::http {

namespace {

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
      || (c >= 'A' && c <= 'Z'))
    return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

/// Every byte a tchar (methods and header names are tokens).
bool all_tchars(std::string_view s) {
  for (char ch : s)
    if (!is_tchar(static_cast<unsigned char>(ch)))
      return false;
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z')
      x = static_cast<unsigned char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z')
      y = static_cast<unsigned char>(y - 'A' + 'a');
    if (x != y)
      return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return v;
}

/// 1*DIGIT that fits in 64 bits.
bool valid_length(std::string_view v) {
  if (v.empty())
    return false;
  uint64_t n = 0;
  for (char ch : v) {
    if (ch < '0' || ch > '9')
      return false;
    auto d = static_cast<uint64_t>(ch - '0');
    if (n > (UINT64_MAX - d) / 10)
      return false;
    n = n * 10 + d;
  }
  return true;
}

bool valid_target(std::string_view method, std::string_view t) {
  if (t.empty())
    return false;
  for (size_t i = 0; i < t.size(); ++i) {
    auto c = static_cast<unsigned char>(t[i]);
    if (c <= 0x20 || c >= 0x7f)
      return false; // control bytes, space, DEL, non-ASCII
    if (c == '%' && i + 2 < t.size() && t[i + 1] == '0' && t[i + 2] == '0')
      return false; // an encoded NUL
  }
  if (t.front() == '/')
    return true;
  if (t == "*")
    return method == "OPTIONS";
  auto scheme_end = t.find("://");
  if (scheme_end != std::string_view::npos) {
    auto scheme = t.substr(0, scheme_end);
    if (!iequals(scheme, "http") && !iequals(scheme, "https"))
      return false;
    auto authority = t.substr(scheme_end + 3);
    authority = authority.substr(0, authority.find_first_of("/?#"));
    return !authority.empty();
  }
  return method == "CONNECT";
}

/// The request line: method, target, version (`http11` set for HTTP/1.1).
head_verdict check_request_line(std::string_view line, const head_limits& l,
                                bool& http11) {
  if (line.size() > l.max_request_line)
    return {414, "request line too long"};
  for (char ch : line)
    if (ch == '\r' || ch == '\n')
      return {400, "bare cr or lf"};
  auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0)
    return {400, "malformed request line"};
  auto method = line.substr(0, sp1);
  if (!all_tchars(method))
    return {400, "malformed method"};
  auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos)
    return {400, "malformed request line"};
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  http11 = version == "HTTP/1.1";
  if (!http11 && version != "HTTP/1.0")
    return {400, "unsupported version"};
  if (!valid_target(method, target))
    return {400, "malformed target"};
  return {};
}

/// What the header lines so far held, for the limits and the framing rules.
struct header_tally {
  size_t headers = 0;
  size_t header_bytes = 0;
  int hosts = 0;
  int lengths = 0;
  int encodings = 0;
  bool chunked = false;
};

/// One header line (without its CRLF), counted into `n`.
head_verdict check_header_line(std::string_view line, const head_limits& l,
                               header_tally& n) {
  if (line.empty())
    return {400, "empty header line"};
  if (line.front() == ' ' || line.front() == '\t')
    return {400, "obsolete line folding"};
  auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return {400, "header line without a name"};
  auto name = line.substr(0, colon);
  if (!all_tchars(name))
    return {400, "malformed header name"};
  auto raw_value = line.substr(colon + 1);
  for (char ch : raw_value) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return {400, "control byte in a header value"};
  }
  auto value = trim_ows(raw_value);
  ++n.headers;
  n.header_bytes += name.size() + value.size();
  if (n.headers > l.max_headers || n.header_bytes > l.max_header_bytes)
    return {431, "headers too large"};
  if (iequals(name, "host")) {
    ++n.hosts;
  } else if (iequals(name, "content-length")) {
    if (++n.lengths > 1)
      return {400, "content-length twice"};
    if (!valid_length(value))
      return {400, "malformed content-length"};
  } else if (iequals(name, "transfer-encoding")) {
    if (++n.encodings > 1)
      return {400, "transfer-encoding twice"};
    if (!iequals(value, "chunked"))
      return {400, "transfer coding other than chunked"};
    n.chunked = true;
  }
  return {};
}

} // namespace

size_t max_head_bytes(const head_limits& l) {
  // request line + CRLF, per header ": " and CRLF, the blank line.
  return l.max_request_line + 2 + l.max_header_bytes + l.max_headers * 4 + 2;
}

std::string_view origin_form(std::string_view target) {
  if (target.empty() || target.front() == '/')
    return target;
  auto scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos)
    return target;
  auto rest = target.substr(scheme_end + 3);
  auto path = rest.find_first_of("/?");
  if (path == std::string_view::npos)
    return "/";
  if (rest[path] == '?')
    return "/"; // "http://host?q": the path is "/" (the query is dropped)
  return rest.substr(path);
}

head_verdict check_request_head(std::string_view head, const head_limits& l) {
  // Every line ends in CRLF; a bare CR or LF anywhere is refused.
  auto line_end = head.find("\r\n");
  bool http11 = false;
  if (auto v = check_request_line(head.substr(0, line_end), l, http11);
      v.status != 0)
    return v;
  header_tally n;
  while (line_end != std::string_view::npos) {
    auto start = line_end + 2;
    line_end = head.find("\r\n", start);
    auto line = head.substr(start, line_end == std::string_view::npos
                                       ? std::string_view::npos
                                       : line_end - start);
    if (auto v = check_header_line(line, l, n); v.status != 0)
      return v;
  }
  if (n.chunked && !http11)
    return {400, "transfer-encoding with http/1.0"};
  if (n.chunked && n.lengths > 0)
    return {400, "content-length with transfer-encoding"};
  if (http11 && n.hosts != 1)
    return {400, n.hosts == 0 ? "no host" : "host twice"};
  return {};
}

} // namespace tasker::health::http
