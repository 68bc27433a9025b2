#include "engine.hpp"

#include <algorithm>  // min, max
#include <chrono>     // clock, sleep
#include <cmath>      // lognormal clamp

namespace engine_sim {

using shmetrics::finish_reason;

std::uint32_t request::total_generated() const {
  std::uint32_t t = 0;
  for (auto g : generated)
    t += g;
  return t;
}

std::uint32_t request::active_choices() const {
  std::uint32_t a = 0;
  for (std::size_t i = 0; i < generated.size(); ++i)
    a += generated[i] < target_len[i];
  return a;
}

namespace {
// The engine clock's origin: the first call, early in the process.
std::chrono::steady_clock::time_point clock_start() {
  static const auto start = std::chrono::steady_clock::now();
  return start;
}
}  // namespace

double engine::now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - clock_start()).count();
}

engine::engine(const engine_config& cfg, shmetrics::vllm_metrics* metrics, std::size_t engine_index)
    : cfg_(cfg),
      metrics_(metrics),
      index_(engine_index),
      kv_(cfg.num_gpu_blocks, cfg.block_size),
      rng_(cfg.seed * 1000003 + engine_index),
      spec_rng_(cfg.seed * 1000003 + engine_index + 0x9E3779B9u),
      nixl_rng_(cfg.seed * 1000003 + engine_index + 0x85EBCA6Bu) {
  // This engine's child of a catalog family without a typed call (inert without metrics).
  auto family = [&](const char* key) { return metrics ? metrics->family(key) : nullptr; };
  auto ctr = [&](const char* key, std::size_t child = 0) {
    auto* b = family(key);
    return b ? b->ctr(engine_index, child) : shmetrics::counter{};
  };
  auto hst = [&](const char* key, std::size_t child = 0) {
    auto* b = family(key);
    return b ? b->hst(engine_index, child) : shmetrics::histogram{};
  };
  auto gge = [&](const char* key) {
    auto* b = family(key);
    return b ? b->gge(engine_index) : shmetrics::gauge{};
  };
  if (cfg.kv_cache_metrics) {
    kv_.track_residency(cfg.kv_cache_metrics_sample, cfg.seed * 1000003 + engine_index + 7);
    block_lifetime_ = hst("vllm/kv_block_lifetime_seconds");
    block_idle_before_evict_ = hst("vllm/kv_block_idle_before_evict_seconds");
    block_reuse_gap_ = hst("vllm/kv_block_reuse_gap_seconds");
  }
  if (cfg.offload_cpu_blocks > 0) {
    offload_ = std::make_unique<offload_tier>(cfg.offload_cpu_blocks);
    // transfer_type children of the deprecated families: CPU_to_GPU (0), GPU_to_CPU (1).
    offload_load_ = {ctr("vllm/kv_offload_load_bytes_total"),
                     ctr("vllm/kv_offload_load_time_total"),
                     ctr("vllm/kv_offload_total_bytes_total", 0),
                     ctr("vllm/kv_offload_total_time_total", 0),
                     hst("vllm/kv_offload_load_size"),
                     hst("vllm/kv_offload_size", 0)};
    offload_store_ = {
        ctr("vllm/kv_offload_store_bytes_total"),    ctr("vllm/kv_offload_store_time_total"),
        ctr("vllm/kv_offload_total_bytes_total", 1), ctr("vllm/kv_offload_total_time_total", 1),
        hst("vllm/kv_offload_store_size"),           hst("vllm/kv_offload_size", 1)};
    offload_usage_ = gge("vllm/kv_offload_cpu_cache_usage_perc");
    offload_write_usage_ = gge("vllm/kv_offload_cpu_cache_write_usage_perc");
    offload_read_usage_ = gge("vllm/kv_offload_cpu_cache_read_usage_perc");
    offload_lookup_delay_ = hst("vllm/kv_offload_lookup_sync_delay_seconds");
  }
  if (cfg.nixl) {
    nixl_xfer_time_ = hst("vllm/nixl_xfer_time_seconds");
    nixl_post_time_ = hst("vllm/nixl_post_time_seconds");
    nixl_bytes_ = hst("vllm/nixl_bytes_transferred");
    nixl_descriptors_ = hst("vllm/nixl_num_descriptors");
    nixl_failed_transfers_ = ctr("vllm/nixl_num_failed_transfers_total");
    nixl_failed_notifications_ = ctr("vllm/nixl_num_failed_notifications_total");
    nixl_expired_ = ctr("vllm/nixl_num_kv_expired_reqs_total");
  }
  thread_ = std::thread([this] { run(); });
}

