// vLLM v1 families: golden names, types, labels and buckets; pre-created children;
// recording with vLLM's derivations; hidden (deprecated) metrics.
#include "catalog_support.hpp"

#include <chrono>
#include <fstream>
#include <map>
#include <simdjson.h>

#include <shmetrics/catalog/vllm_metrics.hpp>

using namespace shmetrics;

namespace {

const char* type_name(layout::metric_type t) {
  switch (t) {
    case layout::metric_type::counter:
      return "counter";
    case layout::metric_type::histogram:
      return "histogram";
    default:
      return "gauge";
  }
}

vllm_options two_engines() {
  vllm_options o;
  o.model_name = "m";
  o.engines = 2;
  o.cache_config = {{"block_size", "16"}, {"cache_dtype", "auto"}, {"num_gpu_blocks", "1024"}};
  return o;
}

double value_of(const segment_snapshot& s, const std::string& family,
                const std::vector<std::string>& labels) {
  auto* f = test::find_family(s, family);
  REQUIRE(f);
  for (auto& x : f->series)
    if (x.label_values == labels)
      return f->type == layout::metric_type::histogram ? x.sum : x.value;
  FAIL("no series " << family);
  return 0;
}

const series_snapshot& series_of(const segment_snapshot& s, const std::string& family,
                                 const std::vector<std::string>& labels) {
  auto* f = test::find_family(s, family);
  REQUIRE(f);
  for (auto& x : f->series)
    if (x.label_values == labels) return x;
  FAIL("no series " << family);
  return f->series.front();
}

}  // namespace

TEST_CASE("every vllm:* family is registered as the catalog says, children pre-created",
          "[catalog][vllm]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  const catalog& cat = test::project_catalog();
  auto vm = vllm_metrics::create(reg, cat, two_engines());
  INFO((vm ? "" : vm.error().message()));
  REQUIRE(vm);
  auto snap = test::snapshot_of(reg);

  std::size_t checked = 0;
  for (auto& d : cat.families()) {
    if (d.source != family_source::vllm) continue;
    std::string stored = d.name;
    if (d.type == layout::metric_type::counter) stored.resize(stored.size() - 6);  // _total
    auto* f = test::find_family(snap, stored);
    if (d.when != "always") {
      REQUIRE_FALSE(f);  // conditions off, deprecated and removed names absent
      continue;
    }
    INFO(d.name);
    REQUIRE(f);
    REQUIRE(f->help == d.help);
    REQUIRE(f->type == d.type);
    std::vector<std::string> labels = f->label_names;
    if (d.runtime_labels == "cache_config") {
      REQUIRE(labels ==
              std::vector<std::string>{"block_size", "cache_dtype", "num_gpu_blocks", "engine"});
    } else {
      REQUIRE(labels == d.labels);
    }
    if (d.type == layout::metric_type::histogram)
      REQUIRE(f->bounds == (d.buckets_1_2_5 ? buckets_1_2_5(4096) : d.buckets));
    if (d.type == layout::metric_type::gauge) REQUIRE(f->mode == d.mode);
    // Children: one per engine, times the extra label's values.
    std::size_t per_engine = 1;
    for (auto& [l, v] : d.label_values)
      per_engine *= v.size();
    REQUIRE(f->series.size() == 2 * per_engine);
    ++checked;
  }
  REQUIRE(checked == 37);

  // Every finished_reason and source at zero for both engines; sleep state awake = 1.
  for (const char* e : {"0", "1"}) {
    for (auto r : finish_reason_names)
      REQUIRE(value_of(snap, "vllm:request_success", {"m", e, std::string(r)}) == 0);
    REQUIRE(value_of(snap, "vllm:engine_sleep_state", {"m", e, "awake"}) == 1);
    REQUIRE(value_of(snap, "vllm:engine_sleep_state", {"m", e, "discard_all"}) == 0);
    REQUIRE(value_of(snap, "vllm:cache_config_info", {"16", "auto", "1024", e}) == 1);
  }
}

