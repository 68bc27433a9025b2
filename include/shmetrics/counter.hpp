// shmetrics: counter, a monotonically increasing value (one series of a counter family).
#pragma once

#include <cstdint>  // cell pointers

#include "config.hpp"
#include "detail/atomics.hpp"
#include "detail/shards.hpp"

SHMETRICS_BEGIN_NAMESPACE

/// A handle to one counter series, returned once by counter_family::with_labels().
/// Copy it freely; it stays valid while its registry lives.
///
///   auto c = *reg.add_counter({.name = "requests_total", .help = "Requests."})->with_labels({});
///   c.inc();
///
/// Thread-safe: yes, any number of threads; each writes its own shard. Allocates: only on
/// a thread's first write to this registry (its shard lease). Fails: never; negative and
/// NaN increments are ignored (a counter never goes down).
class counter {
 public:
  counter() = default;  // an inert handle: writes go nowhere
  counter(detail::shard_pool* pool, std::uint64_t* cell) noexcept : pool_(pool), cell_(cell) {}

  /// Adds 1. Inline; one load and one store on the caller's shard.
  SHMETRICS_ALWAYS_INLINE void inc() noexcept { add(1.0); }

  /// Adds v (>= 0; anything else is ignored).
  SHMETRICS_ALWAYS_INLINE void add(double v) noexcept {
    if (!(v >= 0.0) || cell_ == nullptr) [[unlikely]]
      return;
    std::uint64_t off = detail::this_thread_shard(pool_);
    auto* p = reinterpret_cast<std::uint64_t*>(reinterpret_cast<char*>(cell_) + off);
    if (off != 0) [[likely]]
      detail::add_single_writer(p, v);
    else
      detail::add_shared(p, v);
  }

  explicit operator bool() const noexcept { return cell_ != nullptr; }

 private:
  detail::shard_pool* pool_ = nullptr;
  std::uint64_t* cell_ = nullptr;  // the series' cell in shard 0
};

SHMETRICS_END_NAMESPACE
