// The catalog loader: simdjson DOM, then a validation pass that refuses anything the
// registration code would otherwise trip over later, naming the file, the entry and
// the problem.
#include <shmetrics/catalog/catalog.hpp>

#include <cerrno>   // errno for open failures
#include <cmath>    // std::isfinite
#include <cstdio>   // reading the file
#include <cstdlib>  // getenv
#include <set>      // duplicate checks
#include <simdjson.h>

#include <shmetrics/detail/validate.hpp>

#ifndef SHMETRICS_CATALOG_DIR
#define SHMETRICS_CATALOG_DIR "/usr/local/share/shmetrics"
#endif

SHMETRICS_BEGIN_NAMESPACE

namespace {

using catalog_detail::version_ok;  // catalog_core.cpp
using simdjson::dom::element;
using simdjson::dom::element_type;

// Thrown-free error plumbing: every check returns a message or "" (ok).
struct where {
  std::string origin;
  std::string entry;  // "families[3] (vllm:foo)" or "bucket_sets.SECONDS"
  error fail(const std::string& what) const {
    std::string d = "catalog " + origin;
    if (!entry.empty()) d += ": " + entry;
    d += ": " + what;
    return error{errc::corrupt_record, 0, std::move(d)};
  }
};

bool get_string(element e, std::string& out) {
  std::string_view sv;
  if (e.get_string().get(sv)) return false;
  out.assign(sv);
  return true;
}

bool get_number(element e, double& out) {
  switch (e.type()) {
    case element_type::INT64:
      out = static_cast<double>(e.get_int64().value_unsafe());
      return true;
    case element_type::UINT64:
      out = static_cast<double>(e.get_uint64().value_unsafe());
      return true;
    case element_type::DOUBLE:
      out = e.get_double().value_unsafe();
      return true;
    default:
      return false;
  }
}

// "" when `b` is a valid bucket list, else why not.
std::string check_bounds(const std::vector<double>& b) {
  if (b.empty()) return "bucket list is empty";
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(b[i])) return "bucket " + std::to_string(i) + " is not finite";
    if (i > 0 && !(b[i] > b[i - 1]))
      return "buckets not strictly increasing at index " + std::to_string(i);
  }
  return {};
}

bool parse_numbers(element e, std::vector<double>& out) {
  simdjson::dom::array arr;
  if (e.get_array().get(arr)) return false;
  for (element x : arr) {
    double v;
    if (!get_number(x, v)) return false;
    out.push_back(v);
  }
  return true;
}

const std::set<std::string_view> known_fields = {
    "key",          "name",           "type",      "labels",      "buckets",       "help",
    "source",       "status",         "when",      "gauge_mode",  "deprecated_in", "mirrors",
    "label_values", "runtime_labels", "condition", "bucket_rule", "notes",         "upstream",
    "seed"};
const std::set<std::string_view> known_status = {
    "current",    "conditional",   "newer",  "newer-partial",   "deprecated",    "removed",
    "unverified", "inferred-name", "legacy", "library-default", "post-reference"};
// worker_timing and kv_offload_tiered: families nothing registers yet (vLLM's worker
// timing histograms, the tiered-offload counters), listed so tools and users know them.
const std::set<std::string_view> vllm_when = {
    "always",           "deprecated", "never",         "compute_nans",
    "kv_cache_metrics", "lora",       "spec_decode",   "nixl",
    "kv_offload",       "sleep_mode", "worker_timing", "kv_offload_tiered",
    "admission_control"};
const std::set<std::string_view> omni_when = {"seed", "extended", "never"};

