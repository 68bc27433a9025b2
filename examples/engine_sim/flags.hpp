// Command-line flags as vLLM and node_exporter spell them: `--flag value` and
// `--flag=value` both work; a bad flag is one line naming it and exit status 2.
#pragma once

#include <cstdint>   // integer flags
#include <cstdio>    // fprintf
#include <cstdlib>   // exit
#include <charconv>  // from_chars
#include <string>    // values
#include <string_view>
#include <vector>  // argv

namespace engine_sim {

/// Walks argv once. Each `take_*` call matches one flag name and converts its value;
/// anything left unmatched is reported by `finish()`.
class flag_parser {
 public:
  flag_parser(std::string_view program, int argc, char** argv) : program_(program) {
    for (int i = 1; i < argc; ++i)
      args_.emplace_back(argv[i]);
  }

  /// The next argument, split into name and inline value; false at the end.
  bool next() {
    if (pos_ >= args_.size()) return false;
    name_ = args_[pos_++];
    has_inline_ = false;
    if (auto eq = name_.find('='); name_.starts_with("--") && eq != std::string::npos) {
      value_ = name_.substr(eq + 1);
      name_ = name_.substr(0, eq);
      has_inline_ = true;
    }
    return true;
  }
  const std::string& name() const noexcept { return name_; }
  bool is(std::string_view n) const noexcept { return name_ == n; }

  /// A boolean flag: `--log-stats`, `--log-stats=true|false`.
  bool boolean() {
    if (!has_inline_) return true;
    if (value_ == "true" || value_ == "1") return true;
    if (value_ == "false" || value_ == "0") return false;
    fail("invalid value for " + name_ + ": " + value_);
  }
  std::string string() {
    if (has_inline_) return value_;
    if (pos_ >= args_.size()) fail("flag " + name_ + " needs a value");
    return args_[pos_++];
  }
  /// One or more values (argparse's nargs='+'): the inline one, or every following
  /// argument up to the next flag.
  std::vector<std::string> strings() {
    std::vector<std::string> out;
    if (has_inline_) return {value_};
    while (pos_ < args_.size() && !args_[pos_].starts_with("--"))
      out.push_back(args_[pos_++]);
    if (out.empty()) fail("flag " + name_ + " needs a value");
    return out;
  }
  std::uint64_t uint(std::uint64_t min = 0, std::uint64_t max = UINT64_MAX) {
    std::string v = string();
    std::uint64_t x = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc{} || p != v.data() + v.size() || x < min || x > max)
      fail("invalid value for " + name_ + ": " + v);
    return x;
  }
  double number(double min, double max) {
    std::string v = string();
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(x >= min && x <= max))
      fail("invalid value for " + name_ + ": " + v);
    return x;
  }
  [[noreturn]] void unknown() { fail("unknown flag " + name_); }
  [[noreturn]] void fail(const std::string& msg) const {
    std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(program_.size()), program_.data(),
                 msg.c_str());
    std::exit(2);
  }

 private:
  std::string_view program_;
  std::vector<std::string> args_;
  std::size_t pos_ = 0;
  std::string name_, value_;
  bool has_inline_ = false;
};

}  // namespace engine_sim