// Hidden ([.reference]): its own meson test, which skips (77) where the reference is absent.
TEST_CASE("the registered families equal the reference catalog",
          "[catalog][vllm][golden][.reference]") {
  std::ifstream probe(SHMETRICS_REFERENCE_CATALOG);
  if (!probe)
    test::skip(std::string("reference catalog ") + SHMETRICS_REFERENCE_CATALOG +
               " not found beside the checkout");
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  REQUIRE_FALSE(parser.load(SHMETRICS_REFERENCE_CATALOG).get(root));
  struct ref {
    std::string type;
    std::vector<std::string> labels;
    std::vector<double> buckets;
    std::string help;
  };
  std::map<std::string, ref> refs;
  simdjson::dom::array all;
  REQUIRE_FALSE(root.get_array().get(all));
  for (simdjson::dom::element e : all) {
    ref r;
    std::string_view sv;
    simdjson::dom::array arr;
    REQUIRE_FALSE(e["type"].get_string().get(sv));
    r.type = std::string(sv);
    REQUIRE_FALSE(e["labels"].get_array().get(arr));
    for (simdjson::dom::element l : arr) {
      REQUIRE_FALSE(l.get_string().get(sv));
      r.labels.emplace_back(sv);
    }
    if (!e["buckets"].get_array().get(arr))
      for (simdjson::dom::element b : arr) {
        double v = 0;
        std::int64_t i = 0;
        if (!b.get_double().get(v))
          r.buckets.push_back(v);
        else if (!b.get_int64().get(i))
          r.buckets.push_back(static_cast<double>(i));
      }
    REQUIRE_FALSE(e["help"].get_string().get(sv));
    r.help = std::string(sv);
    REQUIRE_FALSE(e["name"].get_string().get(sv));
    refs[std::string(sv)] = r;
  }

  const catalog& cat = test::project_catalog();
  std::size_t compared = 0, post_reference = 0;
  for (auto& d : cat.families()) {
    // Read from vLLM's source after the reference was built (status post-reference):
    // absent from it by construction; checked one by one in "families newer than the
    // reference". Anything else must match the reference exactly.
    if (d.status == "post-reference") {
      INFO(d.name);
      REQUIRE(refs.find(d.name) == refs.end());
      ++post_reference;
      continue;
    }
    // The seed's spelling of the 15 is in the reference as PR #3576 names; the rest of
    // the Omni families under their current upstream names.
    std::string ref_name = d.name;
    if (d.source == family_source::omni && d.when != "seed")
      ref_name = "vllm_omni:" + d.name.substr(10);
    auto it = refs.find(ref_name);
    INFO(d.name);
    REQUIRE(it != refs.end());
    const ref& r = it->second;
    REQUIRE(r.help == d.help);
    std::vector<std::string> labels = r.labels;
    // Upstream, newer than the reference (which left it unverified): no engine label, the
    // front end counts it (vLLM PR #55812, ../shared/reference/upstream_2026-12.md).
    if (d.name == "vllm:admission_rejections_total") std::erase(labels, std::string("engine"));
    if (d.runtime_labels.empty()) REQUIRE(labels == d.labels);
    std::string t = d.type == layout::metric_type::info ? "gauge" : type_name(d.type);
    REQUIRE(r.type == t);
    if (!d.buckets_1_2_5) REQUIRE(r.buckets == d.buckets);
    ++compared;
  }
  REQUIRE(post_reference == 22);
  REQUIRE(compared + post_reference == cat.families().size());
}

