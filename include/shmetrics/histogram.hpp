// shmetrics: histogram with explicit bucket bounds (one series of a histogram family).
#ifndef SHMETRICS_HISTOGRAM_HPP
#define SHMETRICS_HISTOGRAM_HPP

#include <cstdint>  // cell pointers

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>  // bucket search: two-lane double compares
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "config.hpp"
#include "detail/atomics.hpp"
#include "detail/shards.hpp"
#include "scoped_timer.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

struct handle_access;  // the device-side recorder's view of a handle (cuda/)

/// How many of the 8 bounds at w[0..7] are < v. SSE2 (every x86-64) or NEON (every
/// aarch64) compares two doubles at once; elsewhere eight scalar compares. No branch.
SHMETRICS_ALWAYS_INLINE std::uint32_t count_below_8(const double* w, double v) noexcept {
#if defined(__SSE2__) || defined(_M_X64)
  const __m128d vv = _mm_set1_pd(v);
  // Each compare gives -1 (all ones) per lane where bound < v; summing the masks as
  // 64-bit integers counts them negatively.
  __m128i a = _mm_add_epi64(_mm_castpd_si128(_mm_cmplt_pd(_mm_loadu_pd(w), vv)),
                            _mm_castpd_si128(_mm_cmplt_pd(_mm_loadu_pd(w + 2), vv)));
  __m128i b = _mm_add_epi64(_mm_castpd_si128(_mm_cmplt_pd(_mm_loadu_pd(w + 4), vv)),
                            _mm_castpd_si128(_mm_cmplt_pd(_mm_loadu_pd(w + 6), vv)));
  a = _mm_add_epi64(a, b);
  a = _mm_add_epi64(a, _mm_unpackhi_epi64(a, a));
  return static_cast<std::uint32_t>(-_mm_cvtsi128_si64(a));
#elif defined(__aarch64__) && defined(__ARM_NEON)
  const float64x2_t vv = vdupq_n_f64(v);
  uint64x2_t a = vaddq_u64(vcltq_f64(vld1q_f64(w), vv), vcltq_f64(vld1q_f64(w + 2), vv));
  uint64x2_t b = vaddq_u64(vcltq_f64(vld1q_f64(w + 4), vv), vcltq_f64(vld1q_f64(w + 6), vv));
  return static_cast<std::uint32_t>(-vaddvq_u64(vaddq_u64(a, b)));
#else
  std::uint32_t n = 0;
  for (int i = 0; i < 8; ++i)
    n += w[i] < v ? 1u : 0u;
  return n;
#endif
}

/// Index of the first bound >= v (== count for the +Inf bucket), as std::lower_bound.
///
/// Observed latencies are random, so a binary search's branches mispredict about once
/// per level: on vLLM's 22 TTFT bounds it cost 23 ns per observation with random values
/// against 5 ns with a walk (GCC turns the "branch-free" ternary into a jump). This
/// search has no data-dependent branch: it counts the bounds below v among every 8th
/// bound (independent compares, no chain), which picks a window of 8 that must hold the
/// answer, then counts within the window with 4 two-lane compares. 4.4 ns random, 4.7
/// ns walk on the same machine (tools: bench/, docs/performance.md). Families with more
/// than 64 bounds first halve the range (mask arithmetic, no branch) down to 64.
SHMETRICS_ALWAYS_INLINE std::uint32_t bucket_index(const double* bounds, std::uint32_t count,
                                                   double v) noexcept {
  if (count < 8) {
    std::uint32_t n = 0;
    for (std::uint32_t i = 0; i < count; ++i)
      n += bounds[i] < v ? 1u : 0u;
    return n;
  }
  // Invariant: every bound before bounds[lo] is < v and the answer is in [lo, lo + n].
  std::uint32_t lo = 0, n = count;
  while (n > 64)
    [[unlikely]] {
      std::uint32_t half = n / 2;
      lo += half & (0u - static_cast<std::uint32_t>(bounds[lo + half - 1] < v));
      n -= half;
    }
  // Checkpoint j (bound lo + 8j - 1) below v means the whole j-th block of 8 is below v;
  // the blocks are sorted, so the checkpoints below v are a prefix and their number k
  // says the answer is in block k (or at the end).
  std::uint32_t k = 0;
  for (std::uint32_t j = 8; j <= n; j += 8)
    k += bounds[lo + j - 1] < v ? 1u : 0u;
  // The window of 8 starting at block k, moved back to end at the last bound; bounds
  // before the window are all below v, so they count in full.
  std::uint32_t start = 8 * k < n - 8 ? 8 * k : n - 8;
  return lo + start + count_below_8(bounds + lo + start, v);
}

}  // namespace detail

/// A handle to one histogram series. observe(v) finds the first bucket with v <= bound
/// (a branch-free count over the family's bounds, bucket_index above), then adds 1 to that bucket
/// and v to the sum on the caller's shard. Buckets are stored non-cumulatively; the reader derives
/// the cumulative counts and `_count` from one pass, so `+Inf == _count` always holds.
///
/// Thread-safe: yes. Allocates: only on a thread's first write to this registry.
/// Fails: never; NaN observations are dropped (they would poison `_sum` forever). +-Inf
/// are counted as prometheus_client counts them (and as the device path does): +Inf in
/// the +Inf bucket, -Inf in the first, and `_sum` becomes infinite from then on (NaN
/// after both). Pass finite values if `_sum` matters.
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

  /// A timer that observes the seconds its scope took, when it ends (as prometheus_client's
  /// `with histogram.time():`): `auto t = h.time();`. Two CLOCK_MONOTONIC vDSO reads and
  /// one observe(); see scoped_timer (cancel(), observe_now()).
  [[nodiscard]] scoped_timer<histogram> time() const noexcept {
    return scoped_timer<histogram>(*this);
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

#endif  // SHMETRICS_HISTOGRAM_HPP
