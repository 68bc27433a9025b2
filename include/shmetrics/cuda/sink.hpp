// shmetrics::cuda: the host side of device recording. A device_sink connects one
// registry's segment to one CUDA device; it hands out d_ handles (handles.hpp) for the
// registry's series, and the device-level calls below bin and reduce whole batches.
//
//   auto reg = shmetrics::registry::create(opt);
//   auto tokens = *reg->add_counter({.name = "gen_tokens", .help = "Tokens."})->with_labels({});
//   shmetrics::cuda::device_sink sink;
//   if (auto e = shmetrics::cuda::device_sink::create(*reg, shmetrics::cuda::publish_mode::direct,
//                                                   stream, sink); e != cudaSuccess) { ... }
//   shmetrics::cuda::d_counter d_tokens;
//   sink.bind(tokens, d_tokens);                   // a plain struct, pass it to kernels
//   step<<<blocks, 256, 0, stream>>>(d_tokens, n); // device.cuh: block_counter etc.
//
// Which cells the GPU writes: each sink leases one value shard of the registry for itself
// (the same pool the CPU threads lease from, segment-format.md "Shards"), so no CPU thread
// and no other sink ever writes those cells. The reader sums counters and histograms over
// shards, so the GPU's counts add to the CPU's without any shared read-modify-write
// between host and device (a device atomic on mapped memory is not atomic against host
// atomics on a PCIe system). Gauges live in shard 0 and are set with plain 8-byte stores.
//
// Layering as in CUB: setup calls (create, bind, the destructor) allocate and may
// synchronize the device like cudaMalloc/cudaFree; per-step calls (flush, observe_batch,
// set_gauge_*) take a stream, return a cudaError_t, and never synchronize.
//
// Host-only header (includes <cuda_runtime_api.h>); link libshmetrics_cuda.
#ifndef SHMETRICS_CUDA_SINK_HPP
#define SHMETRICS_CUDA_SINK_HPP

#include <cstddef>             // size_t
#include <cstdint>             // cells
#include <memory>              // shared_ptr to the shard pool
#include <vector>              // bound buffers
#include <cuda_runtime_api.h>  // cudaError_t, cudaStream_t

#include "../config.hpp"
#include "../counter.hpp"
#include "../gauge.hpp"
#include "../histogram.hpp"
#include "../registry.hpp"
#include "handles.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace cuda {

/// Where device writes go.
enum class publish_mode {
  /// Kernels write the registered segment (its mapped device pointer): visible to the
  /// exporter while the kernel runs. Use the block-level collectives (one system atomic
  /// per block per series); a system atomic per event costs a PCIe round trip.
  direct,
  /// Kernels write a device-resident mirror of the sink's shard at device-memory speed;
  /// flush() publishes the mirror into the segment, in stream order.
  flushed,
};

/// One registry's segment, as seen by the current CUDA device. Move-only.
///
/// Thread-safe: create/bind/destroy from one thread at set-up; flush() may be called
/// from any thread, but the flushes of one sink must be ordered (one stream, or events),
/// so that a newer total is never overwritten by an older one. Allocates: at set-up
/// (device memory, a registration of the mapping). Fails: see each call.
class device_sink {
 public:
  device_sink() = default;
  ~device_sink();
  device_sink(device_sink&& other) noexcept;
  device_sink& operator=(device_sink&& other) noexcept;
  device_sink(const device_sink&) = delete;
  device_sink& operator=(const device_sink&) = delete;

  /// Connects `reg` to the current device: leases a value shard, registers the segment's
  /// mapping (cudaHostRegister, mapped | portable; shared by every sink of the process),
  /// and in flushed mode allocates the mirror and enqueues its initialisation from the
  /// shard on `stream` (kernels that use the handles must run after it in stream order).
  /// `reg` must outlive the sink; destroy the sink only after its kernels finished (and,
  /// flushed, after a last flush() completed).
  /// @retval cudaSuccess
  /// @retval cudaErrorInvalidValue `reg` is empty or `out` is already connected
  /// @retval cudaErrorNotPermitted every value shard of `reg` is leased (raise
  ///         registry_options::shards: the GPU needs one shard per sink)
  /// @retval other CUDA errors from cudaHostRegister, cudaMalloc, cudaMemcpyAsync
  static cudaError_t create(registry& reg, publish_mode mode, cudaStream_t stream,
                            device_sink& out);