// "" when `ref` names a revision as the catalog spells them, else what is wrong.
std::string check_ref(std::string_view ref) {
  auto digits = [](std::string_view s) {
    if (s.empty()) return false;
    for (char ch : s)
      if (!detail::is_digit(ch)) return false;
    return true;
  };
  bool hex = ref.size() >= 7 && ref.size() <= 40;
  for (char ch : ref)
    hex = hex && (detail::is_digit(ch) || (ch >= 'a' && ch <= 'f'));
  if (hex || ref == "unknown" || (ref.starts_with("#") && digits(ref.substr(1))) ||
      (ref.starts_with("index:") && digits(ref.substr(6))))
    return {};
  return "must be a commit (7 to 40 lowercase hex digits), \"#<pull request or issue>\", "
         "\"index:<id>\" or \"unknown\", not \"" +
         std::string(ref) + "\"";
}

// "owner/name" as GitHub spells them.
bool repo_ok(std::string_view r) {
  auto slash = r.find('/');
  if (slash == 0 || slash == std::string_view::npos || slash + 1 == r.size() ||
      r.find('/', slash + 1) != std::string_view::npos)
    return false;
  for (char ch : r)
    if (!(detail::is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          ch == '-' || ch == '_' || ch == '.' || ch == '/'))
      return false;
  return true;
}

// A file inside a repository: relative, no "..", no blanks.
bool repo_path_ok(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.back() == '/') return false;
  for (char ch : p)
    if (static_cast<unsigned char>(ch) <= ' ') return false;
  std::size_t at = 0;
  while (at <= p.size()) {
    auto end = p.find('/', at);
    if (end == std::string_view::npos) end = p.size();
    auto part = p.substr(at, end - at);
    if (part.empty() || part == "." || part == "..") return false;
    at = end + 1;
  }
  return true;
}

// Reads {"repo", "path" or "release", "ref"} into the three strings; "" or why not.
std::string parse_source_object(element e, std::string_view middle, std::string& repo,
                                std::string& mid, std::string& ref) {
  simdjson::dom::object o;
  if (e.get_object().get(o)) return "is not an object";
  for (auto kv : o)
    if (kv.key != "repo" && kv.key != middle && kv.key != "ref")
      return "has an unknown field \"" + std::string(kv.key) + "\"";
  element x;
  if (o["repo"].get(x) || !get_string(x, repo) || !repo_ok(repo))
    return "\"repo\" must be \"owner/name\"";
  if (o[middle].get(x) || !get_string(x, mid) || mid.empty())
    return "\"" + std::string(middle) + "\" missing or empty";
  if (o["ref"].get(x) || !get_string(x, ref)) return "\"ref\" missing or not a string";
  if (auto why = check_ref(ref); !why.empty()) return "\"ref\" " + why;
  return {};
}

bool parse_mode(std::string_view s, layout::gauge_mode& m) {
  static const std::pair<std::string_view, layout::gauge_mode> modes[] = {
      {"sum", layout::gauge_mode::sum},           {"max", layout::gauge_mode::max},
      {"min", layout::gauge_mode::min},           {"latest", layout::gauge_mode::latest},
      {"live_sum", layout::gauge_mode::live_sum}, {"live_max", layout::gauge_mode::live_max},
      {"live_min", layout::gauge_mode::live_min}, {"live_latest", layout::gauge_mode::live_latest}};
  for (auto& [n, v] : modes)
    if (n == s) {
      m = v;
      return true;
    }
  return false;
}

}  // namespace

