// /dev/shm full: creating a segment on a full tmpfs fails at registry::create with
// no_space naming the file, leaves nothing behind, and a registry created before the
// filesystem filled keeps counting and registering within the pages it reserved; past
// them registration fails with no_space (pages are reserved as registrations reach
// them, so a segment larger than the filesystem is created and holds what it uses).
//
// Needs a private mount namespace for a 256 KiB tmpfs (root or CAP_SYS_ADMIN); exits 77
// (skip) where mounting is not allowed.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/shmetrics.hpp>

#include "private_tmpfs.hpp"

namespace {

int checks(const std::string& dir) {
  shmetrics::registry_options o;
  o.dir = dir;
  o.prefix = "full";
  o.max_families = 8;
  o.max_series = 64;
  o.max_cells = 256;
  o.string_bytes = 4096;
  o.shards = 2;
  o.heartbeat_interval = std::chrono::milliseconds(0);
  auto before = shmetrics::registry::create(o);
  EXPECT(before);
  if (!before) return 1;
  auto c = before->add_counter({.name = "ops_total", .help = "Ops."})->with_labels({}).value();
  // A roomy registry: its pages are reserved as registrations reach them, so it holds
  // little of the filesystem until it grows.
  shmetrics::registry_options big = o;
  big.prefix = "big";
  big.max_series = 100000;
  big.max_cells = 1 << 20;
  big.string_bytes = 1 << 22;
  auto roomy = shmetrics::registry::create(big);
  EXPECT(roomy);
  if (!roomy) return 1;
  struct stat st;
  EXPECT(::stat(roomy->path().c_str(), &st) == 0);
  std::printf("roomy segment: %llu bytes, %lld reserved\n",
              static_cast<unsigned long long>(roomy->segment_bytes()),
              static_cast<long long>(st.st_blocks) * 512);
  EXPECT(static_cast<std::uint64_t>(st.st_blocks) * 512 < 16384);
  EXPECT(roomy->segment_bytes() > 8u << 20);  // larger than the whole filesystem
  auto wide = roomy->add_counter({.name = "wide", .help = "Grows.", .labels = {"k"}});
  EXPECT(wide);
  if (!wide) return 1;
  std::vector<shmetrics::counter> wide_handles{wide->with_labels({"first"}).value()};

  // Fill the filesystem.
  int fd = ::open((dir + "/filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  EXPECT(fd >= 0);
  char block[4096] = {};
  while (::write(fd, block, sizeof block) > 0) {
  }
  EXPECT(errno == ENOSPC);
  ::close(fd);

  auto after = shmetrics::registry::create(o);
  EXPECT(!after);
  EXPECT(after.code() == shmetrics::errc::no_space);
  std::string msg = after.error().message();
  std::printf("create on a full tmpfs: %s\n", msg.c_str());
  EXPECT(msg.find(dir + "/full.") == 0);  // names the file, in the directory at fault
  EXPECT(msg.find("no space") != std::string::npos);
  auto segs = shmetrics::list_segments(dir, "full");
  EXPECT(segs && segs->size() == 1);  // the failed one was removed

  // The roomy registry runs out of filesystem while registering: a clear no_space error
  // at registration, never SIGBUS on the hot path; what it registered keeps counting.
  shmetrics::errc stop = shmetrics::errc::ok;
  for (int i = 0; i < 100000 && stop == shmetrics::errc::ok; ++i) {
    auto h = wide->with_labels({std::to_string(i)});
    if (h)
      wide_handles.push_back(*h);
    else
      stop = h.code();
  }
  std::printf("roomy registry: %zu series, then %s\n", wide_handles.size(),
              std::string(shmetrics::to_string(stop)).c_str());
  EXPECT(stop == shmetrics::errc::no_space);
  EXPECT(wide_handles.size() > 100);
  for (auto& h : wide_handles)
    h.inc();
  auto wide_reader = shmetrics::segment_reader::open(roomy->path());
  EXPECT(wide_reader);
  if (wide_reader) {
    auto ws = wide_reader->snapshot();
    EXPECT(ws);
    double total = 0;
    if (ws)
      for (auto& f : ws->families)
        for (auto& sr : f.series)
          total += sr.value;
    EXPECT(total == static_cast<double>(wide_handles.size()));
  }

  // The earlier registry: hot path and registration unaffected.
  for (int i = 0; i < 1000000; ++i)
    c.inc();
  auto g =
      before->add_gauge({.name = "later", .help = "Registered on a full fs.", .labels = {"k"}});
  EXPECT(g);
  if (g) g->with_labels({"v"}).value().set(5);
  auto rd = shmetrics::segment_reader::open(before->path());
  EXPECT(rd);
  if (!rd) return 1;
  auto snap = rd->snapshot();
  EXPECT(snap);
  if (!snap) return 1;
  double ops = -1, later = -1;
  for (auto& f : snap->families) {
    if (f.name == "ops" && !f.series.empty()) ops = f.series[0].value;
    if (f.name == "later" && !f.series.empty()) later = f.series[0].value;
  }
  EXPECT(ops == 1000000);
  EXPECT(later == 5);
  return test::failures ? 1 : 0;
}

}  // namespace

int main() {
  return test::run_in_private_tmpfs("256k", checks);
}
