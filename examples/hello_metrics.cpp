// A minimal instrumented program: a toy "engine" loop that records vLLM-style metrics.
//
//   shmetrics-example [--shm.dir DIR] [--shm.prefix NAME] [--duration SECONDS] [--version]
//
// While it runs, `shmetrics-inspect show` prints what it wrote.
#include <chrono>   // step timing
#include <cstdio>   // printf
#include <cstdlib>  // strtod
#include <cstring>  // strcmp
#include <random>   // simulated latencies
#include <string>   // flags
#include <thread>   // sleep

#include <shmetrics/shmetrics.hpp>

int main(int argc, char** argv) {
  shmetrics::registry_options opt;
  double duration = 10;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v;
    auto eq = a.find('=');
    if (eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc && a.starts_with("--") && a != "--help" && a != "--version") {
      v = argv[++i];
    }
    if (a == "--shm.dir")
      opt.dir = v;
    else if (a == "--shm.prefix")
      opt.prefix = v;
    else if (a == "--duration")
      duration = std::strtod(v.c_str(), nullptr);
    else if (a == "--version") {
      std::printf("shmetrics-example %s (segment format %d.%d)\n", SHMETRICS_VERSION_STRING,
                  SHMETRICS_FORMAT_MAJOR, SHMETRICS_FORMAT_MINOR);
      return 0;
    } else {
      std::fprintf(stderr,
                   "usage: shmetrics-example [--shm.dir DIR] [--shm.prefix NAME] [--duration S]\n");
      return a == "--help" ? 0 : 2;
    }
  }

  auto reg = shmetrics::registry::create(opt);
  if (!reg) {
    std::fprintf(stderr, "shmetrics-example: %s\n", reg.error().message().c_str());
    return 1;
  }
  auto tokens = reg->add_counter({.name = "vllm:generation_tokens_total",
                                  .help = "Number of generation tokens processed.",
                                  .labels = {"model_name", "engine"}});
  auto running = reg->add_gauge({.name = "vllm:num_requests_running",
                                 .help = "Number of requests in model execution batches.",
                                 .labels = {"model_name", "engine"},
                                 .mode = shmetrics::gauge_mode::latest});
  auto itl =
      reg->add_histogram({.name = "vllm:inter_token_latency_seconds",
                          .help = "Histogram of inter-token latency in seconds.",
                          .labels = {"model_name", "engine"},
                          .buckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                                      1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}});
  if (!tokens || !running || !itl) {
    std::fprintf(stderr, "shmetrics-example: registration failed\n");
    return 1;
  }
  // Cold path once: resolve the series handles.
  shmetrics::counter tok = tokens->with_labels({"toy-7b", "0"}).value_or({});
  shmetrics::gauge run = running->with_labels({"toy-7b", "0"}).value_or({});
  shmetrics::histogram lat = itl->with_labels({"toy-7b", "0"}).value_or({});
  std::printf("writing %s (%llu bytes)\n", reg->path().c_str(),
              static_cast<unsigned long long>(reg->segment_bytes()));
  std::fflush(stdout);

  std::mt19937 rng(42);
  std::uniform_int_distribution<int> batch(1, 32);
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(duration);
  while (std::chrono::steady_clock::now() < end) {  // one "engine step" every 25 ms
    int seqs = batch(rng);
    double step = 0.020 + 0.0003 * seqs;
    run.set(seqs);
    tok.add(seqs);  // hot path: one load + one store on this thread's shard
    for (int s = 0; s < seqs; ++s)
      lat.observe(step);
    std::this_thread::sleep_for(std::chrono::duration<double>(step));
  }
  run.set(0);
  return 0;
}
