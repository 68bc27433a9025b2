// The simulated engine core: vLLM v1's continuous-batching scheduler over a KV-block pool
// with a prefix cache, chunked prefill and preemption, stepping with a 7B-on-one-GPU
// timing model. It records through vllm_metrics exactly what vLLM's stat logger records.
//
// Threads: the HTTP handlers call submit() / abort() and wait on a request's condition
// variable; one engine thread runs the steps and is the only writer of the metrics.
#pragma once

#include <atomic>              // abort flag, stop
#include <condition_variable>  // wake-ups
#include <cstdint>             // counts
#include <deque>               // waiting queue
#include <functional>          // finished hook
#include <list>                // multimodal cache LRU
#include <map>                 // KV held for decode instances
#include <memory>              // shared requests
#include <mutex>               // queues
#include <random>              // output lengths
#include <string>              // ids
#include <thread>              // engine thread
#include <unordered_map>       // multimodal cache index
#include <vector>              // batches

#include <shmetrics/catalog/pipeline_stats.hpp>
#include <shmetrics/catalog/vllm_metrics.hpp>

#include "kv_cache.hpp"
#include "openai.hpp"  // kv_transfer_params

namespace engine_sim {

struct engine_config {
  std::uint32_t max_num_seqs = 256;
  std::uint32_t max_num_batched_tokens = 2048;
  std::uint32_t block_size = 16;
  std::uint32_t num_gpu_blocks = 8192;
  std::uint32_t max_model_len = 4096;
  bool enable_prefix_caching = true;
  double time_scale = 1.0;  ///< multiplies every simulated step time (tests run at 0.05)
  std::uint64_t seed = 0;
  // Speculative decoding (--speculative-config): every decode step of a sequence drafts
  // this many tokens and verifies them with the target model in the same forward pass;
  // each draft position is accepted with spec_acceptance_rate when the ones before it
  // were, so position j is accepted with rate^(j+1). 0: off.
  std::uint32_t num_speculative_tokens = 0;
  double spec_acceptance_rate = 0.7;
  // --kv-cache-metrics: this share of the cached KV blocks is followed to its eviction
  // (vllm:kv_block_lifetime_seconds, _idle_before_evict_seconds, _reuse_gap_seconds).
  bool kv_cache_metrics = false;
  double kv_cache_metrics_sample = 0.01;
  // LoRA (--enable-lora): at most max_loras adapters in a batch (0: LoRA off); the
  // adapters' names in --lora-modules order, the order of the lora_requests_info lists.
  std::uint32_t max_loras = 0;
  std::vector<std::string> lora_names;
  // KV offloading (--kv-transfer-config, OffloadingConnector): a CPU tier of this many
  // blocks (0: off). Every newly computed full prompt block is stored to it; a prompt's
  // blocks past the GPU prefix-cache hits that the tier holds are loaded instead of
  // computed (external prefix-cache hits). Transfers move a 7B model's KV (Qwen2.5-7B,
  // bf16: 28 layers x 2 x 4 KV heads x 128 x 2 bytes per token) over PCIe; a step waits
  // for its loads, stores overlap with compute. A step's loads and stores pin their
  // blocks while the step runs (vllm:kv_offload_cpu_cache_*usage_perc: pinned, not
  // filled); the LRU tier always has an unpinned block to evict, so a store never fails
  // (vllm:kv_offload_allocation_failure stays 0) and a lookup never defers
  // (_lookup_async_delay_seconds stays empty). Each lookup call costs
  // offload_lookup_base_s + offload_lookup_per_block_s per block it probes.
  std::uint32_t offload_cpu_blocks = 0;
  double offload_lookup_base_s = 10e-6;
  double offload_lookup_per_block_s = 1e-6;
  double kv_bytes_per_token = 57344;
  double offload_bytes_per_s = 25e9;
  // NixlConnector (--kv-transfer-config, P/D disaggregation). Prefill side: a request
  // with kv_transfer_params.do_remote_decode that finishes at max_tokens keeps its KV
  // blocks until the decode instance says it read them, or nixl_abort_timeout_s passed
  // (then vllm:nixl_num_kv_expired_reqs). Decode side: a request with do_remote_prefill
  // pulls its prompt's blocks past its own prefix-cache hits over RDMA at
  // nixl_bytes_per_s (a 400 Gb/s NIC), waiting meanwhile as vLLM's WAITING_FOR_REMOTE_KVS,
  // and computes only the last prompt token. A pull fails with nixl_failure_rate; then
  // the prompt is computed locally (vLLM's default kv_load_failure_policy "recompute").
  bool nixl = false;
  // --enable-sleep-mode: the dev-mode endpoints POST /sleep, /wake_up, GET /is_sleeping.
  bool enable_sleep_mode = false;
  std::string nixl_engine_id;         ///< remote_engine_id the prefill side answers
  double nixl_abort_timeout_s = 480;  ///< VLLM_NIXL_ABORT_REQUEST_TIMEOUT; wall clock
  double nixl_failure_rate = 0;
  double nixl_bytes_per_s = 40e9;
  // NIXL reads one descriptor per block per KV region; FlashAttention's layout keeps K and
  // V of each of the 28 layers in their own region.
  std::uint32_t kv_regions = 56;
  // --scheduling-policy priority: the queue is ordered by (priority, arrival), lower
  // first, and preemption takes the running request with the largest (priority,
  // arrival), as vLLM's PriorityRequestQueue and Scheduler do. false: fcfs.
  bool priority_policy = false;
  // Multimodal (chat image_url parts). The processor cache (--mm-processor-cache-gb, vLLM's
  // LRU P0 cache) keeps each image's processed pixel values under its content hash: a
  // Qwen2.5-VL image of T placeholder tokens is 4T patches of 1176 float32 values. 0: no
  // cache (vllm:mm_cache_* do not move). The vision encoder runs in the step that prefills
  // an image's first placeholder token (an image wholly in the prefix cache is not
  // encoded) and adds encoder_base_s + encoder_per_token_s per placeholder token to it
  // (a ~0.7B ViT on one GPU).
  double mm_cache_bytes = 4.0 * (1u << 30);
  double mm_item_bytes_per_token = 4 * 1176 * 4;
  double encoder_base_s = 0.001;
  double encoder_per_token_s = 0.00004;
  // Step timing of a 7B model on one GPU: a decode step costs ~20 ms plus a little per
  // sequence (weights are read once per step; KV reads grow with the batch), a prefill
  // costs per token (compute bound).
  double step_base_s = 0.020;
  double per_seq_s = 0.00004;
  double per_prefill_token_s = 0.00008;
};

/// One request as the engine sees it. Shared by the HTTP handler (which reads outputs
/// under `m`) and the engine thread (which owns every field below "engine state").
class engine;

struct request {
  std::string id;
  std::vector<std::uint32_t> prompt;
  std::uint32_t max_tokens = 16;
  bool max_tokens_set = false;
  std::uint32_t n = 1;
  bool ignore_eos = false;
  std::string lora;              ///< the LoRA adapter asked for; empty: the base model
  std::int64_t priority = 0;     ///< lower first, with --scheduling-policy priority
  std::vector<mm_item> images;   ///< chat images, by prompt offset
  kv_transfer_params kv_params;  ///< P/D disaggregation (NixlConnector); default: none
  double arrival = 0;            ///< seconds, engine clock
  std::atomic<bool> abort_requested{false};

