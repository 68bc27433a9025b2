// shmetrics: error codes shared by the writer and the reader.
//
// Every cold-path call (registration, segment creation, opening a segment) returns a
// result<T>: a value or an error. Hot-path calls (inc/add/set/observe) never fail.
#ifndef SHMETRICS_ERRC_HPP
#define SHMETRICS_ERRC_HPP

#include <cstdio>       // the message of value() on an error, without exceptions
#include <cstdlib>      // std::abort when value() is called on an error
#include <cstring>      // strerror
#include <string>       // error::message
#include <string_view>  // to_string
#include <iterator>     // std::size
#include <utility>      // std::move

#include "config.hpp"

#if SHMETRICS_EXCEPTIONS
#include <stdexcept>  // bad_result_access
#endif

SHMETRICS_BEGIN_NAMESPACE

/// Every way a shmetrics call can fail. The numeric values are not part of the
/// segment format; the names and messages are stable.
enum class errc : int {
  ok = 0,
  // registration (writer, cold path)
  invalid_metric_name,
  invalid_label_name,
  reserved_label_name,
  duplicate_label_name,
  invalid_utf8,
  label_count_mismatch,
  invalid_buckets,
  family_conflict,
  wrong_family_type,
  sample_name_collision,
  families_full,
  series_full,
  strings_full,
  cells_full,
  duplicate_process_metrics,
  // segment creation (writer)
  invalid_options,
  segment_exists,
  create_failed,
  no_space,
  map_failed,
  forked,
  // reading a segment (reader)
  open_failed,
  not_a_regular_file,
  not_ready,
  truncated,
  bad_magic,
  unsupported_major,
  corrupt_header,
  corrupt_record,
  shrunk,
  // number of codes; keep last
  count_
};

/// A short, stable message for each code. A test checks that this table matches the enum.
inline constexpr std::string_view errc_messages[] = {
    "ok",
    "invalid metric name (want [a-zA-Z_:][a-zA-Z0-9_:]*)",
    "invalid label name (want [a-zA-Z_][a-zA-Z0-9_]*)",
    "reserved label name (__* always, le for histograms)",
    "duplicate label name",
    "string is not valid UTF-8",
    "wrong number of label values",
    "invalid bucket bounds (want finite, strictly increasing)",
    "family already registered with a different definition",
    "family has a different type",
    "two families of one registry would expose the same sample name",
    "segment full: no free family record",
    "segment full: no free series record",
    "segment full: string arena exhausted",
    "segment full: no free value cells",
    "process metrics already recorded for this process (one process_metrics per process)",
    "invalid options",  // registry options, a catalog selection: the detail names it
    "segment file already exists",
    "cannot create segment file",
    "no space to reserve the segment (is /dev/shm large enough?)",
    "cannot map segment",
    "registry inherited across fork(): inert in the child (create a new registry there)",
    "cannot open",  // a segment, its directory, a catalog file: the detail names it
    "not a regular file",
    "segment not ready (writer still initializing)",
    "segment truncated",
    "bad magic: not a shmetrics segment",
    "unsupported segment format major version",
    "corrupt segment header",
    "corrupt record",
    "segment shrank while mapped",
};
static_assert(std::size(errc_messages) == static_cast<std::size_t>(errc::count_),
              "errc_messages must have one entry per errc");

/// The message for a code. Thread-safe, no allocation, never fails.
constexpr std::string_view to_string(errc e) noexcept {
  auto i = static_cast<std::size_t>(e);
  return i < std::size(errc_messages) ? errc_messages[i] : std::string_view{"unknown error"};
}

/// An error: a code, the errno behind it (0 if none), and free-form detail naming the
/// thing at fault (a metric name, a path, an offset).
struct error {
  errc code = errc::ok;
  int sys_errno = 0;
  std::string detail;

  /// "<detail>: <code message>[: <strerror>]". Allocates.
  std::string message() const {
    std::string m;
    if (!detail.empty()) {
      m += detail;
      m += ": ";
    }
    m += to_string(code);
    if (sys_errno != 0) {
      m += ": ";
      m += std::strerror(sys_errno);
    }
    return m;
  }
};

#if SHMETRICS_EXCEPTIONS
/// Thrown by result::value() (and `*`, `->`) on an error, as std::expected::value() throws
/// bad_expected_access. what() is "shmetrics: " and the error's message, so an uncaught
/// one says what went wrong and where (the terminate handler prints it).
class bad_result_access : public std::runtime_error {
 public:
  explicit bad_result_access(shmetrics::v1::error e)
      : std::runtime_error("shmetrics: " + e.message()), error_(std::move(e)) {}
  const shmetrics::v1::error& error() const noexcept { return error_; }

 private:
  shmetrics::v1::error error_;
};
#endif

namespace detail {
/// value() on an error: never silent. With exceptions, throws bad_result_access; without,
/// prints the message to stderr and aborts. Out of line and cold: the callers stay small.
/// A program that mixes both kinds of translation unit gets either body; each ends an
/// unhandled failure with the message.
[[noreturn, gnu::noinline, gnu::cold]] inline void bad_result_access_(const error& e) {
#if SHMETRICS_EXCEPTIONS
  throw bad_result_access(e);
#else
  std::fprintf(stderr, "shmetrics: value() of a failed result: %s\n", e.message().c_str());
  std::abort();
#endif
}
}  // namespace detail

/// A value or an error (a small std::expected for C++20). Check first:
/// `if (!r) log(r.error().message());`. value(), `*` and `->` on an error throw
/// bad_result_access (without exceptions: print the error's message to stderr and
/// abort), so `reg->add_counter(...)` with a bad name says which name and why.
template <class T>
class [[nodiscard]] result {
 public:
  result(T v) : ok_(true), value_(std::move(v)) {}  // NOLINT: implicit on purpose
  result(shmetrics::v1::error e) : ok_(false), error_(std::move(e)) {}
  result(errc c, std::string detail = {}, int sys = 0)
      : ok_(false), error_{c, sys, std::move(detail)} {}

  explicit operator bool() const noexcept { return ok_; }
  bool has_value() const noexcept { return ok_; }

  T& value() & {
    if (!ok_) [[unlikely]]
      detail::bad_result_access_(error_);
    return value_;
  }
  const T& value() const& {
    if (!ok_) [[unlikely]]
      detail::bad_result_access_(error_);
    return value_;
  }
  T&& value() && {
    if (!ok_) [[unlikely]]
      detail::bad_result_access_(error_);
    return std::move(value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// The value, or `fallback` on error (e.g. an inert handle: `.value_or({})`).
  T value_or(T fallback) const& { return ok_ ? value_ : fallback; }
  T value_or(T fallback) && { return ok_ ? std::move(value_) : fallback; }

  const shmetrics::v1::error& error() const noexcept { return error_; }
  errc code() const noexcept { return ok_ ? errc::ok : error_.code; }

 private:
  bool ok_;
  T value_{};
  shmetrics::v1::error error_{};
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_ERRC_HPP
