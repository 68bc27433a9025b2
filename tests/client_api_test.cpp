// What users of prometheus-cpp and prometheus_client expect of the writer API: histograms
// without buckets refused, set_to_current_time(), scoped timers, constant labels, callback
// gauges, removing series. Real segments in /dev/shm, read back by the real reader.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <time.h>
#include <type_traits>

#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/text_format.hpp>
#include "support.hpp"

using namespace shmetrics;
using namespace std::chrono_literals;

namespace {

double realtime_s() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

segment_snapshot snap_of(const registry& reg) {
  auto r = segment_reader::open(reg.path());
  REQUIRE(r);
  auto s = r->snapshot();
  REQUIRE(s);
  return std::move(*s);
}

const family_snapshot& family_of(const segment_snapshot& s, const std::string& name) {
  const family_snapshot* f = test::find_family(s, name);
  REQUIRE(f != nullptr);
  return *f;
}

std::string text_of(const segment_snapshot& s) {
  std::string out;
  encode_text(s.families, out);
  return out;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("a histogram without buckets is refused unless asked for", "[api][buckets]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  REQUIRE(reg);
  auto none = reg->add_histogram({.name = "lat_seconds", .help = "x"});
  REQUIRE(none.code() == errc::invalid_buckets);
  CHECK(contains(none.error().message(), "lat_seconds: no finite bucket bound"));
  // A lone +Inf is the same: it is implied anyway.
  CHECK(reg->add_histogram({.name = "lat_seconds", .help = "x", .buckets = {INFINITY}}).code() ==
        errc::invalid_buckets);
  CHECK(reg->add_histogram({.name = "both", .help = "x", .buckets = {1}, .inf_bucket_only = true})
            .code() == errc::invalid_buckets);
  CHECK(reg->usage().families == 0);

  auto inf = reg->add_histogram({.name = "lat_seconds", .help = "x", .inf_bucket_only = true});
  REQUIRE(inf);
  inf->with_labels({})->observe(3);
  auto s = snap_of(*reg);
  const family_snapshot& f = family_of(s, "lat_seconds");
  CHECK(f.bounds.empty());
  REQUIRE(f.series.size() == 1);
  CHECK(f.series[0].count() == 1);
  CHECK(f.series[0].sum == 3);
}

TEST_CASE("set_to_current_time() sets a gauge to the unix time in seconds", "[api][time]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  REQUIRE(reg);
  gauge g = reg->add_gauge({.name = "last_success_seconds", .help = "x"})->with_labels({}).value();
  const double before = realtime_s();
  g.set_to_current_time();
  const double after = realtime_s();
  CHECK(g.value() >= before);
  CHECK(g.value() <= after);
  CHECK(family_of(snap_of(*reg), "last_success_seconds").series[0].value == g.value());
}

TEST_CASE("scoped timers record the seconds a scope took", "[api][timer]") {
  static_assert(std::is_nothrow_move_constructible_v<scoped_timer<histogram>>);
  static_assert(std::is_nothrow_move_assignable_v<scoped_timer<histogram>>);
  static_assert(!std::is_copy_constructible_v<scoped_timer<histogram>>);
  static_assert(std::is_nothrow_destructible_v<scoped_timer<gauge>>);
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  REQUIRE(reg);
  histogram h = reg->add_histogram({.name = "step_seconds", .help = "x", .buckets = {0.001, 10}})
                    ->with_labels({})
                    .value();
  gauge g = reg->add_gauge({.name = "last_step_seconds", .help = "x"})->with_labels({}).value();
  {
    auto t = h.time();
    auto tg = g.time();
    std::this_thread::sleep_for(20ms);
  }
  auto count_sum = [&] {
    const segment_snapshot snap = snap_of(*reg);
    const series_snapshot& s = family_of(snap, "step_seconds").series[0];
    return std::pair{s.count(), s.sum};
  };
  auto [n, sum] = count_sum();
  CHECK(n == 1);
  CHECK(sum >= 0.02);
  CHECK(sum < 10);
  CHECK(g.value() >= 0.02);
  CHECK(g.value() < 10);
  {
    auto t = h.time();
    t.cancel();  // a failed request, say: nothing recorded
    CHECK(!t.armed());
  }
  CHECK(count_sum().first == 1);
  {
    auto t = h.time();
    const double s = t.observe_now();
    CHECK(s >= 0);
    CHECK(t.observe_now() == 0);  // once
    auto moved = std::move(t);    // nothing armed to move
    CHECK(!moved.armed());
  }
  CHECK(count_sum().first == 2);
  {
    auto a = h.time();
    auto b = std::move(a);  // only b records
    CHECK(!a.armed());
    auto c = h.time();
    c = std::move(b);  // c records its own time now, then b's at scope end
  }
  CHECK(count_sum().first == 4);
  {
    scoped_timer<histogram> inert;  // default: records nothing
    histogram none;                 // an inert handle: records nowhere
    auto t = none.time();
  }
  CHECK(count_sum().first == 4);
}

TEST_CASE("constant labels are on every series of their family", "[api][const_labels]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  REQUIRE(reg);
  auto c = reg->add_counter({.name = "req_total",
                             .help = "x",
                             .labels = {"model_name"},
                             .const_labels = {{"engine", "0"}, {"zone", "eu"}}});
  REQUIRE(c);
  c->with_labels({"m"})->add(2);
  c->with_labels({"n"})->inc();
  // with_labels() takes the variable labels only.
  CHECK(c->with_labels({"m", "0"}).code() == errc::label_count_mismatch);
  auto h = reg->add_histogram(
      {.name = "lat", .help = "x", .buckets = {1}, .const_labels = {{"engine", "0"}}});
  h->with_labels({})->observe(0.5);
  auto s = snap_of(*reg);
  const family_snapshot& f = family_of(s, "req");
  CHECK(f.label_names == std::vector<std::string>{"model_name", "engine", "zone"});
  REQUIRE(f.series.size() == 2);
  CHECK(f.series[0].label_values == std::vector<std::string>{"m", "0", "eu"});
  const std::string text = text_of(s);
  INFO(text);
  CHECK(contains(text, "req_total{engine=\"0\",model_name=\"m\",zone=\"eu\"} 2.0\n"));
  CHECK(contains(text, "req_total{engine=\"0\",model_name=\"n\",zone=\"eu\"} 1.0\n"));
  CHECK(contains(text, "lat_bucket{engine=\"0\",le=\"1.0\"} 1.0\n"));

  // The same definition again is the same family; other constant values are a conflict.
  CHECK(reg->add_counter({.name = "req_total",
                          .help = "x",
                          .labels = {"model_name"},
                          .const_labels = {{"engine", "0"}, {"zone", "eu"}}}));
  CHECK(reg->add_counter({.name = "req_total",
                          .help = "x",
                          .labels = {"model_name"},
                          .const_labels = {{"engine", "1"}, {"zone", "eu"}}})
            .code() == errc::family_conflict);

  auto refused = [&](result<counter_family> r, errc code, const std::string& text) {
    REQUIRE(r.code() == code);
    INFO(r.error().message());
    CHECK(contains(r.error().message(), text));
  };
  refused(reg->add_counter({.name = "a", .help = "", .const_labels = {{"0bad", "v"}}}),
          errc::invalid_label_name, "a constant label '0bad'");
  refused(reg->add_counter({.name = "a", .help = "", .const_labels = {{"__x", "v"}}}),
          errc::reserved_label_name, "a constant label '__x'");
  refused(reg->add_counter(
              {.name = "a", .help = "", .labels = {"engine"}, .const_labels = {{"engine", "0"}}}),
          errc::duplicate_label_name, "a constant label 'engine' (also a variable label)");
  refused(reg->add_counter({.name = "a", .help = "", .const_labels = {{"x", "1"}, {"x", "2"}}}),
          errc::duplicate_label_name, "a constant label 'x'");
  refused(reg->add_counter({.name = "a", .help = "", .const_labels = {{"x", "\xff"}}}),
          errc::invalid_utf8, "a constant label 'x' value");
  CHECK(
      reg->add_histogram({.name = "h2", .help = "", .buckets = {1}, .const_labels = {{"le", "1"}}})
          .code() == errc::reserved_label_name);
}

TEST_CASE("callback gauges are sampled by a thread of the registry", "[api][callback]") {
  test::unique_prefix up;
  auto opt = up.options();
  opt.callback_interval = 10ms;
  auto reg = registry::create(opt);
  REQUIRE(reg);
  auto fam = reg->add_gauge({.name = "queue_depth", .help = "x", .labels = {"q"}});
  REQUIRE(fam);
  std::atomic<double> depth{3};
  std::atomic<int> calls{0};
  auto cb = fam->with_callback({"a"}, [&] {
    calls.fetch_add(1);
    return depth.load();
  });
  REQUIRE(cb);
  gauge g = fam->with_labels({"a"}).value();
  CHECK(g.value() == 3);  // called once at registration
  depth = 7;
  auto until = [](auto pred) {
    for (int i = 0; i < 400 && !pred(); ++i)
      std::this_thread::sleep_for(5ms);
    return pred();
  };
  CHECK(until([&] { return g.value() == 7; }));
  CHECK(family_of(snap_of(*reg), "queue_depth").series[0].value == 7);

  SECTION("a throwing callback keeps its previous value, is counted, and the others run") {
    std::atomic<bool> fail{false};
    auto bad = fam->with_callback({"b"}, [&]() -> double {
      if (fail) throw std::runtime_error("no reading");
      return 1;
    });
    REQUIRE(bad);
    gauge gb = fam->with_labels({"b"}).value();
    CHECK(gb.value() == 1);
    fail = true;
    CHECK(until([&] { return bad->failures() >= 2; }));
    CHECK(gb.value() == 1);
    CHECK(reg->usage().callback_failures >= 2);
    depth = 9;
    CHECK(until([&] { return g.value() == 9; }));
  }
  SECTION("no call after the handle is reset") {
    cb->reset();
    const int seen = calls.load();
    std::this_thread::sleep_for(60ms);
    CHECK(calls.load() == seen);
    CHECK(!*cb);
  }
  SECTION("a callback may drop itself") {
    std::mutex self_mu;  // `self` is assigned here and reset on the sampling thread
    callback_gauge self;
    std::atomic<int> self_calls{0};
    auto r = fam->with_callback({"c"}, [&] {
      if (self_calls.fetch_add(1) >= 1) {  // not the call at registration
        std::lock_guard lock(self_mu);
        self.reset();
      }
      return 1.0;
    });
    REQUIRE(r);
    {
      std::lock_guard lock(self_mu);
      self = std::move(*r);
    }
    CHECK(until([&] {
      std::lock_guard lock(self_mu);
      return !self;
    }));
    const int seen = self_calls.load();
    std::this_thread::sleep_for(50ms);
    CHECK(self_calls.load() == seen);
  }
  SECTION("refused on other families, or without a function") {
    auto info = reg->add_info({.name = "build_info", .help = "x"});
    CHECK(info->with_callback({}, [] { return 1.0; }).code() == errc::wrong_family_type);
    CHECK(fam->with_callback({"d"}, nullptr).code() == errc::invalid_options);
    CHECK(fam->with_callback({}, [] { return 1.0; }).code() == errc::label_count_mismatch);
  }
}

TEST_CASE("callback gauges without a thread, and handles outliving the registry",
          "[api][callback]") {
  test::unique_prefix up;
  callback_gauge outlives;
  std::atomic<int> calls{0};
  {
    auto opt = up.options();
    opt.callback_interval = 0ms;  // no thread: sample_callbacks() only
    auto reg = registry::create(opt);
    REQUIRE(reg);
    auto fam = reg->add_gauge({.name = "v", .help = "x"});
    outlives = fam->with_callback({}, [&] { return static_cast<double>(++calls); }).value();
    CHECK(calls == 1);
    std::this_thread::sleep_for(30ms);
    CHECK(calls == 1);
    reg->sample_callbacks();
    CHECK(calls == 2);
    CHECK(family_of(snap_of(*reg), "v").series[0].value == 2);
  }
  // The registry is gone: the handle is still safe to keep and to destroy, and nothing is
  // called any more.
  CHECK(outlives);
  outlives.reset();
  CHECK(calls == 2);
}

TEST_CASE("removed series are no longer read; the same labels later start afresh",
          "[api][remove]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options());
  REQUIRE(reg);
  auto fam = reg->add_counter({.name = "req_total", .help = "x", .labels = {"k"}});
  counter a = fam->with_labels({"a"}).value();
  counter b = fam->with_labels({"b"}).value();
  a.add(5);
  b.add(2);
  auto reader = segment_reader::open(reg->path());
  REQUIRE(reader);
  segment_snapshot kept;  // reused across snapshot_into calls
  REQUIRE(reader->snapshot_into(kept));
  CHECK(family_of(kept, "req").series.size() == 2);

  CHECK(fam->remove({"a"}).value() == true);
  CHECK(fam->remove({"a"}).value() == false);  // no such series any more
  CHECK(fam->remove({"a", "x"}).code() == errc::label_count_mismatch);
  a.add(100);  // a handle to a removed series stays safe: nobody reads its cells
  auto s = snap_of(*reg);
  REQUIRE(family_of(s, "req").series.size() == 1);
  CHECK(family_of(s, "req").series[0].label_values == std::vector<std::string>{"b"});
  CHECK(s.info.series == 2);
  CHECK(s.info.series_removed == 1);
  CHECK(reg->usage().series_removed == 1);

  // Re-added: a new series (new record, new cells) from zero. Same count of live series as
  // before the removal: snapshot_into must still rebuild.
  counter a2 = fam->with_labels({"a"}).value();
  a2.inc();
  REQUIRE(reader->snapshot_into(kept).value() == true);
  const family_snapshot& f = family_of(kept, "req");
  REQUIRE(f.series.size() == 2);
  CHECK(f.series[0].label_values == std::vector<std::string>{"b"});
  CHECK(f.series[1].label_values == std::vector<std::string>{"a"});
  CHECK(f.series[1].value == 1);
  CHECK(reader->series_removed(0));
  CHECK(!reader->series_removed(1));
  CHECK(reader->removed_count() == 1);
  CHECK(reader->snapshot_into(kept).value() == false);  // nothing changed: values only

  // Every type; clear() removes all of a family's series.
  auto g = reg->add_gauge({.name = "g", .help = "x", .labels = {"k"}});
  g->with_labels({"x"})->set(1);
  auto h = reg->add_histogram({.name = "h", .help = "x", .labels = {"k"}, .buckets = {1}});
  h->with_labels({"x"})->observe(1);
  h->with_labels({"y"})->observe(1);
  CHECK(g->remove({"x"}).value());
  CHECK(h->clear().value() == 2);
  CHECK(h->clear().value() == 0);
  auto after = snap_of(*reg);  // a reader opened after the removals sees them too
  CHECK(family_of(after, "g").series.empty());
  CHECK(family_of(after, "h").series.empty());
  CHECK(after.info.series_removed == 4);
  CHECK(!contains(text_of(after), "h_bucket"));
}
