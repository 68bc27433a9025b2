// Reads back what `consumer` wrote, with the shmetrics reader library: every segment of
// a prefix in a directory, as Prometheus text.
//
//   reader DIR PREFIX
#include <cstdio>  // printf
#include <string>  // output

#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/text_format.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: reader DIR PREFIX\n");
    return 2;
  }
  auto segs = shmetrics::list_segments(argv[1], argv[2]);
  if (!segs || segs->empty()) {
    std::fprintf(stderr, "reader: no segments\n");
    return 1;
  }
  std::string out;
  for (auto& s : *segs) {
    auto r = shmetrics::segment_reader::open(s.path);
    if (!r) {
      std::fprintf(stderr, "reader: %s\n", r.error().message().c_str());
      return 1;
    }
    auto snap = r->snapshot();
    if (!snap) {
      std::fprintf(stderr, "reader: %s\n", snap.error().message().c_str());
      return 1;
    }
    shmetrics::encode_text(snap->families, out);
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}