engine::~engine() {
  {
    std::lock_guard lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void engine::submit(std::shared_ptr<request> r) {
  // Output lengths are drawn here, from the engine's seeded generator, so a run with the
  // same seed and request order gives the same lengths. ignore_eos: always max_tokens.
  std::uint32_t room = cfg_.max_model_len > r->prompt.size()
                           ? cfg_.max_model_len - static_cast<std::uint32_t>(r->prompt.size())
                           : 1;
  std::uint32_t cap = std::min(r->max_tokens, room);
  r->outputs.assign(r->n, {});
  r->output_reasons.assign(r->n, finish_reason::length);
  r->generated.assign(r->n, 0);
  r->target_len.assign(r->n, cap);
  load_.fetch_add(1, std::memory_order_relaxed);
  inflight_seqs_.fetch_add(r->n, std::memory_order_relaxed);
  prefill_tokens_.fetch_add(r->prompt.size(), std::memory_order_relaxed);
  r->owner = this;
  {
    std::lock_guard lk(m_);
    if (!r->ignore_eos) {
      // Chat answers: a long-tailed length with a median of ~120 tokens.
      std::lognormal_distribution<double> len(std::log(120.0), 0.8);
      for (std::uint32_t i = 0; i < r->n; ++i) {
        double d = std::max(1.0, std::round(len(rng_)));
        if (d < cap) {
          r->target_len[i] = static_cast<std::uint32_t>(d);
          r->output_reasons[i] = finish_reason::stop;
        }
      }
    }
    incoming_.push_back(std::move(r));
  }
  cv_.notify_all();
}

void engine::abort(const std::shared_ptr<request>& r) {
  r->abort_requested.store(true, std::memory_order_relaxed);
  {
    std::lock_guard lk(m_);
    abort_pending_ = true;
  }
  cv_.notify_all();
}

void engine::pause(bool abort_existing, bool all) {
  {
    std::lock_guard lk(m_);
    abort_all_ = abort_all_ || abort_existing;
    abort_pending_ = true;  // wakes the engine thread
    pause_ = all ? pause_state::paused_all : pause_state::paused_new;
  }
  cv_.notify_all();
}

void engine::resume() {
  {
    std::lock_guard lk(m_);
    pause_ = pause_state::unpaused;
    abort_pending_ = true;
  }
  cv_.notify_all();
}

void engine::run() {
  bool stalled = false;  // the last step could schedule nothing: wait for a change
  for (;;) {
    {
      std::unique_lock lk(m_);
      auto ready = [&] {
        return stop_ || abort_pending_ || !incoming_.empty() ||
               (!running_.empty() && pause_ != pause_state::paused_all) ||
               (!waiting_.empty() && !stalled) || !read_done_.empty();
      };
      if (!ready() && waiting_.empty() && pulling_.empty()) {
        lk.unlock();
        record_idle();  // the gauges drop to 0 as soon as the engine has nothing to do
        lk.lock();
      }
      // NIXL pulls complete and kept KV expires on time, with or without other work.
      double deadline = nixl_deadline();
      if (deadline == HUGE_VAL)
        cv_.wait(lk, ready);
      else
        cv_.wait_until(
            lk,
            clock_start() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                std::chrono::duration<double>(deadline)),
            ready);
      if (stop_) break;
      double t = now();
      for (auto& r : incoming_) {
        r->queued_ts = t;
        mm_cache_lookup(*r);
        enqueue(std::move(r), false);
      }
      incoming_.clear();
      abort_pending_ = false;
      paused_ = pause_;
      if (abort_all_) {  // sleep with mode=abort: what the engine holds now
        abort_all_ = false;
        auto mark = [](auto& q) {
          for (auto& r : q)
            r->abort_requested.store(true, std::memory_order_relaxed);
        };
        mark(running_);
        mark(waiting_);
        mark(pulling_);
      }
    }
    nixl_tick();
    stalled = !step();
  }
  // Shutting down: nobody waits forever on a request the engine will not finish.
  for (auto& r : running_)
    finish(r, finish_reason::abort);
  for (auto& r : waiting_)
    finish(r, finish_reason::abort);
  for (auto& r : pulling_)
    finish(r, finish_reason::abort);
  running_.clear();
  waiting_.clear();
  pulling_.clear();
  {
    std::lock_guard lk(m_);
    for (auto& r : incoming_)
      finish(r, finish_reason::abort);
    incoming_.clear();
  }
}

void engine::collect_aborts() {
  auto sweep = [&](auto& q) {
    for (auto it = q.begin(); it != q.end();) {
      if ((*it)->abort_requested.load(std::memory_order_relaxed)) {
        auto r = *it;
        it = q.erase(it);
        finish(r, finish_reason::abort);
      } else {
        ++it;
      }
    }
  };
  sweep(running_);
  sweep(waiting_);
  sweep(pulling_);  // its blocks go now; the prefill side's expire (no notice is sent)
}

bool engine::grow(request& r, std::uint32_t new_tokens) {
  std::uint32_t bs = cfg_.block_size;
  std::uint32_t need = (r.computed + new_tokens + bs - 1) / bs;
  if (need <= r.blocks) return true;
  if (!kv_.allocate(need - r.blocks)) return false;
  r.blocks = need;
  return true;
}

void engine::free_blocks(request& r) {
  kv_.release(r.blocks - static_cast<std::uint32_t>(r.cached.size()), r.cached);
  r.blocks = 0;
  r.cached.clear();
  r.hashed_upto = 0;
  r.computed = 0;
  r.external = 0;
  r.encoded = 0;  // recomputed, images included
}

// Into the waiting queue: fcfs, at the back (a preempted request: at the front, first
// to come back); priority, at its place by (priority, arrival), after its equals.
void engine::enqueue(std::shared_ptr<request> r, bool front) {
  if (!cfg_.priority_policy) {
    if (front)
      waiting_.push_front(std::move(r));
    else
      waiting_.push_back(std::move(r));
    return;
  }
  auto key = [](const request& x) { return std::pair(x.priority, x.arrival); };
  auto at = std::upper_bound(waiting_.begin(), waiting_.end(), r,
                             [&](const auto& a, const auto& b) { return key(*a) < key(*b); });
  waiting_.insert(at, std::move(r));
}

// The running request to preempt when the pool is out of blocks: fcfs, the newest; priority,
// the one with the largest (priority, arrival), i.e. the lowest priority, newest of those.
std::size_t engine::preemption_victim() const {
  if (!cfg_.priority_policy) return running_.size() - 1;
  std::size_t v = 0;
  for (std::size_t i = 1; i < running_.size(); ++i)
    if (std::pair(running_[i]->priority, running_[i]->arrival) >=
        std::pair(running_[v]->priority, running_[v]->arrival))
      v = i;
  return v;
}

// The multimodal processor cache, looked up once per image as a request arrives (vLLM
// looks its P0 cache up while processing the request): a hit refreshes the entry, a miss
// stores it, evicting the least recently used ones.
void engine::mm_cache_lookup(const request& r) {
  if (cfg_.mm_cache_bytes <= 0) return;
  for (const mm_item& img : r.images) {
    ++mm_queries_;
    if (auto it = mm_index_.find(img.hash); it != mm_index_.end()) {
      ++mm_hits_;
      mm_lru_.splice(mm_lru_.begin(), mm_lru_, it->second);
      continue;
    }
    double bytes = img.tokens * cfg_.mm_item_bytes_per_token;
    if (bytes > cfg_.mm_cache_bytes) continue;  // never fits: not stored
    while (mm_cached_bytes_ + bytes > cfg_.mm_cache_bytes) {
      mm_cached_bytes_ -= mm_lru_.back().second;
      mm_index_.erase(mm_lru_.back().first);
      mm_lru_.pop_back();
    }
    mm_lru_.emplace_front(img.hash, bytes);
    mm_index_[img.hash] = mm_lru_.begin();
    mm_cached_bytes_ += bytes;
  }
}

// The vision encoder's time for the images whose placeholders start in the `tokens` this
// step computes for `r` (an image wholly in the prefix cache is skipped).
double engine::encoder_seconds(request& r, std::uint32_t tokens) {
  double s = 0;
  const std::uint32_t end = r.computed + tokens;
  for (; r.encoded < r.images.size() && r.images[r.encoded].offset < end; ++r.encoded) {
    const mm_item& img = r.images[r.encoded];
    if (img.offset + img.tokens > r.computed)
      s += cfg_.encoder_base_s + cfg_.encoder_per_token_s * img.tokens;
  }
  return s;
}

void engine::preempt(request& r) {
  // vLLM v1 preempts by recompute: the KV is dropped and rebuilt when it is rescheduled.
  free_blocks(r);
  ++r.num_preemptions;
  ++step_preemptions_;
}

void engine::admit_prefix(request& r, shmetrics::step_stats& st) {
  if (!cfg_.enable_prefix_caching) return;
  if (r.prompt_hashes.empty()) r.prompt_hashes = kv_.block_hashes(r.prompt);
  std::uint32_t total = static_cast<std::uint32_t>(r.prompt.size()) + r.total_generated();
  // At least the last token is computed, so the step produces logits (vLLM's rule).
  std::uint32_t max_blocks = (total - 1) / cfg_.block_size;
  std::uint32_t hits = kv_.acquire_prefix(r.prompt_hashes, max_blocks);
  r.cached.assign(r.prompt_hashes.begin(), r.prompt_hashes.begin() + hits);
  r.blocks = hits;
  r.hashed_upto = hits;
  r.computed = hits * cfg_.block_size;
  st.prefix_cache_queries += total;
  st.prefix_cache_hits += r.computed;
  // The offload tier may hold the blocks that follow: they are loaded, not computed.
  std::uint32_t loaded = 0;
  if (offload_) {
    while (hits + loaded < max_blocks && offload_->lookup(r.prompt_hashes[hits + loaded]))
      ++loaded;
    // One lookup call: the blocks it hit and the miss that ended it (if any).
    std::uint32_t probed = loaded + (hits + loaded < max_blocks ? 1 : 0);
    offload_lookup_delay_.observe(cfg_.offload_lookup_base_s +
                                  cfg_.offload_lookup_per_block_s * probed);
  }
  r.external = loaded * cfg_.block_size;
  r.computed += r.external;
  if (!r.started) {
    r.num_cached_tokens = r.computed;
    r.num_external_tokens = r.external;
  }
}

void engine::cache_full_blocks(request& r) {
  if (!cfg_.enable_prefix_caching) return;
  std::uint32_t full = std::min<std::uint32_t>(r.computed / cfg_.block_size,
                                               static_cast<std::uint32_t>(r.prompt_hashes.size()));
  for (; r.hashed_upto < full; ++r.hashed_upto) {
    if (kv_.promote(r.prompt_hashes[r.hashed_upto]))
      r.cached.push_back(r.prompt_hashes[r.hashed_upto]);
    // A newly computed (or loaded) full block goes to the offload tier, unless held.
    if (offload_ && offload_->store(r.prompt_hashes[r.hashed_upto])) ++step_stored_blocks_;
  }
}

bool engine::step() {
  collect_aborts();
  if (running_.empty() && waiting_.empty()) return false;
  if (paused_ == pause_state::paused_all) return false;  // sleeping, mode=keep

  shmetrics::step_stats st;
  ttfts_.clear();
  itls_.clear();
  step_preemptions_ = 0;
  spec_accepted_per_pos_.assign(cfg_.num_speculative_tokens, 0);
  struct item {
    std::shared_ptr<request> r;
    std::uint32_t tokens;
    std::uint32_t drafts;  // draft tokens verified with the sequence's next token
  };
  std::vector<item> batch;
  std::uint32_t budget = cfg_.max_num_batched_tokens;
  double t_sched = now();
  kv_.set_now(t_sched);

  // Running requests first, oldest first; when the pool is out of blocks the newest
  // running request is preempted (possibly this one).
  for (std::size_t i = 0; i < running_.size() && budget > 0;) {
    auto& r = *running_[i];
    std::uint32_t need =
        static_cast<std::uint32_t>(r.prompt.size()) + r.total_generated() - r.computed;
    std::uint32_t tokens = std::min(need, budget);
    // A decoding sequence (its prompt done, one new token per choice to compute) also
    // verifies k draft tokens per choice, when the token budget has room for them.
    std::uint32_t drafts = 0;
    if (cfg_.num_speculative_tokens > 0 && r.first_token_ts != 0 && need <= r.n) {
      drafts = cfg_.num_speculative_tokens * r.active_choices();
      if (drafts > budget - tokens) drafts = 0;
    }
    bool self_preempted = false;
    while (!grow(r, tokens + drafts)) {
      std::size_t v = preemption_victim();
      auto victim = running_[v];
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(v));
      if (v < i) {  // priority: already in this step's batch; it leaves it, as in vLLM
        auto it =
            std::find_if(batch.begin(), batch.end(), [&](const item& b) { return b.r == victim; });
        budget += it->tokens + it->drafts;
        batch.erase(it);
        --i;
      }
      preempt(*victim);
      enqueue(victim, true);
      if (victim.get() == &r) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    batch.push_back({running_[i], tokens, drafts});
    budget -= tokens + drafts;
    ++i;
  }
  // Then waiting requests, unless this step had to preempt. With LoRA, at most max_loras
  // adapters in the batch: a request for another one is skipped this step, and the
  // queue goes on behind it (vLLM's scheduler).
  lora_scheduled_.clear();
  for (auto& r : running_)
    note_lora(r->lora);
  // Paused (sleep mode): the queue waits for wake_up.
  for (std::size_t w = 0; paused_ == pause_state::unpaused && step_preemptions_ == 0 &&
                          budget > 0 && running_.size() < cfg_.max_num_seqs &&
                          w < waiting_.size();) {
    auto r = waiting_[w];
    if (!lora_fits(r->lora)) {
      ++w;
      continue;
    }
    // A request back from a NIXL pull holds its blocks already.
    if (r->blocks == 0) admit_prefix(*r, st);
    std::uint32_t need =
        static_cast<std::uint32_t>(r->prompt.size()) + r->total_generated() - r->computed;
    std::uint32_t tokens = std::min(need, budget);
    if (cfg_.nixl && r->kv_params.pull()) {
      // Decode side of P/D: blocks for the whole prompt, filled by a pull (no compute,
      // no token budget); the request waits for it off the queue.
      if (!start_pull(*r, st)) break;
      waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(w));
      pulling_.push_back(r);
      continue;
    }
    if (!grow(*r, tokens)) {
      free_blocks(*r);
      break;
    }
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(w));
    note_lora(r->lora);
    if (offload_) {  // the connector was asked for the whole sequence (vLLM's stats)
      st.external_prefix_cache_queries += r->prompt.size() + r->total_generated();
      st.external_prefix_cache_hits += r->external;
      step_loaded_blocks_ += r->external / cfg_.block_size;
    }
    if (!r->started) {
      r->started = true;
      r->scheduled_ts = t_sched;
    }
    running_.push_back(r);
    batch.push_back({r, tokens, 0});
    budget -= tokens;
  }
  if (batch.empty()) {
    // Nothing fits and nothing runs or will give blocks back (a NIXL pull, KV kept for a
    // decode instance): the head request can never fit the pool.
    bool refused = paused_ == pause_state::unpaused && running_.empty() && !waiting_.empty() &&
                   pulling_.empty() && held_.empty();
    if (refused) {
      auto r = waiting_.front();
      waiting_.pop_front();
      finish(r, finish_reason::error);
    }
    // A step whose batch emptied by preemption (the only running request preempted
    // itself) still counts it, with the next step that has outputs.
    pending_preemptions_ += step_preemptions_;
    if (cfg_.nixl) record_scheduler_only(st);  // pulls started: queries, the waiting gauge
    // Progress when the head was refused or preempted (the next step may admit); else
    // wait for a pull, a notice, an expiry or a new request.
    return refused || step_preemptions_ > 0;
  }

  // The simulated forward pass.
  std::uint32_t prefill_tokens = 0;
  for (auto& b : batch)  // verifying drafts costs like a short prefill
    prefill_tokens += b.tokens + b.drafts > 1 ? b.tokens + b.drafts : 0;
  double dt = cfg_.step_base_s + cfg_.per_seq_s * static_cast<double>(batch.size()) +
              cfg_.per_prefill_token_s * prefill_tokens;
  for (auto& b : batch)  // the vision encoder runs before the forward pass that needs it
    dt += encoder_seconds(*b.r, b.tokens);
  // The step waits for the KV it loads from the offload tier.
  dt += offload_bytes(step_loaded_blocks_) / cfg_.offload_bytes_per_s;
  std::this_thread::sleep_for(std::chrono::duration<double>(dt * cfg_.time_scale));

  double t = now();
  std::vector<std::shared_ptr<request>> done;
  bool outputs = false;
  for (auto& b : batch) {
    auto& r = *b.r;
    r.computed += b.tokens;
    cache_full_blocks(r);
    if (r.computed == r.prompt.size() + r.total_generated()) {
      emit(r, t, b.drafts > 0, st);
      outputs = true;
      if (r.active_choices() == 0) done.push_back(b.r);
    }
  }
  for (auto& r : done) {
    running_.erase(std::find(running_.begin(), running_.end(), r));
    // Before the usage gauge, so a finished batch reports 0 at once (unless its KV waits
    // for a decode instance).
    if (!hold_for_decode(*r)) free_blocks(*r);
  }

  scheduler_stats(st);
  // vLLM records IterationStats only for a step with outputs (a prefill chunk that
  // emitted nothing leaves vllm:iteration_tokens_total alone); its preemptions are
  // counted with the next step that has outputs.
  st.has_outputs = outputs;
  pending_preemptions_ += step_preemptions_;
  if (outputs) {
    st.num_preempted_reqs = pending_preemptions_;
    pending_preemptions_ = 0;
  }
  st.time_to_first_tokens = ttfts_;
  st.inter_token_latencies = itls_;
  st.spec_accepted_per_pos = spec_accepted_per_pos_;
  if (metrics_) metrics_->record_step(index_, st);
  record_residency();
  record_offload();
  idle_recorded_ = false;
  // Finished requests are recorded after the step's tokens, so a client that has its
  // response finds every counter already including it.
  for (auto& r : done)
    finish(r, done_reason(*r));
  return true;
}

