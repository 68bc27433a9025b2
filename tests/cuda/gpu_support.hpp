// Helpers for the GPU tests: a checked CUDA call and a device buffer.
#pragma once

#include <cstddef>             // sizes
#include <vector>              // host copies
#include <cuda_runtime_api.h>  // cudaMalloc, cudaMemcpy

#include <catch2/catch.hpp>

/// REQUIREs that a CUDA call succeeded, naming the call and the error.
#define CUDA_REQUIRE(expr)                                        \
  do {                                                            \
    cudaError_t cuda_require_e_ = (expr);                         \
    INFO(#expr << " -> " << cudaGetErrorString(cuda_require_e_)); \
    REQUIRE(cuda_require_e_ == cudaSuccess);                      \
  } while (0)

namespace gpu_test {

/// n elements of device memory, freed on scope exit.
template <class T>
struct device_buffer {
  T* ptr = nullptr;
  std::size_t n = 0;
  explicit device_buffer(std::size_t count) : n(count) {
    if (cudaMalloc(reinterpret_cast<void**>(&ptr), (count ? count : 1) * sizeof(T)) != cudaSuccess)
      ptr = nullptr;
  }
  explicit device_buffer(const std::vector<T>& host) : device_buffer(host.size()) {
    if (ptr && !host.empty())
      (void)cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~device_buffer() { (void)cudaFree(ptr); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  std::vector<T> to_host() const {
    std::vector<T> v(n);
    if (n) (void)cudaMemcpy(v.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }
};

}  // namespace gpu_test
