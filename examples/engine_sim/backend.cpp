#include "backend.hpp"

#include <algorithm>           // min_element
#include <chrono>              // gauge period
#include <condition_variable>  // vocoder queues
#include <cstdio>              // log tables
#include <filesystem>          // catalog lookup

#include <httplib.h>  // NIXL notices

namespace engine_sim {

using shmetrics::finish_reason;

#ifndef SHMETRICS_SOURCE_CATALOG
#define SHMETRICS_SOURCE_CATALOG ""
#endif

namespace {

// Qwen3-Omni-like sizes: the thinker hands the talker one bf16 hidden state of 2048 per
// token; the talker emits 12.5 Hz codec frames (16 codebooks, int32) that code2wav turns
// into 24 kHz audio, 1920 samples per frame.
constexpr double thinker_hidden_bytes = 2048 * 2;
constexpr double codec_frame_bytes = 16 * 4;
constexpr double samples_per_codec_frame = 1920;
constexpr double codec_frames_per_text_token = 4;
constexpr double vocoder_rtf = 0.06;  // seconds of compute per second of audio

// A shared-memory hop between stage processes: serialize, copy at ~8 GB/s, deserialize.
shmetrics::transfer_event hop(std::uint32_t from, std::uint32_t from_replica, std::uint32_t to,
                              std::uint32_t to_replica, double bytes) {
  shmetrics::transfer_event t;
  t.from_stage = from;
  t.from_replica = from_replica;
  t.to_stage = to;
  t.to_replica = to_replica;
  t.size_bytes = bytes;
  t.tx_time_ms = 0.05 + bytes / 8e9 * 1000;
  t.in_flight_time_ms = 0.02 + bytes / 20e9 * 1000;
  t.rx_decode_time_ms = 0.04 + bytes / 10e9 * 1000;
  return t;
}

// The thinker's or talker's stage (r.stage) of a request that its engine finished at `end`.
shmetrics::stage_event engine_stage(const request& r, double end) {
  shmetrics::stage_event s;
  s.stage = r.stage;
  s.replica = r.replica;
  s.num_tokens_in = r.prompt.size();
  s.num_tokens_out = r.total_generated();
  s.start_ms = r.arrival * 1000;
  s.end_ms = end * 1000;
  s.stage_gen_time_ms = r.first_token_ts > 0 ? (r.last_token_ts - r.scheduled_ts) * 1000 : 0;
  return s;
}

template <class Vec>
std::size_t least_loaded(const Vec& engines) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < engines.size(); ++i)
    if (engines[i]->load() < engines[best]->load()) best = i;
  return best;
}

}  // namespace

std::unique_ptr<backend> backend::create(const options& opt, std::string& err) {
  std::unique_ptr<backend> b(new backend(opt));
  if (!b->init(err)) return nullptr;
  return b;
}

