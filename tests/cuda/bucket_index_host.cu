// The device bucket search compiled by nvcc for the host (its host pass), behind a plain
// function so that bucket_index_host_test.cpp stays C++ compiled by g++.
#include <shmetrics/cuda/device.cuh>

namespace gpu_test {

std::uint32_t device_bucket_index_on_host(const double* bounds, std::uint32_t count, double v) {
  return shmetrics::cuda::bucket_index(bounds, count, v);
}

}  // namespace gpu_test
