// The reader: snapshots, and refusal of damaged segments with the right code.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <thread>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fstream>
#include <sys/mman.h>
#include <sys/stat.h>

#include <shmetrics/reader/collector.hpp>  // log_rate_limit
#include <shmetrics/reader/segment_reader.hpp>
#include "hostile_segment.hpp"
#include "support.hpp"

using namespace shmetrics;

namespace {

// Copies a live segment to `dst` and maps the copy writable, to damage it.
struct damaged_copy {
  std::string path;
  char* base = nullptr;
  std::size_t size = 0;
  damaged_copy(const std::string& src, const std::string& dst) : path(dst) {
    std::ifstream in(src, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(dst, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    int fd = ::open(dst.c_str(), O_RDWR);
    size = bytes.size();
    base = static_cast<char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    ::close(fd);
  }
  ~damaged_copy() {
    ::munmap(base, size);
    ::unlink(path.c_str());
  }
  layout::segment_header& header() { return *reinterpret_cast<layout::segment_header*>(base); }
  layout::family_record& family(std::uint32_t i) {
    return *reinterpret_cast<layout::family_record*>(base + header().families_offset + i * 64);
  }
  layout::series_record& series(std::uint32_t i) {
    return *reinterpret_cast<layout::series_record*>(base + header().series_offset + i * 32);
  }
  errc open_code() { return segment_reader::open(path).code(); }
  errc snapshot_code() {
    auto r = segment_reader::open(path);
    if (!r) return r.code();
    return r->snapshot().code();
  }
};

// A read-only page of a file that is gone: reading it is SIGBUS, as a segment's would be,
// but it belongs to no segment.
volatile char* page_of_vanished_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  (void)::ftruncate(fd, 4096);
  auto* p = static_cast<volatile char*>(::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0));
  ::unlink(path.c_str());
  (void)::ftruncate(fd, 0);
  return p;
}

}  // namespace

TEST_CASE("a snapshot holds every family and series with their values", "[reader]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto c = reg.add_counter({.name = "vllm:prompt_tokens_total",
                            .help = "Prompt tokens.",
                            .labels = {"model_name", "engine"}})
               .value();
  auto h = reg.add_histogram({.name = "vllm:e2e_request_latency_seconds",
                              .help = "E2E.",
                              .labels = {"model_name"},
                              .buckets = {0.1, 1.0, 10.0},
                              .unit = "seconds"})
               .value();
  c.with_labels({"m", "0"})->add(12);
  c.with_labels({"m", "1"})->add(3);
  auto hh = h.with_labels({"m"}).value();
  for (double v : {0.05, 0.5, 0.5, 5.0, 50.0})
    hh.observe(v);

  auto rd = segment_reader::open(reg.path());
  REQUIRE(rd);
  auto snap = rd->snapshot();
  REQUIRE(snap);
  REQUIRE(snap->info.families == 2);
  REQUIRE(snap->info.series == 3);
  REQUIRE(snap->info.writer_pid == static_cast<std::uint32_t>(getpid()));
  REQUIRE(snap->info.instance_id == reg.instance_id());
  REQUIRE(snap->info.version_major == 1);
  auto* cf = test::find_family(*snap, "vllm:prompt_tokens");
  REQUIRE(cf);
  REQUIRE(cf->type == metric_type::counter);
  REQUIRE(cf->help == "Prompt tokens.");
  REQUIRE(cf->label_names == std::vector<std::string>{"model_name", "engine"});
  REQUIRE(cf->series.size() == 2);
  REQUIRE(cf->series[0].label_values == std::vector<std::string>{"m", "0"});
  REQUIRE(cf->series[0].value == 12.0);
  REQUIRE(cf->series[1].value == 3.0);
  auto* hf = test::find_family(*snap, "vllm:e2e_request_latency_seconds");
  REQUIRE(hf->unit == "seconds");
  REQUIRE(hf->bounds == std::vector<double>{0.1, 1.0, 10.0});
  REQUIRE(hf->series[0].buckets == std::vector<std::uint64_t>{1, 3, 4, 5});
  REQUIRE(hf->series[0].count() == 5);
  REQUIRE(hf->series[0].sum == Approx(56.05));

  SECTION("refresh parses only what is new") {
    REQUIRE(rd->refresh().value() == false);
    c.with_labels({"m", "2"})->inc();
    REQUIRE(rd->refresh().value() == true);
    REQUIRE(rd->info().series == 4);
  }
}

