// The writer: registration rules, errors, capacity, file properties.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>

#include <shmetrics/detail/json_string.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include "support.hpp"

using namespace shmetrics;

// Running out of memory on demand, for this thread only: the replaceable allocation
// functions fail while `fail_allocations` is set (the throwing one with std::bad_alloc, the
// nothrow one with nullptr). Everything else allocates as usual, through malloc.
namespace {
thread_local bool fail_allocations = false;
}  // namespace
[[gnu::noinline]] void* operator new(std::size_t n) {
  void* p = fail_allocations ? nullptr : std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return fail_allocations ? nullptr : std::malloc(n ? n : 1);
}
// GCC sees the free() of a pointer from operator new once these are inlined; they are a
// matched pair here (both malloc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

TEST_CASE("every error code has a distinct message", "[errc]") {
  std::set<std::string_view> seen;
  for (int i = 0; i < static_cast<int>(errc::count_); ++i) {
    auto m = to_string(static_cast<errc>(i));
    REQUIRE(!m.empty());
    REQUIRE(seen.insert(m).second);
  }
  REQUIRE(to_string(static_cast<errc>(9999)) == "unknown error");
  error e{errc::no_space, ENOSPC, "/dev/shm/x"};
  REQUIRE(e.message().find("/dev/shm/x: no space") == 0);
  REQUIRE(e.message().find("No space left on device") != std::string::npos);
}

TEST_CASE("a registry creates one 0600 segment named prefix.pid.instance", "[registry][shm]") {
  test::unique_prefix up;
  auto o = up.options();
  auto reg = registry::create(o);
  REQUIRE(reg);
  struct stat st;
  REQUIRE(::lstat(reg->path().c_str(), &st) == 0);
  REQUIRE(S_ISREG(st.st_mode));
  REQUIRE((st.st_mode & 07777) == 0600);
  REQUIRE(static_cast<std::uint64_t>(st.st_size) == o.segment_bytes());
  REQUIRE(st.st_uid == ::geteuid());
  segment_name n;
  std::string file = reg->path().substr(reg->path().rfind('/') + 1);
  REQUIRE(parse_segment_name(file, up.prefix, n));
  REQUIRE(n.pid == static_cast<std::uint32_t>(getpid()));
  REQUIRE(n.instance == reg->instance_id());

  SECTION("the file is removed when the registry goes away") {
    std::string path = reg->path();
    *reg = registry{};
    REQUIRE(::access(path.c_str(), F_OK) != 0);
  }
}

TEST_CASE("segment files are created exclusively and never through a symlink", "[registry][shm]") {
  test::unique_prefix up;
  std::string path = up.dir + "/" + up.prefix + ".1.0000000000000001";
  std::string target = up.dir + "/" + up.prefix + "-target";
  REQUIRE(::symlink(target.c_str(), path.c_str()) == 0);
  auto r = detail::create_segment_file(path, 4096, 0600, true);
  REQUIRE(!r);
  REQUIRE(r.code() == errc::segment_exists);
  REQUIRE(::access(target.c_str(), F_OK) != 0);  // nothing was created at the target
  ::unlink(path.c_str());

  auto a = detail::create_segment_file(path, 4096, 0600, true);
  REQUIRE(a);
  auto b = detail::create_segment_file(path, 4096, 0600, true);
  REQUIRE(b.code() == errc::segment_exists);
  ::munmap(a->base, a->size);
  ::close(a->fd);
  ::unlink(path.c_str());
}

