// shmetrics-inspect: what the subcommands share (options, JSON output, clocks).
#pragma once

#include <cmath>        // isfinite
#include <cstdint>      // fixed-width values
#include <cstdio>       // snprintf
#include <ctime>        // clock_gettime, localtime_r
#include <string>       // output buffers
#include <string_view>  // escaping input
#include <vector>       // matchers

#include <shmetrics/detail/json_string.hpp>
#include <shmetrics/detail/validate.hpp>
#include <shmetrics/reader/text_format.hpp>

namespace inspect {

/// One label matcher, as PromQL writes them: name=value, name!=value, name=~re, name!~re.
struct label_matcher {
  std::string name, value;
  enum class op { eq, ne, re, nre } kind = op::eq;
};

/// Every option of every subcommand, parsed once in main().
struct options {
  std::string dir = "/dev/shm";
  std::string prefix = "shmetrics";
  bool prefix_given = false;  // --shm.prefix: else a pid or instance id is sought under any prefix
  bool json = false;
  std::string format = "text";  // show: text | table
  std::string name_glob;        // show, watch: family name pattern
  std::vector<label_matcher> labels;
  double interval_s = 1.0;        // watch
  long count = 0;                 // watch: refreshes before exiting (0: until q)
  long top = 0;                   // watch: rows (0: fit the terminal)
  std::string catalog_path;       // catalog: --catalog (default: catalog::default_path())
  std::string status_filter;      // catalog: --status
  std::vector<std::string> args;  // after the subcommand
};

int cmd_watch(const options& o);
int cmd_catalog(const options& o);

/// Appends `s` as a JSON string literal. Invalid UTF-8 cannot come from a validated
/// segment, but `check` prints whatever a damaged file holds: such bytes become U+FFFD
/// so the output always parses.
inline void json_string(std::string& out, std::string_view s) {
  shmetrics::detail::append_json_string(out, s);
}

/// A JSON number; NaN and infinities (not JSON) become the strings "NaN", "+Inf", "-Inf".
inline void json_number(std::string& out, double v) {
  if (std::isfinite(v)) {
    shmetrics::append_float(out, v);
  } else {
    out += '"';
    shmetrics::append_float(out, v);
    out += '"';
  }
}

/// A number for a human: whole values below 2^53 as integers (12345678, not
/// 1.2345678e+07), anything else as the Prometheus text would print it.
inline std::string human_number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  return shmetrics::format_float(v);
}

inline std::uint64_t now_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Heartbeat age in seconds; negative when the writer's clock is ahead of ours (another
/// time namespace or boot), which the caller shows as unknown.
inline double heartbeat_age_s(std::uint64_t heartbeat_ns) {
  return (static_cast<double>(now_ns(CLOCK_MONOTONIC)) - static_cast<double>(heartbeat_ns)) * 1e-9;
}

/// CLOCK_REALTIME nanoseconds as local ISO 8601 with offset: 2024-05-01T12:00:00+0200.
inline std::string iso_time(std::uint64_t realtime_ns) {
  time_t t = static_cast<time_t>(realtime_ns / 1000000000ull);
  tm tm{};
  char buf[64];
  if (!localtime_r(&t, &tm) || !std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm))
    return "?";
  return buf;
}

inline std::string hex16(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

/// Shell-style glob with `*` and `?` (no classes), matched against the whole string.
inline bool glob_match(std::string_view pat, std::string_view s) {
  std::size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (p < pat.size() && (pat[p] == '?' || pat[p] == s[i])) {
      ++p;
      ++i;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*')
    ++p;
  return p == pat.size();
}

}  // namespace inspect
