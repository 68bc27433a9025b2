// shmetrics-cuda-bench: device-side recording, side by side in one run (docs/cuda.md).
//
//   shmetrics-cuda-bench [--quick]
//
// 1. One hot counter hit by every thread: naive atomicAdd_system per event into the
//    registered segment, against block_counter (warp-aggregated shared-memory tally, one
//    system atomic per block), a register tally + block publish, and per-event atomics
//    into a flushed sink's device-resident mirror. Goal: >= 10 G events/s (H100).
// 2. Flush latency for 64 KiB of cells (8192 counters' worth): device_sink::flush() against
//    a raw cudaMemcpyAsync of the same bytes. Goal: <= 10 us.
// 3. Overhead of recording inside a realistic (memory-bound, decode-step-like) kernel:
//    tokens counted and a per-row value binned, direct and flushed. Goal: <= 1 %.
// Every count is checked against the exact expected total. Prints a table, then one JSON
// line. Exits 77 when there is no CUDA device.
#include <algorithm>  // sort
#include <chrono>     // host-observed latency
#include <cstdio>     // output
#include <cstring>    // strcmp
#include <string>     // names
#include <vector>     // samples

#include <shmetrics/cuda/device.cuh>
#include <shmetrics/cuda/sink.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/shmetrics.hpp>

namespace sc = shmetrics::cuda;

