// shmetrics catalog: vLLM v1's PrometheusStatLogger families, typed.
//
//   auto cat = shmetrics::catalog::load(shmetrics::catalog::default_path());
//   auto vm = shmetrics::vllm_metrics::create(reg, *cat, {.model_name = "m", .engines = 2});
//   vm->record_step(0, step);              // per engine step: SchedulerStats + IterationStats
//   vm->record_finished_request(0, req);   // per finished request
//
// Construction registers every family vLLM registers (exact names, help, labels,
// buckets from the catalog) and pre-creates every child vLLM pre-creates, so a scrape
// shows zero-valued series from start-up. Recording is the hot path: no allocation, no
// lock, no lookup; only handle operations.
#ifndef SHMETRICS_CATALOG_VLLM_METRICS_HPP
#define SHMETRICS_CATALOG_VLLM_METRICS_HPP

#include <array>        // per-reason tables
#include <cstdint>      // counts
#include <span>         // per-step latency lists
#include <string>       // options
#include <string_view>  // LoRA adapter lists
#include <utility>      // pair
#include <vector>       // bound families

#include "../registry.hpp"
#include "bound_family.hpp"
#include "catalog.hpp"

SHMETRICS_BEGIN_NAMESPACE

/// vLLM's FINISH_REASON_STRINGS, in catalog order (label_values.finished_reason).
enum class finish_reason : std::uint8_t { stop, length, abort, error, repetition };
inline constexpr std::size_t finish_reason_count = 5;
inline constexpr std::string_view finish_reason_names[finish_reason_count] = {
    "stop", "length", "abort", "error", "repetition"};

/// vllm:engine_sleep_state's sleep_state values.
enum class sleep_state : std::uint8_t { awake, weights_offloaded, discard_all };

/// vllm:sleep_mode_operation_duration_seconds / _operations_in_flight operation values
/// (the dev-mode endpoints POST /sleep, /release_kv_cache_memory, /wake_up).
enum class sleep_operation : std::uint8_t { sleep, release_kv_cache_memory, wake };

/// vllm:admission_rejections_total's reason values: which limit refused a request.
enum class admission_reason : std::uint8_t { max_num_queued_reqs, max_num_queued_tokens };

/// The typed families, one per vLLM family engine code records.
enum class vllm_family : std::uint8_t {
  num_requests_running,
  num_requests_waiting,
  num_requests_waiting_by_reason,
  engine_sleep_state,
  kv_cache_usage_perc,
  cache_config_info,
  prefix_cache_queries,
  prefix_cache_hits,
  external_prefix_cache_queries,
  external_prefix_cache_hits,
  mm_cache_queries,
  mm_cache_hits,
  num_preemptions,
  prompt_tokens,
  prompt_tokens_by_source,
  prompt_tokens_cached,
  generation_tokens,
  request_success,
  request_prompt_tokens,
  request_generation_tokens,
  iteration_tokens,
  request_max_num_generation_tokens,
  request_params_n,
  request_params_max_tokens,
  request_prefill_kv_computed_tokens,
  time_to_first_token,
  inter_token_latency,
  request_time_per_output_token,
  e2e_request_latency,
  request_queue_time,
  request_inference_time,
  request_prefill_time,
  request_decode_time,
  request_num_preemptions,
  estimated_flops_per_gpu,
  estimated_read_bytes_per_gpu,
  estimated_write_bytes_per_gpu,
  corrupted_requests,
  spec_decode_num_drafts,
  spec_decode_num_draft_tokens,
  spec_decode_num_accepted_tokens,
  spec_decode_num_accepted_tokens_per_pos,
  sleep_mode_operation_duration,
  sleep_mode_operations_in_flight,
  admission_rejections,
  count_
};
/// The catalog key behind each typed family (the typed API's only coupling to the data).
std::string_view catalog_key(vllm_family f) noexcept;

