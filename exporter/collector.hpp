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
#include <unordered_map>       // merge index
#include <vector>              // families

#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/snapshot.hpp>

#include "log.hpp"

namespace shmetrics::exporter {

struct collector_options {
  std::string dir = "/dev/shm";
  std::string prefix = "shmetrics";
  /// Remove a dead writer's segment after this long (0: never), folding its last
  /// counter and histogram values into the exporter's retired totals first.
  std::chrono::milliseconds gc_dead_after{0};
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
struct collection {
  std::vector<family_snapshot> families;  // merged, plus the exporter's own
  std::vector<segment_status> segments;
  double duration_s = 0;
};

class collector {
 public:
  explicit collector(collector_options opt, logger& log);

  /// The result of a collection that started after this call was made, shared with
  /// every concurrent caller (one flight at a time). Thread-safe.
  std::shared_ptr<const collection> collect();

  /// The latest collection without starting one (for /segments); null before the first.
  std::shared_ptr<const collection> latest() const;

 private:
  struct tracked {
    segment_name name;
    segment_reader reader;
    segment_snapshot last;  // last good snapshot: what we serve if it goes bad or dies
    bool have_last = false;
    bool alive = true;
    std::uint64_t last_hb_count = 0;
    std::chrono::steady_clock::time_point last_hb_change, dead_since;
    std::string error;  // why the last snapshot failed, if it did
  };

  std::shared_ptr<collection> run_once();
  void discover(std::vector<segment_status>& bad);
  void retire(tracked& t);
  void count_error(const std::string& reason, const std::string& key, const std::string& message);
  void merge_into(std::vector<family_snapshot>& out,
                  std::unordered_map<std::string, std::size_t>& index, const std::string& origin,
                  const family_snapshot& f, bool writer_alive, bool retired);
  void append_self_metrics(collection& c, const std::vector<segment_status>& status);

  collector_options opt_;
  logger& log_;

  // flight control
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool in_flight_ = false;
  std::uint64_t generation_ = 0;
  std::shared_ptr<const collection> latest_;

  // state owned by the single in-flight collection
  std::map<std::string, tracked> segments_;  // by path
  std::vector<family_snapshot> retired_;     // folded totals of removed dead writers
  std::map<std::string, double> errors_;     // reason -> count
  std::map<std::string, bool> reported_;     // error keys already counted
  double collections_ = 0, retired_segments_ = 0;
};

/// The label-friendly name of an error code (`truncated`, `bad_magic`, ...).
std::string reason_of(errc code);

}  // namespace shmetrics::exporter
