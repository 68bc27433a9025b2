// shmetrics: gauge, a value that goes up and down (one series of a gauge family).
#ifndef SHMETRICS_GAUGE_HPP
#define SHMETRICS_GAUGE_HPP

#include <bit>      // std::bit_cast
#include <cmath>    // std::fabs: add() ignores non-finite amounts
#include <cstdint>  // cell pointers
#include <limits>   // the largest finite double
#include <time.h>   // clock_gettime (vDSO) for latest-mode timestamps

#include "config.hpp"
#include "detail/atomics.hpp"
#include "scoped_timer.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {
struct handle_access;  // the device-side recorder's view of a handle (cuda/)
}  // namespace detail

/// A handle to one gauge series. Gauges are not sharded: one cell, in the shared shard.
/// set() is a plain 8-byte store (last writer wins); add()/sub() are CAS loops.
///
/// For families registered with gauge_mode::latest / live_latest, set() also stamps
/// CLOCK_MONOTONIC (a vDSO read, no syscall) so the exporter can pick the newest value
/// across processes.
///
/// set() stores any value, NaN and +-Inf included (the next set() replaces it). add(),
/// sub(), inc() and dec() ignore a NaN or infinite amount: added in, it would stay in
/// the gauge until the next set().
///
/// Thread-safe: yes. Allocates: never. Fails: never.
class gauge {
 public:
  gauge() = default;
  gauge(std::uint64_t* cell, bool stamped) noexcept : cell_(cell), stamped_(stamped) {}

  SHMETRICS_ALWAYS_INLINE void set(double v) noexcept {
    if (cell_ == nullptr) [[unlikely]]
      return;
    detail::store_relaxed(cell_, std::bit_cast<std::uint64_t>(v));
    if (stamped_) stamp();
  }
  SHMETRICS_ALWAYS_INLINE void add(double v) noexcept {
    // One compare rejects NaN and +-Inf (a CAS loop follows anyway).
    if (!(std::fabs(v) <= std::numeric_limits<double>::max()) || cell_ == nullptr) [[unlikely]]
      return;
    detail::add_shared(cell_, v);
    if (stamped_) stamp();
  }
  SHMETRICS_ALWAYS_INLINE void sub(double v) noexcept { add(-v); }
  SHMETRICS_ALWAYS_INLINE void inc() noexcept { add(1.0); }
  SHMETRICS_ALWAYS_INLINE void dec() noexcept { add(-1.0); }

  /// Sets the gauge to the current unix time in seconds, as prometheus_client's
  /// Gauge.set_to_current_time() (e.g. a last-success timestamp). Costs one
  /// clock_gettime(CLOCK_REALTIME), a vDSO read without a syscall (about 20 ns on x86-64
  /// with the TSC clocksource; a real syscall where the kernel's clocksource has no vDSO
  /// support), then set(). Follows the wall clock: it may step back when the clock is set.
  void set_to_current_time() noexcept {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    set(static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9);
  }

  /// A timer that sets this gauge to the seconds its scope took, when it ends (as
  /// prometheus_client's `with gauge.time():`). See scoped_timer.
  [[nodiscard]] scoped_timer<gauge> time() const noexcept { return scoped_timer<gauge>(*this); }

  /// The value last written (reads the segment). Thread-safe.
  double value() const noexcept {
    return cell_ ? std::bit_cast<double>(detail::load_relaxed(cell_)) : 0.0;
  }

  explicit operator bool() const noexcept { return cell_ != nullptr; }

 private:
  friend struct detail::handle_access;

  void stamp() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    // release: a reader that acquires the stamp sees at least this value.
    detail::store_release(cell_ + 1, static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
                                         static_cast<std::uint64_t>(ts.tv_nsec));
  }

  std::uint64_t* cell_ = nullptr;  // cell 0: f64 bits; cell 1: CLOCK_MONOTONIC ns of last set
  bool stamped_ = false;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_GAUGE_HPP
