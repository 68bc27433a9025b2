// The 0.0.4 encoder: golden outputs, and real validators (promtool, prometheus_client).
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/text_format.hpp>
#include "support.hpp"

using namespace shmetrics;

TEST_CASE("floats print as prometheus_client prints them", "[text][float]") {
  // Expected strings from prometheus_client.utils.floatToGoString (Python 3.11).
  const std::pair<double, const char*> cases[] = {
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {1.0, "1.0"},
      {-1.0, "-1.0"},
      {2.5, "2.5"},
      {0.001, "0.001"},
      {0.0001, "0.0001"},
      {1e-05, "1e-05"},
      {1.5e-07, "1.5e-07"},
      {0.1 + 0.2, "0.30000000000000004"},
      {2560.0, "2560.0"},
      {16384.0, "16384.0"},
      {100000.0, "100000.0"},
      {999999.0, "999999.0"},
      {1e6, "1e+06"},
      {2e6, "2e+06"},
      {1234567.0, "1.234567e+06"},
      {1048576.0, "1.048576e+06"},
      {268435456.0, "2.68435456e+08"},
      {8589934592.0, "8.589934592e+09"},
      {1.5e8, "1.5e+08"},
      {1e10, "1e+010"},  // sic: Python's f'e+0{dot - 1}'
      {1234567.5, "1.2345675e+06"},
      {1e16, "1e+16"},
      {1.5e300, "1.5e+300"},
      {-1234567.0, "-1234567.0"},
      {-1e-05, "-1e-05"},
      {5e-324, "5e-324"},
      {123.456, "123.456"},
      {INFINITY, "+Inf"},
      {-INFINITY, "-Inf"},
      {NAN, "NaN"},
  };
  for (auto& [v, want] : cases) {
    INFO(want);
    REQUIRE(format_float(v) == want);
  }
}

TEST_CASE("HELP and label values are escaped exactly as 0.0.4 wants", "[text][escape]") {
  std::string h;
  append_escaped_help(h, "a\\b\nc\"d\te");
  REQUIRE(h == "a\\\\b\\nc\"d\te");  // only \ and LF in HELP
  std::string l;
  append_escaped_label_value(l, "a\\b\nc\"d\te");
  REQUIRE(l == "a\\\\b\\nc\\\"d\te");  // \ " LF in label values
}

TEST_CASE("families encode with HELP/TYPE once, sorted labels, cumulative buckets",
          "[text][golden]") {
  std::vector<family_snapshot> fams(4);
  fams[0].name = "vllm:prompt_tokens";
  fams[0].help = "Number of prefill tokens processed.";
  fams[0].type = metric_type::counter;
  fams[0].label_names = {"model_name", "engine"};
  fams[0].series.resize(2);
  fams[0].series[0].label_values = {"m", "0"};
  fams[0].series[0].value = 12;
  fams[0].series[1].label_values = {"m", "1"};
  fams[1].name = "vllm:time_to_first_token_seconds";
  fams[1].help = "Histogram of time to first token in seconds.";
  fams[1].type = metric_type::histogram;
  fams[1].label_names = {"model_name", "engine"};
  fams[1].bounds = {0.001, 1.0, 1e6};
  fams[1].series.resize(1);
  fams[1].series[0].label_values = {"m", "0"};
  fams[1].series[0].buckets = {0, 2, 2, 3};
  fams[1].series[0].sum = 0.42;
  fams[2].name = "up_gauge";
  fams[2].help = "quote \" back\\slash\nnewline";
  fams[2].type = metric_type::gauge;
  fams[2].series.resize(1);
  fams[2].series[0].value = -2.5;
  fams[3].name = "vllm:cache_config_info";
  fams[3].help = "Information of the LLMEngine CacheConfig";
  fams[3].type = metric_type::info;
  fams[3].label_names = {"engine", "block_size"};
  fams[3].series.resize(1);
  fams[3].series[0].label_values = {"0", "16"};
  fams[3].series[0].value = 1;
  std::string out;
  encode_text(fams, out);
  const char* want =
      "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
      "# TYPE vllm:prompt_tokens_total counter\n"
      "vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 12.0\n"
      "vllm:prompt_tokens_total{engine=\"1\",model_name=\"m\"} 0.0\n"
      "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
      "# TYPE vllm:time_to_first_token_seconds histogram\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.001\",model_name=\"m\"} 0.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"1.0\",model_name=\"m\"} 2.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"1e+06\",model_name=\"m\"} 2.0\n"
      "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 3.0\n"
      "vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"m\"} 3.0\n"
      "vllm:time_to_first_token_seconds_sum{engine=\"0\",model_name=\"m\"} 0.42\n"
      "# HELP up_gauge quote \" back\\\\slash\\nnewline\n"
      "# TYPE up_gauge gauge\n"
      "up_gauge -2.5\n"
      "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
      "# TYPE vllm:cache_config_info gauge\n"
      "vllm:cache_config_info{block_size=\"16\",engine=\"0\"} 1.0\n";
  REQUIRE(out == want);
}

