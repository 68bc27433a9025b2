// A second process sees device-recorded values live, growing, while the kernel still runs:
// direct (system-scope atomics into the registered segment) and flushed (device-resident
// mirror, flushed on a second stream while the kernel runs on the first).
#include <atomic>      // flusher stop flag
#include <chrono>      // flush period
#include <cstdio>      // sscanf
#include <filesystem>  // the watcher beside this binary
#include <string>      // child output
#include <thread>      // flusher thread

#include <catch2/catch.hpp>

#include <shmetrics/cuda/sink.hpp>
#include <shmetrics/reader/segment_reader.hpp>

#include "../support.hpp"
#include "gpu_support.hpp"
#include "kernels.hpp"

namespace sc = shmetrics::cuda;

TEST_CASE("another process sees device counts grow while the kernel runs", "[cuda][live]") {
  auto mode = GENERATE(sc::publish_mode::direct, sc::publish_mode::flushed);
  INFO("mode " << (mode == sc::publish_mode::direct ? "direct" : "flushed"));
  test::unique_prefix prefix;
  auto reg = shmetrics::registry::create(prefix.options());
  REQUIRE(reg);
  auto c = *reg->add_counter({.name = "gpu_live", .help = "live"})->with_labels({});

  cudaStream_t work, side;
  CUDA_REQUIRE(cudaStreamCreateWithFlags(&work, cudaStreamNonBlocking));
  CUDA_REQUIRE(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  sc::device_sink sink;
  CUDA_REQUIRE(sc::device_sink::create(*reg, mode, side, sink));
  sc::d_counter d;
  CUDA_REQUIRE(sink.bind(c, d));
  CUDA_REQUIRE(cudaStreamSynchronize(side));  // the mirror is initialised before `work` runs

  // Host flags the kernel polls (mapped pinned memory).
  int* stop = nullptr;
  unsigned long long* rounds = nullptr;
  CUDA_REQUIRE(cudaHostAlloc(reinterpret_cast<void**>(&stop), sizeof(int), cudaHostAllocMapped));
  CUDA_REQUIRE(cudaHostAlloc(reinterpret_cast<void**>(&rounds), sizeof(unsigned long long),
                             cudaHostAllocMapped));
  *stop = 0;
  *rounds = 0;
  int* d_stop = nullptr;
  unsigned long long* d_rounds = nullptr;
  CUDA_REQUIRE(cudaHostGetDevicePointer(reinterpret_cast<void**>(&d_stop), stop, 0));
  CUDA_REQUIRE(cudaHostGetDevicePointer(reinterpret_cast<void**>(&d_rounds), rounds, 0));

  // Few blocks, so that the flush kernel finds free SMs beside the persistent kernel.
  const int blocks = 4;
  gpu_test::live(d, d_stop, d_rounds, blocks, 30.0, work);
  CUDA_REQUIRE(cudaPeekAtLastError());

  std::atomic<bool> flushing{mode == sc::publish_mode::flushed};
  std::atomic<int> flush_errors{0};
  std::thread flusher([&] {
    while (flushing.load()) {
      if (sink.flush(side) != cudaSuccess) ++flush_errors;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });

  // The watcher beside this binary (a build carried to a GPU machine may sit elsewhere
  // than where it was configured), else where meson built it.
  std::string watch =
      (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "watch_counter").string();
  if (!std::filesystem::exists(watch)) watch = WATCH_COUNTER;
  test::child watcher({watch, reg->path(), "gpu_live", "20", "20"});
  REQUIRE(watcher.pid > 0);
  std::string line = watcher.line();
  int status = watcher.wait();
  INFO("watcher: " << line);
  // The kernel was still running when the watcher had seen 20 growing values.
  bool still_running = cudaStreamQuery(work) == cudaErrorNotReady;
  volatile int* vstop = stop;
  *vstop = 1;
  flushing = false;
  flusher.join();
  CUDA_REQUIRE(cudaStreamSynchronize(work));
  CUDA_REQUIRE(sink.flush(side));
  CUDA_REQUIRE(cudaStreamSynchronize(side));
  CHECK(status == 0);
  CHECK(still_running);
  CHECK(flush_errors == 0);

  // The final total is at least what the watcher saw last, and a whole number of block
  // rounds (256 events each).
  double first = 0, last = 0;
  long seen = 0;
  REQUIRE(std::sscanf(line.c_str(), "seen %ld first %lf last %lf", &seen, &first, &last) == 3);
  auto rd = shmetrics::segment_reader::open(reg->path());
  REQUIRE(rd);
  auto snap = rd->snapshot();
  REQUIRE(snap);
  double final_value = test::find_family(*snap, "gpu_live")->series[0].value;
  CHECK(final_value >= last);
  CHECK(static_cast<unsigned long long>(final_value) % gpu_test::block_threads == 0);
  CHECK(*rounds > 0);
  CUDA_REQUIRE(cudaFreeHost(stop));
  CUDA_REQUIRE(cudaFreeHost(rounds));
  CUDA_REQUIRE(cudaStreamDestroy(work));
  CUDA_REQUIRE(cudaStreamDestroy(side));
}
