// shmetrics catalog: one catalog family registered in a registry, with its children
// resolved into hot-path handles at construction. Shared by vllm_metrics and
// omni_metrics; engine code uses those classes, not this.
#ifndef SHMETRICS_CATALOG_BOUND_FAMILY_HPP
#define SHMETRICS_CATALOG_BOUND_FAMILY_HPP

#include <cstdint>  // child counts
#include <string>   // exposed name
#include <utility>  // pair
#include <vector>   // children

#include "../registry.hpp"
#include "catalog.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace catalog_detail {

/// One label value per label name, for the labels a caller fixes (model_name, engine,
/// stage, replica, from_stage, ...). The family's extra labels come from the catalog.
using label_map = std::vector<std::pair<std::string, std::string>>;

struct bound_family {
  const family_def* def = nullptr;
  std::string name;                 ///< as registered (Omni prefix applied)
  std::vector<std::string> labels;  ///< as registered (engine reshaped if asked)
  counter_family counters;
  gauge_family gauges;
  histogram_family histograms;
  /// Children: for base child b and extra-label combination i, index b * per_base + i.
  std::uint32_t per_base = 0;
  std::vector<counter> c;
  std::vector<gauge> g;
  std::vector<histogram> h;
  int alias = -1;  ///< a deprecated family that repeats every value written here

  /// Handles of base child `b`, extra combination `i`; inert when not pre-created.
  counter ctr(std::size_t b, std::size_t i = 0) const noexcept {
    std::size_t k = b * per_base + i;
    return i < per_base && k < c.size() ? c[k] : counter{};
  }
  gauge gge(std::size_t b, std::size_t i = 0) const noexcept {
    std::size_t k = b * per_base + i;
    return i < per_base && k < g.size() ? g[k] : gauge{};
  }
  histogram hst(std::size_t b, std::size_t i = 0) const noexcept {
    std::size_t k = b * per_base + i;
    return i < per_base && k < h.size() ? h[k] : histogram{};
  }
};

struct bind_request {
  std::string name;                      ///< exposed name
  std::vector<std::string> labels;       ///< label names in registration order
  std::vector<double> buckets;           ///< histograms
  std::vector<label_map> base_children;  ///< one entry per base child to pre-create
  std::vector<std::pair<std::string, std::vector<std::string>>> extra_values;  ///< override lists
};

/// Registers `def` as `req` says and pre-creates every child: each base child times
/// every combination of the extra labels' values (from the catalog, or req.extra_values).
/// A label with neither a base value nor listed values leaves the family without
/// pre-created children (per_base 0): values then come through the cold path.
result<bound_family> bind(registry& reg, const family_def& def, const bind_request& req);

/// The label names with "engine" replaced in place by "stage", "replica" (vLLM-Omni's
/// OmniPrometheusStatLogger reshape).
std::vector<std::string> reshape_engine(const std::vector<std::string>& labels, bool reshape);

}  // namespace catalog_detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_CATALOG_BOUND_FAMILY_HPP
