// shmetrics::cuda: recording from device code, in CUB's layers (thread, warp, block).
//
//   __global__ void step(shmetrics::cuda::d_counter tokens, int n) {
//     using counter_t = shmetrics::cuda::block_counter<256>;
//     __shared__ counter_t::TempStorage temp;
//     counter_t block_tokens(temp);                 // collective: zeroes the block's tally
//     int i = blockIdx.x * blockDim.x + threadIdx.x;
//     unsigned long long mine = i < n ? 1 : 0;      // this thread's events, in a register
//     block_tokens.publish(tokens, mine);           // collective: ONE system atomic per block
//   }
//
// Why blocks: a system-scope atomic into host-mapped memory is a PCIe round trip
// (ARCHITECTURE.md measured ~0.03 G events/s for one per event, ~24 G events/s for one
// per block). So the thread_* functions are for rare events only; hot events go through
// block_counter / block_histogram, or through a sink in publish_mode::flushed, where the
// same atomics land in device memory and device_sink::flush() copies the totals out.
//
// Memory ordering (docs/cuda.md): every write into a cell is a naturally aligned 8-byte
// relaxed atomic at system scope (atomicAdd_system for u64 cells, an atomicCAS_system loop
// for f64 cells, a relaxed system-scope store for gauges). A
// reader on the CPU loads each cell with a relaxed 8-byte load, so it sees every counter
// and bucket cell only grow. No order between different cells is promised, exactly as for
// the CPU writer (a bucket may be seen before its sum).
//
// Requires nvcc (or clang CUDA) and compute capability >= 6.0 (system-scope atomics and
// f64 atomicAdd).
#ifndef SHMETRICS_CUDA_DEVICE_CUH
#define SHMETRICS_CUDA_DEVICE_CUH

#include <cstdint>      // cells
#include <cuda/atomic>  // cuda::atomic_ref (relaxed system-scope stores)