namespace {

constexpr int threads = 256;

#define CHECK_CUDA(expr)                                                                          \
  do {                                                                                            \
    cudaError_t e_ = (expr);                                                                      \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

// ---- kernels -------------------------------------------------------------------------

__global__ void naive_kernel(sc::d_counter h, int events) {
  for (int i = 0; i < events; ++i)
    sc::thread_add(h, 1ull);
}

__global__ void block_inc_kernel(sc::d_counter h, int events) {
  __shared__ sc::block_counter<threads>::TempStorage temp;
  sc::block_counter<threads> bc(temp);
  for (int i = 0; i < events; ++i)
    bc.inc();
  bc.publish(h);
}

__global__ void register_tally_kernel(sc::d_counter h, int events, const int* d_flags) {
  __shared__ sc::block_counter<threads>::TempStorage temp;
  sc::block_counter<threads> bc(temp);
  unsigned long long mine = 0;
  int flag = d_flags[threadIdx.x];  // 1: the compiler cannot fold the loop away entirely
  for (int i = 0; i < events; ++i)
    mine += static_cast<unsigned long long>(flag);
  bc.publish(h, mine);
}

__global__ void touch_cells_kernel(std::uint64_t* cells, std::uint32_t n) {
  for (std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    cells[i] += 1;
}

// A decode-step-like kernel: one warp per sequence streams that sequence's slice of a
// large buffer (memory bound and coalesced, like attention over a KV cache), reduces it to
// one value, and, recording, counts the sequence's token and bins a per-sequence value.
template <bool Record>
__global__ void step_kernel(const float* data, int rows, int row_len, float* out,
                            sc::d_counter tokens, sc::d_histogram latency) {
  __shared__ sc::block_counter<threads>::TempStorage ct;
  __shared__ sc::block_histogram<threads>::TempStorage ht;
  sc::block_counter<threads> bc(ct);
  sc::block_histogram<threads> bh(ht);
  int lane = static_cast<int>(threadIdx.x & 31u);
  int warps = static_cast<int>(gridDim.x * (threads / 32));
  for (int r = static_cast<int>(blockIdx.x * (threads / 32) + threadIdx.x / 32); r < rows;
       r += warps) {
    const float4* row = reinterpret_cast<const float4*>(data + std::size_t(r) * row_len);
    float acc = 0.f;
    for (int j = lane; j < row_len / 4; j += 32) {
      float4 v = row[j];
      acc += v.x * v.y + v.z * v.w;
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2)
      acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) {
      out[r] = acc;
      if constexpr (Record) {
        bc.inc();
        bh.observe(latency, static_cast<double>(acc) * 1e-4);
      }
    }
  }
  if constexpr (Record) {
    bc.publish(tokens);
    bh.publish(latency);
  }
}

__global__ void fill_kernel(float* data, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x)
    data[i] = static_cast<float>((i * 2654435761u) % 1000u) * 1e-3f;
}

// ---- helpers -------------------------------------------------------------------------

struct timer {
  cudaEvent_t a, b;
  timer() {
    CHECK_CUDA(cudaEventCreate(&a));
    CHECK_CUDA(cudaEventCreate(&b));
  }
  ~timer() {
    (void)cudaEventDestroy(a);
    (void)cudaEventDestroy(b);
  }
  template <class F>
  double ms(cudaStream_t s, F&& f) {
    CHECK_CUDA(cudaEventRecord(a, s));
    f();
    CHECK_CUDA(cudaPeekAtLastError());
    CHECK_CUDA(cudaEventRecord(b, s));
    CHECK_CUDA(cudaEventSynchronize(b));
    float t = 0;
    CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
    return t;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// The value of family `name`'s series whose first label is `label` (or its only series).
double series_value(const std::string& path, const std::string& name, const std::string& label) {
  auto rd = shmetrics::segment_reader::open(path);
  if (!rd) return -1;
  auto snap = rd->snapshot();
  if (!snap) return -1;
  for (auto& f : snap->families)
    if (f.name == name)
      for (auto& ser : f.series)
        if (label.empty() || (!ser.label_values.empty() && ser.label_values[0] == label))
          return f.type == shmetrics::layout::metric_type::histogram
                     ? static_cast<double>(ser.count())
                     : ser.value;
  return -1;
}

bool all_ok = true;
void expect(const std::string& what, double got, double want) {
  if (got != want) {
    std::fprintf(stderr, "MISMATCH %s: got %.17g, want %.17g\n", what.c_str(), got, want);
    all_ok = false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "SKIP: no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  int native_atomics = 0;
  (void)cudaDeviceGetAttribute(&native_atomics, cudaDevAttrHostNativeAtomicSupported, 0);
  std::printf("device: %s (sm_%d%d, %d SMs), host native atomics: %d\n", prop.name, prop.major,
              prop.minor, prop.multiProcessorCount, native_atomics);

  shmetrics::registry_options opt;
  opt.prefix = "shmetrics-cuda-bench";
  opt.max_cells = 16384;
  opt.max_series = 8192;
  opt.shards = 8;
  auto reg = shmetrics::registry::create(opt);
  if (!reg) {
    std::fprintf(stderr, "%s\n", reg.error().message().c_str());
    return 1;
  }
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  sc::device_sink direct, flushed;
  CHECK_CUDA(sc::device_sink::create(*reg, sc::publish_mode::direct, s, direct));
  CHECK_CUDA(sc::device_sink::create(*reg, sc::publish_mode::flushed, s, flushed));
  timer t;
  const int reps = quick ? 3 : 7;

  // ---- 1. one hot counter ----
  auto hot_family = *reg->add_counter({.name = "bench_hot", .help = "hot", .labels = {"how"}});
  const int sms = prop.multiProcessorCount;
  struct hot_result {
    const char* name;
    double gps;
  };
  std::vector<hot_result> hot;
  int* d_flags = nullptr;
  CHECK_CUDA(cudaMalloc(&d_flags, threads * sizeof(int)));
  std::vector<int> ones(threads, 1);
  CHECK_CUDA(cudaMemcpy(d_flags, ones.data(), threads * sizeof(int), cudaMemcpyHostToDevice));
  auto run_hot = [&](const char* name, sc::device_sink& sink, int blocks, int events, auto launch) {
    auto c = *hot_family.with_labels({name});
    sc::d_counter d;
    CHECK_CUDA(sink.bind(c, d));
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r)
      ms.push_back(t.ms(s, [&] { launch(d, blocks, events); }));
    CHECK_CUDA(sink.flush(s));
    CHECK_CUDA(cudaStreamSynchronize(s));
    double per_rep = double(blocks) * threads * events;
    expect(name, series_value(reg->path(), "bench_hot", name), per_rep * reps);
    double gps = per_rep / (median(ms) * 1e-3) / 1e9;
    hot.push_back({name, gps});
    std::printf("  %-42s %9.3f G events/s  (%d x %d threads x %d events, %.3f ms)\n", name, gps,
                blocks, threads, events, median(ms));
  };
  std::printf("1. one hot counter, every thread:\n");
  run_hot("naive atomicAdd_system per event", direct, sms * 2, quick ? 1 : 4,
          [&](sc::d_counter d, int b, int e) { naive_kernel<<<b, threads, 0, s>>>(d, e); });
  run_hot("block_counter inc (direct)", direct, sms * 8, quick ? 256 : 4096,
          [&](sc::d_counter d, int b, int e) { block_inc_kernel<<<b, threads, 0, s>>>(d, e); });
  run_hot("register tally + block publish (direct)", direct, sms * 8, quick ? 256 : 4096,
          [&](sc::d_counter d, int b, int e) {
            register_tally_kernel<<<b, threads, 0, s>>>(d, e, d_flags);
          });
  run_hot("atomic per event into mirror (flushed)", flushed, sms * 8, quick ? 16 : 256,
          [&](sc::d_counter d, int b, int e) { naive_kernel<<<b, threads, 0, s>>>(d, e); });
  run_hot("block_counter inc (flushed)", flushed, sms * 8, quick ? 256 : 4096,
          [&](sc::d_counter d, int b, int e) { block_inc_kernel<<<b, threads, 0, s>>>(d, e); });
  CHECK_CUDA(cudaFree(d_flags));

  // ---- 2. flush latency, 64 KiB ----
  // 4096 counters = 8192 cells = 64 KiB of the flushed sink's shard, every one changed
  // before each flush (the worst case: the flush kernel skips unchanged cells).
  auto many = *reg->add_counter({.name = "bench_flush", .help = "flush", .labels = {"i"}});
  for (int i = 0; i < 4096; ++i)
    (void)*many.with_labels({std::to_string(i)});
  const std::uint32_t flush_cells = 8192;
  std::vector<double> flush_us, flush_host_us, memcpy_us;
  const int flush_reps = quick ? 20 : 200;
  for (int r = 0; r < flush_reps; ++r) {
    touch_cells_kernel<<<64, threads, 0, s>>>(flushed.device_mirror(), flush_cells);
    CHECK_CUDA(cudaStreamSynchronize(s));
    auto h0 = std::chrono::steady_clock::now();
    flush_us.push_back(1e3 * t.ms(s, [&] { CHECK_CUDA(flushed.flush(s)); }));
    flush_host_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - h0).count());
  }
  // The same bytes by DMA: the mirror's first 64 KiB onto the flushed shard (values equal
  // to what the flush just wrote, so the segment stays consistent).
  std::uint64_t* d_shard = flushed.device_shard();
  for (int r = 0; r < flush_reps; ++r)
    memcpy_us.push_back(1e3 * t.ms(s, [&] {
      CHECK_CUDA(
          cudaMemcpyAsync(d_shard, flushed.device_mirror(), flush_cells * 8, cudaMemcpyDefault, s));
    }));
  std::printf("2. flush of 64 KiB (8192 cells), median of %d:\n", flush_reps);
  std::printf(
      "  device_sink::flush (kernel)   %8.2f us GPU, %8.2f us host-observed (launch..sync)\n",
      median(flush_us), median(flush_host_us));
  std::printf("  cudaMemcpyAsync (DMA)         %8.2f us GPU\n", median(memcpy_us));

