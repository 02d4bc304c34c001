// What an HTTP program in apps/ serves, independent of the server library:
// requests, responses and a table of routes (method + exact path -> handler).
// http_server (libmicrohttpd) serves a route_table; swapping the library
// touches http_server.cpp only.
//
//   route_table routes;
//   routes.get("/livez", [](const request&) {
//     return response::json(200, R"({"alive":true})");
//   });
//   routes.alias("/health/live", "/livez");   // same handlers, other path
//
// A GET route answers HEAD too (headers and Content-Length, no body). A
// known path asked with another method is 405 with `Allow`; an unknown path
// is 404. Handlers run on the server's event thread: they must not block
// (read caches, never a database).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tasker::health::http {

/// One request as a handler sees it. Valid for the duration of the call.
class request {
 public:
  using header_lookup
      = std::string_view (*)(const void* context, std::string_view name);

  request(std::string_view method, std::string_view path, std::string_view body,
          header_lookup lookup = nullptr, const void* context = nullptr)
      : method_(method), path_(path), body_(body), lookup_(lookup),
        context_(context) {}

  /// "GET", "POST", ... as sent (HEAD requests reach GET handlers as HEAD).
  std::string_view method() const { return method_; }

  /// The path without the query string, percent-decoded.
  std::string_view path() const { return path_; }

  /// The request body (at most the server's max_body bytes).
  std::string_view body() const { return body_; }

  /// The value of a request header (name case-insensitive); empty if absent.
  std::string_view header(std::string_view name) const {
    return lookup_ != nullptr ? lookup_(context_, name) : std::string_view{};
  }

 private:
  std::string_view method_;
  std::string_view path_;
  std::string_view body_;
  header_lookup lookup_;
  const void* context_;
};

/// What a handler answers.
struct response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  /// Extra headers (e.g. Retry-After). Content-Length, Date and Connection
  /// are the server's.
  std::vector<std::pair<std::string, std::string>> headers;

  static response json(int status, std::string body) {
    return {status, "application/json", std::move(body), {}};
  }

  static response text(int status, std::string body) {
    return {status, "text/plain; charset=utf-8", std::move(body), {}};
  }

  response& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

using handler = std::function<response(const request&)>;

/// Routes by method and exact path. Built before the server starts, read-only
/// afterwards (lookups are not synchronized with changes).
class route_table {
 public:
  /// GET `path` (and HEAD, answered by the same handler without the body).
  route_table& get(std::string_view path, handler fn);

  /// POST `path`; the handler sees the body.
  route_table& post(std::string_view path, handler fn);

  /// Any method. Registering a method twice on a path replaces the handler.
  route_table& add(std::string_view method, std::string_view path, handler fn);

  /// Serves `path` with every handler `target` has (now; later routes on
  /// `target` are not copied).
  route_table& alias(std::string_view path, std::string_view target);

  /// The outcome of a lookup.
  struct match {
    /// The handler, or nullptr (then: path_known ? 405 : 404).
    const handler* fn = nullptr;
    bool path_known = false;
    /// The methods of the path, comma separated, for `Allow`.
    std::string_view allow;
  };

  match find(std::string_view method, std::string_view path) const;

  /// Every path, in registration order.
  std::vector<std::string> paths() const;

 private:
  struct entry {
    std::string path;
    std::vector<std::pair<std::string, handler>> methods;
    std::string allow;
  };

  entry& slot(std::string_view path);
  static void update_allow(entry& e);

  std::vector<entry> entries_;
};

/// The reason phrase of a status code ("Not Found"); "Unknown" for others.
std::string_view reason_phrase(int status);

} // namespace tasker::health::http
