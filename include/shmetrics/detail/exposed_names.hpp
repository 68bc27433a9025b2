// shmetrics::detail: the names a family takes on a scrape page, for the collision rule
// that the writer (at registration) and the exporter (at merge) both apply.
#ifndef SHMETRICS_DETAIL_EXPOSED_NAMES_HPP
#define SHMETRICS_DETAIL_EXPOSED_NAMES_HPP

#include <string>  // names
#include <vector>  // the list

#include "../segment_layout.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

/// The names a family takes in the exposition: its family names (OpenMetrics and text
/// format) and its sample names. Counters are stored without `_total` and exposed with
/// it; histograms add `_bucket`, `_count` and `_sum`; an info family `x_info` is the
/// OpenMetrics family `x`. Two families served together may share none of these, or a
/// scrape would hold one sample name twice (e.g. counter `x` and gauge `x_total`).
inline std::vector<std::string> exposed_names(layout::metric_type type, const std::string& name) {
  switch (type) {
    case layout::metric_type::counter:
      return {name, name + "_total"};
    case layout::metric_type::histogram:
      return {name, name + "_bucket", name + "_count", name + "_sum"};
    case layout::metric_type::info:
      if (name.size() > 5 && name.ends_with("_info"))
        return {name, name.substr(0, name.size() - 5)};
      return {name};
    default:
      return {name};
  }
}

}  // namespace detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_DETAIL_EXPOSED_NAMES_HPP
