// The catalog file: the shipped one loads, malformed ones are refused with a message
// naming the file, the entry and the problem; the deprecation policy; 1-2-5 buckets.
#include "catalog_support.hpp"

#include <fstream>
#include <unistd.h>

using namespace shmetrics;

namespace {

// A small valid catalog; the tests break one thing at a time.
const std::string good_family =
    R"({"key": "vllm/prompt_tokens_total", "name": "vllm:prompt_tokens_total",
  "type": "counter", "labels": ["model_name", "engine"], "buckets": null,
  "help": "Number of prefill tokens processed.", "source": "vllm", "status": "current",
  "when": "always"})";

std::string doc(const std::string& families,
                const std::string& sets = R"({"SECONDS": [0.05, 0.1]})") {
  return R"({"format": "shmetrics-vllm-catalog", "format_version": 1, "vllm_version": "0.32",
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
  REQUIRE(c->families()[0].type == layout::metric_type::counter);
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