// A request that generated all it will: stop if any choice stopped, else length.
finish_reason engine::done_reason(const request& r) const {
  for (std::size_t i = 0; i < r.n; ++i)
    if (r.output_reasons[i] == finish_reason::stop) return finish_reason::stop;
  return finish_reason::length;
}

// The step's SchedulerStats: running, waiting (pulls from a prefill instance included),
// KV usage and the LoRA adapter sets.
void engine::scheduler_stats(shmetrics::step_stats& st) {
  st.num_running_reqs = static_cast<std::uint32_t>(running_.size());
  running_count_.store(st.num_running_reqs, std::memory_order_relaxed);
  st.num_waiting_reqs = static_cast<std::uint32_t>(waiting_.size() + pulling_.size());
  st.kv_cache_usage = kv_.usage();
  lora_stats(st);
  // A request waiting for its KV from a prefill instance is deferred, not waiting for
  // capacity: vLLM keeps it in skipped_waiting (WAITING_FOR_REMOTE_KVS).
  st.num_waiting_deferred += static_cast<std::uint32_t>(pulling_.size());
  st.mm_cache_queries = mm_queries_;
  st.mm_cache_hits = mm_hits_;
  mm_queries_ = mm_hits_ = 0;
}

// A step that ran nothing still updates vLLM's SchedulerStats (as its idle updates do).
void engine::record_scheduler_only(shmetrics::step_stats& st) {
  st.has_outputs = false;
  scheduler_stats(st);
  if (metrics_) metrics_->record_step(index_, st);
  idle_recorded_ = false;
}

