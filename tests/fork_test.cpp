// Fork safety of the writer: a child of fork() finds its inherited registries inert
// (registry.hpp, "Fork"). Real fork()s, real segments, checked with the reader.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

#include <shmetrics/reader/segment_reader.hpp>
#include "support.hpp"

using namespace shmetrics;

namespace {

// Runs `body` in a fork()ed child; returns its exit status (128+signal if killed). The
// child never returns into Catch: it _exits with body's result.
template <class F>
int in_child(F body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

double value_of(segment_reader& rd, const std::string& family) {
  auto snap = rd.snapshot().value();
  auto* f = test::find_family(snap, family);
  return f && !f->series.empty() ? f->series[0].value : -1;
}

}  // namespace

TEST_CASE("a forked child writes nothing into the parent's segment", "[fork]") {
  test::unique_prefix up;
  auto o = up.options();
  o.heartbeat_interval = std::chrono::milliseconds(5);  // a live heartbeat thread at fork()
  auto reg = registry::create(o).value();
  auto c = reg.add_counter({.name = "ops_total", .help = "Ops.", .labels = {"k"}})
               ->with_labels({"a"})
               .value();
  auto g = reg.add_gauge({.name = "level", .help = "Level."})->with_labels({}).value();
  auto h = reg.add_histogram({.name = "lat_seconds", .help = "Latency.", .buckets = {1, 2}})
               ->with_labels({})
               .value();
  // A parent thread owns a leased shard and keeps writing while the child runs: the
  // child's copy of that lease must not race with it (single-writer shards).
  std::atomic<bool> stop{false};
  std::atomic<long> parent_incs{0};
  std::thread writer([&] {
    while (!stop.load()) {
      c.inc();
      parent_incs.fetch_add(1);
    }
  });
  c.add(10);  // this thread leases a shard too; the child inherits the cached lease
  g.set(7);
  h.observe(1.5);

  int rc = in_child([&] {
    if (!reg.inherited_across_fork()) return 10;
    for (int i = 0; i < 100000; ++i)
      c.inc();  // inert: private memory
    g.set(-1);
    h.observe(0.5);
    h.observe(3);
    reg.heartbeat();
    if (reg.add_counter({.name = "child_total", .help = ""}).code() != errc::forked) return 11;
    auto fam = reg.add_counter({.name = "ops_total", .help = "Ops.", .labels = {"k"}});
    if (fam.code() != errc::forked) return 12;
    // The child's own registry works normally, under its own pid.
    // No heartbeat thread: TSan does not support starting threads after a multi-threaded
    // fork (the heartbeat itself is exercised by the parent).
    auto oo = o;
    oo.heartbeat_interval = std::chrono::milliseconds(0);
    auto own = registry::create(oo);
    if (!own || own->path() == reg.path() || own->inherited_across_fork()) return 13;
    auto oc = own->add_counter({.name = "child_total", .help = ""})->with_labels({});
    if (!oc) return 14;
    oc->add(3);
    auto rd = segment_reader::open(own->path());
    if (!rd || value_of(*rd, "child") != 3) return 15;
    if (rd->info().writer_pid != static_cast<std::uint32_t>(::getpid())) return 16;
    // Destroying the inherited registry must leave the parent's segment alone.
    { registry gone = std::move(reg); }
    return 0;
  });
  stop = true;
  writer.join();
  REQUIRE(rc == 0);

  REQUIRE(::access(reg.path().c_str(), F_OK) == 0);  // not unlinked by the child
  auto rd = segment_reader::open(reg.path()).value();
  auto snap = rd.snapshot().value();
  REQUIRE(snap.info.state == layout::segment_state::ready);  // not marked closed
  REQUIRE(rd.writer_alive());
  REQUIRE(test::find_family(snap, "child") == nullptr);
  REQUIRE(value_of(rd, "ops") == static_cast<double>(parent_incs.load() + 10));  // exact
  REQUIRE(value_of(rd, "level") == 7);
  auto* hf = test::find_family(snap, "lat_seconds");
  REQUIRE(hf->series[0].count() == 1);
  REQUIRE(hf->series[0].sum == 1.5);
  // The parent still registers and counts after the fork.
  auto more = reg.add_counter({.name = "after_total", .help = ""})->with_labels({}).value();
  more.inc();
  REQUIRE(value_of(rd, "after") == 1);
}

TEST_CASE("a forked child keeps no lock or heartbeat for the parent's segment", "[fork]") {
  test::unique_prefix up;
  auto o = up.options();
  o.heartbeat_interval = std::chrono::milliseconds(0);  // heartbeat() by hand: countable
  o.unlink_on_close = false;
  int to_test[2], release[2];
  REQUIRE(::pipe(to_test) == 0);
  REQUIRE(::pipe(release) == 0);
  // The writer runs in a process of its own (W), which forks a grandchild (G) holding the
  // inherited registry; then W is SIGKILLed. G must not keep W looking alive.
  pid_t w = ::fork();
  if (w == 0) {
    auto reg = registry::create(o);
    if (!reg) ::_exit(1);
    pid_t g = ::fork();
    if (g == 0) {
      for (int i = 0; i < 1000; ++i)
        reg->heartbeat();  // private: the parent's count must not move
      // Only now is G surely past its fork handler (G may not have run at all before W
      // is killed): say so, one atomic pipe write.
      (void)!::write(to_test[1], "ready\n", 6);
      ::close(release[1]);
      ::close(to_test[1]);
      char b;
      (void)!::read(release[0], &b, 1);  // until the test lets go (EOF)
      ::_exit(0);
    }
    std::string msg = reg->path() + "\n" + std::to_string(g) + "\n";
    (void)!::write(to_test[1], msg.data(), msg.size());
    for (;;)
      ::pause();
  }
  ::close(to_test[1]);
  ::close(release[0]);
  std::string got;
  char buf[512];
  while (std::count(got.begin(), got.end(), '\n') < 3) {
    ssize_t n = ::read(to_test[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(to_test[0]);
  // W's two lines and G's "ready", in either order.
  auto ready = got.find("ready\n");
  REQUIRE(ready != std::string::npos);
  got.erase(ready, 6);
  auto nl = got.find('\n');
  REQUIRE(nl != std::string::npos);
  std::string path = got.substr(0, nl);
  pid_t g = std::stoi(got.substr(nl + 1));
  auto rd = segment_reader::open(path).value();
  REQUIRE(rd.writer_alive());
  ::kill(w, SIGKILL);
  ::waitpid(w, nullptr, 0);
  REQUIRE(::kill(g, 0) == 0);  // G lives on
  REQUIRE_FALSE(rd.writer_alive());
  REQUIRE(rd.info().heartbeat_count == 0);
  ::close(release[1]);  // G exits (it is init's child now, not ours)
  ::unlink(path.c_str());
}

TEST_CASE("the segment fd is close-on-exec", "[fork]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto [rc, out] = test::run("ls -l /proc/self/fd/ 2>&1");
  REQUIRE(rc == 0);
  REQUIRE(out.find(" -> ") != std::string::npos);  // ls listed the links
  REQUIRE(out.find(reg.path()) == std::string::npos);
}

TEST_CASE("a fork() during another thread's registry::create leaves the child no lock", "[fork]") {
  // W creates registries on one thread while its main thread forks children (G) that
  // only wait. A G forked while a create was between opening the segment file and
  // finishing must not hold that segment's lifetime lock: once W is killed, every
  // segment it made reads as dead although the Gs live on.
  test::unique_prefix up;
  auto o = up.options();
  o.heartbeat_interval = std::chrono::milliseconds(0);
  o.unlink_on_close = false;
  o.max_cells = 1 << 16;  // a few MB to reserve: the create takes a while
  o.shards = 4;
  int to_test[2], ready[2], release[2];
  REQUIRE(::pipe(to_test) == 0);
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(release) == 0);
  constexpr int creates = 40;
  pid_t w = ::fork();
  if (w == 0) {
    ::close(to_test[0]);
    ::close(ready[0]);
    ::close(release[1]);
    std::atomic<bool> done{false};
    std::vector<registry> keep;  // alive until W dies: their segments stay "ready"
    std::thread creator([&] {
      for (int i = 0; i < creates; ++i) {
        auto r = registry::create(o);
        if (!r) ::_exit(1);
        keep.push_back(std::move(*r));
      }
      done = true;
    });
    int children = 0;
    while (!done.load() && children < 400) {
      pid_t g = ::fork();
      if (g == 0) {
        // Past the fork handlers: say so (the test waits for every G before it looks).
        (void)!::write(ready[1], "r", 1);
        char b;
        (void)!::read(release[0], &b, 1);  // until the test lets go (EOF)
        ::_exit(0);
      }
      if (g > 0) ++children;
    }
    creator.join();
    std::string msg = std::to_string(children) + "\n";
    (void)!::write(to_test[1], msg.data(), msg.size());
    for (;;)
      ::pause();
  }
  ::close(to_test[1]);
  ::close(ready[1]);
  ::close(release[0]);
  std::string got;
  char buf[512];
  while (got.find('\n') == std::string::npos) {
    ssize_t n = ::read(to_test[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(to_test[0]);
  ::kill(w, SIGKILL);
  ::waitpid(w, nullptr, 0);
  REQUIRE(!got.empty());
  const long children = std::stol(got);
  INFO("children forked during the creates: " << children);
  for (long seen = 0; seen < children;) {
    ssize_t n = ::read(ready[0], buf, sizeof buf);
    if (n <= 0) break;
    seen += n;
  }
  ::close(ready[0]);
  auto segs = list_segments(up.dir, up.prefix).value();
  REQUIRE(segs.size() == creates);
  int alive = 0;
  for (auto& s : segs) {
    auto rd = segment_reader::open(s.path).value();
    alive += rd.writer_alive() ? 1 : 0;
  }
  ::close(release[1]);  // the Gs exit (init's children now, not ours)
  REQUIRE(alive == 0);
}

TEST_CASE("a forked child destroys an inherited sampling process_metrics without waiting",
          "[fork][process]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto pm = process_metrics::create(reg).value();
  // The sampling thread waits on a condition variable most of the time: a fork() then
  // copies that variable with a waiter the child will never see leave.
  pm.sample_every(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  int rc = in_child([&] {
    ::alarm(5);  // a hang in the destructor ends as SIGALRM, not as a stuck test
    process_metrics gone = std::move(pm);
    gone = process_metrics{};  // release(): must neither join nor destroy the copies
    return 0;
  });
  CHECK(rc == 0);  // 128 + SIGALRM (142) when release() waited on the copied variable
  pm.sample();     // the parent's sampler is untouched
}
