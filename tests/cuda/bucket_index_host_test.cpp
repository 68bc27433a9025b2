// The device's bucket search (a binary search, include/shmetrics/cuda/device.cuh) picks the
// same bucket as the CPU's (a SIMD window count, detail::bucket_index), checked here with
// nvcc's host build of the same function, so that every machine checks it, not only one
// with a GPU (cuda_histogram checks the device build there). Needs no GPU: suite unit.
#include <cstdint>  // indices

#include <catch2/catch.hpp>

#include <shmetrics/histogram.hpp>

#include "../support.hpp"  // bucket_search_cases

namespace gpu_test {
std::uint32_t device_bucket_index_on_host(const double* bounds, std::uint32_t count, double v);
}

TEST_CASE("the device bucket search agrees with the CPU's", "[cuda][histogram]") {
  for (const auto& c : test::bucket_search_cases()) {
    const auto n = static_cast<std::uint32_t>(c.bounds.size());
    for (double v : c.values) {
      INFO("bounds=" << n << " v=" << v);
      REQUIRE(gpu_test::device_bucket_index_on_host(c.bounds.data(), n, v) ==
              shmetrics::detail::bucket_index(c.bounds.data(), n, v));
    }
  }
}
