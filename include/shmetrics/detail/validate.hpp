// shmetrics::detail: name and string validation for registration (cold path).
#ifndef SHMETRICS_DETAIL_VALIDATE_HPP
#define SHMETRICS_DETAIL_VALIDATE_HPP

#include <cstdint>      // std::uint8_t
#include <string_view>  // names

#include "../config.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

constexpr bool is_alpha_(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

/// [a-zA-Z_:][a-zA-Z0-9_:]*, as Prometheus 2.x lexes metric names.
constexpr bool valid_metric_name(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!(is_alpha_(c) || c == ':' || (i > 0 && is_digit(c)))) return false;
  }
  return true;
}

/// [a-zA-Z_][a-zA-Z0-9_]*.
constexpr bool valid_label_name(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!(is_alpha_(c) || (i > 0 && is_digit(c)))) return false;
  }
  return true;
}

/// The length of the strict UTF-8 sequence (no overlongs, no surrogates, <= U+10FFFF) that
/// starts at s[i] (i < s.size()), with its code point in `cp`; 0 if the bytes there are
/// not one.
constexpr std::size_t utf8_sequence(std::string_view s, std::size_t i, std::uint32_t& cp) noexcept {
  auto c = static_cast<std::uint8_t>(s[i]);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  std::size_t len;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    auto cc = static_cast<std::uint8_t>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/// Strict UTF-8 (see utf8_sequence). Prometheus fails a whole scrape on an invalid label
/// value, so it is refused at registration.
constexpr bool valid_utf8(std::string_view s) noexcept {
  std::uint32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = utf8_sequence(s, i, cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

}  // namespace detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_DETAIL_VALIDATE_HPP