TEST_CASE("damaged segments are refused with the right code", "[reader][corrupt]") {
  test::unique_prefix up;
  auto o = up.options();
  auto reg = registry::create(o).value();
  reg.add_counter({.name = "c", .help = "h", .labels = {"a"}})->with_labels({"x"})->inc();
  reg.add_histogram({.name = "h", .help = "h", .buckets = {1, 2}})->with_labels({})->observe(1);
  std::string copy = up.dir + "/" + up.prefix + "-copy";
  damaged_copy d(reg.path(), copy);
  REQUIRE(d.snapshot_code() == errc::ok);

  SECTION("truncated") {
    REQUIRE(::truncate(copy.c_str(), 100) == 0);
    REQUIRE(d.open_code() == errc::truncated);
    REQUIRE(::truncate(copy.c_str(), static_cast<off_t>(d.size - 4096)) == 0);
    auto r = segment_reader::open(copy);
    REQUIRE(r.code() == errc::truncated);
    REQUIRE(r.error().message().find(copy) == 0);
  }
  SECTION("empty: not ready yet") {
    REQUIRE(::truncate(copy.c_str(), 0) == 0);
    REQUIRE(d.open_code() == errc::not_ready);
  }
  SECTION("magic not yet published: not ready") {
    d.header().magic = 0;
    REQUIRE(d.open_code() == errc::not_ready);
  }
  SECTION("bad magic") {
    d.header().magic ^= 1;
    REQUIRE(d.open_code() == errc::bad_magic);
  }
  SECTION("unknown major version names both versions") {
    d.header().version_major = 2;
    d.header().version_minor = 7;
    auto r = segment_reader::open(copy);
    REQUIRE(r.code() == errc::unsupported_major);
    REQUIRE(r.error().message().find("segment format 2.7 not supported: this reader reads 1.x") !=
            std::string::npos);
  }
  SECTION("a newer minor version is read") {
    d.header().version_minor = 9;
    REQUIRE(d.snapshot_code() == errc::ok);
  }
  SECTION("regions out of range") {
    d.header().cells_offset = d.header().segment_size - 8;
    REQUIRE(d.open_code() == errc::corrupt_header);
  }
  SECTION("region offset overflow") {
    d.header().strings_offset = ~0ull - 4;
    REQUIRE(d.open_code() == errc::corrupt_header);
  }
  SECTION("shard count") {
    d.header().shard_count = 0;
    REQUIRE(d.open_code() == errc::corrupt_header);
  }
  SECTION("segment_size beyond the file") {
    d.header().segment_size = d.size * 2;
    REQUIRE(d.open_code() == errc::truncated);
  }
  SECTION("published count beyond capacity") {
    d.header().families_published = d.header().family_capacity + 1;
    REQUIRE(d.snapshot_code() == errc::corrupt_header);
  }
  SECTION("family name out of the arena") {
    d.family(0).name_off = static_cast<std::uint32_t>(d.header().strings_capacity - 1);
    d.family(0).name_len = 2;
    auto r = segment_reader::open(copy)->snapshot();
    REQUIRE(r.code() == errc::corrupt_record);
    REQUIRE(r.error().message().find("family 0 name") != std::string::npos);
  }
  SECTION("label list out of the arena") {
    d.family(0).labels_off = 0xFFFFFFF0u;
    REQUIRE(d.snapshot_code() == errc::corrupt_record);
  }
  SECTION("bad type") {
    d.family(1).type = 9;
    REQUIRE(d.snapshot_code() == errc::corrupt_record);
  }
  SECTION("bucket bounds not increasing") {
    auto& f = d.family(1);
    double* b = reinterpret_cast<double*>(d.base + d.header().strings_offset + f.buckets_off);
    b[1] = b[0];
    REQUIRE(d.snapshot_code() == errc::corrupt_record);
  }
  SECTION("series cells outside the shard") {
    d.series(0).cell_index = d.header().cells_per_shard;
    REQUIRE(d.snapshot_code() == errc::corrupt_record);
  }
  SECTION("series of an unpublished family") {
    d.series(0).family_index = 7;
    REQUIRE(d.snapshot_code() == errc::corrupt_record);
  }
  SECTION("label value not UTF-8") {
    layout::string_ref ref;
    auto& s = d.series(0);
    std::memcpy(&ref, d.base + d.header().strings_offset + s.labels_off, sizeof ref);
    d.base[d.header().strings_offset + ref.off] = '\xff';
    REQUIRE(d.snapshot_code() == errc::corrupt_record);
  }
}

