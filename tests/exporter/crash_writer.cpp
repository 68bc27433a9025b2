// A writer made to be SIGKILLed, for the crash test.
//   crash_writer DIR PREFIX SERIES
// Registers SERIES labelled counter series one by one (each gets 1 at once), a gauge and
// a histogram, then counts forever in a hot loop: whole and fractional counter amounts and
// fractional observations, so the histogram's _sum and crash_frac_total are sums of
// doubles (floating-point addition is not associative: a merge that changes its order
// can serve a smaller total). Every name and label value it writes
// is checkable by a reader: label `i` is a number below SERIES, label `pad` is
// "p<i>" followed by (i % 61) copies of 'x' and then "<i>" again, so a torn string shows.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <shmetrics/shmetrics.hpp>

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  shmetrics::registry_options o;
  o.dir = argv[1];
  o.prefix = argv[2];
  int n = std::atoi(argv[3]);
  o.max_families = 8;
  o.max_series = static_cast<std::uint32_t>(n) + 8;
  o.max_cells = static_cast<std::uint32_t>(2 * n + 64);
  o.string_bytes = static_cast<std::uint64_t>(n) * 128 + 4096;
  o.shards = 4;
  o.heartbeat_interval = std::chrono::milliseconds(20);
  auto reg = shmetrics::registry::create(o);
  if (!reg) {
    std::fprintf(stderr, "%s\n", reg.error().message().c_str());
    return 1;
  }
  auto beats = reg->add_counter({.name = "crash_beats_total", .help = "Hot-loop rounds."})
                   ->with_labels({})
                   .value();
  auto level = reg->add_gauge({.name = "crash_level",
                               .help = "Series registered so far.",
                               .mode = shmetrics::gauge_mode::live_max})
                   ->with_labels({})
                   .value();
  auto lat =
      reg->add_histogram({.name = "crash_lat_seconds", .help = "Latency.", .buckets = {0.5, 1, 2}})
          ->with_labels({})
          .value();
  auto frac = reg->add_counter({.name = "crash_frac_total", .help = "Fractional amounts."})
                  ->with_labels({})
                  .value();
  auto ops =
      reg->add_counter({.name = "crash_ops_total", .help = "Per series.", .labels = {"i", "pad"}})
          .value();
  for (int i = 0; i < n; ++i) {
    std::string id = std::to_string(i);
    std::string pad = "p" + id + std::string(static_cast<std::size_t>(i % 61), 'x') + id;
    ops.with_labels({id, pad}).value().inc();
    level.set(i + 1);
  }
  for (unsigned long k = 0;; ++k) {
    beats.inc();
    frac.add(0.1);
    lat.observe(0.1 + static_cast<double>(k % 3));  // buckets 0.5, 1, 2 as before
  }
}
