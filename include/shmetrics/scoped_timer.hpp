// shmetrics: scoped_timer, the seconds a scope took, recorded when it ends (like
// prometheus_client's `with histogram.time():` and `with gauge.time():`).
//
//   {
//     auto t = ttft.time();   // histogram: observes the elapsed seconds at scope exit
//     ...                     // t.cancel() records nothing; t.observe_now() records now
//   }
#ifndef SHMETRICS_SCOPED_TIMER_HPP
#define SHMETRICS_SCOPED_TIMER_HPP

#include <time.h>   // clock_gettime (vDSO)
#include <utility>  // std::exchange

#include "config.hpp"

SHMETRICS_BEGIN_NAMESPACE

/// Records the seconds between its creation and its end into a histogram (observe) or a
/// gauge (set). Move-only; a moved-from or cancelled timer records nothing. The clock is
/// CLOCK_MONOTONIC (std::chrono::steady_clock's), read through the vDSO: two reads per
/// timer, no syscall, no allocation, no lock. Thread-safe as its handle is; one timer is
/// used by one thread.
template <class Handle>
class scoped_timer {
 public:
  scoped_timer() = default;
  explicit scoped_timer(const Handle& h) noexcept : handle_(h), start_ns_(now_ns()), armed_(true) {}
  scoped_timer(scoped_timer&& o) noexcept
      : handle_(o.handle_), start_ns_(o.start_ns_), armed_(std::exchange(o.armed_, false)) {}
  /// Records this timer's time first (if still armed), then takes over `o`'s.
  scoped_timer& operator=(scoped_timer&& o) noexcept {
    if (this != &o) {
      observe_now();
      handle_ = o.handle_;
      start_ns_ = o.start_ns_;
      armed_ = std::exchange(o.armed_, false);
    }
    return *this;
  }
  scoped_timer(const scoped_timer&) = delete;
  scoped_timer& operator=(const scoped_timer&) = delete;
  ~scoped_timer() { observe_now(); }

  /// Records the seconds elapsed so far now, instead of at the end; returns them (0 when
  /// the timer was already recorded, cancelled or moved from). Later calls record nothing.
  double observe_now() noexcept {
    if (!armed_) return 0;
    armed_ = false;
    const double s = elapsed();
    if constexpr (requires(Handle & h) { h.observe(0.0); })
      handle_.observe(s);
    else
      handle_.set(s);
    return s;
  }
  /// Records nothing (a request that failed, say).
  void cancel() noexcept { armed_ = false; }
  /// Seconds since the timer started.
  double elapsed() const noexcept { return static_cast<double>(now_ns() - start_ns_) * 1e-9; }
  /// Whether the timer will still record.
  bool armed() const noexcept { return armed_; }

 private:
  static long long now_ns() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
  }

  Handle handle_{};
  long long start_ns_ = 0;
  bool armed_ = false;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_SCOPED_TIMER_HPP
