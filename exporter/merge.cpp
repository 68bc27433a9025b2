#include "merge.hpp"

#include <algorithm>  // std::max, std::min

namespace shmetrics::exporter {

using layout::gauge_mode;
using layout::metric_type;

std::string merged_set::key_of(const std::vector<std::string>& label_values) {
  std::string k;
  for (auto& v : label_values) {
    k += std::to_string(v.size());
    k += ':';
    k += v;
  }
  return k;
}

bool merged_set::add_totals(const family_snapshot& f) {
  if (f.type != metric_type::counter && f.type != metric_type::histogram) return true;
  return add(f, false);
}

bool merged_set::add(const family_snapshot& f, bool writer_alive) {
  auto [it, fresh] = family_index_.try_emplace(f.name, families_.size());
  if (fresh) {
    family_snapshot& shape = families_.emplace_back();  // the definition, not the series
    shape.name = f.name;
    shape.help = f.help;
    shape.unit = f.unit;
    shape.type = f.type;
    shape.mode = f.mode;
    shape.label_names = f.label_names;
    shape.bounds = f.bounds;
    shape.series.reserve(f.series.size());
    series_index_.emplace_back();
  }
  family_snapshot& m = families_[it->second];
  if (m.type != f.type || m.label_names != f.label_names || m.bounds != f.bounds) return false;
  auto& index = series_index_[it->second];
  const bool live_only = m.mode == gauge_mode::live_sum || m.mode == gauge_mode::live_max ||
                         m.mode == gauge_mode::live_min || m.mode == gauge_mode::live_latest;
  const bool is_gauge = m.type == metric_type::gauge || m.type == metric_type::info;
  if (is_gauge && live_only && !writer_alive) return true;
  for (const series_snapshot& s : f.series) {
    auto [sit, new_series] = index.try_emplace(key_of(s.label_values), m.series.size());
    if (new_series) {
      m.series.push_back(s);
      continue;
    }
    series_snapshot& t = m.series[sit->second];
    switch (m.type) {
      case metric_type::counter:
        t.value += s.value;
        break;
      case metric_type::histogram:
        for (std::size_t b = 0; b < t.buckets.size() && b < s.buckets.size(); ++b)
          t.buckets[b] += s.buckets[b];
        t.sum += s.sum;
        break;
      case metric_type::info:
        t.value = std::max(t.value, s.value);
        break;
      case metric_type::gauge:
        switch (m.mode) {
          case gauge_mode::sum:
          case gauge_mode::live_sum:
            t.value += s.value;
            break;
          case gauge_mode::max:
          case gauge_mode::live_max:
            t.value = std::max(t.value, s.value);
            break;
          case gauge_mode::min:
          case gauge_mode::live_min:
            t.value = std::min(t.value, s.value);
            break;
          case gauge_mode::latest:
          case gauge_mode::live_latest:
            if (s.stamp_ns > t.stamp_ns) {
              t.value = s.value;
              t.stamp_ns = s.stamp_ns;
            }
            break;
        }
        break;
    }
  }
  return true;
}

}  // namespace shmetrics::exporter
