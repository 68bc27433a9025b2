// The catalog file: the shipped one loads, malformed ones are refused with a message
// naming the file, the entry and the problem; the deprecation policy; 1-2-5 buckets.
#include "catalog_support.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <unistd.h>

using namespace shmetrics;

namespace {

// A small valid catalog; the tests break one thing at a time.
const std::string good_family =
    R"({"key": "vllm/prompt_tokens_total", "name": "vllm:prompt_tokens_total",
  "type": "counter", "labels": ["model_name", "engine"], "buckets": null,
  "help": "Number of prefill tokens processed.", "source": "vllm", "status": "current",
  "when": "always", "upstream": {"repo": "vllm-project/vllm",
  "path": "vllm/v1/metrics/loggers.py", "ref": "ea5790cc6efbdd8a36a5e9050bca679d552cd1f6"},
  "seed": ["002_0ea94750cbc59907.txt"]})";

std::string doc(const std::string& families,
                const std::string& sets = R"({"SECONDS": [0.05, 0.1]})") {
  return R"({"format": "shmetrics-vllm-catalog", "format_version": 2, "vllm_version": "0.32",
  "upstream_releases": {"vllm": {"repo": "vllm-project/vllm", "release": "0.32",
    "ref": "ea5790cc6efbdd8a36a5e9050bca679d552cd1f6"}},
  "omni_prefixes": {"seed": "vllm:omni_", "upstream": "vllm_omni:"},
  "bucket_sets": )" +
         sets + R"(, "families": [)" + families + "]}";
}

struct tmp_file {
  std::string path;
  explicit tmp_file(const std::string& text) {
    static int n = 0;
    path = "/tmp/shmetrics-catalog-test-" + std::to_string(getpid()) + "-" + std::to_string(n++) +
           ".json";
    std::ofstream(path) << text;
  }
  ~tmp_file() { ::unlink(path.c_str()); }
};

// Loads `text` from a file and returns the error message ("" if it loaded).
std::string refusal(const std::string& text) {
  tmp_file f(text);
  auto c = catalog::load(f.path);
  if (c) return {};
  CHECK(c.code() == errc::corrupt_record);
  std::string m = c.error().message();
  CHECK(test::contains(m, f.path));  // names the file
  return m;
}

std::string family_with(const std::string& field, const std::string& value) {
  // Replaces (or adds) one field of good_family.
  std::string f = good_family;
  auto at = f.find("\"" + field + "\":");
  if (at == std::string::npos)
    return f.substr(0, f.size() - 1) + ", \"" + field + "\": " + value + "}";
  auto end = at + field.size() + 3;
  int depth = 0;
  std::size_t i = end;
  for (; i < f.size(); ++i) {
    char c = f[i];
    if (c == '[' || c == '{') ++depth;
    if (c == ']' || c == '}') {
      if (depth == 0) break;
      --depth;
    }
    if (c == ',' && depth == 0) break;
  }
  return f.substr(0, end) + " " + value + f.substr(i);
}

}  // namespace

TEST_CASE("the shipped catalog loads and holds vLLM's and the seed's families", "[catalog]") {
  const catalog& cat = test::project_catalog();
  REQUIRE(cat.vllm_version() == "0.32");
  REQUIRE(cat.omni_seed_prefix() == "vllm:omni_");
  REQUIRE(cat.omni_upstream_prefix() == "vllm_omni:");
  std::size_t seed = 0, vllm_always = 0;
  for (auto& f : cat.families()) {
    if (f.when == "seed") ++seed;
    if (f.source == family_source::vllm && f.when == "always") ++vllm_always;
  }
  REQUIRE(seed == 15);
  REQUIRE(vllm_always == 37);
  // The seed's bucket constants (seed 001 naming convention, catalog section 2.2).
  REQUIRE(*cat.bucket_set("SECONDS") == std::vector<double>{0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
                                                            10.0, 20.0, 30.0, 60.0, 120.0, 300.0});
  REQUIRE(*cat.bucket_set("SECONDS_FAST") == std::vector<double>{0.001, 0.005, 0.01, 0.025, 0.05,
                                                                 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                                                                 10.0, 60.0});
  REQUIRE(*cat.bucket_set("RTF") ==
          std::vector<double>{0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 5.0, 10.0});
  REQUIRE(*cat.bucket_set("BYTES") == std::vector<double>{1024, 4096, 16384, 65536, 262144, 1048576,
                                                          4194304, 16777216, 67108864, 268435456});
  auto* g = cat.find("vllm/num_requests_running");
  REQUIRE(g);
  // multiprocess_mode=mostrecent, of live writers only: a dead engine's load is not served
  REQUIRE(g->mode == layout::gauge_mode::live_latest);
  for (const auto* name :
       {"vllm/num_requests_waiting", "vllm/kv_cache_usage_perc", "vllm/cache_config_info"})
    REQUIRE(cat.find(name)->mode == layout::gauge_mode::live_latest);
  REQUIRE(cat.find("vllm/request_prompt_tokens")->buckets_1_2_5);
  REQUIRE(cat.find_name("vllm:omni_audio_rtf")->bucket_set == "RTF");
}