// Draws how many of the k drafts of one sequence the target accepts (the leading run of
// accepted positions) and counts the draft in the step's SpecDecodingStats.
std::uint32_t engine::accepted_drafts(shmetrics::step_stats& st) {
  const std::uint32_t k = cfg_.num_speculative_tokens;
  std::bernoulli_distribution accept(cfg_.spec_acceptance_rate);
  std::uint32_t a = 0;
  while (a < k && accept(spec_rng_))
    ++spec_accepted_per_pos_[a++];
  st.spec_num_drafts += 1;
  st.spec_num_draft_tokens += k;
  st.spec_num_accepted_tokens += a;
  return a;
}

void engine::emit(request& r, double t, bool drafted, shmetrics::step_stats& st) {
  bool first = r.first_token_ts == 0;
  std::uint32_t produced = 0;
  {
    std::lock_guard lk(r.m);
    for (std::size_t i = 0; i < r.n; ++i) {
      if (r.generated[i] >= r.target_len[i]) continue;
      // The sampled token, plus the accepted drafts before it when the step verified
      // drafts; their KV was computed in this step, the new token's is not yet.
      std::uint32_t accepted = drafted ? accepted_drafts(st) : 0;
      std::uint32_t count = std::min(1 + accepted, r.target_len[i] - r.generated[i]);
      r.computed += count - 1;
      for (std::uint32_t j = 0; j < count; ++j) {
        // The token depends on the request, the choice and the position: deterministic.
        std::uint32_t id = static_cast<std::uint32_t>(
            (std::hash<std::string>{}(r.id) + i * 7919 + r.generated[i] * 104729) % 31991);
        r.outputs[i].push_back(id);
        ++r.generated[i];
        ++produced;
      }
    }
  }
  r.cv.notify_all();
  st.num_generation_tokens += produced;
  if (first) {
    r.first_token_ts = t;
    prefill_tokens_.fetch_sub(r.prompt.size(), std::memory_order_relaxed);
    ttfts_.push_back(t - r.arrival);
    st.num_prompt_tokens += r.prompt.size();
    // A pulled prompt counts its recomputed last token as cached (vLLM's PromptTokenStats).
    st.prompt_tokens_local_cache_hit +=
        r.num_cached_tokens + (r.pulled ? 1 : 0) - r.num_external_tokens;
    st.prompt_tokens_external_kv_transfer += r.num_external_tokens;
  } else {
    itls_.push_back(t - r.last_token_ts);
  }
  r.last_token_ts = t;
}

