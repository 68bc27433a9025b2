// vLLM-Omni families: registration with the chosen prefix, --log-stats gating, and the
// feed from the pipeline-statistics events.
#include <shmetrics/catalog/omni_metrics.hpp>

#include <cmath>  // llround

SHMETRICS_BEGIN_NAMESPACE

namespace {

using catalog_detail::bound_family;
using catalog_detail::label_map;
using layout::metric_type;

struct omni_typed {
  std::string_view key;
  metric_type type;
};
constexpr omni_typed omni_typed_families[] = {
    {"omni/num_requests_running", metric_type::gauge},
    {"omni/num_requests_waiting", metric_type::gauge},
    {"omni/requests_success_total", metric_type::counter},
    {"omni/e2e_request_latency_s", metric_type::histogram},
    {"omni/audio_ttfp_s", metric_type::histogram},
    {"omni/audio_duration_s", metric_type::histogram},
    {"omni/audio_rtf", metric_type::histogram},
    {"omni/audio_frames_total", metric_type::counter},
    {"omni/audio_underrun_s", metric_type::histogram},
    {"omni/audio_continuity_ok_total", metric_type::counter},
    {"omni/audio_skipped_requests_total", metric_type::counter},
    {"omni/transfer_size_bytes", metric_type::histogram},
    {"omni/transfer_tx_s", metric_type::histogram},
    {"omni/transfer_rx_s", metric_type::histogram},
    {"omni/transfer_in_flight_s", metric_type::histogram},
};
static_assert(std::size(omni_typed_families) == static_cast<std::size_t>(omni_family::count_));

bool has(const std::vector<std::string>& v, std::string_view x) {
  for (auto& s : v)
    if (s == x) return true;
  return false;
}

}  // namespace

std::string_view catalog_key(omni_family f) noexcept {
  auto i = static_cast<std::size_t>(f);
  return i < std::size(omni_typed_families) ? omni_typed_families[i].key : std::string_view{};
}

