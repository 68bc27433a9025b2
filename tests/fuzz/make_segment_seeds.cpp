// Writes the segment_reader fuzzer's seed corpus: small real segments made by the
// writer (tests/fuzz/corpus/segment_reader/*). Run by `scripts/fuzz --seeds`.
//   make_segment_seeds OUT_DIR
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include <shmetrics/shmetrics.hpp>

namespace {
shmetrics::registry_options tiny(const std::string& dir, std::uint32_t shards) {
  shmetrics::registry_options o;
  o.dir = dir;
  o.prefix = "seed";
  o.max_families = 4;
  o.max_series = 8;
  o.max_cells = 48;
  o.string_bytes = 512;
  o.shards = shards;
  o.heartbeat_interval = std::chrono::milliseconds(0);
  o.unlink_on_close = false;
  return o;
}

bool keep(const shmetrics::registry& reg, const std::string& out) {
  std::ifstream in(reg.path(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(out, std::ios::binary) << bytes;
  std::remove(reg.path().c_str());
  return !bytes.empty();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::string out = argv[1];
  {
    auto reg = shmetrics::registry::create(tiny("/dev/shm", 1)).value();
    if (!keep(reg, out + "/empty.seg")) return 1;
  }
  {
    auto reg = shmetrics::registry::create(tiny("/dev/shm", 2)).value();
    auto c = reg.add_counter({.name = "req_total", .help = "Requests.", .labels = {"code"}});
    c->with_labels({"200"})->add(3);
    c->with_labels({"5\"0\\0\n"})->add(0.5);
    auto g =
        reg.add_gauge({.name = "temp", .help = "T \\ \n.", .mode = shmetrics::gauge_mode::max});
    g->with_labels({})->set(-1.5);
    auto h = reg.add_histogram(
        {.name = "lat_seconds", .help = "Latency.", .labels = {"m"}, .buckets = {0.1, 1, 10}});
    h->with_labels({"x"})->observe(0.5);
    h->with_labels({"y"})->observe(100);
    (void)reg.add_info({.name = "build_info", .help = "Build.", .labels = {"version"}})
        ->with_labels({"1.0"});
    if (!keep(reg, out + "/all_types.seg")) return 1;
  }
  {
    auto reg = shmetrics::registry::create(tiny("/dev/shm", 3)).value();
    auto c = reg.add_counter({.name = "full_total", .help = "", .labels = {"i"}});
    for (int i = 0; i < 20; ++i)
      (void)c->with_labels({std::to_string(i)});  // past capacity: some are dropped
    if (!keep(reg, out + "/full.seg")) return 1;
  }
  return 0;
}
