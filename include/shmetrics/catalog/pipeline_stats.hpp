// shmetrics catalog: vLLM-Omni's --log-stats pipeline statistics (seed 000).
//
// Per request, each stage reports a stage event and each hop between stages a transfer
// event. From them come RequestE2EStats, StageRequestStats, TransferEdgeStats and the
// Overall Summary, printed as vLLM-Omni prints them (| Field | Value | tables, thousands
// separators, 3 decimals). omni_metrics::record_request() feeds the same events into the
// Prometheus families, so the log and /metrics never disagree.
#ifndef SHMETRICS_CATALOG_PIPELINE_STATS_HPP
#define SHMETRICS_CATALOG_PIPELINE_STATS_HPP

#include <cstdint>  // counts
#include <string>   // ids, tables
#include <vector>   // events

#include "vllm_metrics.hpp"  // finish_reason

SHMETRICS_BEGIN_NAMESPACE

/// One stage's work on one request (StageRequestStats).
struct stage_event {
  std::uint32_t stage = 0;
  std::uint32_t replica = 0;
  std::uint64_t batch_id = 0;
  std::uint64_t batch_size = 1;
  std::uint64_t num_tokens_in = 0;
  std::uint64_t num_tokens_out = 0;
  double stage_gen_time_ms = 0;    ///< compute time, without postprocessing
  double postprocess_time_ms = 0;  ///< reported separately
  std::uint64_t audio_generated_frames = 0;
  std::uint64_t image_num = 0;  ///< diffusion/image stages
  std::string resolution{};     ///< diffusion/image stages, e.g. "1024x1024"
  /// Wall-clock window of this stage for this request (ms, the run's clock): the
  /// e2e_stage_{i}_wall_time_ms span is max(end) - min(start) over the scope.
  double start_ms = 0, end_ms = 0;
  // Streaming audio, for the Prometheus families only (negative: not measured).
  double audio_ttfp_s = -1;            ///< arrival -> first audio packet
  double audio_underrun_s = -1;        ///< worst player deficit of the request
  std::string audio_skipped_reason{};  ///< non-empty: code2wav returned empty audio
};

/// One hop of one request between two stages (TransferEdgeStats).
struct transfer_event {
  std::uint32_t from_stage = 0, from_replica = 0;
  std::uint32_t to_stage = 0, to_replica = 0;
  double size_bytes = 0;
  double tx_time_ms = 0;         ///< sender: serialize + submit
  double rx_decode_time_ms = 0;  ///< receiver: recv + deserialize
  double in_flight_time_ms = 0;  ///< TX done -> RX start
  double total_time_ms() const noexcept {
    return tx_time_ms + rx_decode_time_ms + in_flight_time_ms;
  }
  double size_kbytes() const noexcept { return size_bytes / 1024.0; }
};

/// One completed request.
struct request_record {
  std::string request_id{};
  double arrival_ms = 0, finish_ms = 0;  ///< the run's clock
  finish_reason reason = finish_reason::stop;
  std::vector<stage_event> stages{};  ///< in stage order; stage 0 first
  std::vector<transfer_event> transfers{};
};

struct request_e2e_stats {
  double e2e_total_ms = 0;
  std::uint64_t e2e_total_tokens = 0;  ///< stage-0 input + every stage's output
  double transfers_total_time_ms = 0;  ///< sum of tx + rx_decode + in_flight, every edge
  double transfers_total_kbytes = 0;
};
request_e2e_stats e2e_stats(const request_record& r);

struct overall_summary {
  std::uint64_t e2e_requests = 0;
  double e2e_wall_time_ms = 0;  ///< run start -> last completion
  std::uint64_t e2e_total_tokens = 0;
  double e2e_avg_time_per_request_ms = 0;    ///< wall / requests
  double e2e_avg_tokens_per_s = 0;           ///< tokens * 1000 / wall
  std::vector<double> stage_wall_time_ms{};  ///< index = stage id
};

/// Offline (batch): one summary over every request since the run started, e2e_requests
/// may exceed 1. Online (serving): the summary is per request, e2e_requests is always 1.
enum class stats_scope : std::uint8_t { offline, online };

class pipeline_stats {
 public:
  explicit pipeline_stats(stats_scope scope = stats_scope::offline, double run_start_ms = 0)
      : scope_(scope), run_start_ms_(run_start_ms) {}

  /// Adds a completed request. Online: it replaces the previous one, and `run_start_ms`
  /// is where its summary's wall time starts (the request's submission).
  void add(request_record r, double run_start_ms = -1);
  overall_summary summary() const;
  const std::vector<request_record>& requests() const noexcept { return requests_; }
  /// Overall Summary, then each request's RequestE2EStats, StageRequestStats and
  /// TransferEdgeStats.
  std::string report() const;

 private:
  stats_scope scope_;
  double run_start_ms_;
  std::vector<request_record> requests_;
};

/// `v` with thousands separators and `decimals` decimals: 41299.19 -> "41,299.190".
std::string format_number(double v, int decimals);
std::string format_summary(const overall_summary& s);
/// RequestE2EStats, StageRequestStats (| Field | 0 | 1 | 2 |) and TransferEdgeStats
/// (| Field | 0->1 | 1->2 |).
std::string format_request(const request_record& r);

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_CATALOG_PIPELINE_STATS_HPP