bool backend::init(std::string& err) {
  // The catalog: --catalog, $SHMETRICS_CATALOG or the installed copy, else the source tree's.
  std::string path = opt_.catalog;
  if (path.empty()) {
    path = shmetrics::catalog::default_path();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec) && *SHMETRICS_SOURCE_CATALOG)
      path = SHMETRICS_SOURCE_CATALOG;
  }
  auto cat = shmetrics::catalog::load(path);
  if (!cat) {
    err = cat.error().message();
    return false;
  }
  cat_ = std::move(*cat);

  shmetrics::registry_options ro;
  ro.dir = opt_.shm_dir;
  ro.prefix = opt_.shm_prefix;
  auto new_registry = [&]() -> shmetrics::registry* {
    auto r = shmetrics::registry::create(ro);
    if (!r) {
      err = r.error().message();
      return nullptr;
    }
    regs_.push_back(std::make_unique<shmetrics::registry>(std::move(*r)));
    return regs_.back().get();
  };
  const auto& e = opt_.engine;
  std::vector<std::pair<std::string, std::string>> cache_config = {
      {"block_size", std::to_string(e.block_size)},
      {"cache_dtype", "auto"},
      {"enable_prefix_caching", e.enable_prefix_caching ? "True" : "False"},
      {"gpu_memory_utilization", "0.9"},
      {"num_cpu_blocks", "0"},
      {"num_gpu_blocks", std::to_string(e.num_gpu_blocks)},
  };

  if (opt_.pipeline == pipeline_kind::llm) {
    // Data parallel: one engine core per rank, each in its own segment (vLLM's DP
    // engines are processes); the exporter merges them by the engine label.
    for (std::uint32_t i = 0; i < opt_.data_parallel_size; ++i) {
      shmetrics::vllm_metrics* vm = nullptr;
      if (opt_.stats()) {
        auto* reg = new_registry();
        if (!reg) return false;
        shmetrics::vllm_options vo;
        vo.model_name = opt_.served_model_name;
        vo.engines = opt_.data_parallel_size;
        vo.max_model_len = e.max_model_len;
        vo.cache_config = cache_config;
        vo.num_speculative_tokens = e.num_speculative_tokens;
        vo.kv_cache_metrics = e.kv_cache_metrics;
        vo.max_loras = e.max_loras;
        vo.kv_offload = e.offload_cpu_blocks > 0;
        vo.nixl = e.nixl;
        // No engine label (vLLM counts them in its front end): in the first segment only.
        vo.admission_control = i == 0 && (opt_.max_num_queued_reqs || opt_.max_num_queued_tokens);
        // The API server's families (no engine label): in the first segment only.
        vo.sleep_mode = e.enable_sleep_mode && i == 0;
        auto m = shmetrics::vllm_metrics::create(*reg, cat_, vo);
        if (!m) {
          err = m.error().message();
          return false;
        }
        vllm_.push_back(std::make_unique<shmetrics::vllm_metrics>(std::move(*m)));
        vm = vllm_.back().get();
      }
      auto cfg = e;
      // vLLM's data-parallel ranks each have their own KV engine id.
      if (e.nixl && opt_.data_parallel_size > 1) cfg.nixl_engine_id += "_dp" + std::to_string(i);
      thinkers_.push_back(std::make_unique<engine>(cfg, vm, i));
      if (e.nixl)
        thinkers_.back()->on_kv_pulled([this, eng = thinkers_.back().get()](const request& r) {
          {
            std::lock_guard lk(notify_m_);
            notices_.push_back({r.kv_params, eng});
          }
          notify_cv_.notify_all();
        });
    }
    if (e.nixl) notifier_ = std::thread([this] { notify_loop(); });
    return true;
  }

  if (opt_.pipeline == pipeline_kind::diffusion) {
    // vLLM-Omni serving a diffusion model: one diffusion stage, its replicas, the Omni
    // pipeline and diffusion / image families (extended), and no vllm:* family at all.
    auto* reg = new_registry();
    if (!reg) return false;
    shmetrics::omni_options oo;
    oo.model_name = opt_.served_model_name;
    oo.log_stats = opt_.stats();
    oo.extended_families = true;
    oo.stages = {{opt_.replicas[0], shmetrics::stage_kind::diffusion}};
    auto om = shmetrics::omni_metrics::create(*reg, cat_, oo);
    if (!om) {
      err = om.error().message();
      return false;
    }
    omni_.emplace(std::move(*om));
    diffusion_config dc;
    dc.replicas = opt_.replicas[0];
    dc.default_steps = opt_.num_inference_steps;
    dc.time_scale = e.time_scale;
    diffusion_ =
        std::make_unique<diffusion_pipeline>(dc, &*omni_, opt_.served_model_name, opt_.stats());
    return true;
  }

  auto* reg = new_registry();
  if (!reg) return false;
  shmetrics::omni_options oo;
  oo.model_name = opt_.served_model_name;
  oo.log_stats = opt_.stats();
  oo.stages = {{opt_.replicas[0], shmetrics::stage_kind::llm},
               {opt_.replicas[1], shmetrics::stage_kind::llm},
               {opt_.replicas[2], shmetrics::stage_kind::audio}};
  oo.audio_sample_rate = opt_.audio_sample_rate;
  oo.vllm.max_model_len = e.max_model_len;
  oo.vllm.cache_config = cache_config;
  auto om = shmetrics::omni_metrics::create(*reg, cat_, oo);
  if (!om) {
    err = om.error().message();
    return false;
  }
  omni_.emplace(std::move(*om));
  auto* vm = omni_->engine_metrics();
  for (std::uint32_t s = 0; s < 2; ++s) {
    for (std::uint32_t i = 0; i < opt_.replicas[s]; ++i) {
      long idx = omni_->engine_index(s, i);
      auto eng = std::make_unique<engine>(e, idx >= 0 ? vm : nullptr,
                                          static_cast<std::size_t>(std::max(idx, 0L)));
      if (s == 0)
        eng->on_finished(
            [this](const std::shared_ptr<request>& r) { return on_thinker_finished(r); });
      else
        eng->on_finished(
            [this](const std::shared_ptr<request>& t) { return on_talker_finished(t); });
      (s == 0 ? thinkers_ : talkers_).push_back(std::move(eng));
    }
  }
  for (std::uint32_t i = 0; i < opt_.replicas[2]; ++i) {
    vocoders_.push_back(std::make_unique<vocoder>());
    auto* v = vocoders_.back().get();
    v->thread = std::thread([this, v, i] {
      for (;;) {
        std::shared_ptr<request> t;
        {
          std::unique_lock lk(v->m);
          v->cv.wait(lk, [&] { return v->stop || !v->queue.empty(); });
          if (v->stop) return;
          t = std::move(v->queue.front());
          v->queue.pop_front();
        }
        vocode(i, std::move(t));
        v->load.fetch_sub(1, std::memory_order_relaxed);
      }
    });
  }
  if (opt_.stats()) gauges_ = std::thread([this] { gauge_loop(); });
  return true;
}