  // Results, guarded by m; cv signals new tokens and the end.
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::vector<std::uint32_t>> outputs;  ///< per choice
  std::vector<shmetrics::finish_reason> output_reasons;
  bool finished = false;
  shmetrics::finish_reason reason = shmetrics::finish_reason::stop;
  std::uint32_t num_cached_tokens = 0;    ///< prefix-cache hits of the first scheduling
  std::uint32_t num_external_tokens = 0;  ///< of them, loaded from the offload tier
  /// Everything is done, later pipeline stages included; the response can be sent.
  bool complete = false;
  std::string audio_json;  ///< omni: the response's audio object
  /// Prefill side of P/D: the blocks kept for the decode instance (then the response
  /// carries kv_transfer_params); empty: none kept.
  std::vector<std::uint32_t> held_block_ids;

  // Pipeline bookkeeping (omni): who runs it, what follows.
  engine* owner = nullptr;
  std::uint32_t stage = 0, replica = 0;
  bool wants_audio = false;
  std::shared_ptr<request> parent;  ///< a talker request -> the client's request
  std::shared_ptr<request> child;   ///< the client's request -> its talker request (under m)
  shmetrics::request_record record;

  // Engine state (engine thread only).
  std::vector<std::uint32_t> target_len;     ///< per choice: tokens to generate
  std::vector<std::uint32_t> generated;      ///< per choice, mirrors outputs[i].size()
  std::uint32_t computed = 0;                ///< tokens whose KV is in the blocks
  std::uint32_t blocks = 0;                  ///< blocks held, cached ones included
  std::vector<std::uint64_t> cached;         ///< hashes of the cached blocks held
  std::vector<std::uint64_t> prompt_hashes;  ///< chained hashes of the full prompt blocks
  std::uint32_t hashed_upto = 0;             ///< prompt blocks already looked up or cached
  std::uint32_t external = 0;  ///< tokens of this scheduling loaded from the offload tier
  std::uint32_t num_preemptions = 0;
  std::uint32_t encoded = 0;      ///< images[0..encoded) encoded in this scheduling
  std::uint32_t pull_blocks = 0;  ///< decode side: blocks being pulled from the prefill side
  double pull_done = 0;           ///< when the pull completes (engine clock)
  bool pull_fails = false;        ///< the pull will fail (drawn when it starts)
  bool pulled = false;            ///< the prompt's KV came from the prefill instance
  bool started = false;           ///< has been scheduled once (prompt counted)
  double queued_ts = 0, scheduled_ts = 0, first_token_ts = 0, last_token_ts = 0;