void engine::finish(std::shared_ptr<request> r, finish_reason why) {
  free_blocks(*r);
  double t = now();
  if (metrics_) {
    shmetrics::finished_request f;
    f.reason = why;
    f.arrival_time = r->arrival;
    f.queued_ts = r->queued_ts ? r->queued_ts : t;
    f.scheduled_ts = r->started ? r->scheduled_ts : t;
    f.first_token_ts = r->first_token_ts ? r->first_token_ts : t;
    f.last_token_ts = r->last_token_ts ? r->last_token_ts : t;
    f.finished_time = t;
    f.num_prompt_tokens = r->prompt.size();
    f.num_generation_tokens = r->total_generated();
    f.num_cached_tokens = r->num_cached_tokens;
    f.max_tokens_param = r->max_tokens_set ? r->max_tokens : 0;
    f.num_preemptions = r->num_preemptions;
    f.n = r->n;
    f.max_num_generation_tokens = *std::max_element(r->generated.begin(), r->generated.end());
    metrics_->record_finished_request(index_, f);
  }
  {
    std::lock_guard lk(r->m);
    r->reason = why;
  }
  bool continues = finished_hook_ && finished_hook_(r);
  {
    std::lock_guard lk(r->m);
    if (why == finish_reason::abort || why == finish_reason::error)
      for (auto& o : r->output_reasons)
        o = why;
    r->finished = true;
    if (!continues) r->complete = true;
  }
  r->cv.notify_all();
  inflight_seqs_.fetch_sub(r->n, std::memory_order_relaxed);
  if (r->first_token_ts == 0)
    prefill_tokens_.fetch_sub(r->prompt.size(), std::memory_order_relaxed);
  load_.fetch_sub(1, std::memory_order_relaxed);
}

