// shmetrics::detail: the only ways the segment's cells are touched. Every access is a
// naturally aligned 8-byte atomic; names say the memory order.
#ifndef SHMETRICS_DETAIL_ATOMICS_HPP
#define SHMETRICS_DETAIL_ATOMICS_HPP

#include <atomic>   // std::atomic_ref
#include <bit>      // std::bit_cast
#include <cstdint>  // std::uint64_t

#include "../config.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

// Reader side: the mapping is PROT_READ, and std::atomic_ref<const T> is not C++20, so
// loads use the builtin (an ordinary aligned mov on x86-64 and aarch64).
SHMETRICS_ALWAYS_INLINE std::uint64_t load_relaxed(const std::uint64_t* p) noexcept {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
SHMETRICS_ALWAYS_INLINE std::uint64_t load_acquire(const std::uint64_t* p) noexcept {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

SHMETRICS_ALWAYS_INLINE void store_relaxed(std::uint64_t* p, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t>(*p).store(v, std::memory_order_relaxed);
}
SHMETRICS_ALWAYS_INLINE void store_release(std::uint64_t* p, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t>(*p).store(v, std::memory_order_release);
}

/// Single-writer increment: only the owning thread ever writes *p, so a load and a
/// store suffice (no lock-prefixed RMW). Readers see the old or the new value.
SHMETRICS_ALWAYS_INLINE void add_single_writer(std::uint64_t* p, std::uint64_t n) noexcept {
  std::atomic_ref<std::uint64_t> r(*p);
  r.store(r.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
SHMETRICS_ALWAYS_INLINE void add_single_writer(std::uint64_t* p, double v) noexcept {
  std::atomic_ref<std::uint64_t> r(*p);
  double cur = std::bit_cast<double>(r.load(std::memory_order_relaxed));
  r.store(std::bit_cast<std::uint64_t>(cur + v), std::memory_order_relaxed);
}

/// Shared-cell increments (the shared shard 0, gauges): real RMWs.
SHMETRICS_ALWAYS_INLINE void add_shared(std::uint64_t* p, std::uint64_t n) noexcept {
  std::atomic_ref<std::uint64_t>(*p).fetch_add(n, std::memory_order_relaxed);
}
inline void add_shared(std::uint64_t* p, double v) noexcept {
  std::atomic_ref<std::uint64_t> r(*p);
  std::uint64_t cur = r.load(std::memory_order_relaxed);
  while (!r.compare_exchange_weak(cur, std::bit_cast<std::uint64_t>(std::bit_cast<double>(cur) + v),
                                  std::memory_order_relaxed, std::memory_order_relaxed)) {
  }
}

}  // namespace detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_DETAIL_ATOMICS_HPP