TEST_CASE("a segment cannot make the reader allocate more than it holds",
          "[reader][corrupt][amplification]") {
  // Each shape makes an unbounded reader copy gigabytes (the issue's own shape, 64 GiB).
  // The reader runs in a child under a watchdog (killed past +512 MiB RSS or 60 s), so
  // an unbounded reader fails this test instead of exhausting the machine.
  test::unique_prefix up;
  const std::string good = test::real_segment_bytes(up.dir, up.prefix);
  const std::string path = up.dir + "/" + up.prefix + "-hostile";
  struct unlink_at_end {
    const std::string& p;
    ~unlink_at_end() { ::unlink(p.c_str()); }
  } cleanup{path};
  for (test::hostile h : test::all_hostile) {
    INFO("shape: " << test::hostile_name(h));
    test::write_file(path, test::hostile_bytes(good, h));
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const long parent_rss = test::proc_status_kb(::getpid(), "VmRSS");
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      const long before = test::proc_status_kb(::getpid(), "VmHWM");
      auto r = segment_reader::open(path);
      auto s = r ? r->snapshot() : result<segment_snapshot>(r.error());
      const long grew = test::proc_status_kb(::getpid(), "VmHWM") - before;
      std::string line = std::to_string(static_cast<int>(s.code())) + " " + std::to_string(grew) +
                         " " + (s ? std::string("no error") : s.error().message()) + "\n";
      (void)!::write(fds[1], line.data(), line.size());
      ::_exit(0);
    }
    ::close(fds[1]);
    auto w = test::watch(pid, parent_rss + (512 << 10), std::chrono::seconds(60));
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
      out.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    INFO("child: " << out << (w.killed ? "killed: " + w.why : std::string()) << " after "
                   << w.seconds << " s");
    CHECK(!w.killed);
    CHECK(w.status == 0);
    if (w.killed || w.status != 0) continue;  // the next shape still runs
    int code = -1;
    long grew_kb = -1;
    REQUIRE(std::sscanf(out.c_str(), "%d %ld", &code, &grew_kb) == 2);
    CHECK(code == static_cast<int>(errc::corrupt_record));
    CHECK(grew_kb < (64 << 10));  // peak RSS stays within 64 MiB of where it started
    CHECK(w.seconds < 20);
    // The message names the record and the limit it broke.
    const bool names_record =
        out.find(": family ") != std::string::npos || out.find(": series ") != std::string::npos;
    CHECK(names_record);
    if (h == test::hostile::label_refs_whole_arena)
      CHECK(out.find("overlaps its own list") != std::string::npos);
    else if (h == test::hostile::cells_shared)
      CHECK(out.find("more than the shard's 16384 cells") != std::string::npos);
    else
      CHECK(out.find("more than the arena's 1048576") != std::string::npos);
  }
}

