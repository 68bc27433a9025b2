// vLLM-Omni: the 15 seed families, the prefix setting, the engine -> stage + replica
// reshape, --log-stats gating, and the pipeline events feeding the families.
#include "catalog_support.hpp"

#include <sstream>

#include <shmetrics/catalog/omni_metrics.hpp>

using namespace shmetrics;

namespace {

omni_options qwen3_omni(bool log_stats) {
  omni_options o;
  o.model_name = "m";
  o.log_stats = log_stats;
  // thinker (LLM), talker (LLM, 2 replicas), code2wav (audio)
  o.stages = {{1, stage_kind::llm}, {2, stage_kind::llm}, {1, stage_kind::audio}};
  return o;
}

// Seed 001's 15 families: name, type, labels, bucket constant.
struct seed_family {
  const char* name;  // as stored (counters without _total)
  layout::metric_type type;
  std::vector<std::string> labels;
  const char* buckets;
};
const std::vector<std::string> stage_labels{"model_name", "stage", "replica"};
const std::vector<std::string> transfer_labels{"model_name", "from_stage", "from_replica",
                                               "to_stage", "to_replica"};
const seed_family seed_families[] = {
    {"num_requests_running", layout::metric_type::gauge, {"model_name"}, nullptr},
    {"num_requests_waiting", layout::metric_type::gauge, {"model_name"}, nullptr},
    {"requests_success", layout::metric_type::counter, {"model_name", "finished_reason"}, nullptr},
    {"e2e_request_latency_s", layout::metric_type::histogram, {"model_name"}, "SECONDS"},
    {"audio_ttfp_s", layout::metric_type::histogram, stage_labels, "SECONDS"},
    {"audio_duration_s", layout::metric_type::histogram, stage_labels, "SECONDS"},
    {"audio_rtf", layout::metric_type::histogram, stage_labels, "RTF"},
    {"audio_frames", layout::metric_type::counter, stage_labels, nullptr},
    {"audio_underrun_s", layout::metric_type::histogram, stage_labels, "SECONDS_FAST"},
    {"audio_continuity_ok",
     layout::metric_type::counter,
     {"model_name", "stage", "replica", "threshold_ms"},
     nullptr},
    {"audio_skipped_requests",
     layout::metric_type::counter,
     {"model_name", "stage", "replica", "reason"},
     nullptr},
    {"transfer_size_bytes", layout::metric_type::histogram, transfer_labels, "BYTES"},
    {"transfer_tx_s", layout::metric_type::histogram, transfer_labels, "SECONDS_FAST"},
    {"transfer_rx_s", layout::metric_type::histogram, transfer_labels, "SECONDS_FAST"},
    {"transfer_in_flight_s", layout::metric_type::histogram, transfer_labels, "SECONDS_FAST"},
};

bool is_upstream_vllm(const std::string& name) {
  return name.starts_with("vllm:") && !name.starts_with("vllm:omni_");
}

}  // namespace

TEST_CASE("the 15 seed families with the seed's labels and buckets, both prefixes",
          "[catalog][omni][golden]") {
  for (auto prefix : {omni_prefix::seed, omni_prefix::upstream}) {
    test::unique_prefix up;
    auto reg = registry::create(up.options()).value();
    auto o = qwen3_omni(true);
    o.prefix = prefix;
    auto om = omni_metrics::create(reg, test::project_catalog(), o);
    INFO((om ? "" : om.error().message()));
    REQUIRE(om);
    auto snap = test::snapshot_of(reg);
    const std::string p = prefix == omni_prefix::seed ? "vllm:omni_" : "vllm_omni:";
    std::size_t omni = 0;
    for (auto& f : snap.families)
      if (f.name.starts_with(p)) ++omni;
    REQUIRE(omni == 15);
    for (auto& s : seed_families) {
      INFO(s.name);
      auto* f = test::find_family(snap, p + s.name);
      REQUIRE(f);
      REQUIRE(f->type == s.type);
      REQUIRE(f->label_names == s.labels);
      if (s.buckets) REQUIRE(f->bounds == *test::project_catalog().bucket_set(s.buckets));
    }
    std::string text = test::text_of(reg);
    REQUIRE(test::contains(text, "# TYPE " + p + "requests_success_total counter\n"));
    REQUIRE(test::contains(text, "# TYPE " + p + "audio_frames_total counter\n"));
    REQUIRE(test::contains(
        text, p + "audio_continuity_ok_total{model_name=\"m\",replica=\"0\",stage=\"2\","
                  "threshold_ms=\"100\"} 0.0\n"));
    REQUIRE(
        test::contains(text, p + "transfer_size_bytes_bucket{from_replica=\"1\",from_stage="
                                 "\"1\",le=\"2.68435456e+08\",model_name=\"m\",to_replica=\"0\","
                                 "to_stage=\"2\"} 0.0\n"));
    REQUIRE(test::contains(text, p + "audio_rtf_bucket{le=\"0.9\",model_name=\"m\",replica=\"0\","
                                     "stage=\"2\"} 0.0\n"));
  }
}

