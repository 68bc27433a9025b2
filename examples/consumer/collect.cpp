// What shmetrics-exporter serves, in-process, with the reader library's collector: every
// segment of a prefix in a directory merged, encoded in the format asked, gzipped if asked.
//
//   collect DIR PREFIX [--openmetrics] [--gzip]     the body on stdout
#include <cstdio>   // fwrite
#include <cstring>  // strcmp
#include <string>   // body

#include <shmetrics/reader/collector.hpp>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: collect DIR PREFIX [--openmetrics] [--gzip]\n");
    return 2;
  }
  bool om = false, gz = false;
  for (int i = 3; i < argc; ++i) {
    om = om || std::strcmp(argv[i], "--openmetrics") == 0;
    gz = gz || std::strcmp(argv[i], "--gzip") == 0;
  }
  shmetrics::collector_options opt;
  opt.dir = argv[1];
  opt.prefixes = {argv[2]};
  opt.gc_dead_after = std::chrono::milliseconds(0);  // only read: never remove a segment
  opt.log = [](shmetrics::log_level level, const std::string& msg, const std::string& extra) {
    if (level >= shmetrics::log_level::warn)
      std::fprintf(stderr, "collect: %s %s\n", msg.c_str(), extra.c_str());
  };
  shmetrics::collector coll(opt);
  auto c = coll.collect();
  if (c->segments.empty()) {
    std::fprintf(stderr, "collect: no segments\n");
    return 1;
  }
  std::string body;
  shmetrics::encode(
      *c, om ? shmetrics::exposition_format::openmetrics : shmetrics::exposition_format::text,
      body);
  if (gz) {
    std::string z;
    if (!shmetrics::gzip(body, z)) return 1;
    body.swap(z);
  }
  std::fwrite(body.data(), 1, body.size(), stdout);
  return 0;
}
