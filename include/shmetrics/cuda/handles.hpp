// shmetrics::cuda: device-side handles, plain data that a kernel takes by value.
//
// A `d_` handle is a device pointer (plus, for histograms, the bucket bounds in device
// memory) to one series' value cells. Where the cells are depends on the sink that made
// the handle (sink.hpp):
//   - publish_mode::direct: the sink's own shard of the segment, registered with
//     cudaHostRegister and mapped into the device's address space. A kernel's system-scope
//     atomic lands in the segment and is seen live by the exporter.
//   - publish_mode::flushed: the sink's device-resident mirror of that shard. Kernels add
//     to it at device-memory speed; device_sink::flush() copies it into the segment.
// Gauges are not sharded (segment-format.md): a d_gauge always points at shard 0 in the
// mapped segment.
//
// This header is host-and-device plain C++ (no CUDA types), so host code that builds the
// handles and device code that uses them (device.cuh) agree on every byte.
//
// Thread-safe: the handles are immutable values. Allocates: never. Fails: never; an
// empty (default) handle makes every device call a no-op.
#ifndef SHMETRICS_CUDA_HANDLES_HPP
#define SHMETRICS_CUDA_HANDLES_HPP

#include <cstdint>      // cell pointers
#include <type_traits>  // trivially-copyable checks

#include "../config.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace cuda {

/// One counter series. d_cells[0]: u64 whole part; d_cells[1]: f64 bits of the fraction.
struct d_counter {
  std::uint64_t* d_cells = nullptr;
};

/// One histogram series. d_cells[0..bound_count]: u64 non-cumulative bucket counts (the
/// last is +Inf), d_cells[bound_count + 1]: f64 bits of the sum, as on the CPU.
/// d_bounds: the family's finite upper bounds, copied into device memory.
/// d_levels: the same bounds negated and reversed, framed by -Inf and +Inf
/// (bound_count + 2 values): the levels CUB's DeviceHistogram::HistogramRange bins with,
/// so that its [lo, hi) bins become Prometheus' (lo, le] buckets (see sink.cu).
struct d_histogram {
  std::uint64_t* d_cells = nullptr;
  const double* d_bounds = nullptr;
  const double* d_levels = nullptr;
  std::uint32_t bound_count = 0;
};

/// One gauge series: d_cell[0] holds the f64 bits (shard 0 of the mapped segment).
struct d_gauge {
  std::uint64_t* d_cell = nullptr;
};

static_assert(std::is_trivially_copyable_v<d_counter> && std::is_standard_layout_v<d_counter>);
static_assert(std::is_trivially_copyable_v<d_histogram> && std::is_standard_layout_v<d_histogram>);
static_assert(std::is_trivially_copyable_v<d_gauge> && std::is_standard_layout_v<d_gauge>);

}  // namespace cuda
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_CUDA_HANDLES_HPP