TEST_CASE("registry options are checked", "[registry]") {
  test::unique_prefix up;
  auto bad = [&](auto mutate) {
    auto o = up.options();
    mutate(o);
    auto r = registry::create(o);
    REQUIRE(r.code() == errc::invalid_options);
    REQUIRE(!r.error().detail.empty());
  };
  bad([](registry_options& o) { o.prefix = ""; });
  bad([](registry_options& o) { o.prefix = "a/b"; });
  bad([](registry_options& o) { o.prefix = ".hidden"; });
  bad([](registry_options& o) { o.shards = 0; });
  bad([](registry_options& o) { o.shards = 65; });
  bad([](registry_options& o) { o.max_series = 0; });
  bad([](registry_options& o) { o.dir = ""; });
  auto o = up.options();
  o.dir = "/nonexistent-dir-for-shmetrics";
  auto r = registry::create(o);
  REQUIRE(r.code() == errc::create_failed);
  REQUIRE(r.error().message().find("/nonexistent-dir-for-shmetrics/") == 0);
}

TEST_CASE("names, labels, UTF-8 and buckets are validated at registration", "[registry]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  REQUIRE(reg);
  REQUIRE(reg->add_counter({.name = "9bad", .help = ""}).code() == errc::invalid_metric_name);
  REQUIRE(reg->add_counter({.name = "bad-name", .help = ""}).code() == errc::invalid_metric_name);
  REQUIRE(reg->add_counter({.name = "", .help = ""}).code() == errc::invalid_metric_name);
  REQUIRE(reg->add_gauge({.name = "vllm:ok", .help = "x", .labels = {"a-b"}}).code() ==
          errc::invalid_label_name);
  REQUIRE(reg->add_gauge({.name = "g", .help = "x", .labels = {"__x"}}).code() ==
          errc::reserved_label_name);
  REQUIRE(reg->add_gauge({.name = "g", .help = "x", .labels = {"a", "a"}}).code() ==
          errc::duplicate_label_name);
  REQUIRE(reg->add_histogram({.name = "h", .help = "x", .labels = {"le"}}).code() ==
          errc::reserved_label_name);
  REQUIRE(reg->add_gauge({.name = "g", .help = "bad \xff utf8"}).code() == errc::invalid_utf8);
  REQUIRE(reg->add_histogram({.name = "h", .help = "x", .buckets = {1, 1}}).code() ==
          errc::invalid_buckets);
  REQUIRE(reg->add_histogram({.name = "h", .help = "x", .buckets = {2, 1}}).code() ==
          errc::invalid_buckets);
  REQUIRE(reg->add_histogram({.name = "h", .help = "x", .buckets = {1, NAN}}).code() ==
          errc::invalid_buckets);
  // a trailing +Inf is accepted and implied
  auto h = reg->add_histogram({.name = "h", .help = "x", .buckets = {1, 2, INFINITY}});
  REQUIRE(h);

  auto g = reg->add_gauge({.name = "g", .help = "x", .labels = {"a", "b"}});
  REQUIRE(g);
  REQUIRE(g->with_labels({"1"}).code() == errc::label_count_mismatch);
  REQUIRE(g->with_labels({"1", "2", "3"}).code() == errc::label_count_mismatch);
  REQUIRE(g->with_labels({"1", "\xc0\x80"}).code() == errc::invalid_utf8);  // overlong NUL
  REQUIRE(g->with_labels({"ünïcode ✓", ""}));
}

TEST_CASE("re-registering a family returns it; a different definition is refused", "[registry]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  auto a = reg->add_counter({.name = "req_total", .help = "R.", .labels = {"a"}});
  auto b = reg->add_counter({.name = "req", .help = "R.", .labels = {"a"}});  // same family
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(a->name() == "req");
  auto ca = a->with_labels({"x"}).value();
  auto cb = b->with_labels({"x"}).value();
  ca.inc();
  cb.inc();
  REQUIRE(reg->add_counter({.name = "req_total", .help = "Other.", .labels = {"a"}}).code() ==
          errc::family_conflict);
  REQUIRE(reg->add_counter({.name = "req_total", .help = "R.", .labels = {"b"}}).code() ==
          errc::family_conflict);
  REQUIRE(reg->add_gauge({.name = "req", .help = "R.", .labels = {"a"}}).code() ==
          errc::wrong_family_type);

  auto rd = segment_reader::open(reg->path());
  REQUIRE(rd);
  auto snap = rd->snapshot();
  REQUIRE(snap);
  REQUIRE(snap->families.size() == 1);
  REQUIRE(snap->families[0].series.size() == 1);
  REQUIRE(snap->families[0].series[0].value == 2.0);
}

