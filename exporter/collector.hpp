// shmetrics-exporter: the collector. Discovers segments, snapshots them, tells live
// writers from dead ones, merges every writer's families and keeps dead writers'
// counters counting. One collection runs at a time; concurrent scrapes share it.
#pragma once

#include <chrono>              // gc and timing
#include <condition_variable>  // scrape coalescing
#include <cstdint>             // counters
#include <map>                 // retired totals, error counts
#include <memory>              // shared results
#include <mutex>               // one flight at a time
#include <string>              // names
#include <vector>              // families

#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/snapshot.hpp>
#include <shmetrics/reader/text_format.hpp>

#include "log.hpp"

namespace shmetrics::exporter {

struct collector_options {
  std::string dir = "/dev/shm";
  std::string prefix = "shmetrics";
  /// Remove a dead writer's segment after this long (0: never), folding its last
  /// counter and histogram values into the exporter's retired totals first. Also
  /// removes files a writer died creating (never readable), after this long and at
  /// least `unfinished_grace`.
  std::chrono::milliseconds gc_dead_after{60'000};
  /// Serve segments owned by other users too. Off: a file in a shared directory that
  /// another user planted is refused (`foreign_owner`), not served as ours.
  bool allow_other_users = false;
};

/// What /segments lists for each segment.
struct segment_status {
  std::string path;
  std::uint32_t pid = 0;
  std::uint64_t instance = 0;
  std::string state;  // alive, stalled, dead, closed, restarted, invalid
  std::uint64_t families = 0, series = 0;
  double heartbeat_age_s = -1;
  std::string error;
};

/// One collection: the merged families ready to encode, and what each segment looked like.
/// Encode it with `encode_text(c->families, out, c->labels.get(), &c->columns)`.
struct collection {
  // The merged families' definitions (their `series` empty: the values are in `columns`,
  // the labels in `labels`), then the exporter's own families with their series.
  std::vector<family_snapshot> families;
  series_columns columns;  // the merged families' values, per family
  std::vector<segment_status> segments;
  double duration_s = 0;

  // The collector reuses a collection nobody holds any more: when its merged shape is
  // the current plan's, only the values are rewritten (no allocation).
  std::uint64_t plan_version = 0;  // 0: no shape yet
  /// The merged series' label blocks, rendered once per plan and shared (immutable) by the
  /// plan and every collection of its shape: at 1M series they are the largest part.
  std::shared_ptr<const prepared_labels> labels;
};

class collector {
 public:
  explicit collector(collector_options opt, logger& log);

  /// The result of a collection that started after this call was made, shared with
  /// every concurrent caller (one flight at a time). Thread-safe.
  std::shared_ptr<const collection> collect();

  /// The latest collection without starting one; null before the first.
  std::shared_ptr<const collection> latest() const;

  /// The latest collection if it started less than `max_age` ago, else a new one
  /// (collect()): what endpoints that report state as of now use (/segments), so that
  /// with no scraper yet a writer killed minutes ago does not read `alive`.
  std::shared_ptr<const collection> latest_within(std::chrono::milliseconds max_age);

 private:
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
  void count_error(const std::string& reason, const std::string& key, const std::string& message);
  void update_plan();
  std::shared_ptr<collection> take_buffer();
  void fill_values(collection& c);
  void keep_monotonic(collection& c);
  void carry_over(const merge_plan& next);
  void append_self_metrics(collection& c, const std::vector<segment_status>& status);

  collector_options opt_;
  logger& log_;

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

/// The label-friendly name of an error code (`truncated`, `bad_magic`, ...).
std::string reason_of(errc code);

}  // namespace shmetrics::exporter