TEST_CASE("without --log-stats: no vllm:* family, the 15 registered with nothing written",
          "[catalog][omni][gating]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto om = omni_metrics::create(reg, test::project_catalog(), qwen3_omni(false)).value();
  REQUIRE(om.engine_metrics() == nullptr);
  om.set_requests(3, 4);
  om.record_request(test::worked_example());
  om.record_audio_first_packet(2, 0, 0.4);

  auto snap = test::snapshot_of(reg);
  REQUIRE(snap.families.size() == 15);
  for (auto& f : snap.families) {
    INFO(f.name);
    REQUIRE_FALSE(is_upstream_vllm(f.name));
    REQUIRE(f.name.starts_with("vllm:omni_"));
    REQUIRE(f.series.empty());
  }
  std::istringstream lines(test::text_of(reg));
  std::string line;
  std::size_t n = 0;
  while (std::getline(lines, line)) {
    REQUIRE(line.starts_with("# "));  // HELP and TYPE only: no samples
    ++n;
  }
  REQUIRE(n == 30);
}

TEST_CASE("with --log-stats: vllm:* reshaped to stage + replica, everything populates",
          "[catalog][omni][reshape][gating]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto om = omni_metrics::create(reg, test::project_catalog(), qwen3_omni(true)).value();
  vllm_metrics* vm = om.engine_metrics();
  REQUIRE(vm);
  REQUIRE(vm->engines() == 3);  // LLM replicas: (0,0), (1,0), (1,1)
  REQUIRE(om.engine_index(1, 1) == 2);
  REQUIRE(om.engine_index(2, 0) == -1);  // code2wav runs no vLLM engine

  // Seed 001's before/after example: stage 1's two replicas, 2 and 1 running.
  step_stats s;
  s.num_running_reqs = 2;
  vm->record_step(std::size_t(om.engine_index(1, 0)), s);
  s.num_running_reqs = 1;
  vm->record_step(std::size_t(om.engine_index(1, 1)), s);

  auto snap = test::snapshot_of(reg);
  std::size_t upstream = 0;
  for (auto& f : snap.families) {
    if (!is_upstream_vllm(f.name)) continue;
    ++upstream;
    INFO(f.name);
    for (auto& l : f.label_names)
      REQUIRE(l != "engine");
  }
  REQUIRE(upstream == 37);
  auto* rs = test::find_family(snap, "vllm:request_success");
  REQUIRE(rs);
  REQUIRE(rs->label_names ==
          std::vector<std::string>{"model_name", "stage", "replica", "finished_reason"});
  REQUIRE(rs->series.size() == 3 * 5);
  auto* cc = test::find_family(snap, "vllm:cache_config_info");
  REQUIRE(cc);
  REQUIRE(cc->label_names == std::vector<std::string>{"stage", "replica"});

  std::string text = test::text_of(reg);
  REQUIRE(test::contains(text,
                         "vllm:num_requests_running{model_name=\"m\",replica=\"0\","
                         "stage=\"1\"} 2.0\n"));
  REQUIRE(test::contains(text,
                         "vllm:num_requests_running{model_name=\"m\",replica=\"1\","
                         "stage=\"1\"} 1.0\n"));
  REQUIRE_FALSE(test::contains(text, "engine="));
}