backend::~backend() {
  if (notifier_.joinable()) {  // notices not sent yet are dropped: the prefill side expires
    {
      std::lock_guard lk(notify_m_);
      notify_stop_ = true;
    }
    notify_cv_.notify_all();
    notifier_.join();
  }
  diffusion_.reset();  // its workers record into omni_
  stop_ = true;
  if (gauges_.joinable()) gauges_.join();
  for (auto& v : vocoders_) {
    {
      std::lock_guard lk(v->m);
      v->stop = true;
    }
    v->cv.notify_all();
    v->thread.join();
  }
  // Engines stop (and abort what they hold) before the metrics they record into go.
  talkers_.clear();
  thinkers_.clear();
}

std::vector<std::string> backend::segment_paths() const {
  std::vector<std::string> out;
  for (auto& r : regs_)
    out.push_back(r->path());
  return out;
}

std::shared_ptr<request> backend::submit(const api_request& a, std::string id, double arrival,
                                         api_error& err) {
  std::unique_lock admission(admission_m_, std::defer_lock);
  if (opt_.max_num_queued_reqs || opt_.max_num_queued_tokens) {
    // vLLM's check_admission (PR #49445): the requests in flight (waiting or running; n
    // sequences each) first, then the prompt tokens of those still in their prefill.
    admission.lock();
    std::uint64_t seqs = 0, tokens = 0;
    for (auto& e : thinkers_) {
      seqs += e->inflight_seqs();
      tokens += e->prefill_tokens();
    }
    auto refuse = [&](shmetrics::admission_reason why, std::string msg) {
      if (!vllm_.empty()) vllm_.front()->record_admission_rejection(why);
      err = {503, std::move(msg), {}};
      return nullptr;
    };
    if (opt_.max_num_queued_reqs && seqs + a.n > opt_.max_num_queued_reqs)
      return refuse(shmetrics::admission_reason::max_num_queued_reqs,
                    "The server is at capacity: " + std::to_string(seqs) +
                        " sequences in flight and this request's " + std::to_string(a.n) +
                        " would exceed --max-num-queued-reqs " +
                        std::to_string(opt_.max_num_queued_reqs) +
                        ". Retry later or on another instance.");
    if (opt_.max_num_queued_tokens && tokens + a.prompt.size() > opt_.max_num_queued_tokens)
      return refuse(shmetrics::admission_reason::max_num_queued_tokens,
                    "The server is at capacity: " + std::to_string(tokens) +
                        " prompt tokens waiting for prefill and this request's " +
                        std::to_string(a.prompt.size()) + " would exceed --max-num-queued-tokens " +
                        std::to_string(opt_.max_num_queued_tokens) +
                        ". Retry later or on another instance.");
  }
  auto r = std::make_shared<request>();
  r->priority = a.priority;
  r->images = a.images;
  r->id = std::move(id);
  r->prompt = a.prompt;
  r->max_tokens_set = a.max_tokens_set;
  r->max_tokens = a.max_tokens;
  r->n = a.n;
  r->ignore_eos = a.ignore_eos;
  r->kv_params = a.kv_params;
  if (opt_.is_lora_module(a.model)) r->lora = a.model;
  r->arrival = arrival;
  r->wants_audio = omni_ && a.audio;
  std::size_t i = least_loaded(thinkers_);
  r->replica = static_cast<std::uint32_t>(i);
  r->record.request_id = r->id;
  r->record.arrival_ms = arrival * 1000;
  inflight_.fetch_add(1, std::memory_order_relaxed);
  thinkers_[i]->submit(r);
  return r;
}

