// shmetrics-bench: hot-path and scrape costs, side by side with prometheus-cpp in one run.
//
//   shmetrics-bench [--quick] [--json] [--shm.dir DIR] [--shm.prefix NAME]
//
// Figures are wall-clock ns per operation per thread (two threads: both hit the SAME
// series, the contended case) and ms per scrape. Ratios from one run are what matter.
#include <atomic>   // floors and start barrier
#include <chrono>   // timing
#include <cstdio>   // output
#include <cstring>  // strcmp
#include <map>      // results in order
#include <memory>   // make_shared
#include <string>   // names
#include <thread>   // threads
#include <vector>   // threads, buckets

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <shmetrics/reader/segment_reader.hpp>
#ifdef SHMETRICS_BENCH_EXPORTER
#include "../exporter/collector.hpp"
#endif
#include <shmetrics/reader/text_format.hpp>
#include <shmetrics/shmetrics.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

// vLLM's TTFT buckets (22 finite bounds), for both libraries.
const std::vector<double> ttft_buckets = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                          20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};

// Runs loop(iters) on each of `threads` threads started together; `loop` runs the
// operation iters times on its own copy of the handle, as engine code holds handles.
// Returns the best (minimum over `reps`) mean ns per op per thread.
template <class Fn>
double ns_per_op(int threads, long iters, int reps, Fn fn) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<double> ns(static_cast<std::size_t>(threads));
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        ++ready;
        while (!go.load(std::memory_order_acquire)) {
        }
        auto t0 = clock_type::now();
        fn(iters);
        auto t1 = clock_type::now();
        ns[static_cast<std::size_t>(t)] =
            std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(iters);
      });
    while (ready.load() < threads) {
    }
    go.store(true, std::memory_order_release);
    for (auto& t : ts)
      t.join();
    double mean = 0;
    for (double v : ns)
      mean += v;
    mean /= threads;
    if (mean < best) best = mean;
  }
  return best;
}

