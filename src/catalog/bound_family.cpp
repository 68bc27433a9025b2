// Registering one catalog family and pre-creating its children.
#include <shmetrics/catalog/bound_family.hpp>

SHMETRICS_BEGIN_NAMESPACE
namespace catalog_detail {

std::vector<std::string> reshape_engine(const std::vector<std::string>& labels, bool reshape) {
  std::vector<std::string> out;
  for (auto& l : labels) {
    if (reshape && l == "engine") {
      out.emplace_back("stage");
      out.emplace_back("replica");
    } else {
      out.push_back(l);
    }
  }
  return out;
}

result<bound_family> bind(registry& reg, const family_def& def, const bind_request& req) {
  bound_family b;
  b.def = &def;
  b.name = req.name;
  b.labels = req.labels;
  std::vector<std::string_view> names(b.labels.begin(), b.labels.end());
  switch (def.type) {
    case layout::metric_type::counter: {
      auto f = reg.add_counter({.name = b.name, .help = def.help, .labels = names});
      if (!f) return f.error();
      b.counters = *f;
      break;
    }
    case layout::metric_type::gauge: {
      auto f = reg.add_gauge({.name = b.name, .help = def.help, .labels = names, .mode = def.mode});
      if (!f) return f.error();
      b.gauges = *f;
      break;
    }
    case layout::metric_type::info: {
      auto f = reg.add_info({.name = b.name, .help = def.help, .labels = names});
      if (!f) return f.error();
      b.gauges = *f;
      break;
    }
    case layout::metric_type::histogram: {
      auto f = reg.add_histogram(
          {.name = b.name, .help = def.help, .labels = names, .buckets = req.buckets});
      if (!f) return f.error();
      b.histograms = *f;
      break;
    }
  }

  // For each label: a base value, or a list of extra values to combine.
  std::vector<const std::vector<std::string>*> extra(b.labels.size(), nullptr);
  std::uint32_t combos = 1;
  for (std::size_t i = 0; i < b.labels.size(); ++i) {
    for (auto& [l, v] : req.extra_values)
      if (l == b.labels[i]) extra[i] = &v;
    if (!extra[i]) extra[i] = def.values_of(b.labels[i]);
    if (extra[i]) combos *= static_cast<std::uint32_t>(extra[i]->size());
  }
  // Every non-extra label must have a base value in every base child.
  for (auto& base : req.base_children)
    for (std::size_t i = 0; i < b.labels.size(); ++i) {
      if (extra[i]) continue;
      bool found = false;
      for (auto& [l, v] : base)
        found = found || l == b.labels[i];
      if (!found) return b;  // not pre-creatable: family only
    }
  b.per_base = combos;

  std::vector<std::string_view> values(b.labels.size());
  for (auto& base : req.base_children) {
    for (std::uint32_t combo = 0; combo < combos; ++combo) {
      std::uint32_t rest = combo;
      // The last extra label varies fastest, so a single extra label's values keep
      // their catalog order as child indices.
      for (std::size_t i = b.labels.size(); i-- > 0;) {
        if (extra[i]) {
          auto n = static_cast<std::uint32_t>(extra[i]->size());
          values[i] = (*extra[i])[rest % n];
          rest /= n;
        } else {
          for (auto& [l, v] : base)
            if (l == b.labels[i]) values[i] = v;
        }
      }
      switch (def.type) {
        case layout::metric_type::counter: {
          auto h = b.counters.with_labels(values);
          if (!h) return h.error();
          b.c.push_back(*h);
          break;
        }
        case layout::metric_type::gauge:
        case layout::metric_type::info: {
          auto h = b.gauges.with_labels(values);
          if (!h) return h.error();
          b.g.push_back(*h);
          break;
        }
        case layout::metric_type::histogram: {
          auto h = b.histograms.with_labels(values);
          if (!h) return h.error();
          b.h.push_back(*h);
          break;
        }
      }
    }
  }
  return b;
}

}  // namespace catalog_detail
SHMETRICS_END_NAMESPACE
