// deploy/: every Grafana query parses in a real Prometheus, and names only metrics that
// engine-sim + the exporter serve; prometheus.yml passes promtool.
#include <catch2/catch.hpp>

#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <netinet/in.h>
#include <sys/socket.h>

#include "sim_support.hpp"

using namespace std::chrono_literals;

namespace {

// Grafana's variables, as Grafana would expand them for "All".
std::string expand(std::string e) {
  e = std::regex_replace(e, std::regex("\\$__rate_interval"), "1m");
  return std::regex_replace(e, std::regex("\\$model"), ".*");
}

}  // namespace

TEST_CASE("the deploy/ dashboard's queries parse and use served names", "[engine_sim][deploy]") {
  simdjson::dom::parser parser;
  simdjson::dom::element dash;
  REQUIRE(!parser.load(DEPLOY_DIR "/grafana-dashboard.json").get(dash));
  std::vector<std::string> exprs;
  simdjson::dom::array panels = dash["panels"].get_array();
  for (simdjson::dom::element p : panels) {
    simdjson::dom::array targets = p["targets"].get_array();
    for (simdjson::dom::element t : targets)
      exprs.emplace_back(std::string_view(t["expr"].get_string().value()));
  }
  REQUIRE(exprs.size() >= 20);

  // Every metric name a query uses is served by engine-sim + exporter: omni and
  // diffusion under one prefix, and llm with every optional feature under another (its
  // families have the engine label where omni's have stage and replica).
  test::unique_prefix up, up_llm;
  simtest::server sim(simtest::sim_args(up, {"--pipeline", "omni", "--log-stats"}));
  simtest::server images(simtest::sim_args(up, {"--pipeline", "diffusion", "--log-stats"}));
  REQUIRE(images.port > 0);
  simtest::server llm(simtest::sim_args(
      up_llm, {"--pipeline", "llm", "--speculative-config", R"({"num_speculative_tokens": 2})",
               "--kv-cache-metrics", "--enable-lora", "--lora-modules", "sql=/loras/sql",
               "--kv-transfer-config",
               R"({"kv_connector": "OffloadingConnector", "kv_role": "kv_both",)"
               R"( "kv_connector_extra_config":)"
               R"( {"num_cpu_blocks": 64}})"}));
  REQUIRE(llm.port > 0);
  // lora_requests_info has its first child once a step ran.
  auto lora = llm.client().Post("/v1/completions", R"({"model":"sql","prompt":"x","max_tokens":2})",
                                "application/json");
  REQUIRE(lora);
  REQUIRE(lora->status == 200);
  simtest::exporter exp(up), exp_llm(up_llm);
  std::set<std::string> served;
  for (auto* e : {&exp, &exp_llm}) {
    auto body = e->client().Get("/metrics");
    REQUIRE(body);
    std::istringstream in(body->body);
    for (std::string l; std::getline(in, l);)
      if (!l.empty() && l[0] != '#') served.insert(l.substr(0, l.find_first_of("{ ")));
  }
  std::regex name("vllm:[a-z0-9_]+|process_[a-z_]+");  // process_*: the engine's own
  for (auto& e : exprs)
    for (std::sregex_iterator it(e.begin(), e.end(), name), end; it != end; ++it) {
      INFO(e);
      CHECK(served.count(it->str()) == 1);
    }

  // Every query parses in a real Prometheus (which scrapes the exporter meanwhile).
  test::prometheus_server prom("/tmp/" + up.prefix + "-prom", exp.port);
  httplib::Client c("127.0.0.1", prom.port);
  c.set_read_timeout(10, 0);
  bool ready = false;
  for (int i = 0; i < 60 && !ready; ++i) {
    std::this_thread::sleep_for(250ms);
    auto r = c.Get("/-/ready");
    ready = r && r->status == 200;
  }
  REQUIRE(ready);
  for (auto& e : exprs) {
    auto r = c.Post("/api/v1/query", httplib::Params{{"query", expand(e)}});
    INFO(e << " -> " << (r ? r->body : std::string("no answer")));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find("\"status\":\"success\"") != std::string::npos);
  }
  // A query that does not parse is refused: the check above can fail.
  auto bad = c.Post("/api/v1/query", httplib::Params{{"query", "sum(rate(vllm:x[1m]"}});
  REQUIRE(bad);
  CHECK(bad->status == 400);

  auto [rc, out] = test::run("promtool check config " DEPLOY_DIR "/prometheus.yml 2>&1");
  INFO(out);
  CHECK(rc == 0);
}
