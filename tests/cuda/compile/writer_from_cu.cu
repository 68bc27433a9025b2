// The writer header, the device API and the host sink API compile together from a .cu
// file, with -fno-exceptions for the host pass (fmt's cuda-test/, STYLE.md rule 14). Every
// template is instantiated in a kernel so its device code is compiled too.
#include <shmetrics/shmetrics.hpp>
#include <shmetrics/cuda/device.cuh>
#include <shmetrics/cuda/sink.hpp>

namespace sc = shmetrics::cuda;

__global__ void every_device_call(sc::d_counter c, sc::d_histogram h, sc::d_gauge g, double v) {
  __shared__ sc::block_counter<128>::TempStorage ct;
  __shared__ sc::block_histogram<128, 32>::TempStorage ht;
  sc::block_counter<128> bc(ct);
  sc::block_histogram<128, 32> bh(ht);
  bc.inc();
  bc.add(3);
  bh.observe(h, v);
  sc::thread_add(c, 1ull);
  sc::thread_add(c, v);
  sc::thread_observe(h, v);
  sc::thread_set(g, v);
  (void)sc::warp_sum(1ull);
  bc.publish(c, 2);
  bh.publish(h);
}

// Host code in the same file uses the writer as an engine would.
int writer_from_cu_probe() {
  auto reg = shmetrics::registry::create({});
  if (!reg) return 1;
  auto c = reg->add_counter({.name = "probe", .help = "probe"});
  if (!c) return 1;
  auto h = c->with_labels({});
  if (!h) return 1;
  h->inc();
  // The histogram's SIMD bucket search (SSE2/NEON intrinsics) in nvcc's host pass.
  auto hf = reg->add_histogram({.name = "probe_seconds", .help = "probe", .buckets = {0.1, 1}});
  if (!hf) return 1;
  auto hh = hf->with_labels({});
  if (!hh) return 1;
  hh->observe(0.5);
  sc::device_sink sink;
  return sc::device_sink::create(*reg, sc::publish_mode::direct, 0, sink) == cudaSuccess ? 0 : 1;
}