namespace {

// A segment with every type and tricky strings, encoded to a file.
std::string encode_live_segment(test::unique_prefix& up) {
  auto reg = registry::create(up.options()).value();
  auto c = reg.add_counter({.name = "vllm:request_success_total",
                            .help = "Count of successfully processed requests.",
                            .labels = {"model_name", "engine", "finished_reason"}})
               .value();
  for (auto r : {"stop", "length", "abort", "error", "repetition"})
    c.with_labels({"m\"q\\", "0", r})->inc();
  reg.add_gauge({.name = "vllm:kv_cache_usage_perc",
                 .help = "KV-cache usage. 1 means 100 percent usage.",
                 .labels = {"model_name", "engine"}})
      ->with_labels({"line\nbreak", "0"})
      ->set(0.25);
  auto h = reg.add_histogram({.name = "vllm:e2e_request_latency_seconds",
                              .help = "Histogram of e2e request latency in seconds.",
                              .labels = {"model_name", "engine"},
                              .buckets = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                          5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                          60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}})
               .value()
               .with_labels({"m", "0"})
               .value();
  for (int i = 0; i < 100; ++i)
    h.observe(i * 0.7);
  reg.add_info({.name = "vllm:cache_config_info",
                .help = "Information of the LLMEngine CacheConfig",
                .labels = {"engine", "block_size"}})
      ->with_labels({"0", "16"})
      .value();
  reg.add_gauge({.name = "nan_value", .help = "help with \\ backslash"})->with_labels({})->set(NAN);
  auto snap = segment_reader::open(reg.path())->snapshot().value();
  std::string text;
  encode_text(snap.families, text);
  std::string file = "/tmp/" + up.prefix + ".prom";
  std::ofstream(file) << text;
  return file;
}

}  // namespace

TEST_CASE("promtool accepts a live segment's exposition (only the ':' lint)", "[text][promtool]") {
  test::unique_prefix up;
  std::string file = encode_live_segment(up);
  auto [rc, out] = test::run("promtool check metrics < " + file + " 2>&1");
  INFO(out);
  REQUIRE((rc == 0 || rc == 3));
  std::istringstream lines(out);
  std::string line;
  int lint = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    bool allowed = line.find("metric names should not contain ':'") != std::string::npos;
    INFO(line);
    REQUIRE(allowed);
    ++lint;
  }
  REQUIRE(lint == 4);  // the four vllm: families
  std::remove(file.c_str());
}