void backend::abort(const std::shared_ptr<request>& r) {
  if (r->owner) r->owner->abort(r);
  std::shared_ptr<request> child;
  {
    std::lock_guard lk(r->m);
    child = r->child;
  }
  if (child && child->owner) child->owner->abort(child);
}

bool backend::on_thinker_finished(const std::shared_ptr<request>& r) {
  double t = engine::now();
  r->record.stages = {engine_stage(*r, t)};
  if (!omni_) return false;
  bool audio = r->wants_audio && r->reason != finish_reason::abort &&
               r->reason != finish_reason::error && r->total_generated() > 0;
  if (!audio) {
    complete(*r, {});
    return false;
  }
  // Talker: conditioned on the thinker's hidden states, it speaks the answer.
  std::size_t k = least_loaded(talkers_);
  auto tk = std::make_shared<request>();
  tk->id = r->id + "-talker";
  tk->parent = r;
  tk->stage = 1;
  tk->replica = static_cast<std::uint32_t>(k);
  std::uint32_t text = r->total_generated();
  std::uint32_t max_len = opt_.engine.max_model_len;
  std::uint32_t in = std::min(text + 32, max_len / 2);
  for (std::uint32_t i = 0; i < in; ++i)
    tk->prompt.push_back((r->prompt[i % r->prompt.size()] * 31 + i) % 32000);
  tk->max_tokens = std::max<std::uint32_t>(
      1, std::min<std::uint32_t>(static_cast<std::uint32_t>(text * codec_frames_per_text_token),
                                 max_len - in));
  tk->ignore_eos = true;
  tk->arrival = t;
  r->record.transfers.push_back(
      hop(0, r->replica, 1, tk->replica,
          static_cast<double>(r->prompt.size() + text) * thinker_hidden_bytes));
  {
    std::lock_guard lk(r->m);
    r->child = tk;
  }
  talkers_[k]->submit(tk);
  return true;
}

bool backend::on_talker_finished(const std::shared_ptr<request>& t) {
  auto& p = *t->parent;
  auto s = engine_stage(*t, engine::now());
  p.record.stages.push_back(s);
  if (t->reason == finish_reason::abort || p.abort_requested.load()) {
    {
      std::lock_guard lk(p.m);
      p.reason = finish_reason::abort;
    }
    complete(p, {});
    return false;
  }
  std::size_t k = 0;
  for (std::size_t i = 1; i < vocoders_.size(); ++i)
    if (vocoders_[i]->load.load() < vocoders_[k]->load.load()) k = i;
  p.record.transfers.push_back(
      hop(1, t->replica, 2, static_cast<std::uint32_t>(k), s.num_tokens_out * codec_frame_bytes));
  auto& v = *vocoders_[k];
  v.load.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lk(v.m);
    v.queue.push_back(t);
  }
  v.cv.notify_all();
  return false;
}

