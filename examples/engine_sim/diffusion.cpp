#include "diffusion.hpp"

#include <algorithm>   // max
#include <chrono>      // sleeps
#include <cstdio>      // log tables
#include <functional>  // hash

#include "engine.hpp"  // engine::now, the process clock
#include "png.hpp"

namespace engine_sim {

using shmetrics::finish_reason;

namespace {

constexpr double mpix = 1024.0 * 1024.0;

// The pre-created child `i` of an Omni family, or an inert handle (family absent,
// --log-stats off).
const shmetrics::catalog_detail::bound_family* fam(shmetrics::omni_metrics* om,
                                                   std::string_view key) {
  return om ? om->family(key) : nullptr;
}
shmetrics::histogram hst(shmetrics::omni_metrics* om, std::string_view key, std::size_t i = 0) {
  auto* b = fam(om, key);
  return b ? b->hst(i) : shmetrics::histogram{};
}

}  // namespace

diffusion_pipeline::diffusion_pipeline(const diffusion_config& cfg, shmetrics::omni_metrics* om,
                                       const std::string& model_name, bool log_tables)
    : cfg_(cfg), om_(om && om->log_stats() ? om : nullptr), log_tables_(log_tables) {
  // Handles resolved once: the per-request path below does no lookup. Children: one per
  // replica of stage 0 for {model_name, stage, replica}, one for {model_name, stage} and
  // for {model_name}.
  for (std::uint32_t r = 0; r < cfg_.replicas; ++r)
    h_.push_back({hst(om_, "omni/diffusion_preprocess_s", r), hst(om_, "omni/diffusion_exec_s", r),
                  hst(om_, "omni/diffusion_exec_per_step_s", r),
                  hst(om_, "omni/diffusion_postprocess_s", r), hst(om_, "omni/vae_decode_s", r),
                  hst(om_, "omni/image_ttfp_s", r), hst(om_, "omni/denoise_step_latency_s", r)});
  steps_ = hst(om_, "omni/num_inference_steps");
  pixels_ = hst(om_, "omni/image_pixels");
  queue_wait_ = hst(om_, "omni/request_queue_wait_s");
  stage_in_queue_ = hst(om_, "omni/stage_in_queue_s");
  if (auto* b = fam(om_, "omni/image_count_total")) images_ = b->ctr(0);
  if (auto* b = fam(om_, "omni/stage_waiting_requests")) stage_waiting_ = b->gge(0);
  if (auto* b = fam(om_, "omni/peak_memory_mb")) peak_memory_ = b->gge(0);
  if (auto* b = fam(om_, "omni/requests_failed_total"))
    if (auto* v = b->def->values_of("reason"))
      for (std::size_t i = 0; i < v->size(); ++i)
        if ((*v)[i] == "client_disconnect") failed_disconnect_ = b->ctr(0, i);
  // stage_type is not enumerated by the catalog: this one child is made here.
  if (auto* b = fam(om_, "omni/stage_gen_time_s")) {
    std::vector<std::string_view> v;
    for (auto& l : b->labels)
      v.push_back(l == "model_name" ? std::string_view(model_name)
                  : l == "stage"    ? std::string_view("0")
                                    : std::string_view("diffusion"));
    if (auto h = b->histograms.with_labels(v)) gen_time_ = *h;
  }
  {
    std::lock_guard lk(m_);
    peak_mb_ = cfg_.weights_mb;  // the weights are resident from the start
    peak_memory_.set(peak_mb_);
    publish_gauges();
  }
  for (std::uint32_t r = 0; r < cfg_.replicas; ++r)
    workers_.emplace_back([this, r] { worker(r); });
}

diffusion_pipeline::~diffusion_pipeline() {
  halt_ = true;
  {
    std::lock_guard lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_)
    w.join();
  // Whatever is still queued is answered (aborted), so no handler waits forever.
  for (auto& j : queue_) {
    shmetrics::request_record rec;
    rec.request_id = j->id;
    rec.arrival_ms = j->arrival * 1000;
    finish(j, rec, finish_reason::abort, {});
  }
}

std::shared_ptr<image_job> diffusion_pipeline::submit(image_request in, std::string id,
                                                      double arrival) {
  auto j = std::make_shared<image_job>();
  if (in.steps == 0) in.steps = cfg_.default_steps;
  j->in = std::move(in);
  j->id = std::move(id);
  j->arrival = arrival;
  {
    std::lock_guard lk(m_);
    queue_.push_back(j);
    publish_gauges();
  }
  cv_.notify_one();
  return j;
}

void diffusion_pipeline::abort(const std::shared_ptr<image_job>& j) {
  j->abort_requested = true;
  bool dropped = false;
  {
    std::lock_guard lk(m_);
    auto it = std::find(queue_.begin(), queue_.end(), j);
    if (it != queue_.end()) {
      queue_.erase(it);
      dropped = true;
      publish_gauges();
    }
  }
  if (dropped) {  // never started: recorded here; a running one is stopped by its worker
    shmetrics::request_record rec;
    rec.request_id = j->id;
    rec.arrival_ms = j->arrival * 1000;
    failed_disconnect_.inc();
    finish(j, rec, finish_reason::abort, {});
  }
}

void diffusion_pipeline::publish_gauges() {
  auto waiting = static_cast<std::uint32_t>(queue_.size());
  if (om_) om_->set_requests(running_, waiting);
  stage_waiting_.set(waiting);
}

void diffusion_pipeline::sleep_s(double simulated_s, const image_job& j) const {
  // In slices, so that an abort or a shutdown does not wait for a long step (a batch of
  // ten 2048x2048 images takes seconds per step).
  auto until = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(simulated_s * cfg_.time_scale));
  while (!halt_ && !j.abort_requested) {
    auto now = std::chrono::steady_clock::now();
    if (now >= until) break;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(20)));
  }
}