// Whether a request for `lora` may join this step's batch: the base model always; an
// adapter already in the batch, or one more while fewer than max_loras are.
bool engine::lora_fits(const std::string& lora) const {
  return lora.empty() || lora_in_batch(lora) || lora_scheduled_.size() < cfg_.max_loras;
}

bool engine::lora_in_batch(const std::string& lora) const {
  return std::any_of(lora_scheduled_.begin(), lora_scheduled_.end(),
                     [&](const std::string* l) { return *l == lora; });
}

// Counts `lora` (when not the base model) among this step's adapters.
void engine::note_lora(const std::string& lora) {
  if (!lora.empty() && !lora_in_batch(lora)) lora_scheduled_.push_back(&lora);
}

// The adapters of the running and of the waiting requests, and the waiting requests that
// wait for a LoRA slot (vLLM's "deferred" reason).
void engine::lora_stats(shmetrics::step_stats& st) {
  if (cfg_.max_loras == 0) return;
  lora_scheduled_.clear();
  for (auto& r : running_)
    note_lora(r->lora);
  lora_running_.clear();
  lora_waiting_.clear();
  auto has = [](const auto& q, const std::string& name) {
    return std::any_of(q.begin(), q.end(), [&](const auto& r) { return r->lora == name; });
  };
  for (const std::string& name : cfg_.lora_names) {
    if (has(running_, name)) lora_running_ += (lora_running_.empty() ? "" : ",") + name;
    if (has(waiting_, name)) lora_waiting_ += (lora_waiting_.empty() ? "" : ",") + name;
  }
  for (auto& r : waiting_)
    if (!lora_fits(r->lora)) ++st.num_waiting_deferred;
  st.running_lora_adapters = lora_running_;
  st.waiting_lora_adapters = lora_waiting_;
}