TEST_CASE("the pipeline events feed the Omni families", "[catalog][omni]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto o = qwen3_omni(true);
  o.stages[1].replicas = 1;
  auto om = omni_metrics::create(reg, test::project_catalog(), o).value();
  request_record r = test::worked_example();
  r.stages[2].audio_ttfp_s = 0.8;
  r.stages[2].audio_underrun_s = 0.02;  // below the 100 ms threshold
  om.set_requests(1, 0);
  om.record_request(r);
  request_record skipped = test::worked_example();
  skipped.transfers.clear();
  skipped.reason = finish_reason::abort;
  skipped.stages[2].audio_generated_frames = 0;
  skipped.stages[2].audio_skipped_reason = "malformed_codec_input";
  om.record_request(skipped);

  auto snap = test::snapshot_of(reg);
  auto series = [&](const std::string& name, const std::vector<std::string>& labels) {
    auto* f = test::find_family(snap, name);
    REQUIRE(f);
    for (auto& s : f->series)
      if (s.label_values == labels) return s;
    FAIL("no series " << name);
    return f->series.front();
  };
  const std::vector<std::string> talker{"m", "2", "0"};
  REQUIRE(series("vllm:omni_num_requests_running", {"m"}).value == 1);
  REQUIRE(series("vllm:omni_requests_success", {"m", "stop"}).value == 1);
  REQUIRE(series("vllm:omni_requests_success", {"m", "abort"}).value == 1);
  REQUIRE(series("vllm:omni_e2e_request_latency_s", {"m"}).count() == 2);
  REQUIRE(series("vllm:omni_e2e_request_latency_s", {"m"}).sum == Approx(2 * 41.299133));
  REQUIRE(series("vllm:omni_audio_frames", talker).value == 525525);
  const double duration = 525525.0 / 24000.0;
  REQUIRE(series("vllm:omni_audio_duration_s", talker).sum == Approx(duration));
  REQUIRE(series("vllm:omni_audio_rtf", talker).sum == Approx(0.160745 / duration));
  REQUIRE(series("vllm:omni_audio_ttfp_s", talker).sum == Approx(0.8 + 0.0).epsilon(1e-9));
  REQUIRE(series("vllm:omni_audio_underrun_s", talker).count() == 1);
  REQUIRE(series("vllm:omni_audio_continuity_ok", {"m", "2", "0", "100"}).value == 1);
  REQUIRE(
      series("vllm:omni_audio_skipped_requests", {"m", "2", "0", "malformed_codec_input"}).value ==
      1);
  const std::vector<std::string> edge01{"m", "0", "0", "1", "0"};
  REQUIRE(series("vllm:omni_transfer_size_bytes", edge01).sum == 111900005.0);
  REQUIRE(series("vllm:omni_transfer_tx_s", edge01).sum == Approx(0.0787008));
  REQUIRE(series("vllm:omni_transfer_rx_s", edge01).sum == Approx(0.1118648));
  REQUIRE(series("vllm:omni_transfer_in_flight_s", {"m", "1", "0", "2", "0"}).sum ==
          Approx(0.0028188));
}

TEST_CASE("the other Omni families of the catalog, on request", "[catalog][omni]") {
  test::unique_prefix up;
  auto opt = up.options();
  auto reg = registry::create(opt).value();
  auto o = qwen3_omni(true);
  o.extended_families = true;
  o.prefix = omni_prefix::upstream;
  auto om = omni_metrics::create(reg, test::project_catalog(), o);
  INFO((om ? "" : om.error().message()));
  REQUIRE(om);
  auto snap = test::snapshot_of(reg);
  auto* d = test::find_family(snap, "vllm_omni:diffusion_exec_s");
  REQUIRE(d);
  REQUIRE(d->series.size() == 4);  // every (stage, replica)
  auto* f = test::find_family(snap, "vllm_omni:requests_failed");
  REQUIRE(f);
  REQUIRE(f->series.size() == 4);  // client_abort, client_disconnect, stage_error, unknown
  auto* g = test::find_family(snap, "vllm_omni:stage_gen_time_s");
  REQUIRE(g);
  REQUIRE(g->series.empty());  // stage_type values are not enumerated: made on first use
  REQUIRE(om->family("omni/stage_gen_time_s"));
  REQUIRE_FALSE(test::find_family(snap, "vllm_omni:streaming_chunk_latency_s"));  // unverified
}