  // ---- 3. overhead inside a realistic kernel ----
  // 2^16 sequences x 64 KiB each = 4 GiB read per step (~1.5 ms on an H100): the scale
  // of a decode step, so that per-step costs (publishes, the flush) weigh what they would.
  const int rows = quick ? (1 << 12) : (1 << 16);
  const int row_len = 16384;
  float *d_data = nullptr, *d_out = nullptr;
  CHECK_CUDA(cudaMalloc(&d_data, std::size_t(rows) * row_len * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_out, std::size_t(rows) * sizeof(float)));
  fill_kernel<<<sms * 8, threads, 0, s>>>(d_data, std::size_t(rows) * row_len);
  CHECK_CUDA(cudaStreamSynchronize(s));
  auto tok_family =
      *reg->add_counter({.name = "bench_step_tokens", .help = "t", .labels = {"how"}});
  auto lat_family = *reg->add_histogram(
      {.name = "bench_step_latency_seconds",
       .help = "l",
       .labels = {"how"},
       .buckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                   1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}});
  struct step_handles {
    sc::d_counter tokens;
    sc::d_histogram latency;
  };
  auto bind_step = [&](sc::device_sink& sink, const char* how) {
    step_handles h;
    CHECK_CUDA(sink.bind(*tok_family.with_labels({how}), h.tokens));
    CHECK_CUDA(sink.bind(*lat_family.with_labels({how}), h.latency, s));
    return h;
  };
  step_handles hd = bind_step(direct, "direct"), hf = bind_step(flushed, "flushed");
  const int grid = sms * 8, step_reps = quick ? 5 : 31;
  std::vector<double> base, rec_direct, rec_flushed;
  for (int r = 0; r < step_reps; ++r) {  // interleaved, so clocks and caches drift alike
    base.push_back(t.ms(s, [&] {
      step_kernel<false><<<grid, threads, 0, s>>>(d_data, rows, row_len, d_out, sc::d_counter{},
                                                  sc::d_histogram{});
    }));
    rec_direct.push_back(t.ms(s, [&] {
      step_kernel<true>
          <<<grid, threads, 0, s>>>(d_data, rows, row_len, d_out, hd.tokens, hd.latency);
    }));
    rec_flushed.push_back(t.ms(s, [&] {
      step_kernel<true>
          <<<grid, threads, 0, s>>>(d_data, rows, row_len, d_out, hf.tokens, hf.latency);
      CHECK_CUDA(flushed.flush(s));
    }));
  }
  CHECK_CUDA(cudaStreamSynchronize(s));
  expect("step tokens direct", series_value(reg->path(), "bench_step_tokens", "direct"),
         double(rows) * step_reps);
  expect("step tokens flushed", series_value(reg->path(), "bench_step_tokens", "flushed"),
         double(rows) * step_reps);
  expect("step latency count direct",
         series_value(reg->path(), "bench_step_latency_seconds", "direct"),
         double(rows) * step_reps);
  double b = median(base), od = (median(rec_direct) / b - 1) * 100,
         of = (median(rec_flushed) / b - 1) * 100;
  std::printf("3. decode-step kernel (%d sequences x %d floats, %.0f MiB), median of %d:\n", rows,
              row_len, double(rows) * row_len * 4 / 1048576.0, step_reps);
  std::printf("  baseline                      %8.3f ms\n", b);
  std::printf("  + tokens & histogram, direct  %8.3f ms  (%+.2f %%)\n", median(rec_direct), od);
  std::printf("  + tokens & histogram, flushed %8.3f ms  (%+.2f %%, flush included)\n",
              median(rec_flushed), of);
  CHECK_CUDA(cudaFree(d_data));
  CHECK_CUDA(cudaFree(d_out));

  // ---- JSON ----
  std::printf(
      "{\"gpu\":\"%s\",\"sm\":%d%d,\"host_native_atomics\":%d,\"hot_counter_gevents_per_s\":{",
      prop.name, prop.major, prop.minor, native_atomics);
  for (std::size_t i = 0; i < hot.size(); ++i)
    std::printf("%s\"%s\":%.4f", i ? "," : "", hot[i].name, hot[i].gps);
  std::printf(
      "},\"flush_64k_us\":{\"kernel_gpu\":%.3f,\"kernel_host_observed\":%.3f,"
      "\"memcpy_gpu\":%.3f},",
      median(flush_us), median(flush_host_us), median(memcpy_us));
  std::printf(
      "\"step_kernel\":{\"baseline_ms\":%.4f,\"overhead_pct_direct\":%.3f,"
      "\"overhead_pct_flushed\":%.3f},\"totals_exact\":%s}\n",
      b, od, of, all_ok ? "true" : "false");
  return all_ok ? 0 : 1;
}
