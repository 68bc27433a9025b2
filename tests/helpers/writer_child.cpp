// A writer in its own process, for the cross-process tests.
//   writer_child DIR PREFIX totals THREADS ITERS   -> counter + histogram, exact totals, exit 0
//   (segment kept) writer_child DIR PREFIX live                   -> increments forever; prints the
//   path first
//   writer_child DIR PREFIX bad_name  -> README's `reg->add_counter(...)->with_labels(...)`
//   with a typo in the name: must say so on stderr and exit non-zero (never returns 0)
// Built twice: with exceptions (writer_child) and without (writer_child_no_exceptions).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <shmetrics/shmetrics.hpp>

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  shmetrics::registry_options o;
  o.dir = argv[1];
  o.prefix = argv[2];
  o.max_families = 16;
  o.max_series = 64;
  o.max_cells = 1024;
  o.string_bytes = 1 << 14;
  o.shards = 4;  // fewer shards than threads: the shared shard is exercised too
  o.heartbeat_interval = std::chrono::milliseconds(20);
  o.unlink_on_close = false;
  std::string mode = argv[3];
  auto reg = shmetrics::registry::create(o);
  if (!reg) {
    std::fprintf(stderr, "%s\n", reg.error().message().c_str());
    return 1;
  }
  if (mode == "bad_name") {
    auto bad = reg->add_counter({.name = "ops-total", .help = "Operations."})->with_labels({});
    (void)bad;
    return 0;
  }
  auto c = reg->add_counter({.name = "ops_total", .help = "Operations.", .labels = {"kind"}})
               ->with_labels({"a"})
               .value();
  auto h = reg->add_histogram({.name = "lat_seconds", .help = "Latency.", .buckets = {0.5, 1, 2}})
               ->with_labels({})
               .value();
  std::printf("%s\n", reg->path().c_str());
  std::fflush(stdout);
  if (mode == "totals" && argc == 6) {
    int threads = std::atoi(argv[4]);
    long iters = std::atol(argv[5]);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        for (long i = 0; i < iters; ++i) {
          c.inc();
          h.observe(static_cast<double>((i + t) % 4));  // 0,1,2,3 -> buckets 0.5,1,2,+Inf
        }
      });
    for (auto& t : ts)
      t.join();
    return 0;
  }
  if (mode == "live") {
    for (;;) {
      c.inc();
      h.observe(0.25);
    }
  }
  return 2;
}