  std::uint32_t total_generated() const;
  std::uint32_t active_choices() const;
};

class engine {
 public:
  /// `metrics` may be null (no recording); `engine_index` is this engine's label.
  engine(const engine_config& cfg, shmetrics::vllm_metrics* metrics, std::size_t engine_index);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Seconds on the engine clock (steady, since the process started).
  static double now();
  void submit(std::shared_ptr<request> r);
  /// Marks the request aborted; the engine frees it at its next step.
  void abort(const std::shared_ptr<request>& r);
  /// Called on the engine thread after a request finished (any reason); returns true
  /// when a later stage goes on with it (then `complete` is set by that stage).
  void on_finished(std::function<bool(const std::shared_ptr<request>&)> f) {
    finished_hook_ = std::move(f);
  }
  /// Sleep mode (vLLM's EngineCore.pause_scheduler): `abort_existing` aborts every
  /// request the engine holds now; the scheduler then takes no new request (`all`: it
  /// also stops running ones). Requests submitted while paused wait in the queue.
  void pause(bool abort_existing, bool all);
  /// Resumes scheduling; the queued requests run.
  void resume();
  /// NixlConnector, decode side: called on the engine thread once a request's KV was
  /// pulled, to tell the prefill instance (`r.kv_params`) that its blocks may go.
  void on_kv_pulled(std::function<void(const request&)> f) { pulled_hook_ = std::move(f); }
  /// Prefill side: the decode instance read `request_id`'s KV; its blocks are freed.
  void nixl_read_done(const std::string& request_id);
  /// Decode side: a notice to the prefill instance did not arrive (any thread).
  void count_failed_notification() noexcept { nixl_failed_notifications_.inc(); }
  std::size_t index() const noexcept { return index_; }
  /// Requests submitted and not finished; of them, those in the running batch.
  std::uint32_t load() const noexcept { return load_.load(std::memory_order_relaxed); }
  std::uint32_t running() const noexcept { return running_count_.load(std::memory_order_relaxed); }
  /// Admission control (--max-num-queued-*): the sequences (n each) of the requests
  /// submitted and not finished, and the prompt tokens of those not past their prefill
  /// (no token yet).
  std::uint64_t inflight_seqs() const noexcept {
    return inflight_seqs_.load(std::memory_order_relaxed);
  }
  std::uint64_t prefill_tokens() const noexcept {
    return prefill_tokens_.load(std::memory_order_relaxed);
  }
  const engine_config& config() const noexcept { return cfg_; }

 private:
  void run();
  bool step();
  void scheduler_stats(shmetrics::step_stats& st);
  void record_scheduler_only(shmetrics::step_stats& st);
  shmetrics::finish_reason done_reason(const request& r) const;
  void collect_aborts();
  bool grow(request& r, std::uint32_t new_tokens);
  void admit_prefix(request& r, shmetrics::step_stats& st);
  void preempt(request& r);
  void free_blocks(request& r);
  void cache_full_blocks(request& r);
  void emit(request& r, double t, bool drafted, shmetrics::step_stats& st);
  std::uint32_t accepted_drafts(shmetrics::step_stats& st);
  void finish(std::shared_ptr<request> r, shmetrics::finish_reason why);
  void record_idle();
  void record_residency();
  void record_offload();
  double offload_bytes(std::uint64_t blocks) const;
  double nixl_deadline() const;
  void nixl_tick();
  bool start_pull(request& r, shmetrics::step_stats& st);
  void finish_pull(request& r);
  double nixl_bytes(std::uint32_t blocks) const;
  double nixl_post_s(std::uint32_t blocks) const;
  bool hold_for_decode(request& r);
  void release_held(const std::string& request_id);
  bool lora_fits(const std::string& lora) const;
  bool lora_in_batch(const std::string& lora) const;
  void note_lora(const std::string& lora);
  void lora_stats(shmetrics::step_stats& st);
  void enqueue(std::shared_ptr<request> r, bool front);
  std::size_t preemption_victim() const;
  void mm_cache_lookup(const request& r);
  double encoder_seconds(request& r, std::uint32_t tokens);

