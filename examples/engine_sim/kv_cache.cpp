#include "kv_cache.hpp"

namespace engine_sim {

std::vector<std::uint64_t> kv_cache::block_hashes(std::span<const std::uint32_t> tokens) const {
  std::vector<std::uint64_t> out;
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64, chained through the blocks
  for (std::size_t b = 0; (b + 1) * block_size_ <= tokens.size(); ++b) {
    for (std::size_t i = b * block_size_; i < (b + 1) * block_size_; ++i) {
      h ^= tokens[i];
      h *= 1099511628211ull;
    }
    out.push_back(h);
  }
  return out;
}

std::uint32_t kv_cache::acquire_prefix(std::span<const std::uint64_t> hashes,
                                       std::uint32_t max_blocks) {
  std::uint32_t n = 0;
  for (; n < hashes.size() && n < max_blocks; ++n) {
    auto it = cache_.find(hashes[n]);
    if (it == cache_.end()) break;
    if (it->second.refs++ == 0) idle_.erase({it->second.idle_since, it->first});
    if (it->second.born >= 0) {  // a followed block, reused
      events_.reuse_gaps.push_back(now_ - it->second.last_use);
      it->second.last_use = now_;
    }
  }
  return n;
}

bool kv_cache::allocate(std::uint32_t n) {
  if (available() < n) return false;
  // Free blocks first; evict idle cached blocks only for what is missing.
  while (total_ - uncached_used_ - cache_.size() < n) {
    auto victim = idle_.begin();
    auto it = cache_.find(victim->second);
    if (it->second.born >= 0) {
      events_.lifetimes.push_back(now_ - it->second.born);
      events_.idle_before_evict.push_back(now_ - it->second.last_use);
    }
    cache_.erase(it);
    idle_.erase(victim);
  }
  uncached_used_ += n;
  return true;
}

bool kv_cache::promote(std::uint64_t hash) {
  auto [it, inserted] = cache_.try_emplace(hash);
  if (!inserted) return false;
  it->second.refs = 1;
  if (sample_rate_ > 0 && std::generate_canonical<double, 53>(sampler_) < sample_rate_)
    it->second.born = it->second.last_use = now_;
  --uncached_used_;
  return true;
}

void kv_cache::release(std::uint32_t uncached, std::span<const std::uint64_t> cached) {
  uncached_used_ -= uncached;
  for (auto h : cached) {
    auto it = cache_.find(h);
    if (it == cache_.end()) continue;
    if (--it->second.refs == 0) {
      it->second.idle_since = ++clock_;
      idle_.insert({it->second.idle_since, h});
    }
  }
}

bool offload_tier::lookup(std::uint64_t hash) {
  auto it = where_.find(hash);
  if (it == where_.end()) return false;
  lru_.splice(lru_.begin(), lru_, it->second);
  return true;
}

bool offload_tier::store(std::uint64_t hash) {
  if (lookup(hash)) return false;
  if (capacity_ == 0) return false;
  if (lru_.size() >= capacity_) {
    where_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(hash);
  where_[hash] = lru_.begin();
  return true;
}

}  // namespace engine_sim
