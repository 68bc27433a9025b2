// shmetrics-cuda-decode-step: a toy decode step on the GPU that records vLLM's metrics
// straight into the segment, next to metrics the host records (docs/cuda.md).
//
//   shmetrics-cuda-decode-step [--steps N] [--interval-ms MS] [--mode direct|flushed]
//                              [--prefix P]
//   shmetrics-exporter --shm.prefix cuda-decode-step      # serves both, side by side
//
// Each step, one thread per sequence "decodes" one token: a block_counter counts the
// tokens (vllm:generation_tokens_total, one system atomic per block), each sequence's
// inter-token latency goes to a device buffer that observe_batch bins with CUB
// (vllm:inter_token_latency_seconds), and a CUB reduction over the KV block table sets
// vllm:kv_cache_usage_perc. The host counts steps and sets vllm:num_requests_running.
// Exits 77 without a CUDA device.
#include <chrono>   // step interval
#include <cmath>    // NAN
#include <cstdio>   // output
#include <cstdlib>  // atoi
#include <cstring>  // strcmp
#include <string>   // options
#include <thread>   // sleep_for

#include <shmetrics/cuda/device.cuh>
#include <shmetrics/cuda/sink.hpp>
#include <shmetrics/shmetrics.hpp>

namespace sc = shmetrics::cuda;

