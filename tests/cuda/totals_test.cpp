// Device recording reaches exact totals in the segment, read back by the reader library
// the exporter uses, next to CPU increments of the same series.
#include <cmath>    // std::nan
#include <cstdint>  // cells
#include <vector>   // values

#include <catch2/catch.hpp>

#include <shmetrics/cuda/sink.hpp>
#include <shmetrics/reader/segment_reader.hpp>

#include "../support.hpp"
#include "gpu_support.hpp"
#include "kernels.hpp"

namespace sc = shmetrics::cuda;

namespace {

const std::vector<double> bounds = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                    0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0};

/// Finite values (and NaN, which is dropped) that hit every bound exactly and beside it.
std::vector<double> latencies(int n) {
  std::vector<double> v(static_cast<std::size_t>(n));
  std::uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    double u = static_cast<double>(x >> 11) / 9007199254740992.0;  // [0, 1)
    double b = bounds[static_cast<std::size_t>(i) % bounds.size()];
    switch (i % 7) {
      case 0:
        v[i] = b;
        break;
      case 1:
        v[i] = std::nextafter(b, 0.0);
        break;
      case 2:
        v[i] = std::nextafter(b, 1e300);
        break;
      case 3:
        v[i] = u * 12.0;
        break;
      case 4:
        v[i] = i % 11 == 0 ? std::nan("") : u * 0.2;
        break;
      case 5:
        v[i] = -u;
        break;
      default:
        v[i] = u * 1000.0;
        break;
    }
  }
  return v;
}

struct fixture {
  test::unique_prefix prefix;
  shmetrics::registry reg;
  shmetrics::counter events, tokens;
  shmetrics::histogram gpu_latency, cpu_latency;
  shmetrics::gauge kv_usage;

  fixture() {
    auto r = shmetrics::registry::create(prefix.options());
    REQUIRE(r);
    reg = std::move(*r);
    events = *reg.add_counter({.name = "gpu_events", .help = "Events."})->with_labels({});
    tokens = *reg.add_counter({.name = "gpu_tokens", .help = "Tokens."})->with_labels({});
    gpu_latency =
        *reg.add_histogram({.name = "gpu_latency_seconds", .help = "GPU.", .buckets = bounds})
             ->with_labels({});
    cpu_latency =
        *reg.add_histogram(
                {.name = "cpu_latency_seconds", .help = "CPU reference.", .buckets = bounds})
             ->with_labels({});
    kv_usage = *reg.add_gauge({.name = "kv_usage", .help = "KV."})->with_labels({});
  }

  shmetrics::segment_snapshot snapshot() {
    auto rd = shmetrics::segment_reader::open(reg.path());
    REQUIRE(rd);
    auto s = rd->snapshot();
    REQUIRE(s);
    return std::move(*s);
  }
};

}  // namespace

TEST_CASE("device counters, histograms and gauges reach exact totals in the segment",
          "[cuda][totals]") {
  auto mode = GENERATE(sc::publish_mode::direct, sc::publish_mode::flushed);
  INFO("mode " << (mode == sc::publish_mode::direct ? "direct" : "flushed"));
  fixture f;
  cudaStream_t stream;
  CUDA_REQUIRE(cudaStreamCreate(&stream));

  f.events.add(1000);  // the CPU writes the same series from its own shard

  sc::device_sink sink;
  CUDA_REQUIRE(sc::device_sink::create(f.reg, mode, stream, sink));
  REQUIRE(sink.shard() >= 1);
  sc::d_counter d_events, d_tokens;
  sc::d_histogram d_latency;
  sc::d_gauge d_kv;
  CUDA_REQUIRE(sink.bind(f.events, d_events));
  CUDA_REQUIRE(sink.bind(f.tokens, d_tokens));
  CUDA_REQUIRE(sink.bind(f.gpu_latency, d_latency, stream));
  CUDA_REQUIRE(sink.bind(f.kv_usage, d_kv));

  // Counter: block-aggregated (shared-memory inc + register tallies).
  const int blocks = 40, rounds = 7;
  unsigned long long expected = 1000;
  for (std::uint64_t t = 0; t < std::uint64_t{blocks} * gpu_test::block_threads; ++t)
    expected += gpu_test::events_of_thread(t, rounds);
  gpu_test::block_counter(d_events, blocks, rounds, stream);
  CUDA_REQUIRE(cudaPeekAtLastError());

  // Counter: thread-level whole and fractional increments.
  gpu_test::thread_adds(d_tokens, 1000, stream);
  CUDA_REQUIRE(cudaPeekAtLastError());

  // Histogram: block_histogram over all values, then thread_observe over the first 1000.
  auto values = latencies(100000);
  gpu_test::device_buffer<double> d_values(values);
  REQUIRE(d_values.ptr);
  gpu_test::block_observe(d_latency, d_values.ptr, static_cast<int>(values.size()), 30, stream);
  CUDA_REQUIRE(cudaPeekAtLastError());
  gpu_test::thread_observe(d_latency, d_values.ptr, 1000, stream);
  CUDA_REQUIRE(cudaPeekAtLastError());
  for (double v : values)
    f.cpu_latency.observe(v);
  for (int i = 0; i < 1000; ++i)
    f.cpu_latency.observe(values[static_cast<std::size_t>(i)]);

  // Gauge: KV usage from a block table (entries >= 0 are allocated).
  std::vector<std::int32_t> table(1000, -1);
  for (int i = 0; i < 371; ++i)
    table[static_cast<std::size_t>(i * 2)] = i;
  gpu_test::device_buffer<std::int32_t> d_table(table);
  std::size_t temp_bytes = 0;
  CUDA_REQUIRE(sc::set_gauge_count_at_least(nullptr, temp_bytes, d_kv, d_table.ptr, 1000, 0,
                                            1.0 / 1000, stream));
  gpu_test::device_buffer<char> temp(temp_bytes);
  CUDA_REQUIRE(sc::set_gauge_count_at_least(temp.ptr, temp_bytes, d_kv, d_table.ptr, 1000, 0,
                                            1.0 / 1000, stream));

  CUDA_REQUIRE(sink.flush(stream));
  CUDA_REQUIRE(cudaStreamSynchronize(stream));

  auto snap = f.snapshot();
  auto* ev = test::find_family(snap, "gpu_events");
  auto* tok = test::find_family(snap, "gpu_tokens");
  auto* gl = test::find_family(snap, "gpu_latency_seconds");
  auto* cl = test::find_family(snap, "cpu_latency_seconds");
  auto* kv = test::find_family(snap, "kv_usage");
  REQUIRE((ev && tok && gl && cl && kv));
  CHECK(ev->series[0].value == static_cast<double>(expected));
  CHECK(tok->series[0].value == 2250.0);
  CHECK(gl->series[0].buckets == cl->series[0].buckets);
  CHECK(gl->series[0].count() == cl->series[0].count());
  CHECK(gl->series[0].sum == Approx(cl->series[0].sum).epsilon(1e-9));
  CHECK(kv->series[0].value == Approx(0.371));

  // The CPU keeps counting on top of the GPU's shard.
  f.events.inc();
  CHECK(test::find_family(f.snapshot(), "gpu_events")->series[0].value ==
        static_cast<double>(expected + 1));
  CUDA_REQUIRE(cudaStreamDestroy(stream));
}