void backend::vocode(std::uint32_t replica, std::shared_ptr<request> t) {
  auto& p = *t->parent;
  double start = engine::now();
  double frames = t->total_generated() * samples_per_codec_frame;
  double audio_s = frames / opt_.audio_sample_rate;
  double gen_s = audio_s * vocoder_rtf;
  // The first packet (25 codec frames, 2 s of audio) is out after its share of the work.
  double first_s = std::min(gen_s, 2.0 * vocoder_rtf);
  std::this_thread::sleep_for(std::chrono::duration<double>(gen_s * opt_.engine.time_scale));
  double end = engine::now();
  shmetrics::stage_event s;
  s.stage = 2;
  s.replica = replica;
  s.num_tokens_in = t->total_generated();
  s.num_tokens_out = 0;
  s.stage_gen_time_ms = (end - start) * 1000;
  s.audio_generated_frames = static_cast<std::uint64_t>(frames);
  s.start_ms = start * 1000;
  s.end_ms = end * 1000;
  s.audio_ttfp_s = start + first_s * opt_.engine.time_scale - p.arrival;
  s.audio_underrun_s = 0;  // code2wav runs faster than real time: the player never starves
  p.record.stages.push_back(s);
  if (p.abort_requested.load()) {
    {
      std::lock_guard lk(p.m);
      p.reason = finish_reason::abort;
    }
    complete(p, {});
    return;
  }
  if (omni_ && omni_->log_stats()) {
    std::lock_guard lk(stats_m_);
    omni_->record_audio_first_packet(2, replica, s.audio_ttfp_s);
  }
  // OpenAI's ChatCompletionAudio (id, data, expires_at, transcript: all required by the
  // SDK's model) as vLLM-Omni fills it: expiry 24 h from now, an empty transcript; no
  // samples in data; plus what was simulated.
  auto expires = std::chrono::duration_cast<std::chrono::seconds>(
                     (std::chrono::system_clock::now() + std::chrono::hours(24)).time_since_epoch())
                     .count();
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "{\"id\":\"audio-%s\",\"data\":\"\",\"expires_at\":%lld,\"transcript\":\"\","
                "\"format\":\"pcm16\",\"sample_rate\":%.0f,\"frames\":%.0f,\"duration_s\":%.3f}",
                p.id.c_str(), static_cast<long long>(expires), opt_.audio_sample_rate, frames,
                audio_s);
  complete(p, buf);
}

void backend::complete(request& r, std::string audio_json) {
  r.record.finish_ms = engine::now() * 1000;
  {
    std::lock_guard lk(r.m);
    r.record.reason = r.reason;
  }
  if (omni_ && omni_->log_stats()) {
    std::lock_guard lk(stats_m_);
    omni_->record_request(r.record);
    log_.add(r.record, r.record.arrival_ms);
    std::fputs(log_.report().c_str(), stderr);
  }
  {
    std::lock_guard lk(r.m);
    r.audio_json = std::move(audio_json);
    r.complete = true;
    // The talker request holds its parent (t->parent); dropping the parent's hold on it
    // breaks that shared_ptr cycle, or both leak with every audio request. The caller
    // (the talker's engine thread or vocoder) still holds the talker.
    r.child.reset();
  }
  r.cv.notify_all();
  inflight_.fetch_sub(1, std::memory_order_relaxed);
}

void backend::set_side_channel(const std::string& host, int port) {
  // A wildcard address is not one to connect to; vLLM's side channel defaults to localhost.
  side_host_ = host == "0.0.0.0" || host == "::" ? "localhost" : host;
  side_port_ = port;
}

std::string backend::kv_transfer_params_of(const request& r) const {
  if (r.held_block_ids.empty() || !r.owner) return {};
  return kv_transfer_params_json(r.held_block_ids, r.owner->config().nixl_engine_id, r.id,
                                 side_host_, side_port_.load());
}

void backend::nixl_read_done(const std::string& engine_id, const std::string& request_id) {
  for (auto& e : thinkers_)
    if (e->config().nixl && e->config().nixl_engine_id == engine_id) e->nixl_read_done(request_id);
}

// Tells each prefill instance that its KV was read, as the NIXL read's notification does:
// POST /internal/nixl/notify to its remote_host:remote_port. One that does not answer
// counts in vllm:nixl_num_failed_notifications (its KV expires there).
void backend::notify_loop() {
  for (;;) {
    notice n;
    {
      std::unique_lock lk(notify_m_);
      notify_cv_.wait(lk, [&] { return notify_stop_ || !notices_.empty(); });
      if (notify_stop_) return;
      n = std::move(notices_.front());
      notices_.pop_front();
    }
    httplib::Client cli(n.to.remote_host, static_cast<int>(n.to.remote_port));
    cli.set_connection_timeout(0, 500000);  // short: shutdown joins this thread
    cli.set_read_timeout(0, 500000);
    cli.set_write_timeout(0, 500000);
    std::string body = "{\"remote_engine_id\":" + json_string(n.to.remote_engine_id) +
                       ",\"remote_request_id\":" + json_string(n.to.remote_request_id) + "}";
    auto res = cli.Post("/internal/nixl/notify", body, "application/json");
    if (!res || res->status != 200) n.from->count_failed_notification();
  }
}

