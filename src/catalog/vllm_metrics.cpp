// vLLM v1 families: registration from the catalog and recording as vLLM's stat logger
// (vllm/v1/metrics/loggers.py PrometheusStatLogger.record) does it.
#include <shmetrics/catalog/vllm_metrics.hpp>

#include <algorithm>  // std::max
#include <chrono>     // lora_requests_info: wall-clock time

SHMETRICS_BEGIN_NAMESPACE

namespace {

using catalog_detail::bound_family;
using layout::metric_type;

struct typed {
  std::string_view key;
  metric_type type;
};
constexpr typed typed_families[] = {
    {"vllm/num_requests_running", metric_type::gauge},
    {"vllm/num_requests_waiting", metric_type::gauge},
    {"vllm/num_requests_waiting_by_reason", metric_type::gauge},
    {"vllm/engine_sleep_state", metric_type::gauge},
    {"vllm/kv_cache_usage_perc", metric_type::gauge},
    {"vllm/cache_config_info", metric_type::info},
    {"vllm/prefix_cache_queries_total", metric_type::counter},
    {"vllm/prefix_cache_hits_total", metric_type::counter},
    {"vllm/external_prefix_cache_queries_total", metric_type::counter},
    {"vllm/external_prefix_cache_hits_total", metric_type::counter},
    {"vllm/mm_cache_queries_total", metric_type::counter},
    {"vllm/mm_cache_hits_total", metric_type::counter},
    {"vllm/num_preemptions_total", metric_type::counter},
    {"vllm/prompt_tokens_total", metric_type::counter},
    {"vllm/prompt_tokens_by_source_total", metric_type::counter},
    {"vllm/prompt_tokens_cached_total", metric_type::counter},
    {"vllm/generation_tokens_total", metric_type::counter},
    {"vllm/request_success_total", metric_type::counter},
    {"vllm/request_prompt_tokens", metric_type::histogram},
    {"vllm/request_generation_tokens", metric_type::histogram},
    {"vllm/iteration_tokens_total", metric_type::histogram},
    {"vllm/request_max_num_generation_tokens", metric_type::histogram},
    {"vllm/request_params_n", metric_type::histogram},
    {"vllm/request_params_max_tokens", metric_type::histogram},
    {"vllm/request_prefill_kv_computed_tokens", metric_type::histogram},
    {"vllm/time_to_first_token_seconds", metric_type::histogram},
    {"vllm/inter_token_latency_seconds", metric_type::histogram},
    {"vllm/request_time_per_output_token_seconds", metric_type::histogram},
    {"vllm/e2e_request_latency_seconds", metric_type::histogram},
    {"vllm/request_queue_time_seconds", metric_type::histogram},
    {"vllm/request_inference_time_seconds", metric_type::histogram},
    {"vllm/request_prefill_time_seconds", metric_type::histogram},
    {"vllm/request_decode_time_seconds", metric_type::histogram},
    {"vllm/request_num_preemptions", metric_type::histogram},
    {"vllm/estimated_flops_per_gpu_total", metric_type::counter},
    {"vllm/estimated_read_bytes_per_gpu_total", metric_type::counter},
    {"vllm/estimated_write_bytes_per_gpu_total", metric_type::counter},
    {"vllm/corrupted_requests_total", metric_type::counter},
    {"vllm/spec_decode_num_drafts_total", metric_type::counter},
    {"vllm/spec_decode_num_draft_tokens_total", metric_type::counter},
    {"vllm/spec_decode_num_accepted_tokens_total", metric_type::counter},
    {"vllm/spec_decode_num_accepted_tokens_per_pos_total", metric_type::counter},
    {"vllm/sleep_mode_operation_duration_seconds", metric_type::histogram},
    {"vllm/sleep_mode_operations_in_flight", metric_type::gauge},
    {"vllm/admission_rejections_total", metric_type::counter},
};
static_assert(std::size(typed_families) == static_cast<std::size_t>(vllm_family::count_));

// Extra-label values the typed calls index by enum: the catalog must list exactly these.
struct fixed_values {
  vllm_family family;
  std::string_view label;
  std::vector<std::string_view> values;
};
const fixed_values fixed[] = {
    {vllm_family::request_success,
     "finished_reason",
     {"stop", "length", "abort", "error", "repetition"}},
    {vllm_family::num_requests_waiting_by_reason, "reason", {"capacity", "deferred"}},
    {vllm_family::engine_sleep_state, "sleep_state", {"awake", "weights_offloaded", "discard_all"}},
    {vllm_family::prompt_tokens_by_source,
     "source",
     {"local_compute", "local_cache_hit", "external_kv_transfer"}},
    {vllm_family::sleep_mode_operation_duration,
     "operation",
     {"sleep", "release_kv_cache_memory", "wake"}},
    {vllm_family::sleep_mode_operations_in_flight,
     "operation",
     {"sleep", "release_kv_cache_memory", "wake"}},
    {vllm_family::admission_rejections, "reason", {"max_num_queued_reqs", "max_num_queued_tokens"}},
};

constexpr std::size_t idx(vllm_family f) {
  return static_cast<std::size_t>(f);
}

}  // namespace

