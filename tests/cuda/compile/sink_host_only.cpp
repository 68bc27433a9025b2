// The host half of the device API (sink.hpp) is plain C++: an engine's .cpp files include
// it with g++ alone, without exceptions, warnings as errors.
#include <shmetrics/cuda/sink.hpp>

int sink_host_only_probe(shmetrics::registry& reg, shmetrics::counter c) {
  shmetrics::cuda::device_sink sink;
  if (shmetrics::cuda::device_sink::create(reg, shmetrics::cuda::publish_mode::flushed, nullptr,
                                           sink) != cudaSuccess)
    return 1;
  shmetrics::cuda::d_counter d;
  if (sink.bind(c, d) != cudaSuccess) return 1;
  return sink.flush(nullptr) == cudaSuccess ? 0 : 1;
}