// The bytes of `blocks` KV blocks, as the offload tier moves them.
double engine::offload_bytes(std::uint64_t blocks) const {
  return static_cast<double>(blocks) * cfg_.block_size * cfg_.kv_bytes_per_token;
}

// One load and one store operation per step at most, as the connector batches a step's
// transfers.
void engine::record_offload() {
  if (offload_) {  // the blocks this step's transfers pinned, as CPUOffloadingManager reports
    double cap = static_cast<double>(cfg_.offload_cpu_blocks);
    double write = std::min(1.0, static_cast<double>(step_stored_blocks_) / cap);
    double usage =
        std::min(1.0, static_cast<double>(step_stored_blocks_ + step_loaded_blocks_) / cap);
    offload_usage_.set(usage);
    offload_write_usage_.set(write);
    offload_read_usage_.set(std::max(usage - write, 0.0));
  }
  auto op = [&](offload_handles& h, std::uint64_t& blocks) {
    if (blocks == 0) return;
    double bytes = offload_bytes(blocks);
    double seconds = bytes / cfg_.offload_bytes_per_s;
    h.bytes.add(bytes);
    h.time.add(seconds);
    h.size.observe(bytes);
    h.total_bytes.add(bytes);
    h.total_time.add(seconds);
    h.total_size.observe(bytes);
    blocks = 0;
  };
  op(offload_load_, step_loaded_blocks_);
  op(offload_store_, step_stored_blocks_);
}

// NixlConnector.

// The next time a pull completes or kept KV expires (engine clock); HUGE_VAL: none.
double engine::nixl_deadline() const {
  double t = HUGE_VAL;
  for (auto& r : pulling_)
    t = std::min(t, r->pull_done);
  for (auto& [id, h] : held_)
    t = std::min(t, h.expires);
  return t;
}

void engine::nixl_read_done(const std::string& request_id) {
  {
    std::lock_guard lk(m_);
    read_done_.push_back(request_id);
  }
  cv_.notify_all();
}

// Engine thread, before each step: frees the KV that decode instances read or that
// expired, and puts the requests whose pull completed back at the head of the queue.
void engine::nixl_tick() {
  if (!cfg_.nixl) return;
  std::vector<std::string> read;
  {
    std::lock_guard lk(m_);
    read.swap(read_done_);
  }
  // A notice for a request not kept (expired already) changes nothing, as in vLLM.
  for (auto& id : read)
    if (held_.count(id)) release_held(id);
  double t = now();
  std::vector<std::string> expired;
  for (auto& [id, h] : held_)
    if (h.expires <= t) expired.push_back(id);
  for (auto& id : expired) {
    release_held(id);
    nixl_expired_.inc();
  }
  std::vector<std::shared_ptr<request>> arrived;
  for (auto it = pulling_.begin(); it != pulling_.end();) {
    if ((*it)->pull_done <= t) {
      finish_pull(**it);
      arrived.push_back(*it);
      it = pulling_.erase(it);
    } else {
      ++it;
    }
  }
  if (cfg_.priority_policy)
    for (auto& r : arrived)
      enqueue(r, true);
  else
    waiting_.insert(waiting_.begin(), arrived.begin(), arrived.end());
}

