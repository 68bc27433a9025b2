// A writer process driven line by line on stdin, for the exporter tests.
//   scripted_writer DIR PREFIX [keep|unlink] [ARENA_BYTES]
// Prints its segment path, then obeys:
//   counter NAME LABEL N     add N to NAME{k=LABEL}
//   gauge NAME MODE LABEL V  set NAME{k=LABEL} (mode: sum max min latest live_sum ...)
//   hist NAME V              observe V in NAME (buckets 1, 2, 5)
//   histb NAME B1,B2,.. V    observe V in NAME with these buckets
//   wide NAME COUNT BYTES    COUNT series of counter NAME, label values BYTES long, each 1
//   process                  record this process (process_metrics, sampled every 50 ms)
//   remove NAME LABEL        remove the series NAME{k=LABEL} of counter NAME
//   sync                     print "ok"
//   exit                     leave (removes the segment unless "keep")
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <shmetrics/shmetrics.hpp>

using namespace shmetrics;

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  registry_options o;
  o.dir = argv[1];
  o.prefix = argv[2];
  o.max_families = 64;
  o.max_series = 256;
  o.max_cells = 4096;
  o.string_bytes = argc > 4 ? std::stoull(argv[4]) : 1 << 16;
  o.shards = 4;
  o.heartbeat_interval = std::chrono::milliseconds(50);
  o.unlink_on_close = !(argc > 3 && std::string(argv[3]) == "keep");
  auto reg = registry::create(o);
  if (!reg) {
    std::fprintf(stderr, "%s\n", reg.error().message().c_str());
    return 1;
  }
  std::printf("%s\n", reg->path().c_str());
  std::fflush(stdout);
  const std::map<std::string, gauge_mode> modes = {
      {"sum", gauge_mode::sum},           {"max", gauge_mode::max},
      {"min", gauge_mode::min},           {"latest", gauge_mode::latest},
      {"live_sum", gauge_mode::live_sum}, {"live_max", gauge_mode::live_max},
      {"live_min", gauge_mode::live_min}, {"live_latest", gauge_mode::live_latest}};
  process_metrics pm;  // empty until "process"
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd, name, a, b;
    in >> cmd >> name;
    if (cmd == "counter") {
      double n;
      in >> a >> n;
      auto f = reg->add_counter({.name = name, .help = "A test counter.", .labels = {"k"}});
      if (f) f->with_labels({a})->add(n);
    } else if (cmd == "gauge") {
      double v;
      in >> a >> b >> v;
      auto f = reg->add_gauge(
          {.name = name, .help = "A test gauge.", .labels = {"k"}, .mode = modes.at(a)});
      if (f) f->with_labels({b})->set(v);
    } else if (cmd == "hist") {
      double v;
      in >> v;
      auto f =
          reg->add_histogram({.name = name, .help = "A test histogram.", .buckets = {1, 2, 5}});
      if (f) f->with_labels({})->observe(v);
    } else if (cmd == "histb") {
      double v;
      in >> a >> v;
      std::vector<double> bounds;
      std::istringstream bs(a);
      for (std::string x; std::getline(bs, x, ',');)
        bounds.push_back(std::stod(x));
      auto f = reg->add_histogram({.name = name, .help = "A test histogram.", .buckets = bounds});
      if (f) f->with_labels({})->observe(v);
    } else if (cmd == "wide") {
      std::size_t count = 0, bytes = 0;
      in >> count >> bytes;
      auto f = reg->add_counter({.name = name, .help = "A wide counter.", .labels = {"k"}});
      for (std::size_t i = 0; f && i < count; ++i) {
        std::string v = std::to_string(i);
        v.resize(bytes, 'x');
        if (auto h = f->with_labels({v})) h->inc();
      }
    } else if (cmd == "process") {
      auto m = process_metrics::create(*reg);
      if (!m) {
        std::fprintf(stderr, "%s\n", m.error().message().c_str());
        return 1;
      }
      pm = std::move(*m);
      pm.sample_every(std::chrono::milliseconds(50));
    } else if (cmd == "remove") {
      in >> a;
      auto f = reg->add_counter({.name = name, .help = "A test counter.", .labels = {"k"}});
      if (f) (void)f->remove({a});
    } else if (cmd == "sync") {
      std::printf("ok\n");
      std::fflush(stdout);
    } else if (cmd == "exit") {
      return 0;
    }
  }
  return 0;
}
