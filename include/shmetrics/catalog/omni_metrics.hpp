// shmetrics catalog: vLLM-Omni's families (seed 001), the engine -> stage + replica
// reshape of every vllm:* family, and --log-stats gating.
//
//   shmetrics::omni_options o{.model_name = "Qwen/Qwen3-Omni", .log_stats = true,
//                             .stages = {{1, stage_kind::llm}, {1, stage_kind::llm},
//                                        {1, stage_kind::audio}}};
//   auto om = shmetrics::omni_metrics::create(reg, cat, o);
//   om->engine_metrics()->record_step(om->engine_index(0, 0), step);  // vllm:* per stage
//   om->record_request(record);  // the pipeline_stats events -> vllm:omni_* families
//
// Gating, as the seed says: without log_stats no vllm:* family is registered and the
// 15 Omni families are registered with no series (HELP/TYPE only) and nothing is
// written; with it every family is registered and its children pre-created.
#ifndef SHMETRICS_CATALOG_OMNI_METRICS_HPP
#define SHMETRICS_CATALOG_OMNI_METRICS_HPP

#include <cstdint>   // stage ids
#include <optional>  // vllm_metrics for the LLM stages
#include <string>    // names
#include <vector>    // stages

#include "../registry.hpp"
#include "bound_family.hpp"
#include "catalog.hpp"
#include "pipeline_stats.hpp"
#include "vllm_metrics.hpp"

SHMETRICS_BEGIN_NAMESPACE

/// The 15 families of seed 001: 4 pipeline, 7 audio, 4 transfer.
enum class omni_family : std::uint8_t {
  num_requests_running,
  num_requests_waiting,
  requests_success,
  e2e_request_latency,
  audio_ttfp,
  audio_duration,
  audio_rtf,
  audio_frames,
  audio_underrun,
  audio_continuity_ok,
  audio_skipped_requests,
  transfer_size,
  transfer_tx,
  transfer_rx,
  transfer_in_flight,
  count_
};
std::string_view catalog_key(omni_family f) noexcept;

/// Which spelling the Omni families get.
enum class omni_prefix : std::uint8_t {
  seed,      ///< "vllm:omni_" (seed 001, PR #3576; the default)
  upstream,  ///< "vllm_omni:" (current vLLM-Omni)
};

/// What a pipeline stage runs. LLM stages get the reshaped vllm:* families; audio
/// stages (talker / code2wav) the audio families.
enum class stage_kind : std::uint8_t { llm, audio, diffusion, other };

struct omni_stage {
  std::uint32_t replicas = 1;
  stage_kind kind = stage_kind::llm;
};

struct omni_options {
  std::string model_name{};
  bool log_stats = false;  ///< --log-stats (off by default, as in the seed)
  omni_prefix prefix = omni_prefix::seed;
  std::vector<omni_stage> stages{};     ///< stage id = index; transfers go stage i -> i+1
  bool extended_families = false;       ///< also the catalog's other current Omni families
  double audio_sample_rate = 24000;     ///< audio_duration_s = frames / sample_rate
  double continuity_threshold_s = 0.1;  ///< AUDIO_CONTINUITY_DEFAULT_THRESHOLD_S
  /// For the vllm:* families of the LLM stages (model_name and stage_replicas are
  /// filled in from above; the rest applies as for plain vLLM).
  vllm_options vllm{};
};

class omni_metrics {
 public:
  static result<omni_metrics> create(registry& reg, const catalog& cat, const omni_options& opt);

  omni_metrics() = default;

  /// Pipeline-global request gauges.
  void set_requests(std::uint32_t running, std::uint32_t waiting) noexcept;
  /// A finished request: success by reason, e2e latency, every audio stage's audio
  /// families, every transfer's histograms. Nothing without log_stats. No allocation,
  /// except the first time an audio skip reason is seen (its child is made then).
  void record_request(const request_record& r);
  /// Streaming hook: the first audio packet of a request on (stage, replica).
  void record_audio_first_packet(std::uint32_t stage, std::uint32_t replica,
                                 double ttfp_s) noexcept;
  /// One physical transfer hop.
  void record_transfer(const transfer_event& t) noexcept;

  /// The reshaped vllm:* families of the LLM stages; nullptr without log_stats or
  /// without an LLM stage.
  vllm_metrics* engine_metrics() noexcept { return vllm_ ? &*vllm_ : nullptr; }
  /// The flat engine index of an LLM stage's replica for engine_metrics(), or -1.
  long engine_index(std::uint32_t stage, std::uint32_t replica) const noexcept;

  const catalog_detail::bound_family* family(omni_family f) const noexcept;
  const catalog_detail::bound_family* family(std::string_view key) const noexcept;
  std::vector<std::string> names() const;
  bool log_stats() const noexcept { return log_stats_; }

 private:
  long audio_child(std::uint32_t stage, std::uint32_t replica) const noexcept;
  long edge_child(const transfer_event& t) const noexcept;

  std::vector<catalog_detail::bound_family> bound_;
  std::vector<int> index_;  // per omni_family, into bound_
  std::vector<omni_stage> stages_;
  std::vector<long> audio_first_;  // per stage: first audio child, -1 if not an audio stage
  std::vector<long> edge_first_;   // per stage i: first child of edge i -> i+1
  std::vector<std::pair<std::uint32_t, std::uint32_t>> engines_;  // LLM (stage, replica)
  std::optional<vllm_metrics> vllm_;
  std::string model_name_;
  double sample_rate_ = 24000, threshold_s_ = 0.1;
  bool log_stats_ = false;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_CATALOG_OMNI_METRICS_HPP