TEST_CASE("a minimal catalog parses", "[catalog]") {
  auto c = catalog::parse(doc(good_family), "mini");
  INFO((c ? "" : c.error().message()));
  REQUIRE(c);
  REQUIRE(c->families().size() == 1);
  const family_def& f = c->families()[0];
  REQUIRE(f.type == layout::metric_type::counter);
  // The sources: upstream's file and revision, the seed files, the release matched.
  REQUIRE(f.upstream.repo == "vllm-project/vllm");
  REQUIRE(f.upstream.path == "vllm/v1/metrics/loggers.py");
  REQUIRE(f.upstream.ref == "ea5790cc6efbdd8a36a5e9050bca679d552cd1f6");
  REQUIRE(f.seeds == std::vector<std::string>{"002_0ea94750cbc59907.txt"});
  REQUIRE(listing_status(f, c->vllm_version()) == "seed");
  REQUIRE(c->upstream_releases().size() == 1);
  REQUIRE(c->upstream_releases()[0].name == "vllm");
  REQUIRE(c->upstream_releases()[0].repo == "vllm-project/vllm");
  REQUIRE(c->upstream_releases()[0].release == "0.32");
  // Optional: a family of one's own records no source; "#N", "index:N", "unknown" refs.
  std::string own = R"({"key": "vllm/x_total", "name": "vllm:x_total", "type": "counter",
    "labels": [], "buckets": null, "help": "h", "source": "vllm", "status": "current",
    "when": "always"})";
  std::string pr = R"({"key": "vllm/y_total", "name": "vllm:y_total", "type": "counter",
    "labels": [], "buckets": null, "help": "h", "source": "vllm", "status": "current",
    "when": "never", "upstream": {"repo": "vllm-project/vllm", "path": "vllm/a.py",
    "ref": "#56318"}})";
  auto c2 = catalog::parse(doc(own + "," + pr), "mini2");
  INFO((c2 ? "" : c2.error().message()));
  REQUIRE(c2);
  REQUIRE(c2->families()[0].upstream.repo.empty());
  REQUIRE(c2->families()[0].seeds.empty());
  REQUIRE(listing_status(c2->families()[0], "0.32") == "upstream");
  REQUIRE(c2->families()[1].upstream.ref == "#56318");
}

