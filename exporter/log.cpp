#include "log.hpp"

#include <cstdio>  // fprintf
#include <ctime>   // gmtime_r

namespace shmetrics::exporter {

namespace {
const char* level_name(log_level l) {
  switch (l) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
  }
  return "info";
}
}  // namespace

void logger::log(log_level level, const std::string& msg, const std::string& extra) {
  if (level < min_) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm;
  gmtime_r(&t, &tm);
  char ts[96];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  std::lock_guard lock(mu_);
  std::fprintf(stderr, "ts=%s level=%s msg=%s%s%s\n", ts, level_name(level), quote(msg).c_str(),
               extra.empty() ? "" : " ", extra.c_str());
  std::fflush(stderr);
}

void logger::log_limited(log_level level, const std::string& key, const std::string& msg,
                         const std::string& extra, std::chrono::seconds every) {
  if (level < min_) return;
  std::string e = extra;
  if (limit_.admit(key, e, every)) log(level, msg, e);
}

bool parse_log_level(const std::string& s, log_level& out) {
  if (s == "debug")
    out = log_level::debug;
  else if (s == "info")
    out = log_level::info;
  else if (s == "warn")
    out = log_level::warn;
  else if (s == "error")
    out = log_level::error;
  else
    return false;
  return true;
}

}  // namespace shmetrics::exporter
