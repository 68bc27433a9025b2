// An engine that serves its own /metrics in-process, as vLLM's API server does, through the
// reader library's collector (docs/collector.md): the engine records into its segment with
// the header-only writer; GET /metrics collects every segment of the prefix (its own and
// any other writer's, merged as shmetrics-exporter merges them), encodes the format the
// Accept header asks for and gzips when Accept-Encoding allows it. Its body is the one
// shmetrics-exporter serves for the same directory and prefix (tests/exporter/
// inprocess_metrics_test.py checks the bytes).
//
//   shmetrics-inprocess-metrics [--shm.dir DIR] [--shm.prefix NAME]
//       [--web.listen-address HOST:PORT] [--freeze N]
//
// --freeze N: record N engine steps, then stop recording (the values stay fixed) and keep
// serving; prints `frozen after N steps`. Without it the engine records until SIGTERM.
#include <httplib.h>
#include <signal.h>  // sigwait

#include <atomic>   // stopping
#include <chrono>   // step timing
#include <cstdio>   // printf
#include <cstdlib>  // strtol
#include <memory>   // shared bodies
#include <string>   // flags
#include <thread>   // listener, signal waiter

#include <shmetrics/reader/collector.hpp>
#include <shmetrics/shmetrics.hpp>

namespace {

int usage(int rc) {
  std::fprintf(rc ? stderr : stdout,
               "usage: shmetrics-inprocess-metrics [--shm.dir DIR] [--shm.prefix NAME]\n"
               "       [--web.listen-address HOST:PORT] [--freeze N]\n");
  return rc;
}

// GET /metrics: collect, negotiate, encode, gzip. The collection is shared by concurrent
// scrapes (one flight at a time); the body is sent through a content provider so that
// cpp-httplib does not compress it a second time.
void serve_metrics(shmetrics::collector& coll, const httplib::Request& req,
                   httplib::Response& res) {
  auto c = coll.collect();
  const auto fmt = shmetrics::negotiate_format(req.get_header_value("Accept"));
  auto body = std::make_shared<std::string>();
  shmetrics::encode(*c, fmt, *body);
  const bool gz = shmetrics::accepts_gzip(req.get_header_value("Accept-Encoding"));
  if (gz) {
    auto z = std::make_shared<std::string>();
    if (!shmetrics::gzip(*body, *z)) {
      res.status = 500;
      res.set_content("gzip failed\n", "text/plain; charset=utf-8");
      return;
    }
    body = std::move(z);
    res.set_header("Content-Encoding", "gzip");
  }
  res.set_header("Vary", "Accept, Accept-Encoding");
  res.set_content_provider(body->size(), std::string(shmetrics::content_type(fmt)),
                           [body](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                             sink.write(body->data() + offset, length);
                             return true;
                           });
}

}  // namespace

int main(int argc, char** argv) {
  shmetrics::registry_options ropt;
  std::string host = "127.0.0.1";
  int port = 8000;
  long freeze = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v;
    if (a == "--help") return usage(0);
    if (auto eq = a.find('='); eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      return usage(2);
    }
    if (a == "--shm.dir") {
      ropt.dir = v;
    } else if (a == "--shm.prefix") {
      ropt.prefix = v;
    } else if (a == "--freeze") {
      freeze = std::strtol(v.c_str(), nullptr, 10);
    } else if (a == "--web.listen-address") {
      auto colon = v.rfind(':');
      if (colon == std::string::npos) return usage(2);
      host = v.substr(0, colon);
      port = static_cast<int>(std::strtol(v.c_str() + colon + 1, nullptr, 10));
    } else {
      return usage(2);
    }
  }

  // The engine's metrics, named as vLLM names them.
  auto reg = shmetrics::registry::create(ropt);
  if (!reg) {
    std::fprintf(stderr, "shmetrics-inprocess-metrics: %s\n", reg.error().message().c_str());
    return 1;
  }
  auto success = reg->add_counter({.name = "vllm:request_success_total",
                                   .help = "Count of successfully processed requests.",
                                   .labels = {"model_name", "engine", "finished_reason"}});
  auto tokens = reg->add_counter({.name = "vllm:generation_tokens_total",
                                  .help = "Number of generation tokens processed.",
                                  .labels = {"model_name", "engine"}});
  auto running = reg->add_gauge({.name = "vllm:num_requests_running",
                                 .help = "Number of requests in model execution batches.",
                                 .labels = {"model_name", "engine"},
                                 .mode = shmetrics::gauge_mode::latest});
  auto ttft = reg->add_histogram({.name = "vllm:time_to_first_token_seconds",
                                  .help = "Histogram of time to first token in seconds.",
                                  .labels = {"model_name", "engine"},
                                  .buckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25,
                                              0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}});
  if (!success || !tokens || !running || !ttft) {
    std::fprintf(stderr, "shmetrics-inprocess-metrics: registration failed\n");
    return 1;
  }
  shmetrics::counter stop = success->with_labels({"toy-7b", "0", "stop"}).value_or({});
  shmetrics::counter length = success->with_labels({"toy-7b", "0", "length"}).value_or({});
  shmetrics::counter tok = tokens->with_labels({"toy-7b", "0"}).value_or({});
  shmetrics::gauge run = running->with_labels({"toy-7b", "0"}).value_or({});
  shmetrics::histogram first = ttft->with_labels({"toy-7b", "0"}).value_or({});

  // /metrics: every segment of this prefix, as shmetrics-exporter would serve it. Removing
  // dead writers' segments is the sidecar's job, not this engine's.
  shmetrics::collector coll(
      {.dir = ropt.dir,
       .prefixes = {ropt.prefix},
       .gc_dead_after = std::chrono::milliseconds(0),
       .log = [](shmetrics::log_level level, const std::string& msg, const std::string& extra) {
         if (level >= shmetrics::log_level::warn)
           std::fprintf(stderr, "msg=%s %s\n", shmetrics::logfmt_quote(msg).c_str(), extra.c_str());
       }});
  httplib::Server svr;
  svr.Get("/metrics", [&coll](const httplib::Request& req, httplib::Response& res) {
    serve_metrics(coll, req, res);
  });
  const int bound =
      port == 0 ? svr.bind_to_any_port(host) : (svr.bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    std::fprintf(stderr, "shmetrics-inprocess-metrics: cannot listen on %s:%d\n", host.c_str(),
                 port);
    return 1;
  }
  std::thread listener([&svr] { svr.listen_after_bind(); });
  std::printf("listening on http://%s:%d/metrics\n", host.c_str(), bound);
  std::fflush(stdout);

  // SIGTERM / SIGINT: stop serving and recording.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::atomic<bool> stopping{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    stopping = true;
    svr.stop();
  });

  // The engine: one step every 10 ms, fixed values (so that two readers can compare).
  for (long step = 0; !stopping && (freeze < 0 || step < freeze); ++step) {
    const int seqs = 1 + static_cast<int>(step % 8);
    run.set(seqs);
    tok.add(seqs);
    first.observe(0.002 * seqs);
    (step % 5 == 4 ? length : stop).inc();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (freeze >= 0) {
    std::printf("frozen after %ld steps\n", freeze);
    std::fflush(stdout);
  }
  listener.join();
  waiter.join();
  return 0;
}