TEST_CASE("malformed catalog files are refused naming file, entry and problem", "[catalog]") {
  SECTION("a missing file") {
    auto c = catalog::load("/tmp/shmetrics-no-such-catalog.json");
    REQUIRE(c.code() == errc::open_failed);
    auto m = c.error().message();
    INFO(m);
    REQUIRE(test::contains(m, "catalog JSON file /tmp/shmetrics-no-such-catalog.json"));
    REQUIRE(test::contains(m, "set $SHMETRICS_CATALOG to the catalog's path"));
    REQUIRE(test::contains(m, "No such file or directory"));
    REQUIRE_FALSE(test::contains(m, "segment"));  // it is not one
  }
  SECTION("the installed default, missing, without $SHMETRICS_CATALOG") {
    std::string saved = std::getenv("SHMETRICS_CATALOG") ? std::getenv("SHMETRICS_CATALOG") : "";
    ::unsetenv("SHMETRICS_CATALOG");
    std::string path = catalog::default_path();
    auto c = catalog::load(path);
    if (!saved.empty()) ::setenv("SHMETRICS_CATALOG", saved.c_str(), 1);
    REQUIRE(path == std::string(SHMETRICS_CATALOG_DIR) + "/vllm_catalog.json");
    if (std::filesystem::exists(path)) {  // installed here: it loads
      REQUIRE(c);
    } else {
      REQUIRE(c.code() == errc::open_failed);
      auto m = c.error().message();
      INFO(m);
      REQUIRE(test::contains(m, "catalog JSON file " + path +
                                    " (the installed default; set "
                                    "$SHMETRICS_CATALOG to the catalog's path"));
      REQUIRE_FALSE(test::contains(m, "segment"));
    }
  }
  SECTION("$SHMETRICS_CATALOG naming a missing file") {
    std::string saved = std::getenv("SHMETRICS_CATALOG") ? std::getenv("SHMETRICS_CATALOG") : "";
    ::setenv("SHMETRICS_CATALOG", "/tmp/shmetrics-no-such-env-catalog.json", 1);
    auto c = catalog::load(catalog::default_path());
    if (saved.empty())
      ::unsetenv("SHMETRICS_CATALOG");
    else
      ::setenv("SHMETRICS_CATALOG", saved.c_str(), 1);
    REQUIRE(c.code() == errc::open_failed);
    REQUIRE(test::contains(c.error().message(),
                           "catalog JSON file /tmp/shmetrics-no-such-env-catalog.json (from "
                           "$SHMETRICS_CATALOG): cannot open: No such file or directory"));
  }
  SECTION("not JSON") {
    auto m = refusal("{\"format\": ");
    REQUIRE(test::contains(m, "not valid JSON"));
  }
  SECTION("wrong format tag") {
    auto m = refusal(R"({"format": "other"})");
    REQUIRE(test::contains(m, "\"format\""));
  }
  SECTION("format 1 (no sources) is refused with the version it wants") {
    std::string d = doc(good_family);
    d.replace(d.find("\"format_version\": 2"), 19, "\"format_version\": 1");
    auto m = refusal(d);
    REQUIRE(test::contains(m, "\"format_version\" must be 2"));
    REQUIRE(test::contains(m, "format 1 lacks the upstream sources"));
  }
  SECTION("upstream_releases missing, or with a bad ref") {
    std::string d = doc(good_family);
    auto at = d.find("\"upstream_releases\"");
    auto end = d.find("\"omni_prefixes\"");
    REQUIRE(test::contains(refusal(d.substr(0, at) + d.substr(end)),
                           "\"upstream_releases\" missing or not an object"));
    std::string bad = d;
    bad.replace(bad.find("ea5790cc6efbdd8a36a5e9050bca679d552cd1f6"), 40, "v0.32.0");
    auto m = refusal(bad);
    REQUIRE(test::contains(m, "upstream_releases.vllm: \"ref\" must be a commit"));
  }
  SECTION("a bucket set out of order") {
    auto m = refusal(doc(good_family, R"({"SECONDS": [0.1, 0.05]})"));
    REQUIRE(test::contains(m, "bucket_sets.SECONDS"));
    REQUIRE(test::contains(m, "not strictly increasing"));
  }
  struct bad {
    std::string field, value, problem;
  };
  const bad cases[] = {
      {"type", "\"summary\"", "unknown type \"summary\""},
      {"labels", "[\"model_name\", \"model_name\"]", "duplicate label \"model_name\""},
      {"labels", "[\"model-name\"]", "invalid label name \"model-name\""},
      {"buckets", "[1, 2]", "buckets on a counter"},
      {"source", "\"sglang\"", "\"source\" must be"},
      {"when", "\"sometimes\"", "unknown \"when\" \"sometimes\""},
      {"status", "\"maybe\"", "\"status\" missing or unknown"},
      {"help", "\"\"", "\"help\" missing or empty"},
      {"gauge_mode", "\"latest\"", "gauge_mode on a counter"},
      {"deprecated_in", "\"0.11\"", "\"deprecated_in\" goes with"},
      {"mirrors", "\"vllm/nothing\"", "\"mirrors\" names no family"},
      {"label_values", "{\"finished_reason\": [\"stop\"]}", "not an extra label"},
      {"colour", "\"blue\"", "unknown field \"colour\""},
      // Sources: where upstream defines it, and the seed files that name it.
      {"upstream", "\"loggers.py\"", "\"upstream\" is not an object"},
      {"upstream", R"({"repo": "vllm-project/vllm", "path": "vllm/v1/metrics/loggers.py"})",
       "\"upstream\" \"ref\" missing"},
      {"upstream",
       R"({"repo": "vllm-project/vllm", "path": "vllm/v1/metrics/loggers.py", "ref": "main"})",
       "\"upstream\" \"ref\" must be a commit (7 to 40 lowercase hex digits), \"#<pull request "
       "or issue>\", \"index:<id>\" or \"unknown\", not \"main\""},
      {"upstream", R"({"repo": "vllm", "path": "loggers.py", "ref": "#55812"})",
       "\"upstream\" \"repo\" must be \"owner/name\""},
      {"upstream", R"({"repo": "sgl-project/sglang", "path": "x.py", "ref": "#1"})",
       "\"upstream\" \"repo\" sgl-project/sglang is not in \"upstream_releases\""},
      {"upstream", R"({"repo": "vllm-project/vllm", "path": "../x.py", "ref": "#1"})",
       "\"upstream\" \"path\" must be a relative file path"},
      {"upstream", R"({"repo": "vllm-project/vllm", "path": "x.py", "ref": "#1", "line": 3})",
       "\"upstream\" has an unknown field \"line\""},
      {"seed", "\"002_0ea94750cbc59907.txt\"", "\"seed\" is not an array"},
      {"seed", "[]", "\"seed\" is empty"},
      {"seed", "[\"a.txt\", \"a.txt\"]", "\"seed\" repeats \"a.txt\""},
  };
  for (auto& b : cases) {
    DYNAMIC_SECTION("field " << b.field << " = " << b.value) {
      auto m = refusal(doc(family_with(b.field, b.value)));
      INFO(m);
      REQUIRE(test::contains(m, "families[0] (vllm:prompt_tokens_total)"));  // the entry
      REQUIRE(test::contains(m, b.problem));                                 // the problem
    }
  }
  SECTION("a histogram with an unknown bucket set") {
    std::string h = R"({"key": "vllm/x", "name": "vllm:x", "type": "histogram", "labels": [],
      "buckets": "NOPE", "help": "h", "source": "vllm", "status": "current", "when": "always"})";
    auto m = refusal(doc(good_family + "," + h));
    REQUIRE(test::contains(m, "families[1] (vllm:x)"));
    REQUIRE(test::contains(m, "unknown bucket set \"NOPE\""));
  }
  SECTION("histogram bounds not increasing") {
    std::string h = R"({"key": "vllm/x", "name": "vllm:x", "type": "histogram", "labels": [],
      "buckets": [1, 5, 5], "help": "h", "source": "vllm", "status": "current", "when": "always"})";
    auto m = refusal(doc(h));
    REQUIRE(test::contains(m, "families[0] (vllm:x): buckets not strictly increasing at index 2"));
  }
  SECTION("a duplicate key") {
    auto m = refusal(doc(good_family + "," + family_with("name", "\"vllm:other_total\"")));
    REQUIRE(test::contains(m, "families[1] (vllm:other_total)"));
    REQUIRE(test::contains(m, "duplicate key"));
  }
  SECTION("an Omni family without the seed prefix") {
    std::string o = R"({"key": "omni/x", "name": "vllm_omni:x", "type": "gauge", "labels": [],
      "buckets": null, "help": "h", "source": "vllm-omni", "status": "current", "when": "seed",
      "gauge_mode": "latest"})";
    auto m = refusal(doc(o));
    REQUIRE(test::contains(m, "families[0] (vllm_omni:x)"));
    REQUIRE(test::contains(m, "seed prefix"));
  }
}