#include "handles.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace cuda {
namespace detail {

__device__ __forceinline__ unsigned long long* as_ull(std::uint64_t* p) {
  return reinterpret_cast<unsigned long long*>(p);
}

/// Adds v to the f64 bit pattern at p: a CAS loop of system-scope atomicCAS, not a native
/// f64 atomicAdd_system, because PCIe AtomicOps have integer FetchAdd, Swap and CAS but no
/// floating-point add, so only CAS is atomic on host memory over every link. Used once per
/// block publish or per rare thread-level event, so the loop's round trips stay cheap.
__device__ __forceinline__ void add_f64_system(std::uint64_t* p, double v) {
  unsigned long long* a = as_ull(p);
  unsigned long long old = *reinterpret_cast<volatile unsigned long long*>(a);
  for (;;) {
    auto want = static_cast<unsigned long long>(
        __double_as_longlong(__longlong_as_double(static_cast<long long>(old)) + v));
    unsigned long long seen = atomicCAS_system(a, old, want);
    if (seen == old) return;
    old = seen;
  }
}

/// A bucket bound: through the read-only data cache on the device (the bounds never change
/// while a kernel runs), a plain load on the host.
__host__ __device__ __forceinline__ double load_bound(const double* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}

/// The block-linear thread index (CUB's RowMajorTid), for 1-, 2- and 3-D blocks.
__device__ __forceinline__ int linear_tid() {
  return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

}  // namespace detail

// ---- thread level: one system-scope atomic per call --------------------------------

/// Index of the first bound >= v (bound_count for the +Inf bucket), the same index as the
/// CPU's shmetrics::detail::bucket_index (there a SIMD window count; here a binary search,
/// whose select compiles to a predicated move on the GPU), so a value lands in the same
/// bucket on both sides. Host code can call it too: tests/cuda/bucket_index_host_test.cpp
/// compares it with the CPU's on every machine, cuda_histogram on the GPU. Any thread; no
/// side effects.
__host__ __device__ __forceinline__ std::uint32_t bucket_index(const double* bounds,
                                                               std::uint32_t count, double v) {
  if (count == 0) return 0;
  const double* base = bounds;
  std::uint32_t n = count;
  while (n > 1) {
    std::uint32_t half = n / 2;
    base = detail::load_bound(base + half - 1) < v ? base + half : base;
    n -= half;
  }
  return static_cast<std::uint32_t>(base - bounds) + (detail::load_bound(base) < v ? 1u : 0u);
}

/// Adds n to the counter: one relaxed system-scope atomic. For rare events; hot events
/// use block_counter. Any thread. Fails: never (an empty handle is a no-op).
__device__ __forceinline__ void thread_add(d_counter h, unsigned long long n) {
  if (h.d_cells != nullptr && n != 0) atomicAdd_system(detail::as_ull(h.d_cells), n);
}

/// Adds v >= 0 (negative, NaN and +Inf are ignored, as on the CPU): whole numbers below
/// 2^53 to the integer cell, fractions to the f64 cell.
__device__ __forceinline__ void thread_add(d_counter h, double v) {
  if (h.d_cells == nullptr || !(v >= 0.0)) return;
  auto n = static_cast<unsigned long long>(v < 9007199254740992.0 ? v : 0.0);
  if (static_cast<double>(n) == v)
    thread_add(h, n);
  else if (v <= 1.7976931348623157e308)  // not +Inf: it would poison the counter forever
    detail::add_f64_system(h.d_cells + 1, v);
}

/// Observes v (NaN is dropped, as on the CPU): a system-scope atomic for the bucket and a
/// CAS loop for the sum.
__device__ __forceinline__ void thread_observe(d_histogram h, double v) {
  if (h.d_cells == nullptr || v != v) return;
  std::uint32_t b = bucket_index(h.d_bounds, h.bound_count, v);
  atomicAdd_system(detail::as_ull(h.d_cells + b), 1ull);
  detail::add_f64_system(h.d_cells + h.bound_count + 1, v);
}

/// Sets the gauge: one relaxed system-scope 8-byte store of the f64 bits (last writer
/// wins, like gauge::set on the CPU; no CLOCK_MONOTONIC stamp is written from the device).
__device__ __forceinline__ void thread_set(d_gauge g, double v) {
  if (g.d_cell == nullptr) return;
  ::cuda::atomic_ref<unsigned long long, ::cuda::thread_scope_system> r(*detail::as_ull(g.d_cell));
  r.store(static_cast<unsigned long long>(__double_as_longlong(v)), ::cuda::memory_order_relaxed);
}

// ---- warp level ---------------------------------------------------------------------

/// Sum of v over the 32 lanes of the warp; every lane gets the result. Collective: all
/// 32 lanes must call it (a butterfly of shuffles; no shared memory, no atomics).
__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// ---- block level: aggregate in shared memory, publish once per block ------------------

/// A block-wide counter tally. Threads add events to a shared-memory tally (inc/add,
/// warp-aggregated for inc), and/or pass their register tally to publish(); publish()
/// adds the block's total to the counter with ONE relaxed system-scope atomic, issued by
/// thread 0. publish() resets the tally, so a long-running kernel may publish
/// periodically (each period's events are then visible live to the exporter).
///
/// @tparam BLOCK_THREADS the block's thread count (a multiple of 32, at most 1024);
///         blockDim.x * blockDim.y * blockDim.z must equal it, as for CUB's collectives.
///
/// Constructor and publish() are collective: every thread of the block calls them
/// (they contain __syncthreads()). inc()/add() may be called by any subset of threads.
/// Thread-safe: within its block, as stated. Allocates: only TempStorage (shared
/// memory, the caller's). Fails: never.
template <int BLOCK_THREADS>
class block_counter {
  static_assert(BLOCK_THREADS % 32 == 0 && BLOCK_THREADS > 0 && BLOCK_THREADS <= 1024,
                "BLOCK_THREADS must be a multiple of 32, at most 1024");
  static constexpr int warps = BLOCK_THREADS / 32;

 public:
  /// Shared memory for one block_counter (declare it __shared__; may be unioned with
  /// other TempStorage once the counter is done, after a __syncthreads()).
  struct TempStorage {
    unsigned long long tally;
    unsigned long long warp_sums[warps];
  };

  /// Collective: zeroes the tally.
  __device__ explicit block_counter(TempStorage& temp) : temp_(temp) {
    if (detail::linear_tid() == 0) temp_.tally = 0;
    __syncthreads();
  }

  /// Adds 1 for the calling thread. The active lanes of the warp combine into one
  /// shared-memory atomic (warp aggregation), so a hot counter costs ~1/32 atomic per event.
  __device__ __forceinline__ void inc() {
    unsigned mask = __activemask();
    int lane = detail::linear_tid() & 31;  // warps are formed from consecutive linear tids
    if (lane == __ffs(static_cast<int>(mask)) - 1)
      atomicAdd(&temp_.tally, static_cast<unsigned long long>(__popc(mask)));
  }