TEST_CASE("families newer than the reference: exact upstream definitions",
          "[catalog][vllm][post-reference]") {
  const catalog& cat = test::project_catalog();
  const std::vector<std::string> engine_labels{"model_name", "engine"};
  struct want {
    const char* key;
    const char* name;
    layout::metric_type type;
    std::vector<std::string> labels;
    std::vector<double> buckets;
    const char* when;
  };
  const want all[] = {
      {"vllm/kv_offload_lookup_sync_delay_seconds",
       "vllm:kv_offload_lookup_sync_delay_seconds",
       layout::metric_type::histogram,
       engine_labels,
       {1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1},
       "kv_offload"},
      {"vllm/kv_offload_lookup_async_delay_seconds",
       "vllm:kv_offload_lookup_async_delay_seconds",
       layout::metric_type::histogram,
       engine_labels,
       {1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5, 10},
       "kv_offload"},
      {"vllm/kv_offload_allocation_failure_total",
       "vllm:kv_offload_allocation_failure_total",
       layout::metric_type::counter,
       engine_labels,
       {},
       "kv_offload"},
      {"vllm/kv_offload_cpu_cache_usage_perc",
       "vllm:kv_offload_cpu_cache_usage_perc",
       layout::metric_type::gauge,
       engine_labels,
       {},
       "kv_offload"},
      {"vllm/kv_offload_cpu_cache_write_usage_perc",
       "vllm:kv_offload_cpu_cache_write_usage_perc",
       layout::metric_type::gauge,
       engine_labels,
       {},
       "kv_offload"},
      {"vllm/kv_offload_cpu_cache_read_usage_perc",
       "vllm:kv_offload_cpu_cache_read_usage_perc",
       layout::metric_type::gauge,
       engine_labels,
       {},
       "kv_offload"},
      {"vllm/sleep_mode_operation_duration_seconds",
       "vllm:sleep_mode_operation_duration_seconds",
       layout::metric_type::histogram,
       {"operation"},
       {0.01, 0.1, 1, 10, 30, 60, 120, 300, 600},
       "sleep_mode"},
      {"vllm/sleep_mode_operations_in_flight",
       "vllm:sleep_mode_operations_in_flight",
       layout::metric_type::gauge,
       {"operation"},
       {},
       "sleep_mode"},
  };
  for (auto& w : all) {
    INFO(w.key);
    const family_def* d = cat.find(w.key);
    REQUIRE(d);
    CHECK(d->name == w.name);
    CHECK(d->type == w.type);
    CHECK(d->labels == w.labels);
    CHECK(d->buckets == w.buckets);
    CHECK(d->when == w.when);
    CHECK(d->status == "post-reference");
    CHECK(d->source == family_source::vllm);
  }
  const std::vector<std::string> ops{"sleep", "release_kv_cache_memory", "wake"};
  CHECK(*cat.find("vllm/sleep_mode_operations_in_flight")->values_of("operation") == ops);
  CHECK(*cat.find("vllm/sleep_mode_operation_duration_seconds")->values_of("operation") == ops);
  CHECK(cat.find("vllm/sleep_mode_operations_in_flight")->mode == layout::gauge_mode::live_sum);
  CHECK(cat.find("vllm/kv_offload_cpu_cache_usage_perc")->help ==
        "Fraction of CPU KV-cache space currently pinned by active transfers (0.0 = idle, 1.0 = "
        "saturated). Sustained high values indicate transfers (stores or promotions) may be "
        "dropped due to insufficient capacity.");
  CHECK(cat.find("vllm/sleep_mode_operation_duration_seconds")->help ==
        "Duration of one sleep-mode operation.");
}

TEST_CASE("sleep-mode families: API-server series without model_name/engine",
          "[catalog][vllm][sleep_mode]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  vllm_options o = two_engines();
  {
    auto off = vllm_metrics::create(reg, test::project_catalog(), o).value();
    REQUIRE_FALSE(off.family(vllm_family::sleep_mode_operation_duration));
  }
  test::unique_prefix up2;
  auto reg2 = registry::create(up2.options()).value();
  o.sleep_mode = true;
  auto vm = vllm_metrics::create(reg2, test::project_catalog(), o).value();
  vm.begin_sleep_mode_operation(sleep_operation::sleep);
  auto snap = test::snapshot_of(reg2);
  CHECK(value_of(snap, "vllm:sleep_mode_operations_in_flight", {"sleep"}) == 1);
  CHECK(value_of(snap, "vllm:sleep_mode_operations_in_flight", {"wake"}) == 0);
  vm.end_sleep_mode_operation(sleep_operation::sleep, 0.05);
  vm.begin_sleep_mode_operation(sleep_operation::wake);
  vm.end_sleep_mode_operation(sleep_operation::wake, 2);
  snap = test::snapshot_of(reg2);
  CHECK(value_of(snap, "vllm:sleep_mode_operations_in_flight", {"sleep"}) == 0);
  const family_snapshot* f = test::find_family(snap, "vllm:sleep_mode_operation_duration_seconds");
  REQUIRE(f);
  CHECK(f->label_names == std::vector<std::string>{"operation"});
  REQUIRE(f->series.size() == 3);
  CHECK(f->series[0].count() == 1);  // sleep
  CHECK(f->series[0].sum == Approx(0.05));
  CHECK(f->series[1].count() == 0);  // release_kv_cache_memory
  CHECK(f->series[2].count() == 1);  // wake
  CHECK(f->series[2].sum == Approx(2));
}