TEST_CASE("a segment whose writer filled its arena is read whole", "[reader][amplification]") {
  // The arena budget (records may reference at most the arena's bytes in all) holds for
  // a real writer at its fullest: every string, list and bound array has its own bytes.
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto h = reg.add_histogram({.name = "lat",
                              .help = std::string(1000, 'h'),
                              .labels = {"v"},
                              .buckets = {1, 2, 3},
                              .unit = "seconds"})
               .value();
  auto c = reg.add_counter({.name = "c", .help = "", .labels = {"k", "v"}}).value();
  std::size_t n = 0;
  for (;; ++n) {
    auto s = c.with_labels({std::to_string(n), std::string(n % 300, 'x')});
    if (!s) {
      REQUIRE(s.code() == errc::strings_full);
      break;
    }
    if (n % 7 == 0) REQUIRE(h.with_labels({std::string(n % 50, 'y')}));
  }
  // Then the smallest series (a short key, an empty value) until not even one fits.
  while (c.with_labels({std::to_string(n++), ""})) {
  }
  auto rd = segment_reader::open(reg.path());
  REQUIRE(rd);
  auto snap = rd->snapshot();
  INFO((snap ? std::string() : snap.error().message()));
  REQUIRE(snap);
  REQUIRE(snap->info.string_bytes + 64 > snap->info.string_capacity);  // the arena is full
  REQUIRE(snap->families.size() == 2);
  REQUIRE(snap->info.series == rd->series_count());
}

TEST_CASE("the reader refuses what is not a segment file", "[reader]") {
  test::unique_prefix up;
  REQUIRE(segment_reader::open("/nonexistent/x").code() == errc::open_failed);
  REQUIRE(segment_reader::open("/dev/shm").code() == errc::not_a_regular_file);
  auto reg = registry::create(up.options()).value();
  std::string link = up.dir + "/" + up.prefix + "-link";
  REQUIRE(::symlink(reg.path().c_str(), link.c_str()) == 0);
  auto r = segment_reader::open(link);
  ::unlink(link.c_str());
  REQUIRE(r.code() == errc::open_failed);  // O_NOFOLLOW: ELOOP
  REQUIRE(r.error().sys_errno == ELOOP);
  std::string junk = up.dir + "/" + up.prefix + "-junk";
  std::ofstream(junk) << std::string(300, 'z');
  REQUIRE(segment_reader::open(junk).code() == errc::bad_magic);
  ::unlink(junk.c_str());
}

TEST_CASE("a segment that shrinks under the reader is reported, not read", "[reader][corrupt]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  reg.add_counter({.name = "c", .help = ""})->with_labels({})->inc();
  std::string copy = up.dir + "/" + up.prefix + "-shrink";
  damaged_copy d(reg.path(), copy);
  auto rd = segment_reader::open(copy).value();
  REQUIRE(rd.snapshot());
  REQUIRE(::truncate(copy.c_str(), 4096) == 0);
  REQUIRE(rd.snapshot().code() == errc::shrunk);
}

TEST_CASE("reads of a segment truncated under the mapping survive (no SIGBUS)",
          "[reader][corrupt]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto fam = reg.add_histogram({.name = "h", .help = "", .buckets = {1, 2, 4}}).value();
  fam.with_labels({})->observe(1.5);
  std::string copy = up.dir + "/" + up.prefix + "-trunc";
  damaged_copy d(reg.path(), copy);
  auto rd = segment_reader::open(copy).value();
  REQUIRE(rd.refresh());
  REQUIRE(rd.series_count() == 1);
  series_snapshot s;
  rd.read_series(0, s);
  REQUIRE(s.count() == 1);
  REQUIRE_FALSE(rd.damaged());
  // Shrink to nothing: every page of the mapping is now past the end of the file.
  REQUIRE(::truncate(copy.c_str(), 0) == 0);
  rd.read_series(0, s);  // would be SIGBUS; reads zeros instead
  REQUIRE(s.count() == 0);
  (void)rd.info();  // the header too
  REQUIRE(rd.damaged());
  REQUIRE(rd.refresh().code() == errc::shrunk);
  REQUIRE(rd.snapshot().code() == errc::shrunk);
  REQUIRE(rd.snapshot().error().message().find("shrank") != std::string::npos);
}

