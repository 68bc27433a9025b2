// Cross-process: a writer in another process, a reader here.
#include <catch2/catch.hpp>

#include <thread>

#include <shmetrics/reader/segment_reader.hpp>
#include "support.hpp"

using namespace shmetrics;

#ifndef WRITER_CHILD
#error "WRITER_CHILD must name the helper binary"
#endif

TEST_CASE("N threads x M increments in another process read back exactly", "[multiprocess]") {
  test::unique_prefix up;
  test::child w({WRITER_CHILD, up.dir, up.prefix, "totals", "6", "100000"});
  std::string path = w.line();
  REQUIRE(!path.empty());
  REQUIRE(w.wait() == 0);
  auto rd = segment_reader::open(path);
  REQUIRE(rd);
  REQUIRE(!rd->writer_alive());
  auto snap = rd->snapshot().value();
  REQUIRE(snap.info.state == layout::segment_state::closed);
  auto* c = test::find_family(snap, "ops");
  REQUIRE(c);
  REQUIRE(c->series[0].label_values == std::vector<std::string>{"a"});
  REQUIRE(c->series[0].value == 600000.0);
  auto* h = test::find_family(snap, "lat_seconds");
  REQUIRE(h->series[0].buckets == std::vector<std::uint64_t>{150000, 300000, 450000, 600000});
  REQUIRE(h->series[0].sum == 150000.0 * (0 + 1 + 2 + 3));
}

TEST_CASE("a live writer is seen alive and moving; after SIGKILL, dead with values kept",
          "[multiprocess][liveness]") {
  test::unique_prefix up;
  test::child w({WRITER_CHILD, up.dir, up.prefix, "live"});
  std::string path = w.line();
  REQUIRE(!path.empty());
  auto rd = segment_reader::open(path).value();
  REQUIRE(rd.writer_alive());
  auto s1 = rd.snapshot().value();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto s2 = rd.snapshot().value();
  REQUIRE(s2.families[0].series[0].value > s1.families[0].series[0].value);
  REQUIRE(s2.info.heartbeat_count > s1.info.heartbeat_count);
  w.kill(SIGKILL);
  REQUIRE(w.wait() == 128 + SIGKILL);
  REQUIRE(!rd.writer_alive());
  auto s3 = rd.snapshot().value();
  REQUIRE(s3.info.state == layout::segment_state::ready);  // died without closing
  REQUIRE(s3.families[0].series[0].value >= s2.families[0].series[0].value);
  auto s4 = rd.snapshot().value();
  REQUIRE(s4.families[0].series[0].value == s3.families[0].series[0].value);
  REQUIRE(s4.families[1].series[0].count() == s4.families[1].series[0].buckets[0]);
}
