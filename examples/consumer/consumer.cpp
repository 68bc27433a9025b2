// An engine outside the shmetrics tree: it includes the writer and nothing else of ours.
// Built four ways in tests/install (the single header, pkg-config, a meson subproject,
// CMake find_package); see README.md, section "Use it in your project".
//
//   consumer [--shm.dir DIR] [--shm.prefix NAME] [--keep]
//
// Records a few metrics, then exits 0. With --keep the segment stays after exit, so that
// shmetrics-inspect (or the exporter) can still read it.
#include <cstdio>   // printf
#include <cstring>  // strcmp

#include <shmetrics/shmetrics.hpp>

int main(int argc, char** argv) {
  shmetrics::registry_options opt;
  opt.heartbeat_interval = {};  // a short-lived program: no heartbeat thread
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--shm.dir") == 0 && i + 1 < argc)
      opt.dir = argv[++i];
    else if (std::strcmp(argv[i], "--shm.prefix") == 0 && i + 1 < argc)
      opt.prefix = argv[++i];
    else if (std::strcmp(argv[i], "--keep") == 0)
      opt.unlink_on_close = false;
    else if (std::strcmp(argv[i], "--version") == 0) {
      auto v = shmetrics::version();
      std::printf("consumer (shmetrics %.*s, segment format %d.%d)\n",
                  static_cast<int>(v.string.size()), v.string.data(), v.format_major,
                  v.format_minor);
      return 0;
    } else {
      std::fprintf(stderr, "usage: consumer [--shm.dir DIR] [--shm.prefix NAME] [--keep]\n");
      return 2;
    }
  }
  static_assert(SHMETRICS_VERSION >= SHMETRICS_MAKE_VERSION(0, 1, 0));

  auto reg = shmetrics::registry::create(opt);
  if (!reg) {
    std::fprintf(stderr, "consumer: %s\n", reg.error().message().c_str());
    return 1;
  }
  auto requests = reg->add_counter({.name = "consumer_requests_total",
                                    .help = "Requests handled by the consumer.",
                                    .labels = {"model_name"}});
  auto latency = reg->add_histogram({.name = "consumer_latency_seconds",
                                     .help = "Request latency in seconds.",
                                     .labels = {"model_name"},
                                     .buckets = {0.01, 0.1, 1.0}});
  if (!requests || !latency) {
    std::fprintf(stderr, "consumer: registration failed\n");
    return 1;
  }
  shmetrics::counter req = requests->with_labels({"consumer-model"}).value_or({});
  shmetrics::histogram lat = latency->with_labels({"consumer-model"}).value_or({});
  for (int i = 0; i < 42; ++i) {
    req.inc();
    lat.observe(0.05);
  }
  std::printf("%s\n", reg->path().c_str());
  return 0;
}