TEST_CASE("a full segment is an error at registration, never on the hot path", "[registry][shm]") {
  test::unique_prefix up;
  auto o = up.options();
  o.max_families = 2;
  o.max_series = 3;
  o.max_cells = 6;
  o.string_bytes = 4096;
  auto reg = registry::create(o);
  REQUIRE(reg);
  auto c = reg->add_counter({.name = "c", .help = "", .labels = {"i"}}).value();
  auto h = reg->add_histogram({.name = "h", .help = "", .buckets = {1, 2, 3}}).value();  // 5 cells
  REQUIRE(reg->add_gauge({.name = "g", .help = ""}).code() == errc::families_full);
  auto c0 = c.with_labels({"0"}).value();
  auto c1 = c.with_labels({"1"}).value();
  REQUIRE(h.with_labels({}).code() == errc::cells_full);  // 2 + 5 > 6
  auto c2 = c.with_labels({"2"}).value();
  auto full = c.with_labels({"3"});
  REQUIRE(full.code() == errc::series_full);
  REQUIRE(full.error().detail == "c");
  counter sink = std::move(full).value_or({});  // an inert handle: writes go nowhere
  sink.inc();
  c0.inc();
  c2.add(5);
  (void)c1;
  REQUIRE(reg->usage().registrations_dropped == 3);

  auto rd = segment_reader::open(reg->path()).value();
  auto snap = rd.snapshot().value();
  REQUIRE(snap.info.registrations_dropped == 3);
  auto* f = test::find_family(snap, "c");
  REQUIRE(f->series.size() == 3);
  REQUIRE(f->series[0].value == 1.0);
  REQUIRE(f->series[2].value == 5.0);

  SECTION("the string arena runs out too") {
    test::unique_prefix up2;
    auto o2 = up2.options();
    o2.string_bytes = 64;
    auto r2 = registry::create(o2);
    REQUIRE(r2);
    REQUIRE(r2->add_gauge({.name = "a_name_that_is_long", .help = std::string(100, 'x')}).code() ==
            errc::strings_full);
    REQUIRE(r2->add_gauge({.name = "short", .help = "h"}));  // the failed one left no garbage
  }
}

TEST_CASE("counters ignore negative, NaN and infinite increments", "[counter]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  auto c = reg->add_counter({.name = "c", .help = ""})->with_labels({}).value();
  c.add(2.5);
  c.add(-1);
  c.add(NAN);
  c.add(INFINITY);  // would stay +Inf for good
  c.add(-INFINITY);
  c.add(std::numeric_limits<double>::max() * 0);  // 0: counted, changes nothing
  c.add(0.25);
  auto snap = segment_reader::open(reg->path())->snapshot().value();
  REQUIRE(snap.families[0].series[0].value == 2.75);
}

TEST_CASE("gauge add/sub ignore NaN and infinite amounts; set stores any value", "[gauge]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  auto g = reg->add_gauge({.name = "g", .help = ""})->with_labels({}).value();
  g.set(5);
  g.add(NAN);
  g.add(INFINITY);
  g.sub(INFINITY);
  g.add(-INFINITY);
  g.inc();
  REQUIRE(g.value() == 6);
  g.set(INFINITY);  // a set is replaced by the next one: stored as given
  REQUIRE(g.value() == INFINITY);
  g.set(NAN);
  REQUIRE(std::isnan(g.value()));
  g.set(2);
  g.dec();
  auto snap = segment_reader::open(reg->path())->snapshot().value();
  REQUIRE(test::find_family(snap, "g")->series[0].value == 1);
}

