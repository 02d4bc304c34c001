// The command line of the programs beside the daemon (apps/demo, bench/)
// through CAF's option groups, as the daemon parses its own
// (apps/tasker-health/daemon_config.hpp): each option is a member bound in
// one line with its name, help text and rule; --help is generated from that
// table; a bad value or an unknown option names the option and the rule and
// exits with code 2. Header-only; needs only libcaf_core.
//
// Options are global (`--name=value`; `--name value` is accepted too). CAF's
// own options (e.g. --scheduler.max-threads=N) pass the parser; programs that
// start actor systems of their own take them with foreign_args(). No INI file
// is read (caf-application.ini in the working directory is ignored).
#pragma once

#include <cstdint>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "caf/actor_system_config.hpp"
#include "caf/config_option.hpp"
#include "caf/config_option_set.hpp"
#include "caf/pec.hpp"
#include "caf/settings.hpp"

namespace tasker::health::cli {

class program_options : public caf::actor_system_config {
 public:
  /// `synopsis` follows "usage: PROGRAM " in --help; `about` is printed
  /// before the options, `epilog` after them (both may be empty).
  program_options(std::string program, std::string synopsis, std::string about,
                  std::string epilog = "")
      : program_(std::move(program)), synopsis_(std::move(synopsis)),
        about_(std::move(about)), epilog_(std::move(epilog)) {
    first_own_ = custom_options_.size();
  }

  const std::string& program() const noexcept { return program_; }

  /// A whole number in [lo, hi].
  program_options& add(int64_t& value, const char* name, const char* help,
                       int64_t lo, int64_t hi) {
    auto rule = "must be an integer from " + std::to_string(lo) + " to "
                + std::to_string(hi);
    bind(value, name, help, rule,
         [&value, lo, hi] { return value >= lo && value <= hi; });
    return *this;
  }

  /// A number in [lo, hi].
  program_options& add(double& value, const char* name, const char* help,
                       double lo, double hi) {
    auto rule = "must be a number from " + number(lo) + " to " + number(hi);
    bind(value, name, help, rule,
         [&value, lo, hi] { return value >= lo && value <= hi; });
    return *this;
  }

  /// A string; `non_empty`: it must not be empty.
  program_options& add(std::string& value, const char* name, const char* help,
                       bool non_empty = false) {
    std::string rule = non_empty ? "must not be empty" : "";
    bind(value, name, help, rule,
         [&value, non_empty] { return !non_empty || !value.empty(); });
    return *this;
  }

  /// A flag: given without a value, it sets `value` to true.
  program_options& flag(bool& value, const char* name, const char* help) {
    bind(value, name, help, "is a flag and takes no value",
         [] { return true; });
    return *this;
  }

  /// The option added last must be given (its default is only a
  /// placeholder).
  program_options& required() {
    entries_.back().required = true;
    return *this;
  }

  /// A rule across options, checked after every option's own: `check`
  /// returns the problem ("" if none), reported against `option`.
  program_options& rule(std::string option,
                        std::function<std::string()> check) {
    checks_.push_back({std::move(option), std::move(check)});
    return *this;
  }

  /// Parses the command line. Returns nothing when the program should run,
  /// else its exit code: 0 after --help (printed to `out`), 2 after a bad
  /// argument (printed to `err` as "PROGRAM: --option: rule").
  std::optional<int> parse_or_exit(int argc, char** argv,
                                   std::ostream& out = std::cout,
                                   std::ostream& err = std::cerr) {
    auto args = joined(argc, argv);
    for (const auto& a : args)
      if (a == "-h" || a == "--help" || a == "-?") {
        out << help();
        return 0;
      }
    auto problem = parse_args(args);
    if (problem.empty() && cli_helptext_printed) // --long-help, --dump-config
      return 0;
    if (!problem.empty()) {
      err << program_ << ": " << problem << "\ntry '" << program_
          << " --help'\n";
      return 2;
    }
    return std::nullopt;
  }

  /// The arguments that are not this program's options (CAF's own, for an
  /// actor system the program starts), in their `--name=value` form.
  std::vector<std::string> foreign_args(int argc, char** argv) const {
    std::vector<std::string> xs;
    for (auto& a : joined(argc, argv))
      if (own(name_of(a)) == nullptr)
        xs.push_back(a);
    return xs;
  }

  /// The generated help: synopsis, about, one entry per option with its
  /// type, default and rule, epilog.
  std::string help() const {
    std::ostringstream o;
    o << "usage: " << program_ << " " << synopsis_ << "\n\n";
    if (!about_.empty())
      o << about_ << "\n";
    o << "options (--name=VALUE and --name VALUE are both accepted):\n";
    for (const auto& e : entries_) {
      auto opt = find(e.name);
      o << "  --" << e.name;
      if (!opt->is_flag())
        o << "=<" << type_text(*opt) << ">";
      std::string notes;
      if (e.required)
        notes = "required";
      else if (!opt->is_flag() && !e.default_text.empty())
        notes = "default: " + e.default_text;
      if (!opt->is_flag() && !e.rule.empty())
        notes += (notes.empty() ? "" : "; ") + e.rule;
      if (!notes.empty())
        o << "  (" << notes << ")";
      o << "\n" << wrapped(e.help, 6);
    }
    o << "  -h, --help\n      print this help and exit 0\n";
    if (!epilog_.empty())
      o << "\n" << epilog_;
    return o.str();
  }

 private:
  struct entry {
    std::string name;
    std::string help;
    std::string rule;
    std::string default_text;
    std::function<bool()> ok;
    std::function<std::string()> value_text;
    bool required = false;
  };

