// Writes the segment_reader fuzzer's seed corpus: small real segments made by the
// writer (tests/fuzz/corpus/segment_reader/*). Run by `scripts/fuzz --seeds`.
//   make_segment_seeds OUT_DIR
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

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
// Issue 20's shape within the fuzzer's 8 KiB: a real segment (a counter with 128 labels,
// one series), patched so that 80 series share one list of 128 label-value refs, each to
// the same 2 KiB+ run of 'x'. An unbounded reader copies 80 x 128 x 2 KiB = 24 MiB of
// label values from 8 KiB (then snapshots and encodes them again): with
// -malloc_limit_mb=16 (scripts/fuzz) that is a finding; a bounded reader refuses it.
bool amplification_seed(const std::string& out) {
  namespace layout = shmetrics::layout;
  auto o = tiny("/dev/shm", 1);
  o.max_families = 1;
  o.max_series = 80;
  o.max_cells = 2;
  o.string_bytes = 5000;
  std::string bytes;
  {
    auto reg = shmetrics::registry::create(o).value();
    std::vector<std::string> names;
    for (int i = 0; i < 128; ++i)
      names.push_back("l" + std::to_string(i));
    std::vector<std::string_view> labels(names.begin(), names.end());
    auto c = reg.add_counter({.name = "c", .help = "", .labels = labels});
    std::vector<std::string_view> values(128, "v");
    if (!c || !c->with_labels(values)) return false;
    std::ifstream in(reg.path(), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    std::remove(reg.path().c_str());
  }
  layout::segment_header h;
  if (bytes.size() < sizeof h || bytes.size() > 8192) return false;
  std::memcpy(&h, bytes.data(), sizeof h);
  layout::series_record s;
  std::memcpy(&s, bytes.data() + h.series_offset, sizeof s);
  // The run of 'x': everything after what the writer used.
  const auto run_off = static_cast<std::uint32_t>(h.strings_used);
  const auto run_len = static_cast<std::uint32_t>(h.strings_capacity - h.strings_used);
  std::memset(bytes.data() + h.strings_offset + run_off, 'x', run_len);
  for (std::uint32_t k = 0; k < 128; ++k) {
    layout::string_ref ref{run_off, run_len};
    std::memcpy(bytes.data() + h.strings_offset + s.labels_off + k * sizeof ref, &ref, sizeof ref);
  }
  for (std::uint32_t i = 1; i < h.series_capacity; ++i)
    std::memcpy(bytes.data() + h.series_offset + i * sizeof s, &s, sizeof s);
  h.series_published = h.series_capacity;
  std::memcpy(bytes.data(), &h, sizeof h);
  std::ofstream(out, std::ios::binary) << bytes;
  return true;
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
  return amplification_seed(out + "/amplification.seg") ? 0 : 1;
}