TEST_CASE("histograms drop NaN; +-Inf count as prometheus_client counts them", "[histogram]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  auto h =
      reg->add_histogram({.name = "h", .help = "", .buckets = {1, 2}})->with_labels({}).value();
  h.observe(0.5);
  h.observe(NAN);  // dropped: _sum stays a number
  auto rd = segment_reader::open(reg->path()).value();
  auto hs = test::find_family(rd.snapshot().value(), "h")->series[0];
  REQUIRE(hs.buckets == std::vector<std::uint64_t>{1, 1, 1});
  REQUIRE(hs.sum == 0.5);
  h.observe(INFINITY);  // the +Inf bucket; _sum +Inf (documented in histogram.hpp)
  hs = test::find_family(rd.snapshot().value(), "h")->series[0];
  REQUIRE(hs.buckets == std::vector<std::uint64_t>{1, 1, 2});
  REQUIRE(hs.sum == INFINITY);
  h.observe(-INFINITY);  // the first bucket; _sum NaN
  hs = test::find_family(rd.snapshot().value(), "h")->series[0];
  REQUIRE(hs.buckets == std::vector<std::uint64_t>{2, 2, 3});
  REQUIRE(std::isnan(hs.sum));
}

TEST_CASE("families whose exposed sample names collide are refused, naming both", "[registry]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  REQUIRE(reg);
  auto refused = [&](auto r, const std::string& detail) {
    INFO(detail);
    REQUIRE(r.code() == errc::sample_name_collision);
    CHECK(r.error().detail == detail);
    CHECK(r.error().message().find(detail + ": ") == 0);
  };
  // counter x (x_total) and gauge x_total, both orders
  REQUIRE(reg->add_counter({.name = "x", .help = ""}));
  refused(reg->add_gauge({.name = "x_total", .help = ""}),
          "gauge x_total and counter x both expose x_total");
  REQUIRE(reg->add_gauge({.name = "y_total", .help = ""}));
  refused(reg->add_counter({.name = "y", .help = ""}),
          "counter y and gauge y_total both expose y_total");
  refused(reg->add_counter({.name = "y_total", .help = ""}),  // stored as y
          "counter y_total and gauge y_total both expose y_total");
  // a counter named x_total is the family x, and exposes x_total (no collision with itself)
  REQUIRE(reg->add_counter({.name = "x_total", .help = ""}));
  // counter z_total (stored z_total via z_total_total) against counter z
  REQUIRE(reg->add_counter({.name = "z", .help = ""}));
  refused(reg->add_counter({.name = "z_total_total", .help = ""}),
          "counter z_total_total and counter z both expose z_total");
  // histogram h (h_bucket, h_count, h_sum) and gauges of those names, both orders
  REQUIRE(reg->add_histogram({.name = "h", .help = "", .buckets = {1}}));
  for (std::string suffix : {"_bucket", "_count", "_sum"})
    refused(reg->add_gauge({.name = "h" + suffix, .help = ""}),
            "gauge h" + suffix + " and histogram h both expose h" + suffix);
  REQUIRE(reg->add_gauge({.name = "k_count", .help = ""}));
  refused(reg->add_histogram({.name = "k", .help = "", .buckets = {1}}),
          "histogram k and gauge k_count both expose k_count");
  refused(reg->add_counter({.name = "h_sum", .help = ""}),
          "counter h_sum and histogram h both expose h_sum");
  // info build_info is the OpenMetrics family build
  REQUIRE(reg->add_info({.name = "build_info", .help = "", .labels = {"v"}}));
  refused(reg->add_gauge({.name = "build", .help = ""}),
          "gauge build and info build_info both expose build");
  REQUIRE(reg->add_gauge({.name = "cfg", .help = ""}));
  refused(reg->add_info({.name = "cfg_info", .help = "", .labels = {"v"}}),
          "info cfg_info and gauge cfg both expose cfg");
  // Unrelated names still register, and nothing refused was published.
  REQUIRE(reg->add_gauge({.name = "x_total2", .help = ""}));
  REQUIRE(reg->add_gauge({.name = "h_buckets", .help = ""}));
  auto snap = segment_reader::open(reg->path())->snapshot().value();
  std::vector<std::string> names;
  for (auto& f : snap.families)
    names.push_back(f.name);
  REQUIRE(names == std::vector<std::string>{"x", "y_total", "z", "h", "k_count", "build_info",
                                            "cfg", "x_total2", "h_buckets"});
}

