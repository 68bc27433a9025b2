// The KV-block pool and its prefix cache, as vLLM v1's BlockPool accounts for them.
//
// A block is free, owned by one request, or cached: a full prompt block registered under
// the hash of its tokens (chained with the previous block's hash), shared by every
// request whose prompt starts the same way. A cached block nobody uses any more stays
// cached but counts as free, and is evicted (least recently freed first) only when a new
// block is needed; usage = 1 - free / total, so an idle engine reports 0.
//
// Residency (vLLM's --kv-cache-metrics): a sampled share of the cached blocks is followed
// from the moment it is cached to its eviction; the pool notes each one's lifetime, its
// idle time before eviction and the gaps between its reuses (prefix hits), for the
// engine to observe into vllm:kv_block_*_seconds.
#pragma once

#include <cstdint>        // counts, hashes
#include <list>           // offload tier LRU
#include <random>         // residency sampling
#include <set>            // eviction order
#include <span>           // prompt tokens
#include <unordered_map>  // hash -> block
#include <utility>        // pair
#include <vector>         // hashes

namespace engine_sim {

class kv_cache {
 public:
  kv_cache(std::uint32_t num_blocks, std::uint32_t block_size)
      : total_(num_blocks), block_size_(block_size) {}

  std::uint32_t block_size() const noexcept { return block_size_; }
  std::uint32_t total() const noexcept { return total_; }
  /// Blocks a new allocation can get (free plus evictable cached ones).
  std::uint32_t available() const noexcept {
    return total_ - uncached_used_ - static_cast<std::uint32_t>(cache_.size()) +
           static_cast<std::uint32_t>(idle_.size());
  }
  double usage() const noexcept {
    return total_ ? 1.0 - static_cast<double>(available()) / total_ : 0.0;
  }

  /// Chained hashes of the full blocks of `tokens`.
  std::vector<std::uint64_t> block_hashes(std::span<const std::uint32_t> tokens) const;
  /// The longest run of leading blocks already cached (at most `max_blocks`); each hit
  /// is referenced by the caller from now on.
  std::uint32_t acquire_prefix(std::span<const std::uint64_t> hashes, std::uint32_t max_blocks);
  /// Takes `n` uncached blocks; false (and nothing taken) if the pool cannot give them.
  bool allocate(std::uint32_t n);
  /// Turns one of the caller's uncached blocks into the cached block `hash`. If another
  /// request cached the same content meanwhile, the caller keeps its private copy
  /// (returns false, nothing changes).
  bool promote(std::uint64_t hash);
  /// Gives back `uncached` private blocks and one reference to each cached hash.
  void release(std::uint32_t uncached, std::span<const std::uint64_t> cached);

  /// Follows `sample_rate` (0..1) of the blocks cached from now on (0: none).
  void track_residency(double sample_rate, std::uint64_t seed) {
    sample_rate_ = sample_rate;
    sampler_.seed(seed);
  }
  /// The time (seconds, any steady clock) of the operations that follow.
  void set_now(double now) noexcept { now_ = now; }
  /// What the followed blocks did since the last call, in seconds; the caller clears them.
  struct residency {
    std::vector<double> lifetimes;          ///< cached -> evicted
    std::vector<double> idle_before_evict;  ///< last use -> evicted
    std::vector<double> reuse_gaps;         ///< between two uses (the first: since cached)
  };
  residency& residency_events() noexcept { return events_; }

 private:
  struct entry {
    std::uint32_t refs = 0;
    std::uint64_t idle_since = 0;  // eviction stamp while refs == 0
    double born = -1;              // followed (sampled) when >= 0: when it was cached
    double last_use = 0;           // when it was cached or last reused
  };
  std::uint32_t total_, block_size_;
  std::uint32_t uncached_used_ = 0;
  std::unordered_map<std::uint64_t, entry> cache_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> idle_;  // (stamp, hash), refs == 0
  std::uint64_t clock_ = 0;
  double sample_rate_ = 0, now_ = 0;
  std::mt19937_64 sampler_;
  residency events_;
};

/// OffloadingConnector's CPU tier: full KV blocks by hash, the least recently used
/// evicted first when it is full.
class offload_tier {
 public:
  explicit offload_tier(std::uint32_t capacity) : capacity_(capacity) {}
  /// Whether `hash` is held; a hit counts as a use.
  bool lookup(std::uint64_t hash);
  /// Stores `hash` (evicting the least recently used block when full); false when it
  /// was held already (then it counts as a use, and nothing is copied).
  bool store(std::uint64_t hash);

 private:
  std::uint32_t capacity_;
  std::list<std::uint64_t> lru_;  // most recently used first
  std::unordered_map<std::uint64_t, std::list<std::uint64_t>::iterator> where_;
};

}  // namespace engine_sim