template <class Fn>
double ms_per_call(int reps, Fn fn) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    auto t0 = clock_type::now();
    fn();
    double ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    if (ms < best) best = ms;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, json = false;
  shmetrics::registry_options opt;
  opt.prefix = "shmetrics-bench";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--json")
      json = true;
    else if (a.starts_with("--shm.dir"))
      opt.dir = a.find('=') != std::string::npos ? a.substr(a.find('=') + 1)
                                                 : (i + 1 < argc ? argv[++i] : "");
    else if (a.starts_with("--shm.prefix"))
      opt.prefix = a.find('=') != std::string::npos ? a.substr(a.find('=') + 1)
                                                    : (i + 1 < argc ? argv[++i] : "");
    else if (a == "--help" || a == "-h") {
      std::puts(
          "usage: shmetrics-bench [--quick] [--json] [--shm.dir DIR] [--shm.prefix NAME]\n"
          "       shmetrics-bench --version");
      return 0;
    } else if (a == "--version") {
      std::printf("shmetrics-bench %s (segment format %d.%d)\n", SHMETRICS_VERSION_STRING,
                  SHMETRICS_FORMAT_MAJOR, SHMETRICS_FORMAT_MINOR);
      return 0;
    } else {
      std::fprintf(stderr, "shmetrics-bench: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  const long iters = quick ? 5'000'000 : 50'000'000;
  const int reps = quick ? 3 : 5;
  std::map<std::string, double> r;

  opt.max_series = 20000;
  opt.max_cells = 60000;
  opt.max_families = 2048;
  opt.string_bytes = 8u << 20;
  auto reg = shmetrics::registry::create(opt);
  if (!reg) {
    std::fprintf(stderr, "shmetrics-bench: %s\n", reg.error().message().c_str());
    return 1;
  }
  auto c = reg->add_counter({.name = "bench_ops_total", .help = "h"})->with_labels({}).value();
  auto h = reg->add_histogram({.name = "bench_lat_seconds", .help = "h", .buckets = ttft_buckets})
               ->with_labels({})
               .value();
  auto g = reg->add_gauge({.name = "bench_gauge", .help = "h"})->with_labels({}).value();

  auto preg = std::make_shared<prometheus::Registry>();
  auto& pc = prometheus::BuildCounter().Name("bench_ops_total").Help("h").Register(*preg).Add({});
  auto& ph = prometheus::BuildHistogram()
                 .Name("bench_lat_seconds")
                 .Help("h")
                 .Register(*preg)
                 .Add({}, prometheus::Histogram::BucketBoundaries(ttft_buckets));

  // Observed values walk through the buckets, as real latencies do.
  auto val = [](long i) { return static_cast<double>(i & 1023) * 0.01; };

  alignas(64) static std::atomic<std::uint64_t> floor_atomic{0};
  alignas(64) static volatile std::uint64_t floor_plain = 0;
  for (int t : {1, 2}) {
    std::string s = "_" + std::to_string(t) + "t";
    r["counter_inc_ns" + s] = ns_per_op(t, iters, reps, [c](long n) mutable {
      for (long i = 0; i < n; ++i)
        c.inc();
    });
    r["promcpp_counter_inc_ns" + s] = ns_per_op(t, iters, reps, [&pc](long n) {
      for (long i = 0; i < n; ++i)
        pc.Increment();
    });
    r["histogram_observe_ns" + s] = ns_per_op(t, iters / 2, reps, [h, val](long n) mutable {
      for (long i = 0; i < n; ++i)
        h.observe(val(i));
    });
    r["promcpp_histogram_observe_ns" + s] = ns_per_op(t, iters / 4, reps, [&ph, val](long n) {
      for (long i = 0; i < n; ++i)
        ph.Observe(val(i));
    });
    r["relaxed_atomic_add_ns" + s] = ns_per_op(t, iters, reps, [](long n) {
      for (long i = 0; i < n; ++i)
        floor_atomic.fetch_add(1, std::memory_order_relaxed);
    });
  }
  r["gauge_set_ns_1t"] = ns_per_op(1, iters, reps, [g](long n) mutable {
    for (long i = 0; i < n; ++i)
      g.set(static_cast<double>(i));
  });
  r["plain_store_ns_1t"] = ns_per_op(1, iters, reps, [](long n) {
    for (long i = 0; i < n; ++i)
      floor_plain = static_cast<std::uint64_t>(i);
  });
  (void)floor_plain;

  // Registration: with_labels of a new series.
  {
    auto fam = reg->add_counter({.name = "bench_reg_total", .help = "h", .labels = {"id"}}).value();
    auto& pfam = prometheus::BuildCounter().Name("bench_reg_total").Help("h").Register(*preg);
    const int n = 2000;
    auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i)
      (void)fam.with_labels({std::to_string(i)});
    r["with_labels_ns"] =
        std::chrono::duration<double, std::nano>(clock_type::now() - t0).count() / n;
    t0 = clock_type::now();
    for (int i = 0; i < n; ++i)
      pfam.Add({{"id", std::to_string(i)}});
    r["promcpp_family_add_ns"] =
        std::chrono::duration<double, std::nano>(clock_type::now() - t0).count() / n;
  }

  // Scrape of 10,000 series: 1,000 counter families x 10 series with two labels, the
  // same in both libraries. shmetrics: open+snapshot+encode; prometheus-cpp:
  // Collect()+TextSerializer.
  {
    shmetrics::registry_options so = opt;
    so.prefix = opt.prefix + "-scrape";
    auto sreg = shmetrics::registry::create(so).value();
    auto preg2 = std::make_shared<prometheus::Registry>();
    for (int f = 0; f < 1000; ++f) {
      std::string name = "bench_family_" + std::to_string(f) + "_total";
      auto fam =
          sreg.add_counter(
                  {.name = name, .help = "A benchmark family.", .labels = {"model_name", "engine"}})
              .value();
      auto& pfam =
          prometheus::BuildCounter().Name(name).Help("A benchmark family.").Register(*preg2);
      for (int s = 0; s < 10; ++s) {
        fam.with_labels({"model", std::to_string(s)})->add(f * 10 + s);
        pfam.Add({{"model_name", "model"}, {"engine", std::to_string(s)}}).Increment(f * 10 + s);
      }
    }
    auto rd = shmetrics::segment_reader::open(sreg.path()).value();
    std::string out;
    std::size_t bytes = 0;
    r["scrape_10k_series_ms"] = ms_per_call(reps * 4, [&] {
      auto snap = rd.snapshot().value();
      out.clear();
      shmetrics::encode_text(snap.families, out);
      bytes = out.size();
    });
    r["scrape_10k_series_cold_ms"] = ms_per_call(reps, [&] {
      auto rd2 = shmetrics::segment_reader::open(sreg.path()).value();
      auto snap = rd2.snapshot().value();
      out.clear();
      shmetrics::encode_text(snap.families, out);
    });
    r["scrape_10k_series_bytes"] = static_cast<double>(bytes);
#ifdef SHMETRICS_BENCH_EXPORTER
    // The exporter's whole path: discover, snapshot, liveness, merge, self-metrics, encode.
    {
      shmetrics::exporter::logger quiet(shmetrics::exporter::log_level::error);
      shmetrics::exporter::collector coll({.dir = so.dir, .prefix = so.prefix}, quiet);
      (void)coll.collect();  // first collection opens and parses the segment
      r["exporter_scrape_10k_series_ms"] = ms_per_call(reps * 4, [&] {
        auto c = coll.collect();
        out.clear();
        shmetrics::encode_text(c->families, out);
      });
    }
#endif
    prometheus::TextSerializer ser;
    std::size_t pbytes = 0;
    r["promcpp_scrape_10k_series_ms"] = ms_per_call(reps * 4, [&] {
      auto text = ser.Serialize(preg2->Collect());
      pbytes = text.size();
    });
    r["promcpp_scrape_10k_series_bytes"] = static_cast<double>(pbytes);
  }

  if (json) {
    std::printf("{");
    bool first = true;
    for (auto& [k, v] : r) {
      std::printf("%s\"%s\": %.4g", first ? "" : ", ", k.c_str(), v);
      first = false;
    }
    std::printf("}\n");
    return 0;
  }
  auto row = [&](const char* what, const std::string& ours, const std::string& theirs) {
    double a = r[ours], b = r[theirs];
    std::printf("%-34s %12.2f %14.2f %9.1fx\n", what, a, b, b / a);
  };
  std::printf("shmetrics-bench (%s): ns/op per thread, ms/scrape; 2t = two threads on ONE series\n",
              quick ? "quick" : "full");
  std::printf("%-34s %12s %14s %10s\n", "", "shmetrics", "prometheus-cpp", "speedup");
  row("counter inc, 1 thread", "counter_inc_ns_1t", "promcpp_counter_inc_ns_1t");
  row("counter inc, 2 threads", "counter_inc_ns_2t", "promcpp_counter_inc_ns_2t");
  row("histogram observe (22 b), 1 thread", "histogram_observe_ns_1t",
      "promcpp_histogram_observe_ns_1t");
  row("histogram observe (22 b), 2 threads", "histogram_observe_ns_2t",
      "promcpp_histogram_observe_ns_2t");
  row("register a series (with_labels/Add)", "with_labels_ns", "promcpp_family_add_ns");
  row("scrape 10k series (snapshot+encode)", "scrape_10k_series_ms",
      "promcpp_scrape_10k_series_ms");
  if (r.count("exporter_scrape_10k_series_ms"))
    row("exporter collect+encode, 10k series", "exporter_scrape_10k_series_ms",
        "promcpp_scrape_10k_series_ms");
  std::printf(
      "floors: relaxed atomic add %.2f ns (1t), %.2f ns (2t); plain store %.2f ns; gauge set %.2f "
      "ns\n",
      r["relaxed_atomic_add_ns_1t"], r["relaxed_atomic_add_ns_2t"], r["plain_store_ns_1t"],
      r["gauge_set_ns_1t"]);
  std::printf("scrape: cold (open+parse+encode) %.2f ms; %.0f bytes vs %.0f bytes\n",
              r["scrape_10k_series_cold_ms"], r["scrape_10k_series_bytes"],
              r["promcpp_scrape_10k_series_bytes"]);
  return 0;
}