TEST_CASE("a file shrinking and growing while snapshots run never kills the reader",
          "[reader][corrupt]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto c = reg.add_counter({.name = "c", .help = "", .labels = {"i"}}).value();
  for (int i = 0; i < 200; ++i)
    c.with_labels({std::to_string(i)})->inc();
  std::string copy = up.dir + "/" + up.prefix + "-flap";
  damaged_copy d(reg.path(), copy);
  const auto full = static_cast<off_t>(d.size);
  std::atomic<bool> stop{false};
  std::thread flapper([&] {
    for (int k = 0; !stop.load(); ++k) {
      (void)::truncate(copy.c_str(), k % 2 ? 0 : full);
      std::this_thread::yield();
    }
  });
  int good = 0, failed = 0, reopened = 0;
  auto rd = segment_reader::open(copy);
  for (int round = 0; round < 3000; ++round) {
    if (!rd || rd->damaged()) {
      rd = segment_reader::open(copy);  // as the exporter would, next time
      ++reopened;
      continue;
    }
    auto snap = rd->snapshot();
    if (snap)
      ++good;
    else
      ++failed;  // shrunk, or zeros where records were: refused either way
  }
  stop = true;
  flapper.join();
  ::truncate(copy.c_str(), full);
  INFO("good " << good << " failed " << failed << " reopened " << reopened);
  REQUIRE(good + failed + reopened == 3000);
  REQUIRE(failed + reopened > 0);
}