  engine_config cfg_;
  shmetrics::vllm_metrics* metrics_;
  std::size_t index_;
  kv_cache kv_;
  std::mt19937_64 rng_;       // output lengths: submit(), under m_
  std::mt19937_64 spec_rng_;  // draft acceptance: engine thread

  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<request>> incoming_;  // guarded by m_
  std::vector<std::string> read_done_;              // guarded by m_: NIXL notices
  bool stop_ = false;                               // guarded by m_
  bool abort_pending_ = false;                      // guarded by m_
  bool abort_all_ = false;                          // guarded by m_: pause(true, ...)
  enum class pause_state : std::uint8_t { unpaused, paused_new, paused_all };
  pause_state pause_ = pause_state::unpaused;   // guarded by m_
  pause_state paused_ = pause_state::unpaused;  // engine thread's copy

  std::deque<std::shared_ptr<request>> waiting_;
  std::vector<std::shared_ptr<request>> running_;
  std::atomic<std::uint32_t> load_{0}, running_count_{0};
  std::atomic<std::uint64_t> inflight_seqs_{0}, prefill_tokens_{0};
  // The multimodal processor cache (engine thread): LRU of (content hash, bytes), and the
  // lookups not yet recorded (vllm:mm_cache_queries / _hits, with the next step).
  std::list<std::pair<std::uint64_t, double>> mm_lru_;
  std::unordered_map<std::uint64_t, std::list<std::pair<std::uint64_t, double>>::iterator>
      mm_index_;
  double mm_cached_bytes_ = 0;
  std::uint64_t mm_queries_ = 0, mm_hits_ = 0;
  std::function<bool(const std::shared_ptr<request>&)> finished_hook_;
  // Per-step scratch, kept to avoid allocating every step.
  std::vector<double> ttfts_, itls_;
  std::vector<std::uint64_t> spec_accepted_per_pos_;
  shmetrics::histogram block_lifetime_, block_idle_before_evict_, block_reuse_gap_;
  std::vector<const std::string*> lora_scheduled_;  // adapters in this step's batch
  std::string lora_running_, lora_waiting_;         // comma-joined, for step_stats
  std::unique_ptr<offload_tier> offload_;           // null: no KV offloading
  std::uint64_t step_loaded_blocks_ = 0, step_stored_blocks_ = 0;
  struct offload_handles {
    shmetrics::counter bytes, time, total_bytes, total_time;  // total_*: the deprecated ones
    shmetrics::histogram size, total_size;
  } offload_load_, offload_store_;
  shmetrics::gauge offload_usage_, offload_write_usage_, offload_read_usage_;
  shmetrics::histogram offload_lookup_delay_;
  // NixlConnector: pulls in flight (decode side), blocks kept for decode instances
  // (prefill side) by request id, with when they expire.
  struct held_kv {
    std::uint32_t uncached = 0;
    std::vector<std::uint64_t> cached;
    double expires = 0;  // engine clock
  };
  std::vector<std::shared_ptr<request>> pulling_;
  std::map<std::string, held_kv> held_;
  std::uint32_t next_block_id_ = 0;  // the block ids a prefill response names
  std::mt19937_64 nixl_rng_;         // failed pulls
  std::function<void(const request&)> pulled_hook_;
  shmetrics::histogram nixl_xfer_time_, nixl_post_time_, nixl_bytes_, nixl_descriptors_;
  shmetrics::counter nixl_failed_transfers_, nixl_failed_notifications_, nixl_expired_;
  std::uint64_t step_preemptions_ = 0;
  std::uint64_t pending_preemptions_ = 0;  // not yet recorded: no step with outputs since
  bool idle_recorded_ = true;
  std::thread thread_;
};

}  // namespace engine_sim
