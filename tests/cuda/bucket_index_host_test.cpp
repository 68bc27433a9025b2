// The device's bucket search (a binary search, include/shmetrics/cuda/device.cuh) picks the
// same bucket as the CPU's (a SIMD window count, detail::bucket_index), checked here with
// nvcc's host build of the same function, so that every machine checks it, not only one
// with a GPU (cuda_histogram checks the device build there). Needs no GPU: suite unit.
#include <cmath>    // std::nextafter
#include <cstdint>  // indices
#include <limits>   // infinities
#include <random>   // values
#include <vector>   // bounds

#include <catch2/catch.hpp>

#include <shmetrics/histogram.hpp>

namespace gpu_test {
std::uint32_t device_bucket_index_on_host(const double* bounds, std::uint32_t count, double v);
}

TEST_CASE("the device bucket search agrees with the CPU's", "[cuda][histogram]") {
  std::mt19937_64 rng(11);
  std::vector<std::uint32_t> sizes;
  for (std::uint32_t n = 0; n <= 140; ++n)  // every shape of the CPU's windows and halving
    sizes.push_back(n);
  for (std::uint32_t n : {255u, 256u, 257u, 1000u, 4096u})
    sizes.push_back(n);
  const double inf = std::numeric_limits<double>::infinity();
  for (std::uint32_t n : sizes) {
    std::vector<double> b;
    for (std::uint32_t i = 0; i < n; ++i)  // uneven gaps, some negative
      b.push_back(-2.0 + i * 0.5 + (i % 4) * 0.05);
    // The bounds, their neighbours (v == bound belongs to that bucket: le), signed zeros,
    // the infinities and values over the whole range and beyond. NaN is dropped before
    // the search on both sides, so it is not asked.
    std::vector<double> vs{-inf,
                           inf,
                           0.0,
                           -0.0,
                           std::numeric_limits<double>::max(),
                           std::numeric_limits<double>::lowest()};
    for (double x : b)
      vs.insert(vs.end(), {x, std::nextafter(x, -inf), std::nextafter(x, inf)});
    std::uniform_real_distribution<double> d(-4, n * 0.5 + 2);
    for (int k = 0; k < 300; ++k)
      vs.push_back(d(rng));
    for (double v : vs) {
      INFO("bounds=" << n << " v=" << v);
      REQUIRE(gpu_test::device_bucket_index_on_host(b.data(), n, v) ==
              shmetrics::detail::bucket_index(b.data(), n, v));
    }
  }
}
