#define CAF_SUITE core.log
#include "caf/test/unit_test.hpp"

#include "core/log.hpp"

#include <spdlog/spdlog.h>

using namespace tasker::health;

CAF_TEST(passwords are redacted in uri connection strings) {
  CAF_CHECK_EQUAL(redact_dsn("postgresql://app:s3cret@db:5432/tasker"),
                  "postgresql://app:***@db:5432/tasker");
  CAF_CHECK_EQUAL(redact_dsn("postgres://app@db/tasker"),
                  "postgres://app@db/tasker");
  CAF_CHECK_EQUAL(redact_dsn("postgresql://db/tasker?user=a&password=x&ssl=1"),
                  "postgresql://db/tasker?user=a&password=***&ssl=1");
}

CAF_TEST(passwords are redacted in key value connection strings) {
  CAF_CHECK_EQUAL(redact_dsn("host=db user=app password=s3cret dbname=t"),
                  "host=db user=app password=*** dbname=t");
  CAF_CHECK_EQUAL(redact_dsn("password='with space' host=db"),
                  "password=*** host=db");
  CAF_CHECK_EQUAL(redact_dsn("host=db port=5432"), "host=db port=5432");
}

CAF_TEST(the component logger is a named spdlog logger) {
  auto l = logger();
  CAF_REQUIRE(l != nullptr);
  CAF_CHECK_EQUAL(l->name(), "tasker-health");
  CAF_CHECK(spdlog::get("tasker-health") == l);
  CAF_CHECK(logger() == l);
}

CAF_TEST(quoted escapes quotes backslashes and newlines) {
  CAF_CHECK_EQUAL(quoted("plain"), "\"plain\"");
  CAF_CHECK_EQUAL(quoted(""), "\"\"");
  CAF_CHECK_EQUAL(quoted("say \"hi\""), "\"say \\\"hi\\\"\"");
  CAF_CHECK_EQUAL(quoted("C:\\dir"), "\"C:\\\\dir\"");
  // One log event stays on one line.
  CAF_CHECK_EQUAL(quoted("line 1\nline 2"), "\"line 1\\nline 2\"");
  CAF_CHECK_EQUAL(quoted("a\nb").find('\n'), std::string::npos);
}
