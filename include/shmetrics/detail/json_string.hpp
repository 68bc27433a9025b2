// shmetrics::detail: one JSON string escaper for every JSON this project writes (the
// exporter's /segments, the engine simulator's OpenAI responses, shmetrics-inspect --json).
#ifndef SHMETRICS_DETAIL_JSON_STRING_HPP
#define SHMETRICS_DETAIL_JSON_STRING_HPP

#include <cstddef>      // sizes
#include <string>       // output
#include <string_view>  // input

#include "validate.hpp"  // valid_utf8

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

/// Appends `s` as a JSON string literal (RFC 8259): `"` and `\` escaped, control
/// characters and DEL as `\n`, `\r`, `\t` or `\u00XX`, well-formed UTF-8 copied as is.
/// Bytes that are not well-formed UTF-8 (a damaged segment, a client's request) become
/// U+FFFD, so the output always parses, as a strict parser (simdjson) requires.
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xf];
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      continue;
    }
    std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len != 0 && i + len <= s.size() && valid_utf8(s.substr(i, len))) {
      out.append(s, i, len);
      i += len - 1;
    } else {
      out += "\\ufffd";
    }
  }
  out += '"';
}

/// `s` as a JSON string literal (append_json_string into a new string).
inline std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

}  // namespace detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_DETAIL_JSON_STRING_HPP
