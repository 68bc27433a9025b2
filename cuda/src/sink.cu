// shmetrics::cuda: device_sink and the device-level batch calls. CUB and Thrust stay in
// this file (STYLE.md rule 12: no CCCL types in public headers, so an engine built against
// another CCCL is not affected).
#include <shmetrics/cuda/sink.hpp>

#include <cfloat>   // DBL_MAX
#include <cmath>    // INFINITY
#include <map>      // registrations of mappings, counted
#include <mutex>    // guards the registration map
#include <utility>  // std::exchange

#include <cub/device/device_histogram.cuh>       // DeviceHistogram::HistogramRange
#include <cub/device/device_reduce.cuh>          // DeviceReduce::TransformReduce
#include <cuda/atomic>                           // cuda::atomic_ref (system-scope stores)
#include <thrust/iterator/transform_iterator.h>  // the le-transform of samples

#include <shmetrics/cuda/device.cuh>

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

// The one definition of the friend that counter.hpp, gauge.hpp, histogram.hpp and
// registry.hpp declare: what the sink needs from a handle, nothing else.
struct handle_access {
  static registry_state* state(registry& r) noexcept { return r.state_.get(); }
  static std::uint64_t* cells(const counter& c) noexcept { return c.cell_; }
  static std::uint64_t* cells(const gauge& g) noexcept { return g.cell_; }
  static std::uint64_t* cells(const histogram& h) noexcept { return h.cells_; }
};

}  // namespace detail

