#include "apps/http/route_table.hpp"

#include <algorithm>

namespace tasker::health::http {

route_table& route_table::get(std::string_view path, handler fn) {
  return add("GET", path, std::move(fn));
}

route_table& route_table::post(std::string_view path, handler fn) {
  return add("POST", path, std::move(fn));
}

route_table& route_table::add(std::string_view method, std::string_view path,
                              handler fn) {
  auto& e = slot(path);
  auto i = std::find_if(e.methods.begin(), e.methods.end(),
                        [&](const auto& m) { return m.first == method; });
  if (i != e.methods.end())
    i->second = std::move(fn);
  else
    e.methods.emplace_back(std::string{method}, std::move(fn));
  update_allow(e);
  return *this;
}

route_table& route_table::alias(std::string_view path,
                                std::string_view target) {
  std::vector<std::pair<std::string, handler>> methods;
  for (const auto& e : entries_)
    if (e.path == target)
      methods = e.methods;
  for (auto& [method, fn] : methods)
    add(method, path, std::move(fn));
  return *this;
}

route_table::match route_table::find(std::string_view method,
                                     std::string_view path) const {
  match result;
  for (const auto& e : entries_) {
    if (e.path != path)
      continue;
    result.path_known = true;
    result.allow = e.allow;
    // HEAD is served by the GET handler (the server drops the body).
    auto wanted = method == "HEAD" ? std::string_view{"GET"} : method;
    for (const auto& [m, fn] : e.methods)
      if (m == wanted)
        result.fn = &fn;
    return result;
  }
  return result;
}

std::vector<std::string> route_table::paths() const {
  std::vector<std::string> result;
  for (const auto& e : entries_)
    result.push_back(e.path);
  return result;
}

route_table::entry& route_table::slot(std::string_view path) {
  for (auto& e : entries_)
    if (e.path == path)
      return e;
  entries_.push_back(entry{std::string{path}, {}, {}});
  return entries_.back();
}

void route_table::update_allow(entry& e) {
  e.allow.clear();
  for (const auto& [m, fn] : e.methods) {
    if (!e.allow.empty())
      e.allow += ", ";
    e.allow += m;
    if (m == "GET")
      e.allow += ", HEAD";
  }
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

} // namespace tasker::health::http
