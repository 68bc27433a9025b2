// A second process that watches one counter of a segment while a kernel writes it.
//   watch_counter PATH FAMILY MIN_DISTINCT TIMEOUT_S
// Polls the segment read-only (the exporter's reader) every ~1 ms. Exits 0 once it has
// seen MIN_DISTINCT different values, each larger than the one before; 1 if the value
// ever went down or the segment could not be read; 2 on timeout. Prints
// "seen N first F last L" on stdout.
#include <chrono>   // timeout
#include <cstdio>   // report
#include <cstdlib>  // strtod
#include <string>   // family name
#include <thread>   // sleep_for

#include <shmetrics/reader/segment_reader.hpp>

int main(int argc, char** argv) {
  if (argc != 5) return 1;
  std::string path = argv[1], family = argv[2];
  long want = std::strtol(argv[3], nullptr, 10);
  double timeout_s = std::strtod(argv[4], nullptr);
  auto rd = shmetrics::segment_reader::open(path);
  if (!rd) {
    std::fprintf(stderr, "watch_counter: %s\n", rd.error().message().c_str());
    return 1;
  }
  auto start = std::chrono::steady_clock::now();
  long seen = 0;
  double first = -1, last = -1;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
         timeout_s) {
    auto snap = rd->snapshot();
    if (!snap) {
      std::fprintf(stderr, "watch_counter: %s\n", snap.error().message().c_str());
      return 1;
    }
    for (auto& f : snap->families) {
      if (f.name != family || f.series.empty()) continue;
      double v = f.series[0].value;
      if (v < last) {
        std::printf("went down from %.17g to %.17g\n", last, v);
        return 1;
      }
      if (v > last) {
        if (seen == 0) first = v;
        ++seen;
        last = v;
      }
    }
    if (seen >= want) {
      std::printf("seen %ld first %.17g last %.17g\n", seen, first, last);
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::printf("timeout: seen %ld first %.17g last %.17g\n", seen, first, last);
  return 2;
}
