// shmetrics-exporter: logfmt lines on stderr (ts=... level=... msg=...), as the
// Prometheus exporters write them, with a per-key rate limit so one bad segment
// cannot flood the log.
#pragma once

#include <chrono>  // rate limit
#include <mutex>   // lines from several threads
#include <string>  // messages

#include <shmetrics/reader/collector.hpp>  // log_level, log_function, logfmt_quote

namespace shmetrics::exporter {

using log_level = ::shmetrics::log_level;

class logger {
 public:
  explicit logger(log_level min = log_level::info) : min_(min) {}
  void set_level(log_level l) { min_ = l; }

  /// Writes `ts=... level=... msg="..." extra` if `level` passes the threshold.
  void log(log_level level, const std::string& msg, const std::string& extra = {});

  /// As log(), but at most once per `every` for `key`; says how many were suppressed.
  void log_limited(log_level level, const std::string& key, const std::string& msg,
                   const std::string& extra = {},
                   std::chrono::seconds every = std::chrono::seconds(60));

  /// This logger as the reader library's log callback (the collector's lines).
  ::shmetrics::log_function callback() {
    return [this](log_level level, const std::string& msg, const std::string& extra) {
      log(level, msg, extra);
    };
  }

  static std::string quote(const std::string& s) { return ::shmetrics::logfmt_quote(s); }

 private:
  log_level min_;
  std::mutex mu_;  // one line at a time on stderr
  ::shmetrics::log_rate_limit limit_;
};

bool parse_log_level(const std::string& s, log_level& out);

}  // namespace shmetrics::exporter
