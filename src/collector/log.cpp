// The collector's log: logfmt quoting and the per-key rate limit in front of the
// caller's callback (collector_options::log).
#include <cstdint>  // code points

#include <shmetrics/detail/validate.hpp>  // utf8_sequence

#include "impl.hpp"

SHMETRICS_BEGIN_NAMESPACE

std::string logfmt_quote(std::string_view s) {
  // As go-kit's logfmt: `"` and `\` escaped, \n \r \t by name, every other control
  // character (C0, DEL, C1) as \u00XX, and each byte that is not part of valid UTF-8 as
  // \ufffd. A value (a request path, a file name) can then neither start a new log line
  // nor reach a terminal as an escape sequence.
  static const char hex[] = "0123456789abcdef";
  std::string q = "\"";
  q.reserve(s.size() + 2);
  auto u = [&](unsigned v) {
    q += "\\u00";
    q += hex[v >> 4];
    q += hex[v & 15];
  };
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    unsigned c = p[i];
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        q += '\\';
        q += static_cast<char>(c);
      } else if (c == '\n') {
        q += "\\n";
      } else if (c == '\r') {
        q += "\\r";
      } else if (c == '\t') {
        q += "\\t";
      } else if (c < 0x20 || c == 0x7f) {
        u(c);
      } else {
        q += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    std::uint32_t cp = 0;
    const std::size_t len = ::shmetrics::detail::utf8_sequence(s, i, cp);
    if (len == 0) {
      q += "\\ufffd";
      ++i;
    } else if (cp >= 0x80 && cp <= 0x9f) {  // C1 controls (0x9b is CSI on some terminals)
      u(cp);
      i += len;
    } else {
      q.append(s, i, len);
      i += len;
    }
  }
  return q + '"';
}

bool log_rate_limit::admit(const std::string& key, std::string& extra, std::chrono::seconds every) {
  long suppressed = 0;
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    auto [it, fresh] = keys_.try_emplace(key);
    if (!fresh && now - it->second.last < every) {
      ++it->second.suppressed;
      return false;
    }
    suppressed = it->second.suppressed;
    it->second = {now, 0};
  }
  if (suppressed > 0)
    extra += (extra.empty() ? "" : " ") + std::string("suppressed=") + std::to_string(suppressed);
  return true;
}

namespace collect_detail {

void log_sink::log(log_level level, const std::string& msg, const std::string& extra) {
  if (fn_) fn_(level, msg, extra);
}

void log_sink::log_limited(log_level level, const std::string& key, const std::string& msg,
                           const std::string& extra, std::chrono::seconds every) {
  if (!fn_) return;
  std::string e = extra;
  if (limit_.admit(key, e, every)) log(level, msg, e);
}

}  // namespace collect_detail

SHMETRICS_END_NAMESPACE