  struct cross_check {
    std::string option;
    std::function<std::string()> check;
  };

  /// 0.1, 86400, 31536000 (no exponent, no trailing zeros).
  static std::string number(double x) {
    auto s = std::to_string(x);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.')
      s.pop_back();
    return s;
  }

  /// `text` in lines of at most 78 columns, each indented by `indent`.
  static std::string wrapped(const std::string& text, size_t indent) {
    std::string out;
    std::string line(indent, ' ');
    std::istringstream words{text};
    std::string word;
    bool first = true;
    while (words >> word) {
      if (!first && line.size() + 1 + word.size() > 78) {
        out += line + "\n";
        line.assign(indent, ' ');
        first = true;
      }
      line += (first ? "" : " ") + word;
      first = false;
    }
    return out + line + "\n";
  }

  template<class T>
  static std::string show(const T& x) {
    if constexpr (std::is_same_v<T, std::string>)
      return x;
    else if constexpr (std::is_same_v<T, double>)
      return number(x);
    else
      return std::to_string(x);
  }

  template<class T>
  void bind(T& value, const char* name, const char* help, std::string rule,
            std::function<bool()> ok) {
    opt_group{custom_options_, "global"}.add(value, name, help);
    entries_.push_back(
        {name, help, std::move(rule), show(value), std::move(ok), [&value] {
           return show(value);
         }});
  }

  static std::string type_text(const caf::config_option& opt) {
    auto t = std::string{opt.type_name().data(), opt.type_name().size()};
    if (t == "std::string" || t == "string")
      return "text";
    if (t.find("int") != std::string::npos)
      return "integer";
    if (t == "double" || t == "real64")
      return "number";
    return t;
  }

  const caf::config_option* find(const std::string& name) const {
    size_t i = 0;
    for (const auto& opt : custom_options_)
      if (i++ >= first_own_ && opt.long_name() == name)
        return &opt;
    return nullptr;
  }

  const entry* own(const std::string& name) const {
    for (const auto& e : entries_)
      if (e.name == name)
        return &e;
    return nullptr;
  }

  /// "--name=value" -> "name"; "--name" -> "name"; else "".
  static std::string name_of(const std::string& arg) {
    if (arg.rfind("--", 0) != 0)
      return "";
    return arg.substr(2, arg.find('=') == std::string::npos
                             ? std::string::npos
                             : arg.find('=') - 2);
  }

  static bool given(const std::vector<std::string>& args,
                    const std::string& name) {
    for (const auto& a : args)
      if (name_of(a) == name)
        return true;
    return false;
  }

  /// argv without the program name, "--name value" of a non-flag option of
  /// this program joined into "--name=value".
  std::vector<std::string> joined(int argc, char** argv) const {
    std::vector<std::string> xs;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) == 0 && a.find('=') == std::string::npos
          && i + 1 < argc) {
        auto opt = own(a.substr(2)) != nullptr ? find(a.substr(2)) : nullptr;
        if (opt != nullptr && !opt->is_flag())
          a += "=" + std::string{argv[++i]};
      }
      xs.push_back(std::move(a));
    }
    return xs;
  }

  /// CAF's parse, then each option's rule, then the rules across options.
  /// Returns the first problem as "--option: rule", or "".
  std::string parse_args(const std::vector<std::string>& args) {
    std::istringstream no_ini;
    if (auto err = parse(args, no_ini))
      return describe(err);
    if (!remainder.empty())
      return "unexpected argument '" + remainder.front()
             + "' (options look like --name=value)";
    for (const auto& e : entries_)
      if (e.required && !given(args, e.name))
        return "--" + e.name + ": is required";
    for (const auto& e : entries_)
      if (!e.ok())
        return "--" + e.name + ": " + e.rule + ", got '" + e.value_text() + "'";
    for (const auto& c : checks_)
      if (auto why = c.check(); !why.empty())
        return "--" + c.option + ": " + why;
    return "";
  }

  /// Names the option of a CAF parse error and the rule it broke.
  std::string describe(const caf::error& err) const {
    // CAF's context of a CLI error: {"argument" = "--name=value"}.
    std::string arg;
    if (err.context().match_elements<caf::settings>())
      if (auto x = caf::get_if<std::string>(
              &err.context().get_as<caf::settings>(0), "argument"))
        arg = *x;
    auto name = name_of(arg);
    auto code = caf::to_string(static_cast<caf::pec>(err.code()));
    if (arg.empty())
      return "bad command line (" + code + ")";
    auto eq = arg.find('=');
    auto value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (auto e = own(name)) {
      if (find(name)->is_flag())
        return "--" + name + ": " + e->rule;
      if (eq == std::string::npos
          || static_cast<caf::pec>(err.code()) == caf::pec::missing_argument)
        return "--" + name + ": needs a value (--" + name + "=VALUE)";
      auto rule
          = e->rule.empty() ? "must be " + type_text(*find(name)) : e->rule;
      return "--" + name + ": " + rule + ", got '" + value + "'";
    }
    if (name.empty())
      return "'" + arg + "': " + code;
    bool caf_option = false;
    for (const auto& opt : custom_options_)
      if (opt.full_name() == name || opt.long_name() == name)
        caf_option = true;
    if (!caf_option)
      return "--" + name + ": unknown option (see --help)";
    return "--" + name + ": invalid (" + code + ")";
  }

  std::string program_;
  std::string synopsis_;
  std::string about_;
  std::string epilog_;
  size_t first_own_ = 0;
  std::vector<entry> entries_;
  std::vector<cross_check> checks_;
};

} // namespace tasker::health::cli
