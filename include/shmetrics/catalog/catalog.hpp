// shmetrics catalog: the vLLM / vLLM-Omni metric families as data.
//
// The catalog is a JSON file (data/vllm_catalog.json, installed under share/shmetrics)
// with one entry per family: exact name, type, labels, buckets, help, and the policy
// fields shmetrics needs (when it is registered, its gauge merge mode, its deprecation
// version, the label values pre-created at start-up). catalog::load() parses it with
// simdjson and validates every entry; engine code then goes through the typed API
// (vllm_metrics.hpp, omni_metrics.hpp) and never spells a metric name.
//
// The same families are compiled in (catalog::builtin(), generated from the JSON file by
// scripts/gen-catalog-header): no file and no simdjson at run time.
//
// This header does not include simdjson: parsing lives in the shmetrics_catalog library.
#ifndef SHMETRICS_CATALOG_CATALOG_HPP
#define SHMETRICS_CATALOG_CATALOG_HPP

#include <cstdint>      // max_model_len
#include <functional>   // select_if
#include <string>       // names
#include <string_view>  // lookups
#include <utility>      // pair
#include <vector>       // entries

#include "../errc.hpp"
#include "../segment_layout.hpp"

SHMETRICS_BEGIN_NAMESPACE

/// Where a family comes from: vLLM's PrometheusStatLogger or vLLM-Omni's own metrics.
enum class family_source : std::uint8_t { vllm, omni };

/// Where upstream defines a family: repository, file and the revision read. `ref` is a
/// commit (7 to 40 hex digits), "#N" (the pull request or issue), "index:N" (a copy in the
/// code index whose commit the index does not give) or "unknown". All empty when the
/// entry records no source.
struct upstream_source {
  std::string repo{};  ///< "vllm-project/vllm", "vllm-project/vllm-omni"
  std::string path{};  ///< file in that repository: "vllm/v1/metrics/loggers.py"
  std::string ref{};

  bool operator==(const upstream_source&) const = default;
};

/// Which revision of one upstream the catalog matches (top-level "upstream_releases").
struct upstream_release {
  std::string name{};     ///< "vllm", "vllm-omni"
  std::string repo{};     ///< "vllm-project/vllm"
  std::string release{};  ///< "0.32", or prose such as "main after v0.24.0"
  std::string ref{};      ///< as upstream_source::ref

  bool operator==(const upstream_release&) const = default;
};

/// One family as the catalog defines it.
struct family_def {
  std::string key{};   ///< stable id for the typed API: "vllm/<name>" or "omni/<name>"
  std::string name{};  ///< exposed name; Omni names use the seed prefix "vllm:omni_"
  family_source source = family_source::vllm;
  layout::metric_type type = layout::metric_type::gauge;
  std::vector<std::string> labels{};  ///< as vLLM declares them (vLLM families: with "engine")
  /// Histogram bounds; empty with buckets_1_2_5 when they follow max_model_len.
  std::vector<double> buckets{};
  std::string bucket_set{};    ///< name of the catalog constant the bounds came from, if any
  bool buckets_1_2_5 = false;  ///< vLLM's build_1_2_5_buckets(max_model_len)
  std::string help{};
  std::string status{};  ///< current, conditional, newer, deprecated, removed, ...
  std::string when{};    ///< registration condition (always, seed, extended, spec_decode, ...)
  layout::gauge_mode mode = layout::gauge_mode::latest;  ///< gauges and infos only
  std::string deprecated_in{};                           ///< "X.Y" or empty
  std::string mirrors{};         ///< key of the family whose values a deprecated alias repeats
  std::string runtime_labels{};  ///< "cache_config": label names supplied at start-up
  /// Pre-created children: values for the family's extra labels, in catalog order.
  std::vector<std::pair<std::string, std::vector<std::string>>> label_values{};
  upstream_source upstream{};  ///< where upstream defines it ("upstream")
  /// The seed files (shared/reference/seeds/) that name it ("seed"); empty for the
  /// families only upstream defines.
  std::vector<std::string> seeds{};

  /// Every field equal (the builtin catalog against the JSON file, in a test).
  bool operator==(const family_def&) const = default;

  /// The values of `label` to pre-create, or nullptr.
  const std::vector<std::string>* values_of(std::string_view label) const noexcept {
    for (auto& [l, v] : label_values)
      if (l == label) return &v;
    return nullptr;
  }
};

/// The loaded catalog. Immutable after load; cheap to share by const reference.
class catalog {
 public:
  /// Reads and validates `path`. Fails with open_failed (cannot read; errno set) or
  /// corrupt_record, the detail naming the file, the entry and what is wrong:
  ///   "catalog data/x.json: families[3] (vllm:foo): buckets not strictly increasing"
  static result<catalog> load(const std::string& path);
  /// Same for text already in memory; `origin` names it in errors.
  static result<catalog> parse(std::string_view json, std::string_view origin);