TEST_CASE("value() of a failed result says what failed before the process ends",
          "[errc][registry]") {
  // README's pattern, `reg->add_counter(...)->with_labels(...)`, with a typo in the name:
  // the child's stderr names it and the reason; it exits non-zero. Built with and without
  // exceptions (an uncaught bad_result_access, or print and abort).
  test::unique_prefix up;
  for (std::string child : {WRITER_CHILD, WRITER_CHILD_NO_EXCEPTIONS}) {
    INFO(child);
    auto [rc, out] = test::run(child + " " + up.dir + " " + up.prefix + " bad_name 2>&1");
    CHECK(rc != 0);
    CHECK(out.find("ops-total") != std::string::npos);
    CHECK(out.find("invalid metric name") != std::string::npos);
  }
#if SHMETRICS_EXCEPTIONS
  auto reg = registry::create(up.options());
  try {
    (void)reg->add_gauge({.name = "9lives", .help = ""})->with_labels({});
    FAIL("no exception");
  } catch (const bad_result_access& e) {
    CHECK(e.error().code == errc::invalid_metric_name);
    CHECK(std::string(e.what()) ==
          "shmetrics: 9lives: " + std::string(to_string(errc::invalid_metric_name)));
  }
#endif
}

// Both "last words" cases write c 1 + 2 and observe 2 and 0.5 into h, some of it after the
// thread's lease list is gone: every write must be counted.
static void check_last_words(const segment_snapshot& snap) {
  REQUIRE(test::find_family(snap, "c")->series[0].value == 3);
  auto& hs = test::find_family(snap, "h")->series[0];
  REQUIRE(hs.buckets == std::vector<std::uint64_t>{1, 2});
  REQUIRE(hs.sum == 2.5);
}

TEST_CASE("a thread_local's destructor still counts after the thread's shard lease is gone",
          "[counter][histogram][shards]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  auto c = reg->add_counter({.name = "c", .help = ""})->with_labels({}).value();
  auto h = reg->add_histogram({.name = "h", .help = "", .buckets = {1}})->with_labels({}).value();
  struct last_words {
    counter c;
    histogram h;
    ~last_words() {
      c.inc();
      h.observe(0.5);
    }
  };
  std::thread t([&] {
    // Constructed before the thread's first write, so destroyed after its lease list.
    thread_local last_words w{c, h};
    c.add(2);
    h.observe(2);
  });
  t.join();
  auto snap = segment_reader::open(reg->path())->snapshot().value();
  check_last_words(snap);
}

TEST_CASE("a static destructor on the main thread still counts after exit()",
          "[counter][histogram][shards]") {
  test::unique_prefix up;
  auto o = up.options();
  o.unlink_on_close = false;                            // read after the child is gone
  o.heartbeat_interval = std::chrono::milliseconds(0);  // no thread: TSan forbids one here
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Outlives the handler below (made before it is registered); the main thread's
    // thread_locals, its shard lease list included, are destroyed before either.
    static registry reg = registry::create(o).value();
    static counter c = reg.add_counter({.name = "c", .help = ""})->with_labels({}).value();
    static histogram h =
        reg.add_histogram({.name = "h", .help = "", .buckets = {1}})->with_labels({}).value();
    c.inc();
    h.observe(2);
    std::atexit([] {
      c.add(2);
      h.observe(0.5);
    });
    std::exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  auto segs = list_segments(up.dir, up.prefix).value();
  REQUIRE(segs.size() == 1);
  auto snap = segment_reader::open(segs[0].path)->snapshot().value();
  check_last_words(snap);
}

