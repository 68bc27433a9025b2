// Device binning equals CPU binning: the device bucket search, block_histogram and the CUB
// batch (observe_batch) put every value where histogram::observe puts it.
#include <cmath>    // std::nextafter, INFINITY
#include <cstdint>  // indices
#include <limits>   // infinities
#include <vector>   // values

#include <catch2/catch.hpp>

#include <shmetrics/cuda/sink.hpp>
#include <shmetrics/reader/segment_reader.hpp>

#include "../support.hpp"
#include "gpu_support.hpp"
#include "kernels.hpp"

namespace sc = shmetrics::cuda;

namespace {

// vLLM's time-to-first-token bounds (catalog), and a tiny and an empty bound list.
const std::vector<std::vector<double>> bound_sets = {
    {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
     1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0},
    {-1.0, 0.0, 1.0},
    {},
};

std::vector<double> edge_values(const std::vector<double>& bounds) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> v = {-inf, inf,    std::nan(""), 0.0,
                           -0.0, -1e300, 1e300,        std::numeric_limits<double>::denorm_min(),
                           -5.0};
  for (double b : bounds) {
    v.push_back(b);
    v.push_back(std::nextafter(b, -inf));
    v.push_back(std::nextafter(b, inf));
  }
  return v;
}

std::vector<double> random_values(std::size_t n, double scale) {
  std::vector<double> v(n);
  std::uint64_t x = 12345;
  for (auto& e : v) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    e = static_cast<double>(x >> 11) / 9007199254740992.0 * scale - scale / 8;
  }
  return v;
}

}  // namespace

TEST_CASE("the device bucket search puts every value where the CPU's does", "[cuda][histogram]") {
  for (const auto& bounds : bound_sets) {
    auto values = edge_values(bounds);
    auto more = random_values(10000, 100.0);
    values.insert(values.end(), more.begin(), more.end());
    gpu_test::device_buffer<double> d_bounds(bounds), d_values(values);
    gpu_test::device_buffer<std::uint32_t> d_out(values.size());
    gpu_test::bucket_indices(d_bounds.ptr, static_cast<std::uint32_t>(bounds.size()), d_values.ptr,
                             d_out.ptr, static_cast<int>(values.size()), 0);
    CUDA_REQUIRE(cudaPeekAtLastError());
    CUDA_REQUIRE(cudaDeviceSynchronize());
    auto out = d_out.to_host();
    for (std::size_t i = 0; i < values.size(); ++i) {
      INFO("value " << values[i] << " with " << bounds.size() << " bounds");
      REQUIRE(out[i] == shmetrics::detail::bucket_index(
                            bounds.data(), static_cast<std::uint32_t>(bounds.size()), values[i]));
    }
  }
}

TEST_CASE("observe_batch (CUB DeviceHistogram) bins exactly like histogram::observe",
          "[cuda][histogram][batch]") {
  auto mode = GENERATE(sc::publish_mode::direct, sc::publish_mode::flushed);
  std::size_t set = GENERATE(0u, 1u, 2u);
  const auto& bounds = bound_sets[set];
  INFO("bound set " << set << ", mode "
                    << (mode == sc::publish_mode::direct ? "direct" : "flushed"));

  test::unique_prefix prefix;
  auto reg = shmetrics::registry::create(prefix.options());
  REQUIRE(reg);
  auto fam =
      reg->add_histogram({.name = "latency_seconds",
                          .help = "h",
                          .labels = {"side", "values"},
                          .buckets = bounds,
                          .inf_bucket_only = bounds.empty()});  // the empty set is on purpose
  REQUIRE(fam);
  cudaStream_t stream;
  CUDA_REQUIRE(cudaStreamCreate(&stream));
  sc::device_sink sink;
  CUDA_REQUIRE(sc::device_sink::create(*reg, mode, stream, sink));

  // Large finite batch (sums compared), then the edge values (+-Inf make the sum
  // +-Inf or NaN on both sides, so only the buckets are compared there).
  for (const char* which : {"random", "edges"}) {
    std::vector<double> values =
        std::string(which) == "random" ? random_values(1u << 20, 3000.0) : edge_values(bounds);
    auto cpu = *fam->with_labels({"cpu", which});
    auto gpu = *fam->with_labels({"gpu", which});
    for (double v : values)
      cpu.observe(v);
    sc::d_histogram d;
    CUDA_REQUIRE(sink.bind(gpu, d, stream));
    gpu_test::device_buffer<double> d_values(values);
    std::size_t bytes = 0;
    CUDA_REQUIRE(sc::observe_batch(nullptr, bytes, d, d_values.ptr, static_cast<int>(values.size()),
                                   stream));
    REQUIRE(bytes > 0);
    gpu_test::device_buffer<char> temp(bytes);
    CUDA_REQUIRE(sc::observe_batch(temp.ptr, bytes, d, d_values.ptr,
                                   static_cast<int>(values.size()), stream));
    // Twice: a second batch adds on top.
    CUDA_REQUIRE(sc::observe_batch(temp.ptr, bytes, d, d_values.ptr,
                                   static_cast<int>(values.size()), stream));
    for (double v : values)
      cpu.observe(v);
    CUDA_REQUIRE(sink.flush(stream));
    CUDA_REQUIRE(cudaStreamSynchronize(stream));

    auto rd = shmetrics::segment_reader::open(reg->path());
    REQUIRE(rd);
    auto snap = rd->snapshot();
    REQUIRE(snap);
    auto* f = test::find_family(*snap, "latency_seconds");
    REQUIRE(f);
    const shmetrics::series_snapshot *c = nullptr, *g = nullptr;
    for (auto& s : f->series)
      if (s.label_values[1] == which) (s.label_values[0] == "cpu" ? c : g) = &s;
    REQUIRE((c && g));
    INFO("values " << which);
    CHECK(g->buckets == c->buckets);
    CHECK(g->count() > 0);
    if (std::string(which) == "random") CHECK(g->sum == Approx(c->sum).epsilon(1e-9));
  }
  CUDA_REQUIRE(cudaStreamDestroy(stream));
}
