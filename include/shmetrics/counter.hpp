// shmetrics: counter, a monotonically increasing value (one series of a counter family).
#ifndef SHMETRICS_COUNTER_HPP
#define SHMETRICS_COUNTER_HPP

#include <cstdint>      // cell pointers
#include <limits>       // the largest finite double
#include <type_traits>  // integral overloads

#include "config.hpp"
#include "detail/atomics.hpp"
#include "detail/shards.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {
// Grants the device-side recorder (include/shmetrics/cuda/) read access to a handle's
// cells and shard pool, without making them part of the public API.
struct handle_access;
}  // namespace detail

/// A handle to one counter series, returned once by counter_family::with_labels().
/// Copy it freely; it stays valid while its registry lives.
///
///   auto c = *reg.add_counter({.name = "requests_total", .help = "Requests."})->with_labels({});
///   c.inc();
///
/// Thread-safe: yes, any number of threads; each writes its own shard. Allocates: only on
/// a thread's first write to this registry (its shard lease). Fails: never; negative,
/// NaN and infinite increments are ignored (a counter never goes down, and one +Inf
/// would leave it +Inf for good).
class counter {
 public:
  counter() = default;  // an inert handle: writes go nowhere
  counter(detail::shard_pool* pool, std::uint64_t* cell) noexcept : pool_(pool), cell_(cell) {}

  /// Adds 1. Inline; one integer load and store on the caller's shard.
  SHMETRICS_ALWAYS_INLINE void inc() noexcept { add_integer(1); }

  /// Adds n (integers of any type; negative values are ignored).
  template <class Int>
  requires std::is_integral_v<Int> SHMETRICS_ALWAYS_INLINE void add(Int n) noexcept {
    if constexpr (std::is_signed_v<Int>) {
      if (n < 0) [[unlikely]]
        return;
    }
    add_integer(static_cast<std::uint64_t>(n));
  }

  /// Adds v (>= 0 and finite; negative, NaN and +Inf are ignored). Whole numbers below
  /// 2^53 take the integer cell (exact, and the cheapest chain); fractions the f64 cell.
  SHMETRICS_ALWAYS_INLINE void add(double v) noexcept {
    if (!(v >= 0.0)) [[unlikely]]
      return;
    auto n = static_cast<std::uint64_t>(v < 9007199254740992.0 ? v : 0.0);
    if (static_cast<double>(n) == v) [[likely]]
      add_integer(n);
    else
      add_fraction(v);
  }

  explicit operator bool() const noexcept { return cell_ != nullptr; }

 private:
  friend struct detail::handle_access;

  SHMETRICS_ALWAYS_INLINE std::uint64_t* shard_cell(std::uint64_t& off) const noexcept {
    off = detail::this_thread_shard(pool_);
    return reinterpret_cast<std::uint64_t*>(reinterpret_cast<char*>(cell_) + off);
  }
  SHMETRICS_ALWAYS_INLINE void add_integer(std::uint64_t n) noexcept {
    if (cell_ == nullptr) [[unlikely]]
      return;
    std::uint64_t off;
    std::uint64_t* p = shard_cell(off);
    if (off != 0) [[likely]]
      detail::add_single_writer(p, n);
    else
      detail::add_shared(p, n);
  }
  void add_fraction(double v) noexcept {
    // +Inf gets here (it is not a whole number below 2^53); checked here rather than in
    // add() so the integer path pays no extra compare.
    if (!(v <= std::numeric_limits<double>::max()) || cell_ == nullptr) [[unlikely]]
      return;
    std::uint64_t off;
    std::uint64_t* p = shard_cell(off) + 1;
    if (off != 0)
      detail::add_single_writer(p, v);
    else
      detail::add_shared(p, v);
  }

  detail::shard_pool* pool_ = nullptr;
  std::uint64_t* cell_ = nullptr;  // shard 0: cell 0 u64 whole part, cell 1 f64 fractional part
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_COUNTER_HPP
