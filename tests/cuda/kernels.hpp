// Test kernels for tests/cuda (kernels.cu), behind host launchers so that the Catch2 test
// files stay plain C++ (compiled by g++, like the rest of the tests).
#pragma once

#include <cstdint>             // indices
#include <cuda_runtime_api.h>  // cudaStream_t

#include <shmetrics/cuda/handles.hpp>

namespace gpu_test {

constexpr int block_threads = 256;

/// Events of thread `t` (global index) in launch_block_counter: what the host expects.
inline unsigned long long events_of_thread(std::uint64_t t, int rounds) {
  unsigned long long n = 0;
  for (int j = 0; j < rounds; ++j) {
    if ((t + static_cast<std::uint64_t>(j)) % 3 == 0) n += 1;  // bc.inc()
    n += (t * 7 + static_cast<std::uint64_t>(j)) % 5;          // register tally
  }
  return n;
}

/// Every thread of `blocks` x 256 records events_of_thread() through a block_counter
/// (inc() into shared memory plus a register tally), one publish per block.
void block_counter(shmetrics::cuda::d_counter h, int blocks, int rounds, cudaStream_t s);
/// Threads [0, n): thread_add(h, 2.0) (integer cell) and thread_add(h, 0.25) (fraction).
void thread_adds(shmetrics::cuda::d_counter h, int n, cudaStream_t s);
/// block_histogram over d_values[0, n) (grid-stride), one publish per block.
void block_observe(shmetrics::cuda::d_histogram h, const double* d_values, int n, int blocks,
                   cudaStream_t s);
/// thread_observe of each value.
void thread_observe(shmetrics::cuda::d_histogram h, const double* d_values, int n, cudaStream_t s);
/// out[i] = device bucket_index(bounds, k, values[i]).
void bucket_indices(const double* d_bounds, std::uint32_t k, const double* d_values,
                    std::uint32_t* d_out, int n, cudaStream_t s);
/// A persistent kernel: each block inc()s once per thread and publishes, every ~50 us,
/// until *stop (mapped host memory) is non-zero or `max_seconds` passed on the GPU clock.
/// *rounds_done (mapped) counts block 0's publishes.
void live(shmetrics::cuda::d_counter h, const volatile int* d_stop,
          volatile unsigned long long* d_rounds_done, int blocks, double max_seconds,
          cudaStream_t s);

}  // namespace gpu_test