  /// Adds n for the calling thread (one shared-memory atomic).
  __device__ __forceinline__ void add(unsigned long long n) {
    if (n != 0) atomicAdd(&temp_.tally, n);
  }

  /// Collective: adds the block's tally plus every thread's `thread_n` to the counter,
  /// with one relaxed system-scope atomic from thread 0 (none when the total is 0), then
  /// zeroes the tally.
  __device__ void publish(d_counter h, unsigned long long thread_n = 0) {
    int tid = detail::linear_tid();
    unsigned long long w = warp_sum(thread_n);
    if ((tid & 31) == 0) temp_.warp_sums[tid / 32] = w;
    __syncthreads();
    if (tid == 0) {
      unsigned long long total = temp_.tally;
#pragma unroll
      for (int i = 0; i < warps; ++i)
        total += temp_.warp_sums[i];
      temp_.tally = 0;
      thread_add(h, total);
    }
    __syncthreads();  // the reset is seen before any thread adds again
  }

 private:
  TempStorage& temp_;
};

/// A block-wide histogram: threads observe() into shared-memory bins (bucket search as
/// on the CPU), publish() adds each non-empty bin to the series with one relaxed
/// system-scope atomic (threads 0..bound_count, in parallel) and the sum with one CAS loop
/// (the last thread). Like block_counter, publish() resets the bins.
///
/// @tparam BLOCK_THREADS as for block_counter.
/// @tparam MAX_BUCKETS bins in shared memory, +Inf included (vLLM's families have <= 31).
///         A series with more buckets still records correctly: observe() then falls back
///         to thread_observe() (two system atomics per event).
///
/// One block_histogram records ONE series: pass the same d_histogram to observe() and
/// publish(). Constructor and publish() are collective; observe() any thread.
template <int BLOCK_THREADS, int MAX_BUCKETS = 64>
class block_histogram {
  static_assert(BLOCK_THREADS % 32 == 0 && BLOCK_THREADS > 0 && BLOCK_THREADS <= 1024,
                "BLOCK_THREADS must be a multiple of 32, at most 1024");
  static_assert(MAX_BUCKETS >= 1, "MAX_BUCKETS counts the +Inf bucket");

 public:
  struct TempStorage {
    unsigned long long bins[MAX_BUCKETS];
    double sum;
  };

  /// Collective: zeroes the bins.
  __device__ explicit block_histogram(TempStorage& temp) : temp_(temp) {
    int tid = detail::linear_tid();
    for (int i = tid; i < MAX_BUCKETS; i += BLOCK_THREADS)
      temp_.bins[i] = 0;
    if (tid == 0) temp_.sum = 0.0;
    __syncthreads();
  }

  /// Observes v (NaN dropped): two shared-memory atomics.
  __device__ __forceinline__ void observe(d_histogram h, double v) {
    if (h.d_cells == nullptr || v != v) return;
    if (h.bound_count + 1 > static_cast<std::uint32_t>(MAX_BUCKETS)) {
      thread_observe(h, v);
      return;
    }
    atomicAdd(&temp_.bins[bucket_index(h.d_bounds, h.bound_count, v)], 1ull);
    atomicAdd(&temp_.sum, v);
  }

  /// Collective: publishes the non-empty bins and a non-zero sum, then zeroes them.
  /// (Observations of 0.0 alone leave the sum at 0.0: adding it would change nothing.)
  __device__ void publish(d_histogram h) {
    __syncthreads();
    int tid = detail::linear_tid();
    if (h.d_cells != nullptr) {
      int bins = static_cast<int>(h.bound_count) + 1;
      if (bins > MAX_BUCKETS) bins = MAX_BUCKETS;
      for (int i = tid; i < bins; i += BLOCK_THREADS) {
        unsigned long long c = temp_.bins[i];
        if (c != 0) atomicAdd_system(detail::as_ull(h.d_cells + i), c);
      }
      if (tid == BLOCK_THREADS - 1 && temp_.sum != 0.0)  // NaN != 0.0: published too
        detail::add_f64_system(h.d_cells + h.bound_count + 1, temp_.sum);
    }
    __syncthreads();  // everyone has read the bins before they are zeroed
    for (int i = tid; i < MAX_BUCKETS; i += BLOCK_THREADS)
      temp_.bins[i] = 0;
    if (tid == 0) temp_.sum = 0.0;
    __syncthreads();
  }

 private:
  TempStorage& temp_;
};

}  // namespace cuda
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_CUDA_DEVICE_CUH
