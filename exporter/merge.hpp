// shmetrics-exporter: merging families from many writers into one exposition.
#pragma once

#include <cstddef>        // size_t
#include <string>         // keys
#include <unordered_map>  // indexes
#include <vector>         // families

#include <shmetrics/reader/snapshot.hpp>

namespace shmetrics::exporter {

/// Families merged across writers, with indexes to find a family by name and a series
/// by its label values.
///
/// Rules: counters and histograms with the same family and labels are summed; gauges
/// follow the family's gauge_mode (sum, max, min, latest by set time; the live_* modes
/// skip writers that are gone); info series are united. A family whose type, label
/// names or buckets differ from the first definition seen is a conflict: add() refuses
/// it and the caller reports it.
class merged_set {
 public:
  /// Adds one writer's family. `writer_alive` is false for dead and retired writers.
  /// Returns false (and adds nothing) on a definition conflict.
  bool add(const family_snapshot& f, bool writer_alive);

  /// Keeps only counters and histograms (what a dead writer leaves behind).
  bool add_totals(const family_snapshot& f);

  std::vector<family_snapshot>& families() { return families_; }
  const std::vector<family_snapshot>& families() const { return families_; }

 private:
  static std::string key_of(const std::vector<std::string>& label_values);
  std::vector<family_snapshot> families_;
  std::unordered_map<std::string, std::size_t> family_index_;
  std::vector<std::unordered_map<std::string, std::size_t>> series_index_;
};

}  // namespace shmetrics::exporter