  /// The device handle of a series of this sink's registry.
  /// @retval cudaErrorInvalidValue the handle is empty or belongs to another registry
  cudaError_t bind(const counter& c, d_counter& out) const;
  cudaError_t bind(const gauge& g, d_gauge& out) const;
  /// Also copies the bucket bounds into device memory (cudaMalloc, then cudaMemcpyAsync
  /// on `stream`); the sink frees them when it is destroyed.
  cudaError_t bind(const histogram& h, d_histogram& out, cudaStream_t stream);

  /// Flushed mode: publishes every mirror cell that changed since the last flush into the
  /// segment (a small kernel on `stream`; each cell one relaxed system-scope 8-byte store,
  /// so a reader sees every counter only grow). Direct mode: nothing to do.
  /// Never synchronizes. @retval the launch's error
  cudaError_t flush(cudaStream_t stream);

  publish_mode mode() const noexcept { return mode_; }
  /// The leased shard (1..shard_count-1); 0 when not connected.
  std::uint32_t shard() const noexcept { return shard_; }
  /// Device address of the segment's byte 0 (for tools and benchmarks).
  void* device_segment() const noexcept { return d_base_; }
  /// Device address of the mirror of the leased shard (flushed mode; else null).
  std::uint64_t* device_mirror() const noexcept { return d_mirror_; }
  /// Device address of the leased shard's first cell in the segment (null when not
  /// connected).
  std::uint64_t* device_shard() const noexcept {
    return d_base_ ? reinterpret_cast<std::uint64_t*>(d_base_ + cells_offset_ + shard_offset_)
                   : nullptr;
  }
  explicit operator bool() const noexcept { return d_base_ != nullptr; }

 private:
  void reset() noexcept;
  std::uint64_t* device_cell(const std::uint64_t* host_cell, bool sharded) const noexcept;

  publish_mode mode_ = publish_mode::direct;
  char* host_base_ = nullptr;  // the registry's mapping
  std::size_t host_size_ = 0;
  char* d_base_ = nullptr;  // the same bytes, device-side
  std::uint64_t cells_offset_ = 0, shard_stride_ = 0, shard_offset_ = 0;
  std::uint32_t cells_per_shard_ = 0, shard_ = 0;
  std::shared_ptr<::shmetrics::detail::shard_pool>
      pool_;                              // keeps the pool alive while we hold a shard
  std::uint64_t* d_mirror_ = nullptr;     // flushed: cells_per_shard cells
  std::uint64_t* d_published_ = nullptr;  // flushed: what the segment holds
  std::vector<double*> d_bounds_;         // one allocation per bound histogram
};

// ---- device level: batches (CUB's two-phase temporary storage) ---------------------
//
// Call once with d_temp_storage == nullptr to get temp_storage_bytes, allocate, call again.
// Everything is enqueued on `stream`; nothing synchronizes; no call allocates.

/// Bins d_values[0..n) into the histogram's buckets (CUB DeviceHistogram::HistogramRange,
/// with `le` semantics: bucket i counts bounds[i-1] < v <= bounds[i]; NaN dropped, +Inf
/// into the +Inf bucket, exactly as histogram::observe on the CPU) and adds the batch's
/// sum (CUB DeviceReduce::TransformReduce); then adds both to the series' cells with one
/// system atomic per non-empty bucket. n <= INT_MAX.
cudaError_t observe_batch(void* d_temp_storage, std::size_t& temp_storage_bytes, d_histogram h,
                          const double* d_values, int n, cudaStream_t stream);

/// Sets the gauge to scale * sum(d_in[0..n)) (CUB DeviceReduce, f64 accumulation).
cudaError_t set_gauge_sum(void* d_temp_storage, std::size_t& temp_storage_bytes, d_gauge g,
                          const float* d_in, int n, double scale, cudaStream_t stream);

/// Sets the gauge to scale * |{i : d_in[i] >= threshold}|. KV-cache usage from a block
/// table (entries >= 0 are allocated blocks): threshold 0, scale 1 / total_blocks.
cudaError_t set_gauge_count_at_least(void* d_temp_storage, std::size_t& temp_storage_bytes,
                                     d_gauge g, const std::int32_t* d_in, int n,
                                     std::int32_t threshold, double scale, cudaStream_t stream);

}  // namespace cuda
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_CUDA_SINK_HPP