TEST_CASE("with no memory for its shard lease, a thread counts in the shared shard",
          "[counter][shards]") {
  test::unique_prefix up;
  auto o = up.options();
  o.shards = 2;  // one private shard: whoever leases it is visible
  auto reg = registry::create(o);
  auto c = reg->add_counter({.name = "c", .help = ""})->with_labels({}).value();
  auto h = reg->add_histogram({.name = "h", .help = "", .buckets = {1}})->with_labels({}).value();
  unsigned long long first = 99, second = 99;
  std::thread a([&] {
    fail_allocations = true;  // the first write's lease cannot be recorded
    c.inc();
    h.observe(0.5);
    c.add(0.25);
    fail_allocations = false;
    first = detail::tls_shard_cache.offset;
  });
  a.join();
  std::thread b([&] {
    c.inc();
    second = detail::tls_shard_cache.offset;
  });
  b.join();
  CHECK(first == 0);   // the shared shard
  CHECK(second != 0);  // a gave the private shard back
  auto snap = segment_reader::open(reg->path())->snapshot().value();
  REQUIRE(test::find_family(snap, "c")->series[0].value == 2.25);
  REQUIRE(test::find_family(snap, "h")->series[0].count() == 1);
}

TEST_CASE("gauges set, add and stamp; info families read 1", "[gauge]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  auto g = reg->add_gauge({.name = "g", .help = "", .mode = gauge_mode::latest})
               ->with_labels({})
               .value();
  auto s = reg->add_gauge({.name = "s", .help = ""})->with_labels({}).value();
  auto i = reg->add_info({.name = "build_info", .help = "", .labels = {"version"}})
               ->with_labels({"1.2.3"})
               .value();
  g.set(7.5);
  s.inc();
  s.inc();
  s.dec();
  s.add(0.25);
  REQUIRE(g.value() == 7.5);
  auto snap = segment_reader::open(reg->path())->snapshot().value();
  REQUIRE(test::find_family(snap, "g")->series[0].value == 7.5);
  REQUIRE(test::find_family(snap, "g")->series[0].stamp_ns > 0);
  REQUIRE(test::find_family(snap, "g")->mode == gauge_mode::latest);
  REQUIRE(test::find_family(snap, "s")->series[0].value == 1.25);
  REQUIRE(test::find_family(snap, "s")->series[0].stamp_ns == 0);  // live_sum: no stamp
  REQUIRE(test::find_family(snap, "build_info")->series[0].value == 1.0);
  REQUIRE(test::find_family(snap, "build_info")->type == metric_type::info);
  (void)i;
}

TEST_CASE("the heartbeat advances and the state says closed after a clean exit",
          "[registry][shm]") {
  test::unique_prefix up;
  auto o = up.options();
  o.unlink_on_close = false;
  o.heartbeat_interval = std::chrono::milliseconds(5);
  std::string path;
  {
    auto reg = registry::create(o);
    REQUIRE(reg);
    path = reg->path();
    auto rd = segment_reader::open(path).value();
    auto i1 = rd.info();
    REQUIRE(i1.state == layout::segment_state::ready);
    REQUIRE(rd.writer_alive());
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    auto i2 = rd.info();
    REQUIRE(i2.heartbeat_count > i1.heartbeat_count);
    REQUIRE(i2.heartbeat_ns > i1.heartbeat_ns);
  }
  auto rd = segment_reader::open(path).value();
  REQUIRE(rd.info().state == layout::segment_state::closed);
  REQUIRE(!rd.writer_alive());
  ::unlink(path.c_str());
}