std::string_view catalog_key(vllm_family f) noexcept {
  return idx(f) < std::size(typed_families) ? typed_families[idx(f)].key : std::string_view{};
}

finished_request_times derive_times(const finished_request& r) noexcept {
  finished_request_times t{};
  t.e2e_latency = r.finished_time - r.arrival_time;
  t.queued_time = r.scheduled_ts - r.queued_ts;         // first QUEUED -> first SCHEDULED
  t.prefill_time = r.first_token_ts - r.scheduled_ts;   // preemptions in prefill included
  t.decode_time = r.last_token_ts - r.first_token_ts;   // preemptions in decode included
  t.inference_time = r.last_token_ts - r.scheduled_ts;  // prefill + decode
  // The prefill phase's token is not a decode token.
  t.mean_time_per_output_token =
      r.num_generation_tokens > 1 ? t.decode_time / static_cast<double>(r.num_generation_tokens - 1)
                                  : 0.0;
  return t;
}

result<vllm_metrics> vllm_metrics::create(registry& reg, const catalog& cat,
                                          const vllm_options& opt) {
  auto fail = [&](const std::string& what) {
    return error{errc::corrupt_record, 0, "catalog " + cat.origin() + ": " + what};
  };
  // The typed API and the catalog must agree before anything is registered.
  for (auto& t : typed_families) {
    const family_def* d = cat.find(t.key);
    if (!d && cat.is_selection()) continue;  // not picked: its record calls do nothing
    if (!d) return fail("typed family " + std::string(t.key) + " is missing");
    if (d->type != t.type) return fail(d->name + ": type differs from the typed API");
  }
  for (auto& fv : fixed) {
    const family_def* d = cat.find(catalog_key(fv.family));
    if (!d) continue;  // not picked (a selection)
    const auto* v = d->values_of(fv.label);
    bool same = v && v->size() == fv.values.size();
    for (std::size_t i = 0; same && i < fv.values.size(); ++i)
      same = (*v)[i] == fv.values[i];
    if (!same)
      return fail(d->name + ": label_values." + std::string(fv.label) +
                  " differ from the typed API's");
  }

  vllm_metrics m;
  m.index_.fill(-1);
  const bool reshape = !opt.stage_replicas.empty();
  m.engines_ = reshape ? opt.stage_replicas.size() : opt.engines;
  const std::string& version = opt.vllm_version.empty() ? cat.vllm_version() : opt.vllm_version;

  std::vector<catalog_detail::label_map> engines;
  for (std::size_t i = 0; i < m.engines_; ++i) {
    catalog_detail::label_map l{{"model_name", opt.model_name}};
    if (reshape) {
      l.emplace_back("stage", std::to_string(opt.stage_replicas[i].first));
      l.emplace_back("replica", std::to_string(opt.stage_replicas[i].second));
    } else {
      l.emplace_back("engine", std::to_string(i));
    }
    for (auto& [k, v] : opt.cache_config)
      l.emplace_back(k, v);
    engines.push_back(std::move(l));
  }

  for (const family_def& d : cat.families()) {
    if (d.source != family_source::vllm) continue;
    bool on = false;
    if (d.when == "always")
      on = true;
    else if (d.when == "deprecated")
      on = deprecated_family_visible(d.deprecated_in, version, opt.show_hidden_metrics_for_version);
    else if (d.when == "spec_decode")
      on = opt.num_speculative_tokens > 0;
    else if (d.when == "kv_cache_metrics")
      on = opt.kv_cache_metrics;
    else if (d.when == "nixl")
      on = opt.nixl;
    else if (d.when == "kv_offload")
      on = opt.kv_offload;
    else if (d.when == "sleep_mode")
      on = opt.sleep_mode;
    else if (d.when == "admission_control")
      on = opt.admission_control;
    else if (d.when == "compute_nans")
      on = opt.compute_nans_in_logits;
    else if (d.when == "lora")  // no child up front: its labels are the adapters of the moment
      on = opt.max_loras > 0;
    // "never" is not registered.
    if (!on) continue;

    catalog_detail::bind_request req;
    req.name = d.name;
    if (d.runtime_labels == "cache_config")
      for (auto& [k, v] : opt.cache_config)
        req.labels.push_back(k);
    for (auto& l : catalog_detail::reshape_engine(d.labels, reshape))
      req.labels.push_back(l);
    req.buckets = d.buckets_1_2_5 ? buckets_1_2_5(opt.max_model_len) : d.buckets;
    // The API server's sleep-mode families have no model_name/engine: one base child.
    if (d.when == "sleep_mode")
      req.base_children.emplace_back();
    else if (d.when == "admission_control")  // model_name only: one child per reason
      req.base_children.assign(engines.begin(), engines.begin() + (engines.empty() ? 0 : 1));
    else
      req.base_children = engines;
    if (d.key == catalog_key(vllm_family::spec_decode_num_accepted_tokens_per_pos)) {
      std::vector<std::string> pos;
      for (std::uint32_t p = 0; p < opt.num_speculative_tokens; ++p)
        pos.push_back(std::to_string(p));
      req.extra_values.emplace_back("position", std::move(pos));
    }
    auto b = catalog_detail::bind(reg, d, req);
    if (!b) return b.error();
    m.bound_.push_back(std::move(*b));
  }
  // Typed index and deprecated aliases (a visible alias repeats its successor's values).
  for (std::size_t i = 0; i < m.bound_.size(); ++i) {
    const family_def* d = m.bound_[i].def;
    for (std::size_t t = 0; t < std::size(typed_families); ++t)
      if (d->key == typed_families[t].key) m.index_[t] = static_cast<int>(i);
    if (!d->mirrors.empty())
      for (auto& target : m.bound_)
        if (target.def->key == d->mirrors) target.alias = static_cast<int>(i);
  }
  for (std::size_t i = 0; i < m.bound_.size(); ++i)
    if (m.bound_[i].def->key == "vllm/lora_requests_info") m.lora_family_ = static_cast<int>(i);
  m.max_lora_ = std::to_string(opt.max_loras);
  m.lora_.resize(m.engines_);
  for (std::size_t e = 0; e < m.engines_; ++e)
    m.record_sleep_state(e, sleep_state::awake);  // vLLM's default: awake = 1
  return m;
}

