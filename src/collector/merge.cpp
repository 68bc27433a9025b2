#include "merge.hpp"

#include <algorithm>  // std::max, std::min, std::copy

#include <shmetrics/detail/exposed_names.hpp>  // the writer's collision rule

SHMETRICS_BEGIN_NAMESPACE
namespace collect_detail {

using layout::gauge_mode;
using layout::metric_type;

void combine(metric_type type, gauge_mode mode, series_snapshot& into, const series_snapshot& from,
             bool first) {
  if (first) {
    into.value = from.value;
    into.stamp_ns = from.stamp_ns;
    into.buckets.assign(from.buckets.begin(), from.buckets.end());
    into.sum = from.sum;
    return;
  }
  switch (type) {
    case metric_type::counter:
      into.value += from.value;
      return;
    case metric_type::histogram:
      for (std::size_t b = 0; b < into.buckets.size() && b < from.buckets.size(); ++b)
        into.buckets[b] += from.buckets[b];
      into.sum += from.sum;
      return;
    case metric_type::info:
      into.value = std::max(into.value, from.value);
      return;
    case metric_type::gauge:
      break;
  }
  switch (mode) {
    case gauge_mode::sum:
    case gauge_mode::live_sum:
      into.value += from.value;
      break;
    case gauge_mode::max:
    case gauge_mode::live_max:
      into.value = std::max(into.value, from.value);
      break;
    case gauge_mode::min:
    case gauge_mode::live_min:
      into.value = std::min(into.value, from.value);
      break;
    case gauge_mode::latest:
    case gauge_mode::live_latest:
      if (from.stamp_ns > into.stamp_ns) {
        into.value = from.value;
        into.stamp_ns = from.stamp_ns;
      }
      break;
  }
}

void combine(metric_type type, gauge_mode mode, series_columns::family_columns& into,
             std::size_t row, const series_values& from, const std::uint64_t* buckets,
             std::size_t nb, bool first) {
  double& value = into.value[row];
  if (type == metric_type::histogram) {
    // Every writer of a merged family has the same bounds (a different one is a
    // conflict), so `nb` counts on both sides.
    std::uint64_t* to = into.buckets.data() + row * nb;
    if (first) {
      std::copy(buckets, buckets + nb, to);
      value = from.value;
    } else {
      for (std::size_t b = 0; b < nb; ++b)
        to[b] += buckets[b];
      value += from.value;
    }
    return;
  }
  if (type != metric_type::gauge) {  // counter adds, info keeps the max
    value = first                          ? from.value
            : type == metric_type::counter ? value + from.value
                                           : std::max(value, from.value);
    return;
  }
  std::uint64_t& stamp = into.stamp_ns[row];
  if (first) {
    value = from.value;
    stamp = from.stamp_ns;
    return;
  }
  switch (mode) {
    case gauge_mode::sum:
    case gauge_mode::live_sum:
      value += from.value;
      break;
    case gauge_mode::max:
    case gauge_mode::live_max:
      value = std::max(value, from.value);
      break;
    case gauge_mode::min:
    case gauge_mode::live_min:
      value = std::min(value, from.value);
      break;
    case gauge_mode::latest:
    case gauge_mode::live_latest:
      if (from.stamp_ns > stamp) {
        value = from.value;
        stamp = from.stamp_ns;
      }
      break;
  }
}

bool skipped_when_dead(const family_snapshot& shape, bool writer_alive) {
  if (writer_alive) return false;
  if (shape.type != metric_type::gauge && shape.type != metric_type::info) return false;
  return shape.mode == gauge_mode::live_sum || shape.mode == gauge_mode::live_max ||
         shape.mode == gauge_mode::live_min || shape.mode == gauge_mode::live_latest;
}

bool same_definition(const family_snapshot& a, const family_snapshot& b) {
  return a.type == b.type && a.label_names == b.label_names && a.bounds == b.bounds;
}

std::size_t merged_set::family_slot(const family_snapshot& f) {
  auto found = family_index_.find(f.name);
  if (found == family_index_.end()) {
    // A new family: refused if any sample name it prints is another family's.
    const std::vector<std::string> names = detail::exposed_names(f.type, f.name);
    for (const std::string& n : names)
      if (claimed_.count(n)) return no_slot;
    const std::size_t slot = families_.size();
    for (const std::string& n : names)
      claimed_.emplace(n, slot);
    family_index_.emplace(f.name, slot);
    family_snapshot& shape = families_.emplace_back();  // the definition, not the series
    shape.name = f.name;
    shape.help = f.help;
    shape.unit = f.unit;
    shape.type = f.type;
    shape.mode = f.mode;
    shape.label_names = f.label_names;
    shape.bounds = f.bounds;
    series_index_.emplace_back();
    counts_.push_back(0);
    return slot;
  }
  if (!same_definition(families_[found->second], f)) return no_slot;
  return found->second;
}

std::pair<std::size_t, bool> merged_set::series_slot(std::size_t family,
                                                     const std::vector<std::string>& labels) {
  auto slot = index_slot(family, labels);
  if (slot.second) {
    family_snapshot& m = families_[family];
    series_snapshot& s = m.series.emplace_back();
    s.label_values = labels;
    if (m.type == metric_type::histogram) s.buckets.assign(m.bounds.size() + 1, 0);
  }
  return slot;
}

bool merged_set::add(const family_snapshot& f, bool writer_alive) {
  std::size_t fam = family_slot(f);
  if (fam == no_slot) return false;
  if (skipped_when_dead(f, writer_alive)) return true;
  for (const series_snapshot& s : f.series) {
    auto [index, fresh] = series_slot(fam, s.label_values);
    family_snapshot& m = families_[fam];
    combine(m.type, m.mode, m.series[index], s, fresh);
  }
  return true;
}

}  // namespace collect_detail
SHMETRICS_END_NAMESPACE