TEST_CASE("text output: _total on counters, prometheus_client bucket bounds",
          "[catalog][vllm][golden]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  vllm_options o;
  o.model_name = "m";
  REQUIRE(vllm_metrics::create(reg, test::project_catalog(), o));
  std::string text = test::text_of(reg);
  for (const char* line : {
           "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
           "# TYPE vllm:prompt_tokens_total counter\n"
           "vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 0.0\n",
           "# TYPE vllm:iteration_tokens_total histogram\n"
           "vllm:iteration_tokens_total_bucket{engine=\"0\",le=\"1.0\",model_name=\"m\"} 0.0\n",
           "vllm:iteration_tokens_total_bucket{engine=\"0\",le=\"16384.0\",model_name=\"m\"} 0.0\n",
           "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.001\",model_name=\"m\"} "
           "0.0\n",
           "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"2560.0\",model_name=\"m\"} "
           "0.0\n",
           "vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"7680.0\",model_name=\"m\"} "
           "0.0\n",
           "vllm:request_prompt_tokens_bucket{engine=\"0\",le=\"2000.0\",model_name=\"m\"} 0.0\n"
           "vllm:request_prompt_tokens_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 0.0\n",
           "vllm:request_success_total{engine=\"0\",finished_reason=\"repetition\",model_name="
           "\"m\"} 0.0\n",
           "# TYPE vllm:estimated_flops_per_gpu_total counter\n",
           "vllm:num_requests_waiting_by_reason{engine=\"0\",model_name=\"m\",reason=\"deferred\"} "
           "0.0\n",
           "vllm:prompt_tokens_by_source_total{engine=\"0\",model_name=\"m\",source=\"external_kv_"
           "transfer\"} 0.0\n",
       }) {
    INFO(line);
    REQUIRE(test::contains(text, line));
  }
  REQUIRE_FALSE(test::contains(text, "_total_total"));
}