TEST_CASE("deprecation policy: shown in X.Y, hidden in X.Y+1 unless asked, gone in X.Y+2",
          "[catalog][deprecation]") {
  REQUIRE(deprecated_family_visible("0.11", "0.11", ""));
  REQUIRE_FALSE(deprecated_family_visible("0.11", "0.12", ""));
  REQUIRE(deprecated_family_visible("0.11", "0.12", "0.11"));
  REQUIRE_FALSE(deprecated_family_visible("0.11", "0.12", "0.10"));
  REQUIRE_FALSE(deprecated_family_visible("0.11", "0.13", "0.12"));
  REQUIRE_FALSE(deprecated_family_visible("0.11", "0.13", "0.11"));
  REQUIRE(deprecated_family_visible("0.11", "0.10", ""));
}

TEST_CASE("1-2-5 buckets follow max_model_len as vLLM builds them", "[catalog]") {
  REQUIRE(buckets_1_2_5(4096) ==
          std::vector<double>{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000});
  REQUIRE(buckets_1_2_5(8192).back() == 5000);
  REQUIRE(buckets_1_2_5(32768).back() == 20000);
  REQUIRE(buckets_1_2_5(131072).back() == 100000);
}

TEST_CASE("the shipped catalog says where each family comes from", "[catalog][sources]") {
  const catalog& cat = test::project_catalog();
  // The releases it matches.
  REQUIRE(cat.upstream_releases().size() == 2);
  REQUIRE(cat.upstream_releases()[0].name == "vllm");
  REQUIRE(cat.upstream_releases()[0].repo == "vllm-project/vllm");
  REQUIRE(cat.upstream_releases()[0].release == cat.vllm_version());
  REQUIRE(cat.upstream_releases()[1].name == "vllm-omni");
  REQUIRE(cat.upstream_releases()[1].repo == "vllm-project/vllm-omni");
  // Every family names its upstream file, in the repository of its source.
  std::size_t seeded = 0;
  for (auto& f : cat.families()) {
    INFO(f.key);
    REQUIRE_FALSE(f.upstream.path.empty());
    REQUIRE(f.upstream.repo ==
            (f.source == family_source::vllm ? "vllm-project/vllm" : "vllm-project/vllm-omni"));
    if (!f.seeds.empty()) ++seeded;
  }
  // The 15 of seed 001, and the vLLM families seeds 001, 002 and 004 name.
  REQUIRE(seeded == 15 + 17);
  for (auto& f : cat.families())
    if (f.when == "seed")
      REQUIRE(std::find(f.seeds.begin(), f.seeds.end(), "001_83e946c820acdeae.txt") !=
              f.seeds.end());

  // Listing status at the catalog's version (0.32).
  auto status = [&](const char* key) {
    auto* d = cat.find(key);
    REQUIRE(d);
    return std::string(listing_status(*d, cat.vllm_version()));
  };
  CHECK(status("vllm/num_requests_running") == "seed");
  CHECK(status("vllm/iteration_tokens_total") == "seed");              // seed 004
  CHECK(status("omni/audio_rtf") == "seed");                           // seed 001
  CHECK(status("vllm/worker_step_time_seconds") == "upstream");        // not in any seed
  CHECK(status("vllm/gpu_cache_usage_perc") == "removed");             // deprecated 0.9
  CHECK(status("vllm/time_per_output_token_seconds") == "removed");    // deprecated 0.11
  CHECK(status("vllm/num_requests_swapped") == "removed");             // V0 only
  CHECK(status("vllm/kv_offload_total_bytes_total") == "deprecated");  // kept beside the flat names
  // The policy at other versions: shown in X.Y, hidden in X.Y+1, removed from X.Y+2.
  const family_def& tpot = *cat.find("vllm/time_per_output_token_seconds");
  CHECK(listing_status(tpot, "0.11") == "deprecated");
  CHECK(listing_status(tpot, "0.12") == "hidden");
  CHECK(listing_status(tpot, "0.13") == "removed");
}

