// What serves the API: the engines, their segments and metrics, and for --pipeline omni
// the Qwen3-Omni-like pipeline thinker -> talker -> code2wav.
//
// Omni: every request runs on a thinker replica (an engine). A request that asks for
// audio goes on, when the thinker finishes, to a talker replica (a second engine, fed
// the thinker's hidden states over a simulated transfer) and then to a code2wav replica
// (a vocoder worker that turns codec tokens into 24 kHz audio). The last stage marks
// the request complete and records the pipeline statistics.
#pragma once

#include <atomic>              // in-flight count
#include <condition_variable>  // code2wav queues
#include <deque>               // code2wav queues
#include <memory>              // engines
#include <mutex>               // stats
#include <optional>
#include <string>  // errors
#include <thread>  // workers
#include <vector>  // replicas

#include <shmetrics/catalog/catalog.hpp>
#include <shmetrics/catalog/omni_metrics.hpp>
#include <shmetrics/catalog/pipeline_stats.hpp>
#include <shmetrics/catalog/vllm_metrics.hpp>

#include "diffusion.hpp"
#include "engine.hpp"
#include "openai.hpp"
#include "options.hpp"

namespace engine_sim {

class backend {
 public:
  /// Opens the catalog, creates the segments and the engines. nullptr and `err` on failure.
  static std::unique_ptr<backend> create(const options& opt, std::string& err);
  ~backend();

  /// Starts a request on the least loaded first-stage replica. With --max-num-queued-reqs /
  /// --max-num-queued-tokens, a request over either limit is refused instead (nullptr,
  /// `err` a 503, counted in vllm:admission_rejections_total), as vLLM's
  /// AsyncLLM.check_admission refuses it before it reaches the engine.
  std::shared_ptr<request> submit(const api_request& a, std::string id, double arrival,
                                  api_error& err);
  /// The client went away: abort wherever the request is.
  void abort(const std::shared_ptr<request>& r);
  const options& opts() const noexcept { return opt_; }
  const std::string& vllm_version() const noexcept { return cat_.vllm_version(); }
  std::vector<std::string> segment_paths() const;
  /// --pipeline diffusion: the image pipeline (the text endpoints are not served).
  diffusion_pipeline* diffusion() noexcept { return diffusion_.get(); }

  /// NixlConnector: where decode instances send their notices (this server's address,
  /// known once it listens); a prefill response names it as remote_host / remote_port.
  void set_side_channel(const std::string& host, int port);
  /// The kv_transfer_params JSON a prefill response carries for `r` (under r.m), or "".
  std::string kv_transfer_params_of(const request& r) const;
  /// A decode instance read the KV of `request_id` kept by engine `engine_id`.
  void nixl_read_done(const std::string& engine_id, const std::string& request_id);

  /// Sleep mode (--enable-sleep-mode), as vLLM's dev-mode endpoints: POST /sleep pauses
  /// every engine (`mode` "abort": their requests are aborted; "wait": the running ones
  /// finish first; "keep": all are frozen) and, for level 1 and 2, sleeps them; POST
  /// /wake_up wakes the tags given ("weights", "kv_cache"; none: all) and resumes the
  /// engines once nothing sleeps. Each is timed into vllm:sleep_mode_operation_duration_seconds.
  /// Returns false (nothing done) for a mode other than abort, wait, keep.
  bool sleep(int level, const std::string& mode);
  /// True when fully awake after it.
  bool wake_up(const std::vector<std::string>& tags);
  bool is_sleeping();

 private:
  struct vocoder {  // one code2wav replica: a worker and its queue
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::shared_ptr<request>> queue;
    std::atomic<std::uint32_t> load{0};
    bool stop = false;
    std::thread thread;
  };
  explicit backend(const options& opt) : opt_(opt) {}
  bool init(std::string& err);
  bool on_thinker_finished(const std::shared_ptr<request>& r);
  bool on_talker_finished(const std::shared_ptr<request>& t);
  void vocode(std::uint32_t replica, std::shared_ptr<request> t);
  void complete(request& r, std::string audio_json);
  std::atomic<std::uint32_t> inflight_{0};
  std::mutex admission_m_;  // a check and its submit, together: the limits are exact
  void transfer(request& r, std::uint32_t from, std::uint32_t from_replica,
                std::uint32_t to_replica, double bytes);
  void gauge_loop();
  void notify_loop();

  // NixlConnector, decode side: notices to prefill instances, sent off the engine threads
  // (an unreachable one must not stall a step).
  struct notice {
    kv_transfer_params to;
    engine* from;
  };
  std::mutex notify_m_;
  std::condition_variable notify_cv_;
  std::deque<notice> notices_;  // guarded by notify_m_
  bool notify_stop_ = false;    // guarded by notify_m_
  std::thread notifier_;
  std::string side_host_;  // set once, before requests arrive
  std::atomic<int> side_port_{0};

  // Sleep mode: the tags still asleep (weights, kv_cache), the level slept at.
  std::mutex sleep_m_;
  std::vector<std::string> asleep_;  // guarded by sleep_m_
  bool paused_ = false;              // guarded by sleep_m_
  void record_sleep_state(int level);

  options opt_;
  shmetrics::catalog cat_;
  std::vector<std::unique_ptr<shmetrics::registry>> regs_;
  std::vector<std::unique_ptr<shmetrics::vllm_metrics>> vllm_;  // llm: one per engine
  std::optional<shmetrics::omni_metrics> omni_;
  std::vector<std::unique_ptr<engine>> thinkers_, talkers_;
  std::vector<std::unique_ptr<vocoder>> vocoders_;
  std::mutex stats_m_;  // omni_metrics::record_request and the log tables
  shmetrics::pipeline_stats log_{shmetrics::stats_scope::online};
  std::atomic<bool> stop_{false};
  std::thread gauges_;
  std::unique_ptr<diffusion_pipeline> diffusion_;  // after omni_: stopped before it goes
};

}  // namespace engine_sim