// The bytes of `blocks` whole KV blocks: NIXL moves blocks, not tokens.
double engine::nixl_bytes(std::uint32_t blocks) const {
  return static_cast<double>(blocks) * cfg_.block_size * cfg_.kv_bytes_per_token;
}

// Posting a transfer: a fixed cost plus preparing each descriptor.
double engine::nixl_post_s(std::uint32_t blocks) const {
  return 20e-6 + 10e-9 * static_cast<double>(blocks) * cfg_.kv_regions;
}

// Decode side: the request (its local prefix-cache hits admitted) takes blocks for its
// whole prompt and starts pulling the ones past its hits. False (nothing taken) when the
// pool cannot give them.
bool engine::start_pull(request& r, shmetrics::step_stats& st) {
  const auto prompt = static_cast<std::uint32_t>(r.prompt.size());
  const std::uint32_t hit_blocks = r.blocks;
  if (!grow(r, prompt - r.computed)) {
    free_blocks(r);
    return false;
  }
  r.kv_params.do_remote_prefill = false;  // one transfer per request, as vLLM
  r.pull_blocks = r.blocks - hit_blocks;
  r.pull_fails = std::bernoulli_distribution(cfg_.nixl_failure_rate)(nixl_rng_);
  double xfer = nixl_post_s(r.pull_blocks) + nixl_bytes(r.pull_blocks) / cfg_.nixl_bytes_per_s;
  r.pull_done = now() + xfer * cfg_.time_scale;
  // The connector matched every prompt token past the local hits.
  st.external_prefix_cache_queries += prompt;
  st.external_prefix_cache_hits += prompt - r.computed;
  return true;
}

// Decode side, the pull done: the prompt but its last token is computed (vLLM recomputes
// it to sample the first token), and the prefill instance is told. A failed pull leaves
// the local hits only; the rest is computed here and the prefill side's KV expires.
void engine::finish_pull(request& r) {
  if (r.pull_fails) {
    nixl_failed_transfers_.inc();
    return;
  }
  const auto prompt = static_cast<std::uint32_t>(r.prompt.size());
  double bytes = nixl_bytes(r.pull_blocks), post = nixl_post_s(r.pull_blocks);
  nixl_xfer_time_.observe(post + bytes / cfg_.nixl_bytes_per_s);
  nixl_post_time_.observe(post);
  nixl_bytes_.observe(bytes);
  nixl_descriptors_.observe(static_cast<double>(r.pull_blocks) * cfg_.kv_regions);
  r.num_external_tokens = prompt - r.computed;
  r.external = r.num_external_tokens;
  r.computed = prompt - 1;
  r.num_cached_tokens = r.computed;
  r.pulled = true;
  cache_full_blocks(r);
  if (pulled_hook_) pulled_hook_(r);
}

// Prefill side: a do_remote_decode request that finished at max_tokens keeps its blocks
// for the decode instance, which reads them by the ids the response names.
bool engine::hold_for_decode(request& r) {
  if (!cfg_.nixl || !r.kv_params.do_remote_decode || r.blocks == 0 ||
      done_reason(r) != finish_reason::length)
    return false;
  held_kv h;
  h.uncached = r.blocks - static_cast<std::uint32_t>(r.cached.size());
  h.cached = std::move(r.cached);
  h.expires = now() + cfg_.nixl_abort_timeout_s;
  std::vector<std::uint32_t> ids;
  for (std::uint32_t i = 0; i < r.blocks; ++i)
    ids.push_back(next_block_id_++ % cfg_.num_gpu_blocks);
  {
    std::lock_guard lk(r.m);
    r.held_block_ids = std::move(ids);
  }
  held_[r.id] = std::move(h);
  r.blocks = 0;  // what free_blocks() would reset, the blocks themselves kept
  r.cached.clear();
  r.hashed_upto = 0;
  r.computed = 0;
  return true;
}

void engine::release_held(const std::string& request_id) {
  auto it = held_.find(request_id);
  kv_.release(it->second.uncached, it->second.cached);
  held_.erase(it);
  idle_recorded_ = false;  // the usage gauge changes, busy or idle
}

void engine::record_residency() {
  auto& ev = kv_.residency_events();
  for (double s : ev.lifetimes)
    block_lifetime_.observe(s);
  for (double s : ev.idle_before_evict)
    block_idle_before_evict_.observe(s);
  for (double s : ev.reuse_gaps)
    block_reuse_gap_.observe(s);
  ev.lifetimes.clear();
  ev.idle_before_evict.clear();
  ev.reuse_gaps.clear();
}

void engine::record_idle() {
  running_count_.store(0, std::memory_order_relaxed);
  if (idle_recorded_ || !metrics_) return;
  shmetrics::step_stats st;
  st.has_outputs = false;  // SchedulerStats only, as vLLM's idle updates
  st.kv_cache_usage = kv_.usage();
  metrics_->record_step(index_, st);
  idle_recorded_ = true;
}

}  // namespace engine_sim