TEST_CASE("the newest upstream families: worker timing, tiered offload, cached by source",
          "[catalog][sources]") {
  const catalog& cat = test::project_catalog();
  const std::vector<double> worker{0.001, 0.0015, 0.002, 0.005, 0.01, 0.02, 0.05,
                                   0.1,   0.2,    0.5,   1.0,   2.0,  5.0,  10.0};
  REQUIRE(*cat.bucket_set("WORKER_TIME") == worker);
  struct want {
    const char* key;
    std::vector<std::string> labels;
  };
  const want hist[] = {
      {"vllm/worker_model_execute_time_seconds",
       {"model_name", "engine", "phase", "num_model_tokens"}},
      {"vllm/worker_spec_decode_proposer_time_seconds",
       {"model_name", "engine", "phase", "num_requests"}},
      {"vllm/worker_step_time_seconds", {"model_name", "engine", "phase", "num_model_tokens"}},
  };
  for (auto& w : hist) {
    INFO(w.key);
    auto* d = cat.find(w.key);
    REQUIRE(d);
    CHECK(d->type == layout::metric_type::histogram);
    CHECK(d->labels == w.labels);
    CHECK(d->buckets == worker);
    CHECK(d->when == "worker_timing");  // nothing registers it yet: vLLM's exposition unchanged
    CHECK(d->upstream.path == "vllm/v1/metrics/worker.py");
  }
  for (const char* stem :
       {"read_bytes", "read_time", "write_bytes", "write_time", "promotion_job_failures",
        "cascade_job_failures", "block_queries", "block_hits"}) {
    std::string key = std::string("vllm/kv_offload_tiering_") + stem + "_total";
    INFO(key);
    auto* d = cat.find(key);
    REQUIRE(d);
    CHECK(d->type == layout::metric_type::counter);
    CHECK(d->labels == std::vector<std::string>{"model_name", "engine", "tier"});
    CHECK(d->when == "kv_offload_tiered");
  }
  auto* c = cat.find("vllm/prompt_tokens_cached_by_source_total");
  REQUIRE(c);
  CHECK(c->labels == std::vector<std::string>{"model_name", "engine", "source"});
  CHECK(*c->values_of("source") ==
        std::vector<std::string>{"device", "host", "p2p", "disk", "external_unspecified"});
  CHECK(c->upstream.ref == "#56318");
  CHECK(c->when == "never");
  for (const char* k : {"omni/stage_outputs_queue_size", "omni/stage_inflight_requests"}) {
    INFO(k);
    REQUIRE(cat.find(k));
    CHECK(cat.find(k)->when == "never");  // type and labels not retrieved
  }
}