namespace cuda {
namespace {

// One cudaHostRegister per mapping, shared by every sink of the process (a second
// registration of the same range fails with cudaErrorHostMemoryAlreadyRegistered).
std::mutex registrations_mu;
std::map<void*, int>& registrations() {
  static std::map<void*, int> m;
  return m;
}

std::size_t page_round(std::size_t n) {
  constexpr std::size_t page = 4096;  // the mapping extends to its last page's end
  return (n + page - 1) / page * page;
}

cudaError_t register_mapping(void* base, std::size_t size) {
  std::lock_guard lock(registrations_mu);
  auto& m = registrations();
  if (auto it = m.find(base); it != m.end()) {
    ++it->second;
    return cudaSuccess;
  }
  // Mapped: the device gets an address for it. Portable: every device/context may use
  // it, so sinks on several GPUs share the one registration.
  cudaError_t e =
      cudaHostRegister(base, page_round(size), cudaHostRegisterMapped | cudaHostRegisterPortable);
  if (e != cudaSuccess) return e;
  m.emplace(base, 1);
  return cudaSuccess;
}

void unregister_mapping(void* base) {
  std::lock_guard lock(registrations_mu);
  auto& m = registrations();
  auto it = m.find(base);
  if (it == m.end()) return;
  if (--it->second == 0) {
    (void)cudaHostUnregister(base);  // the destructor has no one to report to
    m.erase(it);
  }
}

constexpr std::size_t temp_align = 256;
std::size_t align_up(std::size_t n) {
  return (n + temp_align - 1) / temp_align * temp_align;
}

/// Flushed mode: mirror cells that changed since the last flush go to the segment, each
/// as one relaxed system-scope 8-byte store (never torn; each cell's value only grows
/// because flushes of one sink are ordered and the mirror only grows).
__global__ void flush_kernel(std::uint64_t* mirror, std::uint64_t* published,
                             std::uint64_t* d_shard, std::uint32_t n) {
  using sys_ref = ::cuda::atomic_ref<unsigned long long, ::cuda::thread_scope_system>;
  for (std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += gridDim.x * blockDim.x) {
    // System scope, like the atomics the kernels write the mirror with (libcu++:
    // never mix scopes on one location).
    unsigned long long m = sys_ref(*reinterpret_cast<unsigned long long*>(mirror + i))
                               .load(::cuda::memory_order_relaxed);
    if (m != published[i]) {
      sys_ref(*reinterpret_cast<unsigned long long*>(d_shard + i))
          .store(m, ::cuda::memory_order_relaxed);
      published[i] = m;
    }
  }
}

/// Prometheus `le` buckets from CUB's [lo, hi) bins: bin on -v against the negated,
/// reversed bounds, so -v in [-b[i], -b[i-1]) <=> b[i-1] < v <= b[i]. NaN goes to +Inf,
/// past the last level, and is dropped; -Inf becomes DBL_MAX, inside the last level.
struct negate_for_le {
  __host__ __device__ double operator()(double v) const {
    return v != v ? INFINITY : fmin(-v, DBL_MAX);
  }
};
struct nan_to_zero {
  __host__ __device__ double operator()(double v) const { return v != v ? 0.0 : v; }
};
struct widen {
  __host__ __device__ double operator()(float v) const { return static_cast<double>(v); }
};
struct at_least {
  std::int32_t threshold;
  __host__ __device__ unsigned long long operator()(std::int32_t v) const {
    return v >= threshold ? 1ull : 0ull;
  }
};

/// Adds CUB's reversed bins and the batch sum to the series (one system atomic per
/// non-empty bucket, one for the sum).
__global__ void fold_histogram_kernel(d_histogram h, const int* bins, const double* sum) {
  std::uint32_t k = h.bound_count;
  for (std::uint32_t i = threadIdx.x; i <= k; i += blockDim.x) {
    int c = bins[k - i];
    if (c != 0)
      atomicAdd_system(reinterpret_cast<unsigned long long*>(h.d_cells + i),
                       static_cast<unsigned long long>(c));
  }
  if (threadIdx.x == 0 && *sum != 0.0) detail::add_f64_system(h.d_cells + k + 1, *sum);
}

template <class T>
__global__ void set_gauge_kernel(d_gauge g, const T* value, double scale) {
  thread_set(g, static_cast<double>(*value) * scale);
}

}  // namespace

device_sink::~device_sink() {
  reset();
}

device_sink::device_sink(device_sink&& o) noexcept {
  *this = std::move(o);
}

device_sink& device_sink::operator=(device_sink&& o) noexcept {
  if (this != &o) {
    reset();
    mode_ = o.mode_;
    host_base_ = std::exchange(o.host_base_, nullptr);
    host_size_ = std::exchange(o.host_size_, 0);
    d_base_ = std::exchange(o.d_base_, nullptr);
    cells_offset_ = o.cells_offset_;
    shard_stride_ = o.shard_stride_;
    shard_offset_ = std::exchange(o.shard_offset_, 0);
    cells_per_shard_ = o.cells_per_shard_;
    shard_ = std::exchange(o.shard_, 0);
    pool_ = std::move(o.pool_);
    d_mirror_ = std::exchange(o.d_mirror_, nullptr);
    d_published_ = std::exchange(o.d_published_, nullptr);
    d_bounds_ = std::move(o.d_bounds_);
    o.d_bounds_.clear();
  }
  return *this;
}

void device_sink::reset() noexcept {
  for (double* p : d_bounds_)
    (void)cudaFree(p);
  d_bounds_.clear();
  if (d_mirror_) (void)cudaFree(d_mirror_);
  if (d_published_) (void)cudaFree(d_published_);
  d_mirror_ = d_published_ = nullptr;
  if (d_base_) unregister_mapping(host_base_);
  d_base_ = nullptr;
  // The shard goes back with its values intact: the next CPU thread adds on top, so the
  // reader's sum over shards never goes backwards.
  if (pool_ && shard_offset_ != 0) pool_->release(shard_offset_);
  pool_.reset();
  shard_offset_ = 0;
  shard_ = 0;
  host_base_ = nullptr;
}

cudaError_t device_sink::create(registry& reg, publish_mode mode, cudaStream_t stream,
                                device_sink& out) {
  if (!reg || out) return cudaErrorInvalidValue;
  ::shmetrics::detail::registry_state* st = ::shmetrics::detail::handle_access::state(reg);
  const ::shmetrics::detail::mapped_segment& seg = st->segment();
  // Write-once header fields (segment-format.md): stable for the registry's life.
  const auto* hdr = static_cast<const layout::segment_header*>(seg.base);

  device_sink s;
  s.mode_ = mode;
  s.host_base_ = static_cast<char*>(seg.base);
  s.host_size_ = seg.size;
  s.cells_offset_ = hdr->cells_offset;
  s.shard_stride_ = hdr->shard_stride;
  s.cells_per_shard_ = hdr->cells_per_shard;
  std::uint64_t off = st->pool()->acquire();
  if (off == 0) return cudaErrorNotPermitted;
  s.pool_ = st->pool()->shared_from_this();
  s.shard_offset_ = off;
  s.shard_ = static_cast<std::uint32_t>(off / s.shard_stride_);

  if (cudaError_t e = register_mapping(seg.base, seg.size); e != cudaSuccess) return e;
  void* d = nullptr;
  if (cudaError_t e = cudaHostGetDevicePointer(&d, seg.base, 0); e != cudaSuccess) {
    unregister_mapping(seg.base);
    return e;
  }
  s.d_base_ = static_cast<char*>(d);

  if (mode == publish_mode::flushed) {
    std::size_t bytes = std::size_t{s.cells_per_shard_} * sizeof(std::uint64_t);
    if (cudaError_t e = cudaMalloc(&s.d_mirror_, bytes); e != cudaSuccess) return e;
    if (cudaError_t e = cudaMalloc(&s.d_published_, bytes); e != cudaSuccess) return e;
    // The leased shard may hold a former CPU owner's totals: the mirror starts from them,
    // so the first flush continues them instead of overwriting them with smaller values.
    const char* shard = s.host_base_ + s.cells_offset_ + s.shard_offset_;
    if (cudaError_t e = cudaMemcpyAsync(s.d_mirror_, shard, bytes, cudaMemcpyHostToDevice, stream);
        e != cudaSuccess)
      return e;
    if (cudaError_t e =
            cudaMemcpyAsync(s.d_published_, s.d_mirror_, bytes, cudaMemcpyDeviceToDevice, stream);
        e != cudaSuccess)
      return e;
  }
  out = std::move(s);
  return cudaSuccess;
}

std::uint64_t* device_sink::device_cell(const std::uint64_t* host_cell,
                                        bool sharded) const noexcept {
  auto off = static_cast<std::uint64_t>(reinterpret_cast<const char*>(host_cell) - host_base_);
  if (!sharded) return reinterpret_cast<std::uint64_t*>(d_base_ + off);
  if (mode_ == publish_mode::flushed) return d_mirror_ + (off - cells_offset_) / 8;
  return reinterpret_cast<std::uint64_t*>(d_base_ + off + shard_offset_);
}

namespace {
/// True when [cell, cell + n) lies in shard 0's cells of the mapping at `base`.
bool in_shard0(const std::uint64_t* cell, std::uint32_t n, const char* base,
               std::uint64_t cells_offset, std::uint32_t cells_per_shard) {
  if (cell == nullptr || base == nullptr) return false;
  auto* p = reinterpret_cast<const char*>(cell);
  const char* lo = base + cells_offset;
  const char* hi = lo + std::uint64_t{cells_per_shard} * 8;
  return p >= lo && p < hi && static_cast<std::uint64_t>(hi - p) / 8 >= n;
}
}  // namespace

cudaError_t device_sink::bind(const counter& c, d_counter& out) const {
  std::uint64_t* cell = ::shmetrics::detail::handle_access::cells(c);
  if (!in_shard0(cell, 2, host_base_, cells_offset_, cells_per_shard_))
    return cudaErrorInvalidValue;
  out = d_counter{device_cell(cell, true)};
  return cudaSuccess;
}

cudaError_t device_sink::bind(const gauge& g, d_gauge& out) const {
  std::uint64_t* cell = ::shmetrics::detail::handle_access::cells(g);
  if (!in_shard0(cell, 2, host_base_, cells_offset_, cells_per_shard_))
    return cudaErrorInvalidValue;
  out = d_gauge{device_cell(cell, false)};
  return cudaSuccess;
}

cudaError_t device_sink::bind(const histogram& h, d_histogram& out, cudaStream_t stream) {
  std::uint64_t* cells = ::shmetrics::detail::handle_access::cells(h);
  std::uint32_t k = h.bound_count();
  if (!in_shard0(cells, k + 2, host_base_, cells_offset_, cells_per_shard_))
    return cudaErrorInvalidValue;
  // bounds (k) then the levels CUB bins with (k + 2): -Inf, -b[k-1], ..., -b[0], +Inf.
  std::vector<double> host(2 * std::size_t{k} + 2);
  for (std::uint32_t i = 0; i < k; ++i) {
    host[i] = h.bounds()[i];
    host[k + 1 + i] = -h.bounds()[k - 1 - i];
  }
  host[k] = -INFINITY;
  host[2 * std::size_t{k} + 1] = INFINITY;
  double* d = nullptr;
  if (cudaError_t e = cudaMalloc(&d, host.size() * sizeof(double)); e != cudaSuccess) return e;
  d_bounds_.push_back(d);
  // From pageable memory: returns once `host` is staged, so it may go out of scope.
  if (cudaError_t e = cudaMemcpyAsync(d, host.data(), host.size() * sizeof(double),
                                      cudaMemcpyHostToDevice, stream);
      e != cudaSuccess)
    return e;
  out = d_histogram{device_cell(cells, true), d, d + k, k};
  return cudaSuccess;
}

cudaError_t device_sink::flush(cudaStream_t stream) {
  if (mode_ != publish_mode::flushed || d_mirror_ == nullptr) return cudaSuccess;
  // Cells in use only grow (registration); the rest of the shard is untouched.
  const auto* hdr = reinterpret_cast<const layout::segment_header*>(host_base_);
  auto n = static_cast<std::uint32_t>(::shmetrics::detail::load_relaxed(&hdr->cells_used));
  if (n > cells_per_shard_) n = cells_per_shard_;
  if (n == 0) return cudaSuccess;
  constexpr std::uint32_t threads = 256;
  std::uint32_t blocks = (n + threads - 1) / threads;
  if (blocks > 1024) blocks = 1024;
  auto* d_shard = reinterpret_cast<std::uint64_t*>(d_base_ + cells_offset_ + shard_offset_);
  flush_kernel<<<blocks, threads, 0, stream>>>(d_mirror_, d_published_, d_shard, n);
  return cudaPeekAtLastError();
}

cudaError_t observe_batch(void* d_temp_storage, std::size_t& temp_storage_bytes, d_histogram h,
                          const double* d_values, int n, cudaStream_t stream) {
  int levels = static_cast<int>(h.bound_count) + 2;
  auto samples = thrust::make_transform_iterator(d_values, negate_for_le{});
  std::size_t hist_bytes = 0, reduce_bytes = 0;
  if (cudaError_t e = cub::DeviceHistogram::HistogramRange(
          nullptr, hist_bytes, samples, static_cast<int*>(nullptr), levels, h.d_levels, n, stream);
      e != cudaSuccess)
    return e;
  if (cudaError_t e = cub::DeviceReduce::TransformReduce(
          nullptr, reduce_bytes, d_values, static_cast<double*>(nullptr), n, ::cuda::std::plus<>{},
          nan_to_zero{}, 0.0, stream);
      e != cudaSuccess)
    return e;
  // [bins: levels-1 ints][sum: double][histogram temp][reduce temp], each 256-aligned.
  std::size_t bins_at = 0;
  std::size_t sum_at = bins_at + align_up(sizeof(int) * static_cast<std::size_t>(levels - 1));
  std::size_t hist_at = sum_at + align_up(sizeof(double));
  std::size_t reduce_at = hist_at + align_up(hist_bytes);
  std::size_t total = reduce_at + align_up(reduce_bytes);
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = total;
    return cudaSuccess;
  }
  if (temp_storage_bytes < total) return cudaErrorInvalidValue;
  if (h.d_cells == nullptr || n <= 0) return cudaSuccess;
  char* t = static_cast<char*>(d_temp_storage);
  int* bins = reinterpret_cast<int*>(t + bins_at);
  double* sum = reinterpret_cast<double*>(t + sum_at);
  if (cudaError_t e = cub::DeviceHistogram::HistogramRange(t + hist_at, hist_bytes, samples, bins,
                                                           levels, h.d_levels, n, stream);
      e != cudaSuccess)
    return e;
  if (cudaError_t e =
          cub::DeviceReduce::TransformReduce(t + reduce_at, reduce_bytes, d_values, sum, n,
                                             ::cuda::std::plus<>{}, nan_to_zero{}, 0.0, stream);
      e != cudaSuccess)
    return e;
  fold_histogram_kernel<<<1, 256, 0, stream>>>(h, bins, sum);
  return cudaPeekAtLastError();
}

