// An engine that takes the vLLM metric families from the single headers alone:
// single_include/shmetrics/shmetrics.hpp and catalog.hpp, with the families compiled in
// (no library, no JSON file; simdjson only for --catalog). catalog_impl.cpp holds the
// implementation. tests/install/single_header_catalog_test.sh builds it with g++ and clang++.
//
//   catalog_consumer [--shm.dir DIR] [--shm.prefix NAME] [--keep] [--catalog FILE.json]
//
// Registers only the families it picks, records a few steps and requests, prints the
// picked names, then exits 0. --catalog (built with -DSHMETRICS_CATALOG_JSON) loads the
// catalog from a file instead of the compiled-in one.
#include <cstdio>   // printf
#include <cstring>  // strcmp
#include <string>

#include <shmetrics/catalog.hpp>
#include <shmetrics/shmetrics.hpp>

int main(int argc, char** argv) {
  shmetrics::registry_options opt;
  opt.heartbeat_interval = {};  // a short-lived program: no heartbeat thread
  std::string json;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--shm.dir") == 0 && i + 1 < argc)
      opt.dir = argv[++i];
    else if (std::strcmp(argv[i], "--shm.prefix") == 0 && i + 1 < argc)
      opt.prefix = argv[++i];
    else if (std::strcmp(argv[i], "--keep") == 0)
      opt.unlink_on_close = false;
    else if (std::strcmp(argv[i], "--catalog") == 0 && i + 1 < argc)
      json = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: catalog_consumer [--shm.dir DIR] [--shm.prefix NAME] [--keep] "
                   "[--catalog FILE.json]\n");
      return 2;
    }
  }

  // The compiled-in families, or a catalog file (needs SHMETRICS_CATALOG_JSON).
  shmetrics::catalog all = shmetrics::catalog::builtin();
  if (!json.empty()) {
    auto loaded = shmetrics::catalog::load(json);
    if (!loaded) {
      std::fprintf(stderr, "catalog_consumer: %s\n", loaded.error().message().c_str());
      return 1;
    }
    all = std::move(*loaded);
  }
  std::printf("catalog %s: %zu families\n", all.origin().c_str(), all.families().size());

  // Only these families, by exposed name or key; an unknown one is named in the error.
  auto picked = all.select({"vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                            "vllm:request_prompt_tokens", "vllm:request_success_total",
                            "vllm/num_requests_running"});
  if (!picked) {
    std::fprintf(stderr, "catalog_consumer: %s\n", picked.error().message().c_str());
    return 1;
  }
  if (auto bad = all.select({"vllm:time_to_first_token_seconds", "vllm:no_such_family"}); !bad)
    std::printf("unknown: %s\n", bad.error().message().c_str());

  auto reg = shmetrics::registry::create(opt);
  if (!reg) {
    std::fprintf(stderr, "catalog_consumer: %s\n", reg.error().message().c_str());
    return 1;
  }
  auto vm = shmetrics::vllm_metrics::create(
      *reg, *picked, {.model_name = "consumer-model", .max_model_len = 1000});
  if (!vm) {
    std::fprintf(stderr, "catalog_consumer: %s\n", vm.error().message().c_str());
    return 1;
  }
  for (auto& n : vm->names())
    std::printf("picked: %s\n", n.c_str());

  const double ttft[] = {0.05, 0.2, 0.2};
  const double itl[] = {0.01, 0.02};
  for (int i = 0; i < 3; ++i)
    vm->record_step(0, {.num_running_reqs = 3,
                        .num_prompt_tokens = 100,
                        .num_generation_tokens = 4,
                        .time_to_first_tokens = ttft,
                        .inter_token_latencies = itl});
  for (int i = 0; i < 7; ++i)
    vm->record_finished_request(0, {.reason = shmetrics::finish_reason::stop,
                                    .arrival_time = 1,
                                    .finished_time = 3.5,
                                    .num_prompt_tokens = 100,
                                    .num_generation_tokens = 20});
  // Families that were not picked: no-ops.
  vm->record_sleep_state(0, shmetrics::sleep_state::discard_all);
  vm->record_perf(0, 1e12, 1e9, 1e9);

  // pipeline_stats (vLLM-Omni's per-request tables) comes with the header too.
  shmetrics::pipeline_stats ps;
  ps.add({.request_id = "r1", .arrival_ms = 0, .finish_ms = 1500});
  std::printf("pipeline requests: %zu\n", ps.requests().size());
  std::printf("%s\n", reg->path().c_str());
  return 0;
}
