// The collector (internal): merging families from many writers into one exposition.
#pragma once

#include <cstddef>        // size_t
#include <limits>         // no_slot
#include <string>         // keys
#include <string_view>    // label values
#include <unordered_map>  // indexes
#include <utility>        // pair
#include <vector>         // families

#include <shmetrics/reader/snapshot.hpp>
#include <shmetrics/reader/text_format.hpp>

SHMETRICS_BEGIN_NAMESPACE
namespace collect_detail {

/// Folds one writer's values of a series into the merged series `into`.
/// Counters and histograms add; info keeps the max; gauges follow `mode` (sum, max,
/// min, latest by set time). `first`: `into` holds nothing yet, so it takes `from`'s
/// values (storage reused: no allocation once `into.buckets` has its size).
void combine(layout::metric_type type, layout::gauge_mode mode, series_snapshot& into,
             const series_snapshot& from, bool first);

/// combine() into row `row` of a family's columns (the exporter's results), from values
/// kept without a series_snapshot (segment_reader::read_values): `from.value` is a
/// histogram's sum, `buckets` its `nb` cumulative counts (nb: 0 unless a histogram).
void combine(layout::metric_type type, layout::gauge_mode mode,
             series_columns::family_columns& into, std::size_t row, const series_values& from,
             const std::uint64_t* buckets, std::size_t nb, bool first);

/// Whether a writer's family contributes nothing: a live_* gauge of a writer that is gone.
bool skipped_when_dead(const family_snapshot& shape, bool writer_alive);

/// Whether two writers define a family alike (type, label names, buckets).
bool same_definition(const family_snapshot& a, const family_snapshot& b);

/// Families merged across writers, with indexes to find a family by name and a series
/// by its label values.
///
/// A family whose type, label names or buckets differ from the first definition seen is
/// a conflict, and so is one whose names collide with another family's
/// (detail::exposed_names, the writer's rule: counter `x` beside gauge `x_total`): it is
/// refused and the caller reports it.
class merged_set {
 public:
  static constexpr std::size_t no_slot = std::numeric_limits<std::size_t>::max();

  /// The index of the family defined like `shape` (added without series if new), or
  /// no_slot on a definition conflict.
  std::size_t family_slot(const family_snapshot& shape);

  /// The index of the series with these label values in family `family` (added with
  /// zero values if new: the label values are copied only then), and whether it is new.
  std::pair<std::size_t, bool> series_slot(std::size_t family,
                                           const std::vector<std::string>& label_values);

  /// series_slot() without storing the series: only where it goes and whether it is new
  /// (a merge plan keeps millions; their labels are rendered once by the caller).
  /// `label_values` is anything with size() and operator[] giving a string_view.
  template <class Labels>
  std::pair<std::size_t, bool> index_slot(std::size_t family, const Labels& label_values) {
    // Length-prefixed so that ("a,b") and ("a", "b") differ.
    key_.clear();
    for (std::size_t k = 0; k < label_values.size(); ++k) {
      std::string_view v = label_values[k];
      key_ += std::to_string(v.size());
      key_ += ':';
      key_ += v;
    }
    auto [it, fresh] = series_index_[family].try_emplace(key_, counts_[family]);
    if (fresh) ++counts_[family];
    return {it->second, fresh};
  }
  /// Series in family `family` (stored or only indexed).
  std::size_t series_count(std::size_t family) const { return counts_[family]; }

  /// Adds one writer's family with its values. `writer_alive` is false for dead and
  /// retired writers. Returns false (and adds nothing) on a definition conflict.
  bool add(const family_snapshot& f, bool writer_alive);

  std::vector<family_snapshot>& families() { return families_; }
  const std::vector<family_snapshot>& families() const { return families_; }

 private:
  std::vector<family_snapshot> families_;
  std::unordered_map<std::string, std::size_t> family_index_;
  std::unordered_map<std::string, std::size_t> claimed_;  // exposed sample name -> family
  std::vector<std::unordered_map<std::string, std::size_t>> series_index_;
  std::vector<std::size_t> counts_;  // series per family
  std::string key_;                  // reused to build series keys
};

}  // namespace collect_detail
SHMETRICS_END_NAMESPACE
