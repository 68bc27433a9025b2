// The collector's state and steps (internal: include/shmetrics/reader/collector.hpp is the
// interface). Each step lives in its own file of src/collector/:
//   collector.cpp     flight control (collect, latest), one collection (run_once), logging
//   discovery.cpp     finding segments, refusing bad ones, removing unfinished files
//   values.cpp        reading each segment's values, keeping the last good ones
//   retire.cpp        folding dead writers into the retired totals, removing their files
//   plan.cpp          the merge plan (where each series goes), filling a collection
//   monotonic.cpp     keeping served counters and histograms from going back
//   self_metrics.cpp  the collector's own families (shmetrics_exporter_*, process_*)
//   merge.cpp         merging families across writers (merge.hpp)
//   encode.cpp        content negotiation, encoding, gzip, the body cache
#pragma once

#include <chrono>              // gc and timing
#include <condition_variable>  // scrape coalescing
#include <cstdint>             // counters
#include <exception>           // exception_reason
#include <map>                 // retired totals, error counts
#include <memory>              // shared results
#include <mutex>               // one flight at a time
#include <new>                 // bad_alloc
#include <string>              // names
#include <vector>              // families

#include <shmetrics/reader/collector.hpp>
#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/segment_reader.hpp>

SHMETRICS_BEGIN_NAMESPACE

namespace collect_detail {

using clock = std::chrono::steady_clock;

// A writer whose heartbeat has not moved for this long, while it still holds its lock,
// is "stalled" (alive but hung). Ten default heartbeat intervals.
inline constexpr auto stall_after = std::chrono::seconds(10);

// A file a writer has not finished creating is left alone at least this long.
inline constexpr auto unfinished_grace = std::chrono::seconds(2);

// Plans of at least this many series give their freed memory back after a rebuild
// (malloc_trim walks the heap: a few ms at 1M series, not worth it for small plans).
inline constexpr std::size_t trim_after_series = 100'000;

// The reason label for an exception met while reading one segment (counted, the segment
// skipped, the others served): a hostile file that makes the reader allocate too much.
inline std::string exception_reason(const std::exception& e) {
  return dynamic_cast<const std::bad_alloc*>(&e) ? "out_of_memory" : "read_failed";
}

// The collector's log: collector_options::log, with a per-key rate limit so that one bad
// segment cannot flood it.
class log_sink {
 public:
  explicit log_sink(log_function fn) : fn_(std::move(fn)) {}

  void log(log_level level, const std::string& msg, const std::string& extra = {});

  /// As log(), but at most once per `every` for `key`; says how many were suppressed.
  void log_limited(log_level level, const std::string& key, const std::string& msg,
                   const std::string& extra = {},
                   std::chrono::seconds every = std::chrono::seconds(60));

 private:
  log_function fn_;
  log_rate_limit limit_;
};

}  // namespace collect_detail

struct collector::impl {
  using clock = collect_detail::clock;

  explicit impl(collector_options opt);

  std::shared_ptr<const collection> collect();
  std::shared_ptr<const collection> latest() const;
  std::shared_ptr<const collection> latest_within(std::chrono::milliseconds max_age);

  struct tracked {
    segment_name name;
    segment_reader reader;
    // The last good values of the reader's first values.size() series, covering its first
    // families_covered families: what we serve if the segment goes bad or the writer dies.
    // Compact (16 bytes a series; labels stay in the reader): histograms' cumulative
    // counts are in `buckets`, back to back in series order.
    std::vector<series_values> values, scratch;
    std::vector<std::uint64_t> buckets, scratch_buckets;
    std::size_t families_covered = 0;
    bool alive = true;
    std::uint64_t last_hb_count = 0;
    std::chrono::steady_clock::time_point last_hb_change, dead_since;
    std::string error;             // why the last read failed, if it did
    std::uint64_t created_ns = 0;  // the writer's creation time (newest definition wins)
  };

  // Where each source series goes in the merged families; computed again only when the
  // shape of the input changes (segments, their record counts, liveness, retired totals).
  struct target {
    // family not_served: `series` is how many histogram bucket counts the source has
    // (skipped in tracked::buckets).
    std::uint32_t family = 0, series = 0;
    bool first = false;  // the first source of this merged series in a pass
  };
  static constexpr std::uint32_t not_served = 0xFFFFFFFF;
  struct plan_input {
    std::uint64_t dev, ino, families, series, removed;  // removed: segment_reader::removed_count()
    bool alive;
    bool operator==(const plan_input&) const = default;
  };
  struct merge_plan {
    std::vector<plan_input> inputs;
    std::uint64_t retired_version = 0;
    std::uint64_t version = 0;
    std::vector<family_snapshot> families;          // merged shapes (no series: see series_counts)
    std::vector<std::size_t> series_counts;         // per merged family
    std::shared_ptr<const prepared_labels> labels;  // per merged family, per series
    std::vector<std::vector<target>> segment_targets;  // per segment, per series
    std::vector<std::vector<target>> retired_targets;  // per retired family, per series
    std::vector<std::string> served_names;             // writers' families named like a self-metric
  };

  std::shared_ptr<collection> run_once();
  void discover(std::vector<segment_status>& bad);
  void reap_unfinished(const std::string& path);
  bool read_values(tracked& t);
  void read_values_guarded(tracked& t);
  std::vector<family_snapshot> families_of(const tracked& t) const;
  void retire(tracked& t);
  void reap_dead(clock::time_point now);
  void count_error(const std::string& reason, const std::string& key, const std::string& message);
  void update_plan();
  std::shared_ptr<collection> take_buffer();
  void fill_values(collection& c);
  void keep_monotonic(collection& c);
  void carry_over(const merge_plan& next);
  void append_self_metrics(collection& c, const std::vector<segment_status>& status);

  collector_options opt_;
  collect_detail::log_sink log_;

  // flight control
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool in_flight_ = false;
  std::uint64_t generation_ = 0;
  std::shared_ptr<const collection> latest_;
  std::chrono::steady_clock::time_point latest_started_;  // when latest_'s collection began

  // state owned by the single in-flight collection
  std::map<std::string, tracked> segments_;                                  // by path
  std::map<std::string, std::chrono::steady_clock::time_point> unfinished_;  // first seen
  // Folded totals of removed dead writers: one entry per family definition (an upgrade
  // that changes a family keeps the old definition's totals apart), with the creation
  // time of the newest writer folded into each.
  std::vector<family_snapshot> retired_;
  std::vector<std::uint64_t> retired_created_;
  std::uint64_t retired_version_ = 0;
  merge_plan plan_;
  struct buffer_pool {
    std::mutex mu;
    std::vector<std::unique_ptr<collection>> free;  // results no scrape holds any more
  };
  std::shared_ptr<buffer_pool> pool_;  // shared with the results' deleters
  // What each served counter and histogram of plan_ read last, and what is added to its
  // merged value so that it never reads less (keep_monotonic): per family of plan_.
  struct carried_family {
    std::vector<double> last, offset;             // counters: the value; histograms: _sum
    std::vector<std::uint64_t> last_b, offset_b;  // histograms: rows x (bounds + 1)
  };
  std::vector<carried_family> carried_;
  std::map<std::string, double> errors_;  // reason -> count
  std::map<std::string, bool> reported_;  // error keys already counted
  double collections_ = 0, retired_segments_ = 0;
  double boot_time_s_ = -1;  // /proc/stat btime, read once
  bool none_found_logged_ = false;
};

SHMETRICS_END_NAMESPACE