namespace {
template <class In, class Acc, class Op>
cudaError_t set_gauge_reduced(void* d_temp_storage, std::size_t& temp_storage_bytes, d_gauge g,
                              const In* d_in, int n, Op op, double scale, cudaStream_t stream) {
  std::size_t reduce_bytes = 0;
  if (cudaError_t e = cub::DeviceReduce::TransformReduce(nullptr, reduce_bytes, d_in,
                                                         static_cast<Acc*>(nullptr), n,
                                                         ::cuda::std::plus<>{}, op, Acc{}, stream);
      e != cudaSuccess)
    return e;
  std::size_t total = align_up(sizeof(Acc)) + align_up(reduce_bytes);
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = total;
    return cudaSuccess;
  }
  if (temp_storage_bytes < total) return cudaErrorInvalidValue;
  if (g.d_cell == nullptr) return cudaSuccess;
  char* t = static_cast<char*>(d_temp_storage);
  Acc* acc = reinterpret_cast<Acc*>(t);
  if (cudaError_t e =
          cub::DeviceReduce::TransformReduce(t + align_up(sizeof(Acc)), reduce_bytes, d_in, acc, n,
                                             ::cuda::std::plus<>{}, op, Acc{}, stream);
      e != cudaSuccess)
    return e;
  set_gauge_kernel<<<1, 1, 0, stream>>>(g, acc, scale);
  return cudaPeekAtLastError();
}
}  // namespace

cudaError_t set_gauge_sum(void* d_temp_storage, std::size_t& temp_storage_bytes, d_gauge g,
                          const float* d_in, int n, double scale, cudaStream_t stream) {
  return set_gauge_reduced<float, double>(d_temp_storage, temp_storage_bytes, g, d_in, n, widen{},
                                          scale, stream);
}

cudaError_t set_gauge_count_at_least(void* d_temp_storage, std::size_t& temp_storage_bytes,
                                     d_gauge g, const std::int32_t* d_in, int n,
                                     std::int32_t threshold, double scale, cudaStream_t stream) {
  return set_gauge_reduced<std::int32_t, unsigned long long>(
      d_temp_storage, temp_storage_bytes, g, d_in, n, at_least{threshold}, scale, stream);
}

}  // namespace cuda
SHMETRICS_END_NAMESPACE