TEST_CASE("a sink leases its own value shard and refuses when none is free", "[cuda][shards]") {
  test::unique_prefix prefix;
  auto opt = prefix.options();
  opt.shards = 2;  // shard 0 (shared) + one leasable shard
  auto reg = shmetrics::registry::create(opt);
  REQUIRE(reg);
  {
    sc::device_sink a, b;
    CUDA_REQUIRE(sc::device_sink::create(*reg, sc::publish_mode::direct, 0, a));
    CHECK(a.shard() == 1);
    CHECK(sc::device_sink::create(*reg, sc::publish_mode::direct, 0, b) == cudaErrorNotPermitted);
    CHECK(!b);
    CHECK(sc::device_sink::create(*reg, sc::publish_mode::direct, 0, a) == cudaErrorInvalidValue);
  }
  sc::device_sink c;  // the shard came back when a was destroyed
  CUDA_REQUIRE(sc::device_sink::create(*reg, sc::publish_mode::flushed, 0, c));
  CHECK(c.shard() == 1);

  // A handle of another registry is refused, not silently mapped.
  test::unique_prefix other_prefix;
  auto other = shmetrics::registry::create(other_prefix.options());
  REQUIRE(other);
  auto foreign = *other->add_counter({.name = "x", .help = "x"})->with_labels({});
  sc::d_counter d;
  CHECK(c.bind(foreign, d) == cudaErrorInvalidValue);
  CHECK(c.bind(shmetrics::counter{}, d) == cudaErrorInvalidValue);
}

TEST_CASE("a flushed sink continues the totals its shard already holds", "[cuda][flush]") {
  fixture f;
  cudaStream_t stream;
  CUDA_REQUIRE(cudaStreamCreate(&stream));
  sc::d_counter d;
  {
    sc::device_sink a;
    CUDA_REQUIRE(sc::device_sink::create(f.reg, sc::publish_mode::flushed, stream, a));
    CUDA_REQUIRE(a.bind(f.tokens, d));
    gpu_test::thread_adds(d, 100, stream);  // 225 = 100 x (2 + 0.25)
    CUDA_REQUIRE(cudaPeekAtLastError());
    // Nothing reaches the segment before the flush.
    CUDA_REQUIRE(cudaStreamSynchronize(stream));
    CHECK(test::find_family(f.snapshot(), "gpu_tokens")->series[0].value == 0.0);
    CUDA_REQUIRE(a.flush(stream));
    CUDA_REQUIRE(cudaStreamSynchronize(stream));
    CHECK(test::find_family(f.snapshot(), "gpu_tokens")->series[0].value == 225.0);
  }
  sc::device_sink b;  // leases the same shard, values intact
  CUDA_REQUIRE(sc::device_sink::create(f.reg, sc::publish_mode::flushed, stream, b));
  CUDA_REQUIRE(b.bind(f.tokens, d));
  gpu_test::thread_adds(d, 4, stream);
  CUDA_REQUIRE(cudaPeekAtLastError());
  CUDA_REQUIRE(b.flush(stream));
  CUDA_REQUIRE(cudaStreamSynchronize(stream));
  CHECK(test::find_family(f.snapshot(), "gpu_tokens")->series[0].value == 234.0);
  CUDA_REQUIRE(cudaStreamDestroy(stream));
}