TEST_CASE("threads past the shard count share shard 0 with exact totals", "[counter][shards]") {
  test::unique_prefix up;
  auto o = up.options();
  o.shards = 2;  // shard 0 shared + one private shard
  auto reg = registry::create(o);
  auto c = reg->add_counter({.name = "c", .help = ""})->with_labels({}).value();
  auto h = reg->add_histogram({.name = "h", .help = "", .buckets = {1}})->with_labels({}).value();
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 50000; ++i) {
        c.inc();
        h.observe(i % 2 ? 0.5 : 2.0);
      }
    });
  for (auto& t : ts)
    t.join();
  auto snap = segment_reader::open(reg->path())->snapshot().value();
  REQUIRE(test::find_family(snap, "c")->series[0].value == 200000.0);
  auto& hs = test::find_family(snap, "h")->series[0];
  REQUIRE(hs.buckets == std::vector<std::uint64_t>{100000, 200000});
  REQUIRE(hs.sum == 100000 * 0.5 + 100000 * 2.0);
}

TEST_CASE("the branch-free bucket search agrees with std::lower_bound", "[histogram]") {
  for (const auto& c : test::bucket_search_cases()) {
    const auto n = static_cast<std::uint32_t>(c.bounds.size());
    for (double v : c.values) {
      auto want = static_cast<std::uint32_t>(std::lower_bound(c.bounds.begin(), c.bounds.end(), v) -
                                             c.bounds.begin());
      INFO("n=" << n << " v=" << v);
      REQUIRE(detail::bucket_index(c.bounds.data(), n, v) == want);
    }
  }
}

TEST_CASE("counters keep whole and fractional increments exactly", "[counter]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  auto c = reg->add_counter({.name = "c", .help = ""})->with_labels({}).value();
  c.add(3);                       // int
  c.add(std::uint64_t{1} << 40);  // large integer, exact
  c.add(0.5);                     // fraction
  c.add(2.0);                     // whole double takes the integer cell
  c.add(short{-4});               // negative: ignored
  c.inc();
  auto snap = segment_reader::open(reg->path())->snapshot().value();
  REQUIRE(snap.families[0].series[0].value ==
          static_cast<double>((std::uint64_t{1} << 40) + 6) + 0.5);
}