result<omni_metrics> omni_metrics::create(registry& reg, const catalog& cat,
                                          const omni_options& opt) {
  auto fail = [&](const std::string& what) {
    return error{errc::corrupt_record, 0, "catalog " + cat.origin() + ": " + what};
  };
  for (auto& t : omni_typed_families) {
    const family_def* d = cat.find(t.key);
    if (!d && cat.is_selection()) continue;  // not picked: its record calls do nothing
    if (!d) return fail("typed family " + std::string(t.key) + " is missing");
    if (d->type != t.type || d->when != "seed")
      return fail(d->name + ": type or \"when\" differs from the typed API (want a seed family)");
  }
  if (auto* d = cat.find(catalog_key(omni_family::requests_success))) {
    auto* v = d->values_of("finished_reason");
    bool same = v && v->size() == finish_reason_count;
    for (std::size_t i = 0; same && i < finish_reason_count; ++i)
      same = (*v)[i] == finish_reason_names[i];
    if (!same) return fail(d->name + ": label_values.finished_reason differ from the typed API's");
  }

  omni_metrics m;
  m.stages_ = opt.stages;
  m.sample_rate_ = opt.audio_sample_rate;
  m.threshold_s_ = opt.continuity_threshold_s;
  m.log_stats_ = opt.log_stats;
  m.model_name_ = opt.model_name;
  m.index_.assign(std::size(omni_typed_families), -1);

  // Base children, by the shape of the label set. Without log_stats there are none:
  // the families are placeholders with nothing written.
  std::vector<label_map> pipeline, per_stage, per_replica, audio, edges;
  for (std::uint32_t s = 0; s < opt.stages.size(); ++s) {
    const omni_stage& st = opt.stages[s];
    per_stage.push_back({{"model_name", opt.model_name}, {"stage", std::to_string(s)}});
    m.audio_first_.push_back(st.kind == stage_kind::audio ? long(audio.size()) : -1L);
    for (std::uint32_t r = 0; r < st.replicas; ++r) {
      label_map l{{"model_name", opt.model_name},
                  {"stage", std::to_string(s)},
                  {"replica", std::to_string(r)}};
      per_replica.push_back(l);
      if (st.kind == stage_kind::audio) audio.push_back(l);
      if (st.kind == stage_kind::llm) m.engines_.emplace_back(s, r);
    }
    m.edge_first_.push_back(long(edges.size()));
    if (s + 1 < opt.stages.size())
      for (std::uint32_t a = 0; a < st.replicas; ++a)
        for (std::uint32_t b = 0; b < opt.stages[s + 1].replicas; ++b)
          edges.push_back({{"model_name", opt.model_name},
                           {"from_stage", std::to_string(s)},
                           {"from_replica", std::to_string(a)},
                           {"to_stage", std::to_string(s + 1)},
                           {"to_replica", std::to_string(b)}});
  }
  pipeline.push_back({{"model_name", opt.model_name}});
  const long threshold_ms = std::lround(opt.continuity_threshold_s * 1000.0);

  for (const family_def& d : cat.families()) {
    if (d.source != family_source::omni) continue;
    if (!(d.when == "seed" || (d.when == "extended" && opt.extended_families))) continue;
    catalog_detail::bind_request req;
    req.name = opt.prefix == omni_prefix::seed
                   ? d.name
                   : cat.omni_upstream_prefix() + d.name.substr(cat.omni_seed_prefix().size());
    req.labels = d.labels;
    req.buckets = d.buckets;
    if (opt.log_stats) {
      bool seed_audio = d.when == "seed" && d.key.starts_with("omni/audio_");
      if (has(d.labels, "from_stage"))
        req.base_children = edges;
      else if (has(d.labels, "replica"))
        req.base_children = seed_audio ? audio : per_replica;
      else if (has(d.labels, "stage"))
        req.base_children = per_stage;
      else
        req.base_children = pipeline;
    }
    if (has(d.labels, "threshold_ms"))
      req.extra_values.emplace_back("threshold_ms",
                                    std::vector<std::string>{std::to_string(threshold_ms)});
    auto b = catalog_detail::bind(reg, d, req);
    if (!b) return b.error();
    m.bound_.push_back(std::move(*b));
  }
  for (std::size_t i = 0; i < m.bound_.size(); ++i)
    for (std::size_t t = 0; t < std::size(omni_typed_families); ++t)
      if (m.bound_[i].def->key == omni_typed_families[t].key) m.index_[t] = static_cast<int>(i);

  // vllm:* exists only with --log-stats, and only for LLM stages, reshaped.
  if (opt.log_stats && !m.engines_.empty()) {
    vllm_options vo = opt.vllm;
    vo.model_name = opt.model_name;
    vo.stage_replicas = m.engines_;
    auto v = vllm_metrics::create(reg, cat, vo);
    if (!v) return v.error();
    m.vllm_.emplace(std::move(*v));
  }
  return m;
}

long omni_metrics::engine_index(std::uint32_t stage, std::uint32_t replica) const noexcept {
  for (std::size_t i = 0; i < engines_.size(); ++i)
    if (engines_[i].first == stage && engines_[i].second == replica) return long(i);
  return -1;
}

long omni_metrics::audio_child(std::uint32_t stage, std::uint32_t replica) const noexcept {
  if (stage >= audio_first_.size() || audio_first_[stage] < 0) return -1;
  if (replica >= stages_[stage].replicas) return -1;
  return audio_first_[stage] + replica;
}

long omni_metrics::edge_child(const transfer_event& t) const noexcept {
  if (t.to_stage != t.from_stage + 1 || t.to_stage >= stages_.size()) return -1;
  if (t.from_replica >= stages_[t.from_stage].replicas ||
      t.to_replica >= stages_[t.to_stage].replicas)
    return -1;
  return edge_first_[t.from_stage] + long(t.from_replica * stages_[t.to_stage].replicas) +
         long(t.to_replica);
}

const bound_family* omni_metrics::family(omni_family f) const noexcept {
  auto i = static_cast<std::size_t>(f);
  int k = i < index_.size() ? index_[i] : -1;
  return k < 0 ? nullptr : &bound_[static_cast<std::size_t>(k)];
}