struct vllm_options {
  std::string model_name{};   ///< served_model_name (label model_name)
  std::uint32_t engines = 1;  ///< data-parallel engine cores: engine="0".."engines-1"
  /// vLLM-Omni's reshape: when not empty, engine index i is labelled
  /// {stage=first, replica=second} and the `engine` label is replaced by stage, replica
  /// in place in every family (engines is then ignored).
  std::vector<std::pair<std::uint32_t, std::uint32_t>> stage_replicas{};
  std::uint64_t max_model_len = 4096;  ///< for the 1-2-5 token histograms
  /// vllm:cache_config_info labels, in order (CacheConfig.metrics_info()); engine is appended.
  std::vector<std::pair<std::string, std::string>> cache_config{};
  std::string vllm_version{};                     ///< emulated version; "" = the catalog's
  std::string show_hidden_metrics_for_version{};  ///< --show-hidden-metrics-for-version
  std::uint32_t num_speculative_tokens = 0;       ///< > 0: spec-decode families
  bool kv_cache_metrics = false;                  ///< --kv-cache-metrics
  bool nixl = false;                              ///< NixlConnector families
  bool kv_offload = false;                        ///< OffloadingConnector families
  /// --enable-sleep-mode with the dev-mode endpoints: vllm:sleep_mode_* (API-server
  /// families without model_name/engine labels).
  bool sleep_mode = false;
  bool compute_nans_in_logits = false;  ///< VLLM_COMPUTE_NANS_IN_LOGITS
  /// --max-num-queued-reqs / --max-num-queued-tokens set: vllm:admission_rejections_total
  /// (a front-end family without the engine label: one child per reason).
  bool admission_control = false;
  /// > 0: LoRA enabled (--enable-lora, --max-loras N): vllm:lora_requests_info.
  std::uint32_t max_loras = 0;
};

/// One engine step, as vLLM's SchedulerStats + IterationStats carry it.
struct step_stats {
  // SchedulerStats
  std::uint32_t num_running_reqs = 0;
  std::uint32_t num_waiting_reqs = 0;
  std::uint32_t num_waiting_deferred = 0;  ///< of num_waiting_reqs; the rest wait for capacity
  double kv_cache_usage = 0;               ///< fraction 0..1
  std::uint64_t prefix_cache_queries = 0, prefix_cache_hits = 0;  ///< tokens
  std::uint64_t external_prefix_cache_queries = 0, external_prefix_cache_hits = 0;
  std::uint64_t mm_cache_queries = 0, mm_cache_hits = 0;  ///< items
  // IterationStats. vLLM builds them only for a step that produced output (async_llm.py:
  // `IterationStats() if (log_stats and num_outputs)`); has_outputs = false (an idle
  // update, a prefill chunk that emitted nothing) records the SchedulerStats alone: no
  // IterationStats family moves and vllm:iteration_tokens_total is not observed.
  bool has_outputs = true;
  std::uint64_t num_prompt_tokens = 0;                   ///< prompt tokens of this step
  std::uint64_t num_generation_tokens = 0;               ///< generated tokens of this step
  std::uint64_t prompt_tokens_local_cache_hit = 0;       ///< of num_prompt_tokens
  std::uint64_t prompt_tokens_external_kv_transfer = 0;  ///< of num_prompt_tokens
  std::uint64_t num_preempted_reqs = 0;
  std::uint64_t num_corrupted_reqs = 0;
  std::span<const double> time_to_first_tokens{};   ///< seconds: arrival -> first token
  std::span<const double> inter_token_latencies{};  ///< seconds: one per streamed output
  // SpecDecodingStats (only with num_speculative_tokens > 0)
  std::uint64_t spec_num_drafts = 0, spec_num_draft_tokens = 0, spec_num_accepted_tokens = 0;
  std::span<const std::uint64_t> spec_accepted_per_pos{};
  // LoRA (only with max_loras > 0): the adapters of the running and of the waiting
  // requests, comma-joined in first-seen order, as vLLM joins its dicts' keys. Every
  // step sets vllm:lora_requests_info{max_lora, waiting_lora_adapters,
  // running_lora_adapters} to the wall-clock time, as vLLM's set_to_current_time().
  std::string_view running_lora_adapters{}, waiting_lora_adapters{};
};