TEST_CASE("prometheus_client's parser reads back the same values", "[text][python]") {
  test::unique_prefix up;
  std::string file = encode_live_segment(up);
  std::string py =
      "import sys, math\n"
      "from prometheus_client.parser import text_string_to_metric_families as p\n"
      "fams = {f.name: f for f in p(open(sys.argv[1]).read())}\n"
      "s = {(x.name, tuple(sorted(x.labels.items()))): x.value for f in fams.values() for x in "
      "f.samples}\n"
      "assert fams['vllm:request_success'].type == 'counter'\n"
      "assert s[('vllm:request_success_total', "
      "(('engine','0'),('finished_reason','abort'),('model_name','m\"q\\\\')))] == 1.0\n"
      "assert s[('vllm:kv_cache_usage_perc', (('engine','0'),('model_name','line\\nbreak')))] == "
      "0.25\n"
      "h = fams['vllm:e2e_request_latency_seconds']\n"
      "assert h.type == 'histogram'\n"
      "b = [x for x in h.samples if x.name.endswith('_bucket')]\n"
      "assert b[-1].labels['le'] == '+Inf' and b[-1].value == 100.0\n"
      "assert all(b[i].value <= b[i+1].value for i in range(len(b)-1))\n"
      "assert math.isnan(s[('nan_value', ())])\n"
      "print('ok', len(s))\n";
  std::ofstream("/tmp/" + up.prefix + ".py") << py;
  auto [rc, out] = test::run("/usr/bin/python3 /tmp/" + up.prefix + ".py " + file + " 2>&1");
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(out.find("ok ") == 0);
  std::remove(file.c_str());
  std::remove(("/tmp/" + up.prefix + ".py").c_str());
}

TEST_CASE("le takes its sorted place among a histogram's labels, in both formats",
          "[text][histogram]") {
  auto hist = [](std::vector<std::string> names, std::vector<std::string> values) {
    family_snapshot f;
    f.name = "h";
    f.help = "x";
    f.type = layout::metric_type::histogram;
    f.label_names = std::move(names);
    f.bounds = {0.5};
    series_snapshot s;
    s.label_values = std::move(values);
    s.buckets = {1, 3};
    s.sum = 2;
    f.series.push_back(s);
    return std::vector<family_snapshot>{f};
  };
  struct {
    std::vector<std::string> names, values;
    const char* bucket0;  // the first bucket line's labels
    const char* count;    // the _count line's labels
  } cases[] = {
      {{}, {}, "{le=\"0.5\"}", ""},
      {{"model"}, {"m"}, "{le=\"0.5\",model=\"m\"}", "{model=\"m\"}"},
      {{"b", "a"}, {"2", "1"}, "{a=\"1\",b=\"2\",le=\"0.5\"}", "{a=\"1\",b=\"2\"}"},
      {{"z", "a"}, {"q\"", "1"}, "{a=\"1\",le=\"0.5\",z=\"q\\\"\"}", "{a=\"1\",z=\"q\\\"\"}"},
  };
  for (auto& c : cases) {
    auto fams = hist(c.names, c.values);
    std::string text, om;
    encode_text(fams, text);
    encode_openmetrics(fams, om);
    CAPTURE(text, om);
    CHECK(text.find(std::string("h_bucket") + c.bucket0 + " 1.0\n") != std::string::npos);
    CHECK(text.find(std::string("h_count") + c.count + " 3.0\n") != std::string::npos);
    CHECK(om.find(std::string("h_bucket") + c.bucket0 + " 1\n") != std::string::npos);
    CHECK(om.find(std::string("h_sum") + c.count + " 2.0\n") != std::string::npos);
    std::string inf = c.names.empty() ? "{le=\"+Inf\"}" : "";
    if (!inf.empty()) CHECK(text.find("h_bucket" + inf + " 3.0\n") != std::string::npos);
    // Labels prepared ahead print the same bytes; a family added after preparing too.
    prepared_labels prepared;
    prepare_labels(fams, prepared);
    fams.push_back(hist({"y"}, {"late"})[0]);
    fams.back().name = "late";
    std::string text2, om2, text3, om3;
    encode_text(fams, text2);
    encode_openmetrics(fams, om2);
    encode_text(fams, text3, &prepared);
    encode_openmetrics(fams, om3, &prepared);
    CHECK(text2.starts_with(text));
    CHECK(text3 == text2);
    CHECK(om3 == om2);
    CHECK(text3.find("late_bucket{le=\"0.5\",y=\"late\"} 1.0\n") != std::string::npos);
  }
}
