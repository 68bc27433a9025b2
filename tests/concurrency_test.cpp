// Concurrency: exact totals, registration racing snapshots, histogram invariants.
// Also built with ThreadSanitizer and AddressSanitizer+UBSan (meson test setups).
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <thread>

#include <shmetrics/reader/segment_reader.hpp>
#include "support.hpp"

using namespace shmetrics;

namespace {
// Catch2 v2 assertions are not thread-safe: reader threads record failures here and
// the test thread asserts that there were none.
struct thread_failures {
  std::atomic<int> count{0};
  std::mutex mu;
  std::string first;
  void fail(const char* expr, int line) {
    if (count++ == 0) {
      std::lock_guard lock(mu);
      first = std::string(expr) + " at line " + std::to_string(line);
    }
  }
};
#define T_CHECK(fails, expr)                    \
  do {                                          \
    if (!(expr)) (fails).fail(#expr, __LINE__); \
  } while (0)

#if defined(__SANITIZE_THREAD__)
constexpr long scale = 10;  // TSan is ~10x slower
#else
constexpr long scale = 1;
#endif
}  // namespace

TEST_CASE("N threads x M increments sum exactly, read while they run", "[concurrency][counter]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto c = reg.add_counter({.name = "c", .help = ""})->with_labels({}).value();
  const int threads = 4;
  const long iters = 200000 / scale;
  std::atomic<bool> done{false};
  thread_failures fails;
  std::thread reader([&] {
    auto rd = segment_reader::open(reg.path()).value();
    double last = 0;
    while (!done.load()) {
      auto snap = rd.snapshot().value();
      double v = snap.families[0].series[0].value;
      T_CHECK(fails, v >= last);  // never goes backwards
      last = v;
    }
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (long i = 0; i < iters; ++i)
        c.inc();
    });
  for (auto& t : ts)
    t.join();
  done = true;
  reader.join();
  INFO(fails.first);
  REQUIRE(fails.count.load() == 0);
  auto snap = segment_reader::open(reg.path())->snapshot().value();
  REQUIRE(snap.families[0].series[0].value == static_cast<double>(threads * iters));
}

TEST_CASE("families registered while a reader snapshots never appear half-written",
          "[concurrency][registry]") {
  test::unique_prefix up;
  auto o = up.options();
  o.max_families = 512;
  o.max_series = 2048;
  auto reg = registry::create(o).value();
  const int families = 300;
  std::atomic<bool> done{false};
  thread_failures fails;
  std::atomic<long> snapshots{0};
  std::thread reader([&] {
    auto rd = segment_reader::open(reg.path()).value();
    while (!done.load()) {
      auto snap = rd.snapshot();
      if (!snap) {
        fails.fail(snap.error().message().c_str(), __LINE__);
        break;
      }
      for (auto& f : snap->families) {
        // every visible record is complete: name, help, labels and buckets agree
        T_CHECK(fails, f.name.starts_with("fam_"));
        int i = std::stoi(f.name.substr(4));
        T_CHECK(fails, f.help == "help of family " + std::to_string(i));
        T_CHECK(fails, f.label_names.size() == static_cast<std::size_t>(i % 3));
        for (std::size_t k = 0; k < f.label_names.size(); ++k)
          T_CHECK(fails, f.label_names[k] == "l" + std::to_string(k));
        T_CHECK(fails, f.bounds.size() == static_cast<std::size_t>(i % 5));
        for (auto& s : f.series) {
          T_CHECK(fails, s.label_values.size() == f.label_names.size());
          for (auto& v : s.label_values)
            T_CHECK(fails, v == "v" + std::to_string(i));
        }
      }
      ++snapshots;
    }
  });
  while (snapshots.load() == 0 && fails.count.load() == 0)
    std::this_thread::yield();  // overlap
  for (int i = 0; i < families; ++i) {
    std::vector<std::string> names;
    std::vector<std::string_view> labels, values;
    for (int k = 0; k < i % 3; ++k)
      names.push_back("l" + std::to_string(k));
    for (auto& n : names)
      labels.push_back(n);
    std::string v = "v" + std::to_string(i);
    for (int k = 0; k < i % 3; ++k)
      values.push_back(v);
    std::string name = "fam_" + std::to_string(i);
    std::string help = "help of family " + std::to_string(i);
    std::vector<double> bounds;
    for (int k = 0; k < i % 5; ++k)
      bounds.push_back(k + 1);
    if (bounds.empty()) {
      auto f = reg.add_gauge({.name = name, .help = help, .labels = labels});
      REQUIRE(f);
      f->with_labels(values)->set(i);
    } else {
      auto f = reg.add_histogram({.name = name, .help = help, .labels = labels, .buckets = bounds});
      REQUIRE(f);
      f->with_labels(values)->observe(i);
    }
  }
  done = true;
  reader.join();
  INFO(fails.first);
  REQUIRE(fails.count.load() == 0);
  REQUIRE(snapshots.load() > 0);
  auto snap = segment_reader::open(reg.path())->snapshot().value();
  REQUIRE(snap.families.size() == static_cast<std::size_t>(families));
}

TEST_CASE("histogram invariants hold under concurrent observe", "[concurrency][histogram]") {
  test::unique_prefix up;
  auto reg = registry::create(up.options()).value();
  auto h = reg.add_histogram({.name = "h", .help = "", .buckets = {0.001, 0.01, 0.1, 1, 10}})
               ->with_labels({})
               .value();
  const int threads = 3;
  const long iters = 120000 / scale;  // a multiple of 6
  std::atomic<bool> done{false};
  thread_failures fails;
  std::atomic<long> checked{0};
  std::thread reader([&] {
    auto rd = segment_reader::open(reg.path()).value();
    std::uint64_t last_count = 0;
    while (!done.load()) {
      auto snap = rd.snapshot().value();
      auto& s = snap.families[0].series[0];
      T_CHECK(fails, s.buckets.size() == 6);
      for (std::size_t b = 1; b < s.buckets.size(); ++b)
        T_CHECK(fails, s.buckets[b] >= s.buckets[b - 1]);
      T_CHECK(fails, s.buckets.back() == s.count());  // +Inf == _count
      T_CHECK(fails, s.count() >= last_count);        // never goes backwards
      last_count = s.count();
      ++checked;
    }
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      const double vals[] = {0.0005, 0.005, 0.05, 0.5, 5, 50};
      for (long i = 0; i < iters; ++i)
        h.observe(vals[i % 6]);
    });
  for (auto& t : ts)
    t.join();
  done = true;
  reader.join();
  INFO(fails.first);
  REQUIRE(fails.count.load() == 0);
  auto s = segment_reader::open(reg.path())->snapshot().value().families[0].series[0];
  const std::uint64_t per = static_cast<std::uint64_t>(threads * iters / 6);
  REQUIRE(s.buckets ==
          std::vector<std::uint64_t>{per, 2 * per, 3 * per, 4 * per, 5 * per, 6 * per});
  REQUIRE(s.sum == Approx(per * (0.0005 + 0.005 + 0.05 + 0.5 + 5 + 50)));
  REQUIRE(checked.load() > 0);
}

TEST_CASE("a thread's shard is reused after it exits, values intact", "[concurrency][shards]") {
  test::unique_prefix up;
  auto o = up.options();
  o.shards = 2;
  auto reg = registry::create(o).value();
  auto c = reg.add_counter({.name = "c", .help = ""})->with_labels({}).value();
  for (int round = 0; round < 20; ++round)
    std::thread([&] { c.add(10); }).join();
  auto snap = segment_reader::open(reg.path())->snapshot().value();
  REQUIRE(snap.families[0].series[0].value == 200.0);
}