TEST_CASE("recording mirrors vLLM's stat logger and its derivations", "[catalog][vllm]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto vm = vllm_metrics::create(reg, test::project_catalog(), two_engines()).value();

  const double ttft[] = {0.042, 0.3};
  const double itl[] = {0.02, 0.03, 0.05};
  step_stats s;
  s.num_running_reqs = 3;
  s.num_waiting_reqs = 5;
  s.num_waiting_deferred = 2;
  s.kv_cache_usage = 0.25;
  s.prefix_cache_queries = 100;
  s.prefix_cache_hits = 40;
  s.mm_cache_queries = 3;
  s.mm_cache_hits = 1;
  s.num_prompt_tokens = 120;
  s.num_generation_tokens = 8;
  s.prompt_tokens_local_cache_hit = 32;
  s.prompt_tokens_external_kv_transfer = 16;
  s.num_preempted_reqs = 1;
  s.time_to_first_tokens = ttft;
  s.inter_token_latencies = itl;
  vm.record_step(1, s);

  finished_request r;
  r.reason = finish_reason::length;
  r.arrival_time = 100.0;
  r.queued_ts = 100.5;
  r.scheduled_ts = 101.25;
  r.first_token_ts = 102.0;
  r.last_token_ts = 104.0;
  r.finished_time = 104.5;
  r.num_prompt_tokens = 120;
  r.num_generation_tokens = 9;
  r.num_cached_tokens = 48;
  r.max_tokens_param = 16;
  r.n = 2;
  r.max_num_generation_tokens = 11;
  vm.record_finished_request(1, r);

  auto t = derive_times(r);
  REQUIRE(t.queued_time == Approx(0.75));     // queued -> scheduled
  REQUIRE(t.prefill_time == Approx(0.75));    // scheduled -> first token
  REQUIRE(t.decode_time == Approx(2.0));      // first -> last token
  REQUIRE(t.inference_time == Approx(2.75));  // scheduled -> last token
  REQUIRE(t.e2e_latency == Approx(4.5));
  REQUIRE(t.mean_time_per_output_token == Approx(0.25));  // 2.0 / (9 - 1)
  r.num_generation_tokens = 1;
  REQUIRE(derive_times(r).mean_time_per_output_token == 0);

  auto snap = test::snapshot_of(reg);
  const std::vector<std::string> e1{"m", "1"};
  REQUIRE(value_of(snap, "vllm:num_requests_running", e1) == 3);
  REQUIRE(value_of(snap, "vllm:num_requests_waiting", e1) == 5);
  REQUIRE(value_of(snap, "vllm:num_requests_waiting_by_reason", {"m", "1", "capacity"}) == 3);
  REQUIRE(value_of(snap, "vllm:num_requests_waiting_by_reason", {"m", "1", "deferred"}) == 2);
  REQUIRE(value_of(snap, "vllm:kv_cache_usage_perc", e1) == 0.25);
  REQUIRE(value_of(snap, "vllm:prefix_cache_queries", e1) == 100);
  REQUIRE(value_of(snap, "vllm:prefix_cache_hits", e1) == 40);
  REQUIRE(value_of(snap, "vllm:mm_cache_hits", e1) == 1);
  REQUIRE(value_of(snap, "vllm:num_preemptions", e1) == 1);
  REQUIRE(value_of(snap, "vllm:prompt_tokens", e1) == 120);
  REQUIRE(value_of(snap, "vllm:generation_tokens", e1) == 8);
  REQUIRE(value_of(snap, "vllm:prompt_tokens_by_source", {"m", "1", "local_compute"}) == 72);
  REQUIRE(value_of(snap, "vllm:prompt_tokens_by_source", {"m", "1", "local_cache_hit"}) == 32);
  REQUIRE(value_of(snap, "vllm:prompt_tokens_by_source", {"m", "1", "external_kv_transfer"}) == 16);
  REQUIRE(value_of(snap, "vllm:prompt_tokens_cached", e1) == 48);
  REQUIRE(series_of(snap, "vllm:iteration_tokens_total", e1).sum == 128);
  REQUIRE(series_of(snap, "vllm:time_to_first_token_seconds", e1).count() == 2);
  REQUIRE(series_of(snap, "vllm:inter_token_latency_seconds", e1).count() == 3);
  REQUIRE(value_of(snap, "vllm:request_success", {"m", "1", "length"}) == 1);
  REQUIRE(value_of(snap, "vllm:request_success", {"m", "1", "stop"}) == 0);
  REQUIRE(value_of(snap, "vllm:request_queue_time_seconds", e1) == Approx(0.75));
  REQUIRE(value_of(snap, "vllm:request_time_per_output_token_seconds", e1) == Approx(0.25));
  REQUIRE(value_of(snap, "vllm:request_decode_time_seconds", e1) == Approx(2.0));
  REQUIRE(value_of(snap, "vllm:request_inference_time_seconds", e1) == Approx(2.75));
  REQUIRE(value_of(snap, "vllm:request_prefill_time_seconds", e1) == Approx(0.75));
  REQUIRE(value_of(snap, "vllm:e2e_request_latency_seconds", e1) == Approx(4.5));
  REQUIRE(value_of(snap, "vllm:request_prefill_kv_computed_tokens", e1) == 72);
  REQUIRE(value_of(snap, "vllm:request_params_max_tokens", e1) == 16);
  REQUIRE(value_of(snap, "vllm:request_params_n", e1) == 2);
  REQUIRE(value_of(snap, "vllm:request_max_num_generation_tokens", e1) == 11);
  REQUIRE(value_of(snap, "vllm:request_generation_tokens", e1) == 9);
  // Engine 0 untouched.
  REQUIRE(value_of(snap, "vllm:prompt_tokens", {"m", "0"}) == 0);
}

TEST_CASE("hidden metrics: deprecated families come back with show_hidden_metrics_for_version",
          "[catalog][vllm][deprecation]") {
  auto families_with = [](const std::string& version, const std::string& show) {
    test::unique_prefix up;
    auto reg = registry::create(up.options()).value();
    vllm_options o;
    o.model_name = "m";
    o.vllm_version = version;
    o.show_hidden_metrics_for_version = show;
    auto vm = vllm_metrics::create(reg, test::project_catalog(), o).value();
    const double itl[] = {0.05};
    step_stats s;
    s.inter_token_latencies = itl;
    vm.record_step(0, s);
    return test::snapshot_of(reg);
  };
  // Default (the catalog's 0.32): every deprecated name is long removed.
  auto now = families_with("", "");
  REQUIRE_FALSE(test::find_family(now, "vllm:time_per_output_token_seconds"));
  REQUIRE_FALSE(test::find_family(now, "vllm:gpu_cache_usage_perc"));
  // 0.11 deprecated TPOT: still shown in 0.11.
  REQUIRE(test::find_family(families_with("0.11", ""), "vllm:time_per_output_token_seconds"));
  // Hidden in 0.12 ...
  REQUIRE_FALSE(test::find_family(families_with("0.12", ""), "vllm:time_per_output_token_seconds"));
  // ... back with --show-hidden-metrics-for-version=0.11, fed like its successor.
  auto shown = families_with("0.12", "0.11");
  auto* f = test::find_family(shown, "vllm:time_per_output_token_seconds");
  REQUIRE(f);
  REQUIRE(f->series.size() == 1);
  REQUIRE(f->series[0].count() == 1);
  REQUIRE(f->series[0].sum == Approx(0.05));
  // Removed in 0.13 whatever is asked.
  REQUIRE_FALSE(
      test::find_family(families_with("0.13", "0.12"), "vllm:time_per_output_token_seconds"));
  // 0.9's renames: visible in 0.10 only when asked.
  REQUIRE(test::find_family(families_with("0.10", "0.9"), "vllm:gpu_cache_usage_perc"));
  REQUIRE_FALSE(test::find_family(families_with("0.10", ""), "vllm:gpu_cache_usage_perc"));
}