// Sleep mode. vLLM's EngineCore.sleep: pause the scheduler (mode), then for level >= 1
// put the executor to sleep (level 1 offloads the weights, level 2 discards them);
// wake_up wakes the tags given and, once nothing sleeps, resumes the scheduler.
namespace {
shmetrics::sleep_operation timed_op(bool wake) {
  return wake ? shmetrics::sleep_operation::wake : shmetrics::sleep_operation::sleep;
}
}  // namespace

void backend::record_sleep_state(int level) {
  auto s = level == 1   ? shmetrics::sleep_state::weights_offloaded
           : level == 2 ? shmetrics::sleep_state::discard_all
                        : shmetrics::sleep_state::awake;
  for (std::size_t i = 0; i < vllm_.size(); ++i)
    vllm_[i]->record_sleep_state(i, s);
}

bool backend::sleep(int level, const std::string& mode) {
  if (mode != "abort" && mode != "wait" && mode != "keep") return false;
  auto* vm = vllm_.empty() ? nullptr : vllm_.front().get();
  auto t0 = std::chrono::steady_clock::now();
  if (vm) vm->begin_sleep_mode_operation(timed_op(false));
  {
    std::lock_guard lk(sleep_m_);
    for (auto& e : thinkers_)
      e->pause(mode == "abort", mode == "keep");
    paused_ = true;
  }
  if (mode == "wait")  // the running requests finish first
    for (;;) {
      bool busy = false;
      for (auto& e : thinkers_)
        busy = busy || e->running() > 0;
      if (!busy) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  if (level >= 1) {
    // Simulated cost: level 1 copies the weights to the CPU, level 2 only frees them.
    double cost_s = level == 1 ? 0.05 : 0.02;
    std::this_thread::sleep_for(std::chrono::duration<double>(cost_s * opt_.engine.time_scale));
    std::lock_guard lk(sleep_m_);
    asleep_ = {"weights", "kv_cache"};
    record_sleep_state(level);
  }
  if (vm)
    vm->end_sleep_mode_operation(
        timed_op(false),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return true;
}

bool backend::wake_up(const std::vector<std::string>& tags) {
  auto* vm = vllm_.empty() ? nullptr : vllm_.front().get();
  auto t0 = std::chrono::steady_clock::now();
  if (vm) vm->begin_sleep_mode_operation(timed_op(true));
  bool awake = false;
  {
    std::lock_guard lk(sleep_m_);
    auto woken = [&](const std::string& t) {  // no tag given: every tag
      return tags.empty() || std::count(tags.begin(), tags.end(), t) > 0;
    };
    bool weights = std::count(asleep_.begin(), asleep_.end(), "weights") > 0 && woken("weights");
    std::erase_if(asleep_, woken);
    // Simulated cost: the weights come back from the CPU.
    if (weights)
      std::this_thread::sleep_for(std::chrono::duration<double>(0.05 * opt_.engine.time_scale));
    awake = asleep_.empty();
    if (awake) {
      if (paused_)
        for (auto& e : thinkers_)
          e->resume();
      paused_ = false;
      record_sleep_state(0);
    }
  }
  if (vm)
    vm->end_sleep_mode_operation(
        timed_op(true),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return awake;
}

bool backend::is_sleeping() {
  std::lock_guard lk(sleep_m_);
  return !asleep_.empty();
}

void backend::gauge_loop() {
  // vllm:omni_num_requests_{running,waiting} are pipeline-wide: refreshed every 100 ms,
  // so they are back to 0 well within a second of the last request.
  while (!stop_) {
    std::uint32_t waiting = 0;
    for (auto& e : thinkers_)
      waiting += e->load() - std::min(e->load(), e->running());
    std::uint32_t all = inflight_.load(std::memory_order_relaxed);
    omni_->set_requests(all - std::min(all, waiting), std::min(all, waiting));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace engine_sim