const bound_family* vllm_metrics::family(vllm_family f) const noexcept {
  int i = idx(f) < index_.size() ? index_[idx(f)] : -1;
  return i < 0 ? nullptr : &bound_[static_cast<std::size_t>(i)];
}

const bound_family* vllm_metrics::family(std::string_view key) const noexcept {
  for (auto& b : bound_)
    if (b.def->key == key) return &b;
  return nullptr;
}

std::vector<std::string> vllm_metrics::names() const {
  std::vector<std::string> out;
  for (auto& b : bound_)
    out.push_back(b.name);
  return out;
}

void vllm_metrics::observe(vllm_family f, std::size_t engine, double v,
                           std::size_t child) noexcept {
  int i = index_[idx(f)];
  if (i < 0) return;
  const bound_family& b = bound_[static_cast<std::size_t>(i)];
  b.hst(engine, child).observe(v);
  if (b.alias >= 0) bound_[static_cast<std::size_t>(b.alias)].hst(engine, child).observe(v);
}

void vllm_metrics::add(vllm_family f, std::size_t engine, double v, std::size_t child) noexcept {
  int i = index_[idx(f)];
  if (i < 0 || v == 0) return;
  const bound_family& b = bound_[static_cast<std::size_t>(i)];
  b.ctr(engine, child).add(v);
  if (b.alias >= 0) bound_[static_cast<std::size_t>(b.alias)].ctr(engine, child).add(v);
}

