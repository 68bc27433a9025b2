// Test kernels for tests/cuda; see kernels.hpp.
#include "kernels.hpp"

#include <shmetrics/cuda/device.cuh>

namespace gpu_test {
namespace {

namespace sc = shmetrics::cuda;

__global__ void block_counter_kernel(sc::d_counter h, int rounds) {
  using counter_t = sc::block_counter<block_threads>;
  __shared__ counter_t::TempStorage temp;
  counter_t bc(temp);
  std::uint64_t t = std::uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  unsigned long long mine = 0;
  for (int j = 0; j < rounds; ++j) {
    if ((t + static_cast<std::uint64_t>(j)) % 3 == 0) bc.inc();
    mine += (t * 7 + static_cast<std::uint64_t>(j)) % 5;
  }
  bc.publish(h, mine);
}

__global__ void thread_adds_kernel(sc::d_counter h, int n) {
  int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  sc::thread_add(h, 2.0);
  sc::thread_add(h, 0.25);
}

__global__ void block_observe_kernel(sc::d_histogram h, const double* values, int n) {
  using hist_t = sc::block_histogram<block_threads>;
  __shared__ hist_t::TempStorage temp;
  hist_t bh(temp);
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < n;
       i += static_cast<int>(gridDim.x * blockDim.x))
    bh.observe(h, values[i]);
  bh.publish(h);
}

__global__ void thread_observe_kernel(sc::d_histogram h, const double* values, int n) {
  int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) sc::thread_observe(h, values[i]);
}

__global__ void bucket_indices_kernel(const double* bounds, std::uint32_t k, const double* values,
                                      std::uint32_t* out, int n) {
  int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = sc::bucket_index(bounds, k, values[i]);
}

__device__ unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void live_kernel(sc::d_counter h, const volatile int* stop,
                            volatile unsigned long long* rounds_done, double max_seconds) {
  using counter_t = sc::block_counter<block_threads>;
  __shared__ counter_t::TempStorage temp;
  __shared__ int done;
  counter_t bc(temp);
  unsigned long long start = now_ns();
  auto limit = static_cast<unsigned long long>(max_seconds * 1e9);
  for (unsigned long long round = 1;; ++round) {
    bc.inc();
    bc.publish(h);  // one system atomic per block per round: visible live
    if (threadIdx.x == 0) {
      if (blockIdx.x == 0) *rounds_done = round;
      done = *stop != 0 || now_ns() - start > limit;
    }
    __syncthreads();
    if (done) break;
    __syncthreads();
    __nanosleep(50000);
  }
}

int grid_for(int n) {
  return (n + block_threads - 1) / block_threads;
}

}  // namespace

void block_counter(sc::d_counter h, int blocks, int rounds, cudaStream_t s) {
  block_counter_kernel<<<blocks, block_threads, 0, s>>>(h, rounds);
}
void thread_adds(sc::d_counter h, int n, cudaStream_t s) {
  thread_adds_kernel<<<grid_for(n), block_threads, 0, s>>>(h, n);
}
void block_observe(sc::d_histogram h, const double* d_values, int n, int blocks, cudaStream_t s) {
  block_observe_kernel<<<blocks, block_threads, 0, s>>>(h, d_values, n);
}
void thread_observe(sc::d_histogram h, const double* d_values, int n, cudaStream_t s) {
  thread_observe_kernel<<<grid_for(n), block_threads, 0, s>>>(h, d_values, n);
}
void bucket_indices(const double* d_bounds, std::uint32_t k, const double* d_values,
                    std::uint32_t* d_out, int n, cudaStream_t s) {
  bucket_indices_kernel<<<grid_for(n), block_threads, 0, s>>>(d_bounds, k, d_values, d_out, n);
}
void live(sc::d_counter h, const volatile int* d_stop, volatile unsigned long long* d_rounds_done,
          int blocks, double max_seconds, cudaStream_t s) {
  live_kernel<<<blocks, block_threads, 0, s>>>(h, d_stop, d_rounds_done, max_seconds);
}

}  // namespace gpu_test