namespace {

constexpr int threads = 256;
constexpr int max_seqs = 1024;    // sequences in the batch
constexpr int kv_blocks = 8192;   // KV-cache blocks in the pool
constexpr int block_tokens = 16;  // tokens per KV block

/// Sequence `seq` at `step` is running unless it is between requests (a toy schedule).
__host__ __device__ bool running(int seq, int step) {
  return (seq * 7 + step) % 13 != 0;
}

/// One decode step: a token per running sequence, its latency, and its KV blocks.
__global__ void decode_step(int step, sc::d_counter tokens, double* latency,
                            std::int32_t* block_table) {
  __shared__ sc::block_counter<threads>::TempStorage temp;
  sc::block_counter<threads> bc(temp);
  int seq = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  unsigned long long mine = 0;
  if (seq < max_seqs) {
    bool run = running(seq, step);
    mine = run ? 1 : 0;
    // Latency: ~20-60 ms with a slow tail, from a hash of (seq, step).
    unsigned h = static_cast<unsigned>(seq) * 2654435761u ^ static_cast<unsigned>(step) * 40503u;
    double ms = 20.0 + (h % 4000u) / 100.0 + ((h >> 20) % 64u == 0 ? 400.0 : 0.0);
    latency[seq] = run ? ms * 1e-3 : NAN;  // NaN: not observed (dropped)
    // This sequence's context: grows by a token per step; it owns ceil(len / 16) blocks.
    int len = 64 + (seq * 31 + step) % 2048;
    int owned = (len + block_tokens - 1) / block_tokens;
    int per_seq = kv_blocks / max_seqs;
    for (int b = 0; b < per_seq; ++b)
      block_table[seq * per_seq + b] = run && b < owned ? seq * per_seq + b : -1;
  }
  bc.publish(tokens, mine);  // one system atomic per block
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 200, interval_ms = 50;
  std::string prefix = "cuda-decode-step";
  sc::publish_mode mode = sc::publish_mode::direct;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--steps"))
      steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--interval-ms"))
      interval_ms = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--prefix"))
      prefix = argv[i + 1];
    else if (!std::strcmp(argv[i], "--mode"))
      mode = std::strcmp(argv[i + 1], "flushed") ? sc::publish_mode::direct
                                                 : sc::publish_mode::flushed;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "shmetrics-cuda-decode-step: no CUDA device\n");
    return 77;
  }

  shmetrics::registry_options opt;
  opt.prefix = prefix;
  auto reg = shmetrics::registry::create(opt);
  if (!reg) {
    std::fprintf(stderr, "%s\n", reg.error().message().c_str());
    return 1;
  }
  const std::vector<std::string_view> labels = {"model_name", "engine"};
  auto gen_tokens = *reg->add_counter({.name = "vllm:generation_tokens_total",
                                       .help = "Number of generation tokens processed.",
                                       .labels = labels})
                         ->with_labels({"toy-model", "0"});
  auto itl =
      *reg->add_histogram({.name = "vllm:inter_token_latency_seconds",
                           .help = "Histogram of inter-token latency in seconds.",
                           .labels = labels,
                           .buckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                                       0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}})
           ->with_labels({"toy-model", "0"});
  auto kv_usage = *reg->add_gauge({.name = "vllm:kv_cache_usage_perc",
                                   .help = "KV-cache usage. 1 means 100 percent usage.",
                                   .labels = labels})
                       ->with_labels({"toy-model", "0"});
  auto running_gauge = *reg->add_gauge({.name = "vllm:num_requests_running",
                                        .help = "Number of requests in model execution batches.",
                                        .labels = labels})
                            ->with_labels({"toy-model", "0"});
  auto host_steps = *reg->add_counter({.name = "shmetrics_example_steps_total",
                                       .help = "Decode steps the host launched."})
                         ->with_labels({});

  cudaStream_t s;
  auto check = [](cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
      std::exit(1);
    }
  };
  check(cudaStreamCreate(&s), "cudaStreamCreate");
  sc::device_sink sink;
  check(sc::device_sink::create(*reg, mode, s, sink), "device_sink::create");
  sc::d_counter d_tokens;
  sc::d_histogram d_itl;
  sc::d_gauge d_kv;
  check(sink.bind(gen_tokens, d_tokens), "bind tokens");
  check(sink.bind(itl, d_itl, s), "bind latency");
  check(sink.bind(kv_usage, d_kv), "bind kv usage");

  double* d_latency = nullptr;
  std::int32_t* d_table = nullptr;
  check(cudaMalloc(&d_latency, max_seqs * sizeof(double)), "cudaMalloc");
  check(cudaMalloc(&d_table, kv_blocks * sizeof(std::int32_t)), "cudaMalloc");
  std::size_t hist_bytes = 0, kv_bytes = 0;
  check(sc::observe_batch(nullptr, hist_bytes, d_itl, d_latency, max_seqs, s), "observe_batch");
  check(sc::set_gauge_count_at_least(nullptr, kv_bytes, d_kv, d_table, kv_blocks, 0, 1.0, s),
        "set_gauge_count_at_least");
  void* d_temp = nullptr;
  check(cudaMalloc(&d_temp, hist_bytes > kv_bytes ? hist_bytes : kv_bytes), "cudaMalloc");

  std::printf("segment %s (%s mode); %d steps every %d ms\n", reg->path().c_str(),
              mode == sc::publish_mode::direct ? "direct" : "flushed", steps, interval_ms);
  std::fflush(stdout);
  for (int step = 0; step < steps; ++step) {
    decode_step<<<(max_seqs + threads - 1) / threads, threads, 0, s>>>(step, d_tokens, d_latency,
                                                                       d_table);
    check(cudaPeekAtLastError(), "decode_step");
    check(sc::observe_batch(d_temp, hist_bytes, d_itl, d_latency, max_seqs, s), "observe_batch");
    check(sc::set_gauge_count_at_least(d_temp, kv_bytes, d_kv, d_table, kv_blocks, 0,
                                       1.0 / kv_blocks, s),
          "set_gauge_count_at_least");
    check(sink.flush(s), "flush");
    // Host-side metrics of the same step, beside the device's.
    int run = 0;
    for (int q = 0; q < max_seqs; ++q)
      run += running(q, step) ? 1 : 0;
    running_gauge.set(run);
    host_steps.inc();
    check(cudaStreamSynchronize(s), "step");  // the example paces steps; an engine need not
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  check(cudaFree(d_temp), "cudaFree");
  check(cudaFree(d_table), "cudaFree");
  check(cudaFree(d_latency), "cudaFree");
  check(cudaStreamDestroy(s), "cudaStreamDestroy");
  std::printf("done\n");
  return 0;
}
