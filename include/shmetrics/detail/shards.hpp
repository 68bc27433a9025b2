// shmetrics::detail: per-thread value shards.
//
// Each registry has `shard_count` shards of value cells. Shard 0 is shared: gauges live
// there, and threads that find no free shard fall back to it with real RMWs. Shards
// 1..n-1 are leased to threads on their first write; the owner is the only writer, so
// its increments are a relaxed load + store (no lock prefix, no shared cache line).
//
// A thread returns its shard when it exits, with the values intact: the next thread to
// lease it keeps adding on top, so the sum a reader computes never goes backwards.
#ifndef SHMETRICS_DETAIL_SHARDS_HPP
#define SHMETRICS_DETAIL_SHARDS_HPP

#include <atomic>   // free mask
#include <bit>      // std::countr_zero
#include <cstdint>  // std::uint64_t
#include <memory>   // std::shared_ptr, enable_shared_from_this
#include <new>      // std::nothrow: the lease list survives running out of memory

#include "../config.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

class shard_pool : public std::enable_shared_from_this<shard_pool> {
 public:
  shard_pool(std::uint32_t shard_count, std::uint64_t shard_stride) noexcept
      : free_mask_(shard_count >= 64 ? ~std::uint64_t{1}
                                     : ((std::uint64_t{1} << shard_count) - 1) & ~std::uint64_t{1}),
        shard_stride_(shard_stride) {}

  /// Leases a free shard; returns its byte offset from shard 0, or 0 (the shared
  /// shard) when none is free. Lock-free; never allocates.
  std::uint64_t acquire() noexcept {
    std::uint64_t m = free_mask_.load(std::memory_order_relaxed);
    while (m != 0) {
      std::uint64_t bit = std::uint64_t{1} << std::countr_zero(m);
      // acquire: pairs with the release in release(), so the previous owner's last
      // stores happen-before our first load of the cells.
      if (free_mask_.compare_exchange_weak(m, m & ~bit, std::memory_order_acquire,
                                           std::memory_order_relaxed))
        return static_cast<std::uint64_t>(std::countr_zero(bit)) * shard_stride_;
    }
    return 0;
  }

  void release(std::uint64_t offset) noexcept {
    if (offset == 0) return;
    // release: pairs with the acquire in acquire().
    free_mask_.fetch_or(std::uint64_t{1} << (offset / shard_stride_), std::memory_order_release);
  }

  std::uint64_t free_mask() const noexcept { return free_mask_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> free_mask_;  // bit k set: shard k is free (bit 0 never set)
  std::uint64_t shard_stride_;
};

/// The calling thread's last (pool, offset) pair. Constant-initialized and trivially
/// destructible, so the hot path reads it without a TLS init guard.
///
/// `offset` is deliberately `unsigned long long`, a type distinct from the cells'
/// `std::uint64_t` (`unsigned long`) for type-based alias analysis: the compiler may then
/// keep it in a register across the hot path's stores to cells.
struct shard_cache {
  const shard_pool* pool = nullptr;
  unsigned long long offset = 0;
};
inline constinit thread_local shard_cache tls_shard_cache{};

/// Set once the calling thread's lease list (below) has been destroyed. A write after
/// that (a thread_local's destructor, or a static destructor on the main thread after
/// exit() destroyed its thread_locals) must not touch the list again: it goes to the
/// shared shard 0. Constant-initialized and trivially destructible, so it is readable
/// until the thread's storage is gone.
inline constinit thread_local bool tls_leases_gone = false;

/// The calling thread's leases; returned on thread exit. A list of nodes allocated with
/// nothrow new: the slow path below is noexcept and must survive running out of memory
/// (with or without exceptions enabled), so it never calls anything that throws.
struct shard_leases {
  struct lease {
    std::shared_ptr<shard_pool> pool;  // keeps the pool alive while we hold a shard
    std::uint64_t offset;
    lease* next;
  };
  lease* head = nullptr;
  ~shard_leases() {
    while (lease* l = head) {
      head = l->next;
      l->pool->release(l->offset);
      delete l;
    }
    tls_shard_cache = {};
    tls_leases_gone = true;
  }
};

[[gnu::noinline, gnu::cold]] inline std::uint64_t shard_offset_slow(shard_pool* pool) noexcept {
  // The shared shard 0 is valid in every pool and is written with real RMWs, so it is
  // the answer whenever this thread cannot hold a lease.
  if (tls_leases_gone) return 0;
  thread_local shard_leases tls;
  shard_leases::lease* found = nullptr;
  for (shard_leases::lease** p = &tls.head; *p;) {
    shard_leases::lease* l = *p;
    if (l->pool.get() == pool) {
      found = l;
      p = &l->next;
    } else if (l->pool.use_count() == 1) {  // its registry is gone: give the shard back
      l->pool->release(l->offset);
      *p = l->next;
      delete l;
    } else {
      p = &l->next;
    }
  }
  std::uint64_t offset = 0;
  if (found) {
    offset = found->offset;
  } else {
    offset = pool->acquire();
    // shared_from_this() does not allocate (the pool is owned by its registry).
    if (auto* l =
            new (std::nothrow) shard_leases::lease{pool->shared_from_this(), offset, tls.head})
      tls.head = l;
    else {
      pool->release(offset);  // unrecorded, it would never be given back
      offset = 0;
    }
  }
  // Cached without a lease only when 0 (no memory for the lease): offset 0 stays valid
  // even if this pool dies and another is made at its address.
  tls_shard_cache = {pool, offset};
  return offset;
}

/// Byte offset of the calling thread's shard in `pool`. Inline, no lock, no
/// allocation except on a thread's first write to a registry.
SHMETRICS_ALWAYS_INLINE std::uint64_t this_thread_shard(shard_pool* pool) noexcept {
  const shard_cache& c = tls_shard_cache;
  if (c.pool == pool) [[likely]]
    return c.offset;
  return shard_offset_slow(pool);
}

}  // namespace detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_DETAIL_SHARDS_HPP