TEST_CASE("a SIGBUS outside any segment still kills the process", "[reader][corrupt]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto rd = segment_reader::open(reg.path()).value();  // installs the handler
  pid_t pid = ::fork();
  if (pid == 0) {
    volatile char* p = page_of_vanished_file(up.dir + "/" + up.prefix + "-other");
    char x = p[0];  // not a segment: SIGBUS as always
    _exit(x == 0 ? 3 : 4);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  // Killed by SIGBUS (or, under a sanitizer, by the sanitizer's report of it).
  const bool survived = WIFEXITED(status) && (WEXITSTATUS(status) == 3 || WEXITSTATUS(status) == 4);
  REQUIRE_FALSE(survived);
}

namespace {
// A host program's own SIGBUS handler: it notes the fault and maps a zero page over it,
// so that the access completes.
std::atomic<int> host_faults{0};
void host_sigbus(int, siginfo_t* info, void*) {
  host_faults.fetch_add(1);
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  void* at = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(info->si_addr) & ~(page - 1));
  ::mmap(at, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
}
}  // namespace

TEST_CASE("a SIGBUS handler the host installs later is chained to; later segments stay guarded",
          "[reader][corrupt]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  reg.add_counter({.name = "c", .help = ""})->with_labels({})->inc();
  std::string copy = up.dir + "/" + up.prefix + "-host";
  damaged_copy d(reg.path(), copy);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Exit codes: 0 all good; 10+ which check failed.
    auto first = segment_reader::open(reg.path());  // installs ours
    if (!first) _exit(10);
    struct sigaction sa {};
    sa.sa_sigaction = host_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, nullptr);     // the host's, after ours
    auto rd = segment_reader::open(copy);  // a mapping made after it
    if (!rd || !rd->refresh()) _exit(11);
    series_snapshot s;
    (void)::truncate(copy.c_str(), 0);
    rd->read_series(0, s);
    if (!rd->damaged()) _exit(12);    // the host's handler took our fault
    if (host_faults != 0) _exit(13);  // ... and saw it
    // A fault in no segment goes on to the host's handler.
    volatile char* p = page_of_vanished_file(up.dir + "/" + up.prefix + "-other");
    char x = p[0];
    if (host_faults != 1 || x != 0) _exit(14);
    _exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

TEST_CASE("segment names are parsed strictly", "[discovery]") {
  segment_name n;
  REQUIRE(parse_segment_name("shmetrics.42.00000000000000ff", "shmetrics", n));
  REQUIRE(n.pid == 42);
  REQUIRE(n.instance == 255);
  REQUIRE(!parse_segment_name("shmetrics.42.00000000000000fF", "shmetrics", n));
  REQUIRE(!parse_segment_name("shmetrics.42.ff", "shmetrics", n));
  REQUIRE(!parse_segment_name("shmetricsx.42.00000000000000ff", "shmetrics", n));
  REQUIRE(!parse_segment_name("shmetrics..00000000000000ff", "shmetrics", n));
  REQUIRE(!parse_segment_name("shmetrics.0.00000000000000ff", "shmetrics", n));
  REQUIRE(!parse_segment_name("other.42.00000000000000ff", "shmetrics", n));

  test::unique_prefix up;
  auto a = registry::create(up.options()).value();
  auto b = registry::create(up.options()).value();
  auto list = list_segments(up.dir, up.prefix);
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  REQUIRE(list_segments("/nonexistent-dir", "x").code() == errc::open_failed);
}

TEST_CASE("snapshot_into reads values only until new records appear", "[reader]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto c = reg.add_counter({.name = "c", .help = "", .labels = {"k"}}).value();
  auto h = reg.add_histogram({.name = "h", .help = "", .buckets = {1, 2}}).value();
  auto a = c.with_labels({"a"}).value();
  auto hh = h.with_labels({}).value();
  a.add(2);
  hh.observe(1.5);
  auto rd = segment_reader::open(reg.path()).value();
  segment_snapshot snap;
  REQUIRE(rd.snapshot_into(snap).value() == true);  // first call: shape built
  const auto* labels_before = snap.families[0].series[0].label_values.data();
  a.add(3);
  hh.observe(0.5);
  REQUIRE(rd.snapshot_into(snap).value() == false);  // values only
  CHECK(snap.families[0].series[0].label_values.data() == labels_before);
  CHECK(snap.families[0].series[0].value == 5);
  CHECK(snap.families[1].series[0].buckets == std::vector<std::uint64_t>{1, 2, 2});
  c.with_labels({"b"}).value().add(7);  // a new series: the shape is rebuilt
  REQUIRE(rd.snapshot_into(snap).value() == true);
  auto fresh = rd.snapshot().value();
  REQUIRE(snap.families.size() == fresh.families.size());
  for (std::size_t f = 0; f < fresh.families.size(); ++f) {
    REQUIRE(snap.families[f].series.size() == fresh.families[f].series.size());
    for (std::size_t i = 0; i < fresh.families[f].series.size(); ++i) {
      CHECK(snap.families[f].series[i].label_values == fresh.families[f].series[i].label_values);
      CHECK(snap.families[f].series[i].value == fresh.families[f].series[i].value);
      CHECK(snap.families[f].series[i].buckets == fresh.families[f].series[i].buckets);
    }
  }
}

TEST_CASE("log_rate_limit lets one line a key through per interval and counts the rest",
          "[reader][log]") {
  using namespace std::chrono_literals;
  shmetrics::log_rate_limit limit;
  std::string extra = "path=\"a\"";
  REQUIRE(limit.admit("bad a", extra, 60s));
  CHECK(extra == "path=\"a\"");  // nothing held back yet
  for (int i = 0; i < 3; ++i) {
    std::string e = "path=\"a\"";
    CHECK_FALSE(limit.admit("bad a", e, 60s));
  }
  std::string other;
  CHECK(limit.admit("bad b", other, 60s));  // keys are apart
  CHECK(other.empty());
  // Once the interval has passed (0 s here) the next line says how many were held back.
  std::string later = "path=\"a\"";
  REQUIRE(limit.admit("bad a", later, 0s));
  CHECK(later == "path=\"a\" suppressed=3");
  std::string again;
  REQUIRE(limit.admit("bad a", again, 0s));
  CHECK(again.empty());  // the count starts over
}