void vllm_metrics::set(vllm_family f, std::size_t engine, double v, std::size_t child) noexcept {
  int i = index_[idx(f)];
  if (i < 0) return;
  const bound_family& b = bound_[static_cast<std::size_t>(i)];
  b.gge(engine, child).set(v);
  if (b.alias >= 0) bound_[static_cast<std::size_t>(b.alias)].gge(engine, child).set(v);
}

void vllm_metrics::record_lora(std::size_t engine, std::string_view running,
                               std::string_view waiting) noexcept {
  if (lora_family_ < 0 || engine >= lora_.size()) return;
  lora_child& c = lora_[engine];
  if (!c.bound || c.running != running || c.waiting != waiting) {
    // The adapter sets changed: the child for the new sets (registered now, or again the
    // one registered when they were last seen). Cold path.
    try {
      c.running.assign(running);
      c.waiting.assign(waiting);
      c.g = bound_[static_cast<std::size_t>(lora_family_)]
                .gauges.with_labels({max_lora_, waiting, running})
                .value_or(gauge{});
      c.bound = true;
    } catch (...) {  // out of memory: this step's value is dropped
      c.bound = false;
      return;
    }
  }
  c.g.set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void vllm_metrics::record_step(std::size_t engine, const step_stats& s) noexcept {
  using F = vllm_family;
  auto d = [](std::uint64_t v) { return static_cast<double>(v); };
  record_lora(engine, s.running_lora_adapters, s.waiting_lora_adapters);
  // SchedulerStats
  set(F::num_requests_running, engine, s.num_running_reqs);
  set(F::num_requests_waiting, engine, s.num_waiting_reqs);
  std::uint32_t deferred = std::min(s.num_waiting_deferred, s.num_waiting_reqs);
  set(F::num_requests_waiting_by_reason, engine, s.num_waiting_reqs - deferred, 0);
  set(F::num_requests_waiting_by_reason, engine, deferred, 1);
  set(F::kv_cache_usage_perc, engine, s.kv_cache_usage);
  add(F::prefix_cache_queries, engine, d(s.prefix_cache_queries));
  add(F::prefix_cache_hits, engine, d(s.prefix_cache_hits));
  add(F::external_prefix_cache_queries, engine, d(s.external_prefix_cache_queries));
  add(F::external_prefix_cache_hits, engine, d(s.external_prefix_cache_hits));
  add(F::mm_cache_queries, engine, d(s.mm_cache_queries));
  add(F::mm_cache_hits, engine, d(s.mm_cache_hits));
  // SpecDecodingStats (part of SchedulerStats in vLLM)
  add(F::spec_decode_num_drafts, engine, d(s.spec_num_drafts));
  add(F::spec_decode_num_draft_tokens, engine, d(s.spec_num_draft_tokens));
  add(F::spec_decode_num_accepted_tokens, engine, d(s.spec_num_accepted_tokens));
  for (std::size_t p = 0; p < s.spec_accepted_per_pos.size(); ++p)
    add(F::spec_decode_num_accepted_tokens_per_pos, engine, d(s.spec_accepted_per_pos[p]), p);
  // IterationStats: only for a step with outputs (vLLM's iteration_stats is None otherwise).
  if (!s.has_outputs) return;
  add(F::num_preemptions, engine, d(s.num_preempted_reqs));
  add(F::prompt_tokens, engine, d(s.num_prompt_tokens));
  add(F::generation_tokens, engine, d(s.num_generation_tokens));
  std::uint64_t cached = s.prompt_tokens_local_cache_hit + s.prompt_tokens_external_kv_transfer;
  std::uint64_t computed = s.num_prompt_tokens > cached ? s.num_prompt_tokens - cached : 0;
  add(F::prompt_tokens_by_source, engine, d(computed), 0);
  add(F::prompt_tokens_by_source, engine, d(s.prompt_tokens_local_cache_hit), 1);
  add(F::prompt_tokens_by_source, engine, d(s.prompt_tokens_external_kv_transfer), 2);
  add(F::prompt_tokens_cached, engine, d(cached));
  observe(F::iteration_tokens, engine, d(s.num_prompt_tokens + s.num_generation_tokens));
  for (double t : s.time_to_first_tokens)
    observe(F::time_to_first_token, engine, t);
  for (double t : s.inter_token_latencies)
    observe(F::inter_token_latency, engine, t);
  add(F::corrupted_requests, engine, d(s.num_corrupted_reqs));
}

void vllm_metrics::record_finished_request(std::size_t engine, const finished_request& r) noexcept {
  using F = vllm_family;
  auto d = [](std::uint64_t v) { return static_cast<double>(v); };
  const finished_request_times t = derive_times(r);
  add(F::request_success, engine, 1, static_cast<std::size_t>(r.reason));
  observe(F::e2e_request_latency, engine, t.e2e_latency);
  observe(F::request_queue_time, engine, t.queued_time);
  observe(F::request_prefill_time, engine, t.prefill_time);
  observe(F::request_inference_time, engine, t.inference_time);
  observe(F::request_decode_time, engine, t.decode_time);
  observe(F::request_prompt_tokens, engine, d(r.num_prompt_tokens));
  observe(F::request_generation_tokens, engine, d(r.num_generation_tokens));
  observe(F::request_time_per_output_token, engine, t.mean_time_per_output_token);
  if (r.max_tokens_param != 0) observe(F::request_params_max_tokens, engine, d(r.max_tokens_param));
  std::uint64_t cached =
      r.num_cached_tokens > 0 ? static_cast<std::uint64_t>(r.num_cached_tokens) : 0;
  observe(F::request_prefill_kv_computed_tokens, engine,
          d(r.num_prompt_tokens > cached ? r.num_prompt_tokens - cached : 0));
  observe(F::request_num_preemptions, engine, r.num_preemptions);
  observe(F::request_params_n, engine, r.n);
  observe(F::request_max_num_generation_tokens, engine,
          d(r.max_num_generation_tokens ? r.max_num_generation_tokens : r.num_generation_tokens));
}

void vllm_metrics::begin_sleep_mode_operation(sleep_operation op) noexcept {
  if (const bound_family* b = family(vllm_family::sleep_mode_operations_in_flight))
    b->gge(0, static_cast<std::size_t>(op)).add(1);
}

void vllm_metrics::end_sleep_mode_operation(sleep_operation op, double seconds) noexcept {
  if (const bound_family* b = family(vllm_family::sleep_mode_operations_in_flight))
    b->gge(0, static_cast<std::size_t>(op)).add(-1);
  observe(vllm_family::sleep_mode_operation_duration, 0, seconds, static_cast<std::size_t>(op));
}

void vllm_metrics::record_sleep_state(std::size_t engine, sleep_state s) noexcept {
  for (std::size_t i = 0; i < 3; ++i)
    set(vllm_family::engine_sleep_state, engine, i == static_cast<std::size_t>(s) ? 1.0 : 0.0, i);
}

void vllm_metrics::record_admission_rejection(admission_reason why) noexcept {
  add(vllm_family::admission_rejections, 0, 1, static_cast<std::size_t>(why));
}

void vllm_metrics::record_perf(std::size_t engine, double flops, double read_bytes,
                               double write_bytes) noexcept {
  add(vllm_family::estimated_flops_per_gpu, engine, flops);
  add(vllm_family::estimated_read_bytes_per_gpu, engine, read_bytes);
  add(vllm_family::estimated_write_bytes_per_gpu, engine, write_bytes);
}

SHMETRICS_END_NAMESPACE