void diffusion_pipeline::worker(std::uint32_t replica) {
  for (;;) {
    std::shared_ptr<image_job> j;
    {
      std::unique_lock lk(m_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      j = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
      double need = cfg_.weights_mb +
                    cfg_.activation_mb_per_mpix * j->in.width * j->in.height * j->in.n / mpix;
      if (need > peak_mb_) {
        peak_mb_ = need;
        peak_memory_.set(peak_mb_);
      }
      publish_gauges();
    }
    run(replica, j);
    std::lock_guard lk(m_);
    --running_;
    publish_gauges();
  }
}

void diffusion_pipeline::run(std::uint32_t replica, const std::shared_ptr<image_job>& j) {
  auto& h = h_[replica];
  const auto& in = j->in;
  double start = engine::now();
  double waited = start - j->arrival;
  queue_wait_.observe(waited);
  stage_in_queue_.observe(waited);
  shmetrics::request_record rec;
  rec.request_id = j->id;
  rec.arrival_ms = j->arrival * 1000;
  shmetrics::stage_event st;
  st.stage = 0;
  st.replica = replica;
  st.batch_size = in.n;
  st.image_num = in.n;
  st.resolution = std::to_string(in.width) + "x" + std::to_string(in.height);
  st.start_ms = start * 1000;
  auto stopped = [&] {
    bool left = j->abort_requested;
    if (!left && !halt_) return false;
    st.end_ms = engine::now() * 1000;
    rec.stages = {st};
    if (left) failed_disconnect_.inc();
    finish(j, rec, finish_reason::abort, {});
    return true;
  };
  const double work = double(in.width) * in.height * in.n / mpix;  // batch MPix

  sleep_s(cfg_.preprocess_s, *j);
  double t_pre = engine::now();
  if (stopped()) return;
  for (std::uint32_t s = 0; s < in.steps; ++s) {
    double t0 = engine::now();
    sleep_s(cfg_.step_s_per_mpix * work, *j);
    h.denoise.observe(engine::now() - t0);
    if (stopped()) return;
  }
  double t_denoised = engine::now();
  sleep_s(cfg_.vae_s_per_mpix * work, *j);
  double t_decoded = engine::now();
  if (stopped()) return;

  // Postprocess: the real PNG encode, plus the device-to-host copy it models.
  std::vector<std::string> images;
  std::uint64_t seed = std::hash<std::string>{}(in.prompt);
  for (std::uint32_t i = 0; i < in.n; ++i)
    images.push_back(base64(render_png(in.width, in.height, seed + i * 0x9E3779B97F4A7C15ull)));
  sleep_s(cfg_.postprocess_s_per_image * in.n, *j);
  double end = engine::now();

  double exec = t_decoded - t_pre;  // the pipeline forward: denoising loop + VAE
  h.preprocess.observe(t_pre - start);
  h.exec.observe(exec);
  h.exec_per_step.observe(exec / in.steps);
  h.vae.observe(t_decoded - t_denoised);
  h.postprocess.observe(end - t_decoded);
  h.ttfp.observe(t_decoded - j->arrival);  // the batch's images are ready together
  gen_time_.observe(exec);
  steps_.observe(in.steps);
  for (std::uint32_t i = 0; i < in.n; ++i)
    pixels_.observe(double(in.width) * in.height);
  images_.add(in.n);

  st.stage_gen_time_ms = exec * 1000;
  st.postprocess_time_ms = (end - t_decoded) * 1000;
  st.end_ms = end * 1000;
  rec.stages = {st};
  if (log_tables_) {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "DiffusionTiming %s\n| Field | Value |\n|---|---|\n"
                  "| queue_ms | %.3f |\n| preprocess_ms | %.3f |\n| exec_ms | %.3f |\n"
                  "| exec_per_step_ms | %.3f |\n| vae_decode_ms | %.3f |\n"
                  "| postprocess_ms | %.3f |\n| num_inference_steps | %u |\n",
                  j->id.c_str(), waited * 1000, (t_pre - start) * 1000, exec * 1000,
                  exec / in.steps * 1000, (t_decoded - t_denoised) * 1000, (end - t_decoded) * 1000,
                  in.steps);
    std::lock_guard lk(stats_m_);
    std::fputs(buf, stderr);
  }
  finish(j, rec, finish_reason::stop, std::move(images));
}

void diffusion_pipeline::finish(const std::shared_ptr<image_job>& j, shmetrics::request_record& rec,
                                finish_reason why, std::vector<std::string> images) {
  rec.finish_ms = engine::now() * 1000;
  rec.reason = why;
  {
    std::lock_guard lk(stats_m_);
    if (om_) om_->record_request(rec);  // requests_success_total, e2e_request_latency_s
    if (log_tables_) {
      log_.add(rec, rec.arrival_ms);
      std::fputs(log_.report().c_str(), stderr);
    }
  }
  {
    std::lock_guard lk(j->m);
    j->reason = why;
    j->b64_pngs = std::move(images);
    j->complete = true;
  }
  j->cv.notify_all();
}

}  // namespace engine_sim