/// One finished request, with vLLM's RequestStateStats timestamps (seconds, one clock).
struct finished_request {
  finish_reason reason = finish_reason::stop;
  double arrival_time = 0;    ///< request arrived at the front end
  double queued_ts = 0;       ///< first QUEUED
  double scheduled_ts = 0;    ///< first SCHEDULED
  double first_token_ts = 0;  ///< first NEW_TOKEN
  double last_token_ts = 0;   ///< last NEW_TOKEN
  double finished_time = 0;   ///< finished (e2e end)
  std::uint64_t num_prompt_tokens = 0, num_generation_tokens = 0;
  std::int64_t num_cached_tokens = 0;  ///< vLLM uses -1 for "unknown"; clamped at 0
  std::uint64_t max_tokens_param = 0;  ///< 0: not set (not observed, as in vLLM)
  std::uint32_t num_preemptions = 0;
  std::uint32_t n = 1;                          ///< the n sampling parameter
  std::uint64_t max_num_generation_tokens = 0;  ///< longest of the n outputs; 0: this one's
};

/// Durations vLLM derives from a finished request (IterationStats.update_from_finished_request).
struct finished_request_times {
  double e2e_latency{}, queued_time{}, prefill_time{}, inference_time{}, decode_time{};
  double mean_time_per_output_token{};  ///< decode_time / (generated - 1), 0 if <= 1 token
};
finished_request_times derive_times(const finished_request& r) noexcept;

class vllm_metrics {
 public:
  /// Registers the families and pre-creates the children. Fails when the catalog lacks
  /// a typed family or disagrees with it (detail names the key), or the registry is full.
  static result<vllm_metrics> create(registry& reg, const catalog& cat, const vllm_options& opt);

  vllm_metrics() = default;

  /// Per engine step. `engine` is the flat engine index (0-based). Hot path, except when
  /// the LoRA adapter sets change: a new vllm:lora_requests_info child is a registration
  /// (cold path; a full segment drops it, as any registration). Calls for different
  /// engines may come from different threads; one engine's, from one at a time.
  void record_step(std::size_t engine, const step_stats& s) noexcept;
  /// Per finished request. Hot path.
  void record_finished_request(std::size_t engine, const finished_request& r) noexcept;
  /// vllm:engine_sleep_state: the given state 1, the others 0.
  void record_sleep_state(std::size_t engine, sleep_state s) noexcept;
  /// A dev-mode sleep-mode operation starts: vllm:sleep_mode_operations_in_flight + 1.
  void begin_sleep_mode_operation(sleep_operation op) noexcept;
  /// It ended after `seconds`: in flight - 1, one duration observation.
  void end_sleep_mode_operation(sleep_operation op, double seconds) noexcept;
  /// A request refused by an admission limit: vllm:admission_rejections_total{reason} + 1.
  void record_admission_rejection(admission_reason why) noexcept;
  /// The MFU counters (they advance only with --enable-mfu-metrics).
  void record_perf(std::size_t engine, double flops, double read_bytes,
                   double write_bytes) noexcept;

  /// The registered family, or nullptr (not registered: condition off, hidden, removed).
  const catalog_detail::bound_family* family(vllm_family f) const noexcept;
  /// Any registered family by catalog key (conditional families without a typed call:
  /// nixl, kv_offload, kv_block residency), or nullptr.
  const catalog_detail::bound_family* family(std::string_view key) const noexcept;
  /// The registered names, in registration order.
  std::vector<std::string> names() const;
  std::size_t engines() const noexcept { return engines_; }

 private:
  void observe(vllm_family f, std::size_t engine, double v, std::size_t child = 0) noexcept;
  void add(vllm_family f, std::size_t engine, double v, std::size_t child = 0) noexcept;
  void set(vllm_family f, std::size_t engine, double v, std::size_t child = 0) noexcept;
  void record_lora(std::size_t engine, std::string_view running, std::string_view waiting) noexcept;

  // One engine's current vllm:lora_requests_info child and the adapter sets it is for.
  struct lora_child {
    bool bound = false;
    std::string running, waiting;
    gauge g;
  };

  std::vector<catalog_detail::bound_family> bound_;
  int lora_family_ = -1;          // index in bound_, or -1 (LoRA off)
  std::string max_lora_;          // the max_lora label value
  std::vector<lora_child> lora_;  // per engine
  std::array<int, static_cast<std::size_t>(vllm_family::count_)> index_{};
  std::size_t engines_ = 0;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_CATALOG_VLLM_METRICS_HPP