const bound_family* omni_metrics::family(std::string_view key) const noexcept {
  for (auto& b : bound_)
    if (b.def->key == key) return &b;
  return nullptr;
}

std::vector<std::string> omni_metrics::names() const {
  std::vector<std::string> out;
  for (auto& b : bound_)
    out.push_back(b.name);
  if (vllm_)
    for (auto& n : vllm_->names())
      out.push_back(n);
  return out;
}

void omni_metrics::set_requests(std::uint32_t running, std::uint32_t waiting) noexcept {
  if (auto* b = family(omni_family::num_requests_running)) b->gge(0).set(running);
  if (auto* b = family(omni_family::num_requests_waiting)) b->gge(0).set(waiting);
}

void omni_metrics::record_audio_first_packet(std::uint32_t stage, std::uint32_t replica,
                                             double ttfp_s) noexcept {
  long c = audio_child(stage, replica);
  if (c < 0) return;
  if (auto* b = family(omni_family::audio_ttfp)) b->hst(std::size_t(c)).observe(ttfp_s);
}

void omni_metrics::record_transfer(const transfer_event& t) noexcept {
  long c = edge_child(t);
  if (c < 0) return;
  auto k = std::size_t(c);
  if (auto* b = family(omni_family::transfer_size)) b->hst(k).observe(t.size_bytes);
  if (auto* b = family(omni_family::transfer_tx)) b->hst(k).observe(t.tx_time_ms / 1000.0);
  if (auto* b = family(omni_family::transfer_rx)) b->hst(k).observe(t.rx_decode_time_ms / 1000.0);
  if (auto* b = family(omni_family::transfer_in_flight))
    b->hst(k).observe(t.in_flight_time_ms / 1000.0);
}

void omni_metrics::record_request(const request_record& r) {
  if (!log_stats_) return;
  if (auto* b = family(omni_family::requests_success))
    b->ctr(0, static_cast<std::size_t>(r.reason)).inc();
  if (auto* b = family(omni_family::e2e_request_latency))
    b->hst(0).observe((r.finish_ms - r.arrival_ms) / 1000.0);
  for (const stage_event& st : r.stages) {
    long c = audio_child(st.stage, st.replica);
    if (c < 0) continue;
    auto k = std::size_t(c);
    if (!st.audio_skipped_reason.empty()) {
      // Skip reasons are not enumerated upstream, so this child is made on first use
      // (cold path: a registry lookup; rare by nature).
      if (auto* b = family(omni_family::audio_skipped_requests)) {
        std::string stage = std::to_string(st.stage), replica = std::to_string(st.replica);
        std::vector<std::string_view> v;
        for (auto& name : b->labels)
          v.push_back(name == "model_name" ? std::string_view(model_name_)
                      : name == "stage"    ? std::string_view(stage)
                      : name == "replica"  ? std::string_view(replica)
                                           : std::string_view(st.audio_skipped_reason));
        if (auto h = b->counters.with_labels(v)) h->inc();
      }
    }
    if (st.audio_generated_frames > 0) {
      double frames = static_cast<double>(st.audio_generated_frames);
      double duration_s = frames / sample_rate_;
      if (auto* b = family(omni_family::audio_frames)) b->ctr(k).add(st.audio_generated_frames);
      if (auto* b = family(omni_family::audio_duration)) b->hst(k).observe(duration_s);
      if (auto* b = family(omni_family::audio_rtf); b && duration_s > 0)
        b->hst(k).observe((st.stage_gen_time_ms / 1000.0) / duration_s);
    }
    if (st.audio_ttfp_s >= 0)
      if (auto* b = family(omni_family::audio_ttfp)) b->hst(k).observe(st.audio_ttfp_s);
    if (st.audio_underrun_s >= 0) {
      if (auto* b = family(omni_family::audio_underrun)) b->hst(k).observe(st.audio_underrun_s);
      if (st.audio_underrun_s < threshold_s_)
        if (auto* b = family(omni_family::audio_continuity_ok)) b->ctr(k).inc();
    }
  }
  for (const transfer_event& t : r.transfers)
    record_transfer(t);
}

SHMETRICS_END_NAMESPACE