TEST_CASE("conditional families follow their options", "[catalog][vllm]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  vllm_options o;
  o.model_name = "m";
  o.num_speculative_tokens = 3;
  o.nixl = true;
  auto vm = vllm_metrics::create(reg, test::project_catalog(), o).value();
  const std::uint64_t per_pos[] = {5, 3, 1};
  step_stats s;
  s.spec_num_drafts = 5;
  s.spec_accepted_per_pos = per_pos;
  vm.record_step(0, s);
  auto snap = test::snapshot_of(reg);
  REQUIRE(value_of(snap, "vllm:spec_decode_num_drafts", {"m", "0"}) == 5);
  REQUIRE(value_of(snap, "vllm:spec_decode_num_accepted_tokens_per_pos", {"m", "0", "2"}) == 1);
  REQUIRE(test::find_family(snap, "vllm:nixl_xfer_time_seconds"));
  REQUIRE_FALSE(test::find_family(snap, "vllm:kv_offload_load_size"));
  REQUIRE(vm.family("vllm/nixl_bytes_transferred"));
}

TEST_CASE("vllm:lora_requests_info: a child per adapter sets, set to the wall-clock time",
          "[catalog][vllm][lora]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  vllm_options o = two_engines();
  {  // LoRA off: no family
    auto off = vllm_metrics::create(reg, test::project_catalog(), o).value();
    REQUIRE_FALSE(off.family("vllm/lora_requests_info"));
  }
  test::unique_prefix up2;
  auto reg2 = registry::create(up2.options()).value();
  o.max_loras = 2;
  auto vm = vllm_metrics::create(reg2, test::project_catalog(), o).value();
  REQUIRE(vm.family("vllm/lora_requests_info"));
  auto snap = test::snapshot_of(reg2);
  const family_snapshot* f = test::find_family(snap, "vllm:lora_requests_info");
  REQUIRE(f);
  CHECK(f->series.empty());  // nothing up front: the labels are the adapters of the moment
  CHECK(f->label_names ==
        std::vector<std::string>{"max_lora", "waiting_lora_adapters", "running_lora_adapters"});
  CHECK(f->mode == layout::gauge_mode::max);  // merged processes: the newest time

  auto wall = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  double t0 = wall();
  step_stats s;
  s.running_lora_adapters = "sql,chat";
  s.waiting_lora_adapters = "math";
  vm.record_step(0, s);
  vm.record_step(0, s);  // the same sets: the same child
  s.running_lora_adapters = "";
  s.waiting_lora_adapters = "";
  vm.record_step(1, s);
  double t1 = wall();
  snap = test::snapshot_of(reg2);
  f = test::find_family(snap, "vllm:lora_requests_info");
  REQUIRE(f);
  CHECK(f->series.size() == 2);
  double busy = value_of(snap, "vllm:lora_requests_info", {"2", "math", "sql,chat"});
  double idle = value_of(snap, "vllm:lora_requests_info", {"2", "", ""});
  CHECK(busy >= t0);
  CHECK(busy <= idle);
  CHECK(idle <= t1);
  // Back to sets seen before: that child again, not a new one.
  s.running_lora_adapters = "sql,chat";
  s.waiting_lora_adapters = "math";
  vm.record_step(0, s);
  snap = test::snapshot_of(reg2);
  CHECK(test::find_family(snap, "vllm:lora_requests_info")->series.size() == 2);
  CHECK(value_of(snap, "vllm:lora_requests_info", {"2", "math", "sql,chat"}) >= idle);
}