result<catalog> catalog::parse(std::string_view json, std::string_view origin) {
  where w{std::string(origin), {}};
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json.data(), json.size());
  element root;
  if (auto err = parser.parse(padded).get(root))
    return w.fail(std::string("not valid JSON: ") + simdjson::error_message(err));
  simdjson::dom::object top;
  if (root.get_object().get(top)) return w.fail("top level is not an object");

  catalog c;
  c.origin_ = origin;
  std::string s;
  element e;
  if (top["format"].get(e) || !get_string(e, s) || s != "shmetrics-vllm-catalog")
    return w.fail("\"format\" must be \"shmetrics-vllm-catalog\"");
  std::int64_t fv = 0;
  // Format 2 added each family's "upstream" and "seed" and the top-level
  // "upstream_releases"; a format-1 file predates them.
  if (top["format_version"].get(e) || e.get_int64().get(fv) || fv != 2)
    return w.fail("\"format_version\" must be 2 (this shmetrics reads catalog format 2; " +
                  std::string(fv == 1 ? "format 1 lacks the upstream sources" : "got another") +
                  ")");
  if (top["vllm_version"].get(e) || !get_string(e, c.vllm_version_) || !version_ok(c.vllm_version_))
    return w.fail("\"vllm_version\" must be a string \"X.Y\"");
  {
    simdjson::dom::object rels;
    if (top["upstream_releases"].get_object().get(rels))
      return w.fail("\"upstream_releases\" missing or not an object");
    for (auto kv : rels) {
      where rw{w.origin, "upstream_releases." + std::string(kv.key)};
      upstream_release r;
      r.name = std::string(kv.key);
      if (r.name.empty()) return rw.fail("empty name");
      if (auto why = parse_source_object(kv.value, "release", r.repo, r.release, r.ref);
          !why.empty())
        return rw.fail(why);
      c.upstream_releases_.push_back(std::move(r));
    }
    if (c.upstream_releases_.empty()) return w.fail("\"upstream_releases\" is empty");
  }
  {
    where pw{w.origin, "omni_prefixes"};
    simdjson::dom::object p;
    if (top["omni_prefixes"].get_object().get(p)) return pw.fail("missing or not an object");
    if (p["seed"].get(e) || !get_string(e, c.omni_seed_prefix_) ||
        !detail::valid_metric_name(c.omni_seed_prefix_ + "x"))
      return pw.fail("\"seed\" must be a metric-name prefix");
    if (p["upstream"].get(e) || !get_string(e, c.omni_upstream_prefix_) ||
        !detail::valid_metric_name(c.omni_upstream_prefix_ + "x"))
      return pw.fail("\"upstream\" must be a metric-name prefix");
  }
  {
    simdjson::dom::object sets;
    if (top["bucket_sets"].get_object().get(sets))
      return w.fail("\"bucket_sets\" missing or not an object");
    for (auto kv : sets) {
      where bw{w.origin, "bucket_sets." + std::string(kv.key)};
      std::vector<double> b;
      if (!parse_numbers(kv.value, b)) return bw.fail("not an array of numbers");
      if (auto why = check_bounds(b); !why.empty()) return bw.fail(why);
      c.bucket_sets_.emplace_back(std::string(kv.key), std::move(b));
    }
  }

  simdjson::dom::array fams;
  if (top["families"].get_array().get(fams)) return w.fail("\"families\" missing or not an array");
  std::set<std::string> keys, names;
  std::size_t index = 0;
  for (element fe : fams) {
    where fw{w.origin, "families[" + std::to_string(index++) + "]"};
    simdjson::dom::object o;
    if (fe.get_object().get(o)) return fw.fail("not an object");
    family_def d;
    // name first, so every later message names the family.
    if (o["name"].get(e) || !get_string(e, d.name))
      return fw.fail("\"name\" missing or not a string");
    fw.entry += " (" + d.name + ")";
    for (auto kv : o)
      if (!known_fields.count(kv.key))
        return fw.fail("unknown field \"" + std::string(kv.key) + "\"");

    if (o["key"].get(e) || !get_string(e, d.key) || d.key.empty())
      return fw.fail("\"key\" missing or not a string");
    if (!keys.insert(d.key).second) return fw.fail("duplicate key \"" + d.key + "\"");
    if (!names.insert(d.name).second) return fw.fail("duplicate name");

    if (o["source"].get(e) || !get_string(e, s)) return fw.fail("\"source\" missing");
    if (s == "vllm")
      d.source = family_source::vllm;
    else if (s == "vllm-omni")
      d.source = family_source::omni;
    else
      return fw.fail("\"source\" must be \"vllm\" or \"vllm-omni\", not \"" + s + "\"");
    if (d.source == family_source::vllm && !d.key.starts_with("vllm/"))
      return fw.fail("vllm keys start with \"vllm/\"");
    if (d.source == family_source::omni && !d.key.starts_with("omni/"))
      return fw.fail("vllm-omni keys start with \"omni/\"");
    if (d.source == family_source::omni && !d.name.starts_with(c.omni_seed_prefix_))
      return fw.fail("vllm-omni names are spelled with the seed prefix \"" + c.omni_seed_prefix_ +
                     "\"");

    std::string type;
    if (o["type"].get(e) || !get_string(e, type)) return fw.fail("\"type\" missing");
    if (type == "counter")
      d.type = layout::metric_type::counter;
    else if (type == "gauge")
      d.type = layout::metric_type::gauge;
    else if (type == "histogram")
      d.type = layout::metric_type::histogram;
    else if (type == "info")
      d.type = layout::metric_type::info;
    else
      return fw.fail("unknown type \"" + type + "\" (want counter, gauge, histogram, info)");
    const bool hist = d.type == layout::metric_type::histogram;
    {
      std::string exposed = d.name;
      if (d.type == layout::metric_type::counter && exposed.ends_with("_total"))
        exposed.resize(exposed.size() - 6);
      if (!detail::valid_metric_name(exposed)) return fw.fail("invalid metric name");
    }

    simdjson::dom::array labels;
    if (o["labels"].get_array().get(labels)) return fw.fail("\"labels\" missing or not an array");
    for (element le : labels) {
      std::string l;
      if (!get_string(le, l)) return fw.fail("a label is not a string");
      if (!detail::valid_label_name(l)) return fw.fail("invalid label name \"" + l + "\"");
      if (l.starts_with("__") || (hist && l == "le"))
        return fw.fail("reserved label name \"" + l + "\"");
      for (auto& prev : d.labels)
        if (prev == l) return fw.fail("duplicate label \"" + l + "\"");
      d.labels.push_back(l);
    }

    if (o["help"].get(e) || !get_string(e, d.help) || d.help.empty())
      return fw.fail("\"help\" missing or empty");
    if (o["status"].get(e) || !get_string(e, d.status) || !known_status.count(d.status))
      return fw.fail("\"status\" missing or unknown");
    if (o["when"].get(e) || !get_string(e, d.when)) return fw.fail("\"when\" missing");
    if (!(d.source == family_source::vllm ? vllm_when : omni_when).count(d.when))
      return fw.fail("unknown \"when\" \"" + d.when + "\" for this source");

    // buckets: null, an array, a bucket_sets name, or "1-2-5"
    if (o["buckets"].get(e)) return fw.fail("\"buckets\" missing (null for non-histograms)");
    if (e.is_null()) {
      if (hist && d.when != "never") return fw.fail("a registrable histogram needs buckets");
    } else if (!hist) {
      return fw.fail("buckets on a " + type);
    } else if (e.is_string()) {
      get_string(e, s);
      if (s == "1-2-5") {
        d.buckets_1_2_5 = true;
      } else if (auto* b = c.bucket_set(s)) {
        d.buckets = *b;
        d.bucket_set = s;
      } else {
        return fw.fail("unknown bucket set \"" + s + "\"");
      }
    } else {
      if (!parse_numbers(e, d.buckets)) return fw.fail("\"buckets\" is not an array of numbers");
      if (auto why = check_bounds(d.buckets); !why.empty()) return fw.fail(why);
    }

    if (!o["gauge_mode"].get(e)) {
      if (d.type != layout::metric_type::gauge && d.type != layout::metric_type::info)
        return fw.fail("gauge_mode on a " + type);
      if (!get_string(e, s) || !parse_mode(s, d.mode))
        return fw.fail("unknown gauge_mode (want sum, max, min, latest, live_*)");
    } else if (d.type == layout::metric_type::gauge) {
      return fw.fail("a gauge needs a gauge_mode");
    }

    if (!o["deprecated_in"].get(e)) {
      if (!get_string(e, d.deprecated_in) || !version_ok(d.deprecated_in))
        return fw.fail("\"deprecated_in\" must be \"X.Y\"");
    }
    if ((d.when == "deprecated") != !d.deprecated_in.empty())
      return fw.fail("\"deprecated_in\" goes with \"when\": \"deprecated\", and only there");
    if (!o["mirrors"].get(e) && !get_string(e, d.mirrors))
      return fw.fail("\"mirrors\" is not a string");
    if (!o["runtime_labels"].get(e)) {
      if (!get_string(e, d.runtime_labels) || d.runtime_labels != "cache_config" ||
          d.type != layout::metric_type::info)
        return fw.fail("\"runtime_labels\" is only \"cache_config\" on an info family");
    }

    if (!o["label_values"].get(e)) {
      simdjson::dom::object lv;
      if (e.get_object().get(lv)) return fw.fail("\"label_values\" is not an object");
      for (auto kv : lv) {
        std::string l(kv.key);
        bool known = false;
        for (auto& x : d.labels)
          known = known || x == l;
        if (!known || l == "model_name" || l == "engine")
          return fw.fail("label_values for \"" + l + "\", which is not an extra label");
        simdjson::dom::array vals;
        if (kv.value.get_array().get(vals))
          return fw.fail("label_values." + l + " is not an array");
        std::vector<std::string> v;
        for (element ve : vals) {
          std::string x;
          if (!get_string(ve, x)) return fw.fail("label_values." + l + " has a non-string");
          for (auto& p : v)
            if (p == x) return fw.fail("label_values." + l + " repeats \"" + x + "\"");
          v.push_back(std::move(x));
        }
        if (v.empty()) return fw.fail("label_values." + l + " is empty");
        d.label_values.emplace_back(std::move(l), std::move(v));
      }
    }
    if (!o["upstream"].get(e)) {
      auto& u = d.upstream;
      if (auto why = parse_source_object(e, "path", u.repo, u.path, u.ref); !why.empty())
        return fw.fail("\"upstream\" " + why);
      if (!repo_path_ok(u.path))
        return fw.fail("\"upstream\" \"path\" must be a relative file path, not \"" + u.path +
                       "\"");
      bool known = false;
      for (auto& r : c.upstream_releases_)
        known = known || r.repo == u.repo;
      if (!known)
        return fw.fail("\"upstream\" \"repo\" " + u.repo + " is not in \"upstream_releases\"");
    }
    if (!o["seed"].get(e)) {
      simdjson::dom::array files;
      if (e.get_array().get(files)) return fw.fail("\"seed\" is not an array of file names");
      for (element se : files) {
        std::string f;
        if (!get_string(se, f) || f.empty() || f.find('/') != std::string::npos)
          return fw.fail("\"seed\" holds a non-string, empty or path entry");
        for (auto& p : d.seeds)
          if (p == f) return fw.fail("\"seed\" repeats \"" + f + "\"");
        d.seeds.push_back(std::move(f));
      }
      if (d.seeds.empty()) return fw.fail("\"seed\" is empty");
    }
    for (const char* opt : {"condition", "bucket_rule", "notes"})
      if (!o[opt].get(e) && !e.is_string())
        return fw.fail(std::string("\"") + opt + "\" is not a string");
    c.families_.push_back(std::move(d));
  }

  // Cross-entry checks: a deprecated alias repeats an existing family of the same shape.
  for (std::size_t i = 0; i < c.families_.size(); ++i) {
    const family_def& d = c.families_[i];
    if (d.mirrors.empty()) continue;
    where fw{w.origin, "families[" + std::to_string(i) + "] (" + d.name + ")"};
    const family_def* m = c.find(d.mirrors);
    if (!m) return fw.fail("\"mirrors\" names no family (\"" + d.mirrors + "\")");
    if (m->type != d.type || m->labels != d.labels)
      return fw.fail("\"mirrors\" " + m->name + " has a different type or labels");
  }
  return c;
}

SHMETRICS_END_NAMESPACE
