// --pipeline diffusion: a single-stage text-to-image model like Z-Image-Turbo on one GPU,
// `replicas` workers behind one FIFO queue. A request is preprocessed (text encoder),
// denoised step by step, VAE-decoded and postprocessed (a real PNG encode); each phase
// is timed and recorded into vLLM-Omni's diffusion / image families through
// omni_metrics (extended families; no vllm:* family exists: no autoregressive engine).
#pragma once

#include <atomic>              // abort flag
#include <condition_variable>  // queue, completion
#include <cstdint>             // counts
#include <deque>               // queue
#include <memory>              // jobs
#include <mutex>               // queue, stats
#include <string>              // ids, images
#include <thread>              // workers
#include <vector>              // replicas, images

#include <shmetrics/catalog/omni_metrics.hpp>
#include <shmetrics/catalog/pipeline_stats.hpp>

#include "openai.hpp"

namespace engine_sim {

struct diffusion_config {
  std::uint32_t replicas = 1;
  std::uint32_t default_steps = 8;  ///< Z-Image-Turbo's default num_inference_steps
  // One image at 1024x1024 (1 MPix = 2^20 pixels) on one GPU; compute scales with pixels
  // times images (the n images of a request are one batch).
  double step_s_per_mpix = 0.30;          ///< one denoising step (DiT forward)
  double preprocess_s = 0.04;             ///< text encoder
  double vae_s_per_mpix = 0.12;           ///< VAE decode
  double postprocess_s_per_image = 0.01;  ///< to CPU, plus the real PNG encode
  double weights_mb = 12288;              ///< 6B parameters in bf16
  double activation_mb_per_mpix = 1800;   ///< latents, attention, VAE buffers
  double time_scale = 1.0;                ///< multiplies every simulated time
};

/// One images request, shared by the HTTP handler (waits on cv) and a worker.
struct image_job {
  image_request in;
  std::string id;
  double arrival = 0;  ///< engine clock, seconds
  std::atomic<bool> abort_requested{false};
  std::mutex m;
  std::condition_variable cv;
  bool complete = false;                                             ///< under m
  shmetrics::finish_reason reason = shmetrics::finish_reason::stop;  ///< under m
  std::vector<std::string> b64_pngs;                                 ///< under m
};

class diffusion_pipeline {
 public:
  /// `om` null: nothing is recorded. `log_tables`: print the pipeline-stats tables.
  diffusion_pipeline(const diffusion_config& cfg, shmetrics::omni_metrics* om,
                     const std::string& model_name, bool log_tables);
  ~diffusion_pipeline();
  diffusion_pipeline(const diffusion_pipeline&) = delete;
  diffusion_pipeline& operator=(const diffusion_pipeline&) = delete;

  std::shared_ptr<image_job> submit(image_request in, std::string id, double arrival);
  /// The client went away: dropped from the queue, or stopped at the next step.
  void abort(const std::shared_ptr<image_job>& j);
  std::uint32_t default_steps() const noexcept { return cfg_.default_steps; }

 private:
  struct per_replica {
    shmetrics::histogram preprocess, exec, exec_per_step, postprocess, vae, ttfp, denoise;
  };
  void worker(std::uint32_t replica);
  void run(std::uint32_t replica, const std::shared_ptr<image_job>& j);
  void finish(const std::shared_ptr<image_job>& j, shmetrics::request_record& rec,
              shmetrics::finish_reason why, std::vector<std::string> images);
  void publish_gauges();  // under m_
  void sleep_s(double simulated_s, const image_job& j) const;

  diffusion_config cfg_;
  shmetrics::omni_metrics* om_;
  bool log_tables_;
  std::vector<per_replica> h_;
  shmetrics::histogram steps_, pixels_, queue_wait_, stage_in_queue_, gen_time_;
  shmetrics::counter images_, failed_disconnect_;
  shmetrics::gauge stage_waiting_, peak_memory_;
  double peak_mb_ = 0;  // under m_

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<image_job>> queue_;
  std::uint32_t running_ = 0;
  bool stop_ = false;
  std::atomic<bool> halt_{false};  // shutting down: running jobs stop at the next phase
  std::mutex stats_m_;             // record_request and the log tables
  shmetrics::pipeline_stats log_{shmetrics::stats_scope::online};
  std::vector<std::thread> workers_;
};

}  // namespace engine_sim
