// libFuzzer target: the segment reader on a file of arbitrary bytes.
//
// Each input becomes the whole content of a file in /dev/shm (the reader opens paths,
// never fds, and refuses symlinks such as /proc/self/fd/N), which is opened, refreshed,
// snapshotted twice and encoded in both text formats. Whatever validation lets through
// must hold the invariants the exporter relies on; a violation traps.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <fcntl.h>
#include <unistd.h>

#include <shmetrics/detail/validate.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/text_format.hpp>

namespace {

std::string& file_path() {
  static std::string path = [] {
    const char* dir = std::getenv("SHMETRICS_FUZZ_DIR");
    std::string p =
        std::string(dir ? dir : "/dev/shm") + "/shmetrics-fuzz." + std::to_string(::getpid());
    std::atexit([] { ::unlink(file_path().c_str()); });
    return p;
  }();
  return path;
}

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_snapshot(const shmetrics::segment_snapshot& s) {
  using shmetrics::layout::metric_type;
  for (const auto& f : s.families) {
    check(shmetrics::detail::valid_metric_name(f.name));
    check(shmetrics::detail::valid_utf8(f.help) && shmetrics::detail::valid_utf8(f.unit));
    for (const auto& l : f.label_names)
      check(shmetrics::detail::valid_label_name(l));
    for (const auto& ser : f.series) {
      check(ser.label_values.size() == f.label_names.size());
      for (const auto& v : ser.label_values)
        check(shmetrics::detail::valid_utf8(v));
      // Bucket counts are not checked for monotony: forged cells may wrap the u64 sums,
      // which a real writer never reaches (2^64 observations).
      if (f.type == metric_type::histogram) check(ser.buckets.size() == f.bounds.size() + 1);
    }
  }
  check(s.info.families <= s.info.family_capacity && s.info.series <= s.info.series_capacity);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // One file, rewritten in place: cheaper than creating one per input.
  const std::string& path = file_path();
  static int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) std::abort();
  for (std::size_t done = 0; done < size;) {
    ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<std::size_t>(n);
  }

  auto r = shmetrics::segment_reader::open(path);
  if (!r) {
    check(!r.error().message().empty());
    return 0;
  }
  for (int pass = 0; pass < 2; ++pass) {
    auto s = r->snapshot();
    if (!s) {
      check(!s.error().message().empty());
      break;
    }
    check_snapshot(*s);
    std::string text, om;
    shmetrics::encode_text(s->families, text);
    shmetrics::encode_openmetrics(s->families, om);
  }
  (void)r->info();
  (void)r->writer_alive();
  return 0;
}