  /// The catalog shipped with shmetrics: $SHMETRICS_CATALOG if set, else the installed
  /// <datadir>/shmetrics/vllm_catalog.json.
  static std::string default_path();

  /// data/vllm_catalog.json as compiled into shmetrics (src/catalog/builtin_catalog.cpp,
  /// generated): the same catalog as load() of that file, without the file or simdjson.
  /// Built on first use; origin() is "builtin".
  static const catalog& builtin();

  /// A copy with only the families listed, each by key ("vllm/time_to_first_token_seconds")
  /// or by exposed name ("vllm:time_to_first_token_seconds"). The typed classes
  /// (vllm_metrics, omni_metrics) register only these (if their condition holds); their
  /// record calls for the others do nothing. Fails with invalid_options naming the first
  /// entry that matches no family.
  result<catalog> select(const std::vector<std::string>& keys_or_names) const;
  /// A copy with only the families `keep` accepts; as select().
  catalog select_if(const std::function<bool(const family_def&)>& keep) const;
  /// True for a catalog made by select()/select_if(): the typed classes do not require
  /// their families in it.
  bool is_selection() const noexcept { return selection_; }

  const std::vector<family_def>& families() const noexcept { return families_; }
  /// The entry with this key, or nullptr.
  const family_def* find(std::string_view key) const noexcept;
  /// The entry with this exposed name (Omni: seed spelling), or nullptr.
  const family_def* find_name(std::string_view name) const noexcept;
  /// A bucket constant (REQUEST_LATENCY, SECONDS, SECONDS_FAST, RTF, BYTES, ...), or nullptr.
  const std::vector<double>* bucket_set(std::string_view name) const noexcept;
  /// Every bucket constant, in catalog order.
  const std::vector<std::pair<std::string, std::vector<double>>>& bucket_sets() const noexcept {
    return bucket_sets_;
  }

  /// The vLLM version whose metric set the catalog describes ("0.32"); the default
  /// version for the deprecation policy.
  const std::string& vllm_version() const noexcept { return vllm_version_; }
  /// The upstream revisions the catalog matches, in file order ("vllm", "vllm-omni").
  const std::vector<upstream_release>& upstream_releases() const noexcept {
    return upstream_releases_;
  }
  /// Omni prefixes: the seed's "vllm:omni_" and current upstream's "vllm_omni:".
  const std::string& omni_seed_prefix() const noexcept { return omni_seed_prefix_; }
  const std::string& omni_upstream_prefix() const noexcept { return omni_upstream_prefix_; }
  const std::string& origin() const noexcept { return origin_; }

 private:
  std::string origin_;
  std::string vllm_version_;
  std::vector<upstream_release> upstream_releases_;
  std::string omni_seed_prefix_, omni_upstream_prefix_;
  std::vector<std::pair<std::string, std::vector<double>>> bucket_sets_;
  std::vector<family_def> families_;
  bool selection_ = false;
};

/// vLLM's build_1_2_5_buckets(max_value): 1, 2, 5, 10, 20, 50, ... while <= max_value.
std::vector<double> buckets_1_2_5(std::uint64_t max_value);

/// vLLM's deprecation policy (docs/usage/metrics.md): a metric deprecated in X.Y is
/// shown in X.Y, hidden in X.Y+1 unless --show-hidden-metrics-for-version=X.Y, and
/// removed from X.Y+2. `version` is the emulated vLLM version ("0.12"), `show_hidden`
/// the setting ("" when not given). True when the family is registered.
bool deprecated_family_visible(std::string_view deprecated_in, std::string_view version,
                               std::string_view show_hidden);

/// How `shmetrics-inspect catalog` lists a family at vLLM `version` (the catalog's
/// vllm_version by default):
///   "deprecated"  deprecated and still shown (when: deprecated in its own release, or
///                 status: deprecated, a name upstream keeps registering beside its successor)
///   "hidden"      deprecated in the previous minor: registered only with
///                 --show-hidden-metrics-for-version
///   "removed"     deprecated two or more minors ago, or a V0-only name (status: removed)
///   "seed"        named by a seed file (family_def::seeds)
///   "upstream"    any other: defined upstream only
std::string_view listing_status(const family_def& d, std::string_view version);

namespace catalog_detail {
/// "X.Y" with digits only (vllm_version, deprecated_in).
bool version_ok(std::string_view v);
}  // namespace catalog_detail

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_CATALOG_CATALOG_HPP