TEST_CASE("JSON strings: escapes, control characters, UTF-8 kept, invalid bytes replaced",
          "[json]") {
  using detail::json_string;
  REQUIRE(json_string("") == "\"\"");
  REQUIRE(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  REQUIRE(json_string("\n\r\t") == "\"\\n\\r\\t\"");
  REQUIRE(json_string(std::string_view("\x01\x1f\x7f", 3)) == "\"\\u0001\\u001f\\u007f\"");
  REQUIRE(json_string(std::string_view("a\0b", 3)) == "\"a\\u0000b\"");
  REQUIRE(json_string("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
          "\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");               // é € 😀 as they are
  REQUIRE(json_string("\xff") == "\"\\ufffd\"");                        // never valid
  REQUIRE(json_string("\xc3") == "\"\\ufffd\"");                        // cut short at the end
  REQUIRE(json_string("\xc3(") == "\"\\ufffd(\"");                      // bad continuation
  REQUIRE(json_string("\xc0\xaf") == "\"\\ufffd\\ufffd\"");             // overlong
  REQUIRE(json_string("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");  // surrogate
  std::string out = "x";
  detail::append_json_string(out, "y");
  REQUIRE(out == "x\"y\"");
}

namespace {

/// The value of an unlabelled family in a fresh snapshot of `path` (NaN when absent).
double family_value(const std::string& path, const std::string& name) {
  auto rd = segment_reader::open(path);
  REQUIRE(rd);
  auto snap = rd->snapshot();
  REQUIRE(snap);
  auto* f = test::find_family(*snap, name);
  return f && !f->series.empty() ? f->series[0].value : std::nan("");
}

/// Burns about `seconds` of this thread's CPU time.
void burn_cpu(double seconds) {
  timespec start{}, now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
  volatile double x = 1;
  do {
    for (int i = 0; i < 100000; ++i)
      x = x * 1.0000001 + 1e-9;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  } while (static_cast<double>(now.tv_sec - start.tv_sec) +
               static_cast<double>(now.tv_nsec - start.tv_nsec) * 1e-9 <
           seconds);
}

}  // namespace

TEST_CASE("process_metrics records this process as prometheus_client does", "[process]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  REQUIRE(reg);
  auto pm = process_metrics::create(*reg);
  REQUIRE(pm);
  const std::string path = reg->path();

  // The start time is this process's, from /proc (ticks since boot + btime), and past.
  auto st = detail::read_proc_stat();
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  double start = detail::read_boot_time_s() + static_cast<double>(st.start_ticks) / ticks;
  CHECK(family_value(path, "process_start_time_seconds") == Approx(start).margin(0.02));
  CHECK(family_value(path, "process_start_time_seconds") <=
        static_cast<double>(::time(nullptr)) + 1);
  rlimit rl{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
  CHECK(family_value(path, "process_max_fds") == static_cast<double>(rl.rlim_cur));
  CHECK(family_value(path, "process_resident_memory_bytes") > 1e6);
  CHECK(family_value(path, "process_virtual_memory_bytes") >=
        family_value(path, "process_resident_memory_bytes"));

  // Open fds follow the process: three more files, three more fds at the next sample.
  double fds = family_value(path, "process_open_fds");
  CHECK(fds >= 3);
  int opened[3];
  for (int& fd : opened)
    fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pm->sample();
  CHECK(family_value(path, "process_open_fds") == fds + 3);
  for (int fd : opened)
    ::close(fd);

  // CPU time is a counter that grows by what the process used.
  double cpu0 = family_value(path, "process_cpu_seconds");
  burn_cpu(0.2);
  pm->sample();
  double cpu1 = family_value(path, "process_cpu_seconds");
  CHECK(cpu1 - cpu0 >= 0.15);
  CHECK(cpu1 - cpu0 <= 1.0);
  auto fam = [&](const std::string& name) {
    auto rd = segment_reader::open(path);
    auto snap = rd->snapshot();
    return *test::find_family(*snap, name);
  };
  CHECK(fam("process_cpu_seconds").type == metric_type::counter);
  CHECK(fam("process_start_time_seconds").mode == gauge_mode::live_min);
  CHECK(fam("process_resident_memory_bytes").mode == gauge_mode::live_sum);

  // A background thread samples on its own.
  pm->sample_every(std::chrono::milliseconds(20));
  burn_cpu(0.1);
  double cpu2 = cpu1;
  for (int i = 0; i < 200 && cpu2 < cpu1 + 0.05; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    cpu2 = family_value(path, "process_cpu_seconds");
  }
  CHECK(cpu2 >= cpu1 + 0.05);
}

TEST_CASE("one process_metrics per process: a second would count the process twice", "[process]") {
  test::unique_prefix up;
  auto a = registry::create(up.options());
  auto b = registry::create(up.options());
  REQUIRE((a && b));
  {
    auto first = process_metrics::create(*a);
    REQUIRE(first);
    auto second = process_metrics::create(*b);
    REQUIRE(!second);
    CHECK(second.error().code == errc::duplicate_process_metrics);
    CHECK(second.error().message().find("process_metrics") == 0);
    process_metrics moved = std::move(*first);  // still the one
    CHECK(!process_metrics::create(*b));
  }
  // Gone with its owner: another registry may take over.
  auto again = process_metrics::create(*b);
  CHECK(again);

  // A child of fork() is another process: it records itself in a registry of its own.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto o = up.options();
    o.heartbeat_interval = std::chrono::milliseconds(0);  // no thread: TSan forbids one here
    auto mine = registry::create(o);
    if (!mine) ::_exit(3);
    auto child = process_metrics::create(*mine);
    if (!child) ::_exit(4);
    // No Catch2 assertions here: a failure would unwind into the parent's test run.
    auto rd = segment_reader::open(mine->path());
    if (!rd) ::_exit(5);
    auto snap = rd->snapshot();
    auto* f = snap ? test::find_family(*snap, "process_start_time_seconds") : nullptr;
    ::_exit(f && !f->series.empty() && f->series[0].value > 0 ? 0 : 6);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
