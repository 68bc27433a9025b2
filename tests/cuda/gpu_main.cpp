// Catch2 runner for the GPU tests: exits 77 (meson's SKIP) when there is no CUDA device,
// as Catch2 v2 has no SKIP of its own.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>              // the skip reason
#include <cuda_runtime_api.h>  // cudaGetDeviceCount

int main(int argc, char** argv) {
  int devices = 0;
  cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "SKIP: no CUDA device (%s)\n",
                 e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 77;
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) == cudaSuccess)
    std::fprintf(stderr, "device 0: %s (sm_%d%d)\n", p.name, p.major, p.minor);
  return Catch::Session().run(argc, argv);
}
