// shmetrics: histogram with explicit bucket bounds (one series of a histogram family).
#pragma once

#include <cstdint>  // cell pointers

#include "config.hpp"
#include "detail/atomics.hpp"
#include "detail/shards.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

struct handle_access;  // the device-side recorder's view of a handle (cuda/)

/// Index of the first bound >= v (== count for the +Inf bucket), like std::lower_bound
/// but branch-free on the data (the compare feeds a conditional move), so random
/// latencies cost no mispredictions: ~log2(count) dependent loads. Measured on vLLM's 22
/// TTFT bounds it beat std::lower_bound, a linear scan and a count-all loop.
SHMETRICS_ALWAYS_INLINE std::uint32_t bucket_index(const double* bounds, std::uint32_t count,
                                                   double v) noexcept {
  if (count == 0) return 0;
  const double* base = bounds;
  std::uint32_t n = count;
  while (n > 1) {
    std::uint32_t half = n / 2;
    base = base[half - 1] < v ? base + half : base;
    n -= half;
  }
  return static_cast<std::uint32_t>(base - bounds) + (*base < v ? 1u : 0u);
}

}  // namespace detail

/// A handle to one histogram series. observe(v) finds the first bucket with v <= bound
/// (binary search over the family's bounds), then adds 1 to that bucket and v to the
/// sum on the caller's shard. Buckets are stored non-cumulatively; the reader derives
/// the cumulative counts and `_count` from one pass, so `+Inf == _count` always holds.
///
/// Thread-safe: yes. Allocates: only on a thread's first write to this registry.
/// Fails: never; NaN observations are dropped (they would poison `_sum` forever).
class histogram {
 public:
  histogram() = default;
  histogram(detail::shard_pool* pool, std::uint64_t* cells, const double* bounds,
            std::uint32_t bound_count) noexcept
      : pool_(pool), cells_(cells), bounds_(bounds), bound_count_(bound_count) {}

  SHMETRICS_ALWAYS_INLINE void observe(double v) noexcept {
    if (v != v || cells_ == nullptr) [[unlikely]]
      return;
    std::uint32_t bucket = detail::bucket_index(bounds_, bound_count_, v);
    std::uint64_t off = detail::this_thread_shard(pool_);
    auto* base = reinterpret_cast<std::uint64_t*>(reinterpret_cast<char*>(cells_) + off);
    if (off != 0) [[likely]] {
      detail::add_single_writer(base + bucket, std::uint64_t{1});
      detail::add_single_writer(base + bound_count_ + 1, v);
    } else {
      detail::add_shared(base + bucket, std::uint64_t{1});
      detail::add_shared(base + bound_count_ + 1, v);
    }
  }

  /// The finite upper bounds (the +Inf bucket is implicit).
  const double* bounds() const noexcept { return bounds_; }
  std::uint32_t bound_count() const noexcept { return bound_count_; }
  explicit operator bool() const noexcept { return cells_ != nullptr; }

 private:
  friend struct detail::handle_access;

  detail::shard_pool* pool_ = nullptr;
  std::uint64_t* cells_ = nullptr;  // bucket 0 of this series in shard 0
  const double* bounds_ = nullptr;  // in the segment's arena (8-aligned)
  std::uint32_t bound_count_ = 0;
};

SHMETRICS_END_NAMESPACE
