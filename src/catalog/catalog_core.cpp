// The catalog without its JSON parser: lookups, selection, the deprecation policy and
// reading the file. The parser (simdjson) is catalog.cpp, so the single header can carry
// this part alone (catalog.hpp's builtin() needs no parser).
#include <shmetrics/catalog/catalog.hpp>

#include <cerrno>   // errno for open failures
#include <cstdio>   // reading the file
#include <cstdlib>  // getenv, strtol

#include <shmetrics/detail/validate.hpp>

#ifndef SHMETRICS_CATALOG_DIR
#define SHMETRICS_CATALOG_DIR "/usr/local/share/shmetrics"
#endif

SHMETRICS_BEGIN_NAMESPACE

namespace catalog_detail {

bool version_ok(std::string_view v) {
  auto dot = v.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot + 1 == v.size()) return false;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (i != dot && !detail::is_digit(v[i])) return false;
  return true;
}

}  // namespace catalog_detail

namespace {

using catalog_detail::version_ok;

bool parse_version(std::string_view v, long& major, long& minor) {
  if (!version_ok(v)) return false;
  auto dot = v.find('.');
  major = std::strtol(std::string(v.substr(0, dot)).c_str(), nullptr, 10);
  minor = std::strtol(std::string(v.substr(dot + 1)).c_str(), nullptr, 10);
  return true;
}

}  // namespace

std::vector<double> buckets_1_2_5(std::uint64_t max_value) {
  std::vector<double> out;
  for (std::uint64_t scale = 1;; scale *= 10)
    for (std::uint64_t m : {1u, 2u, 5u}) {
      if (m * scale > max_value) return out;
      out.push_back(static_cast<double>(m * scale));
    }
}

bool deprecated_family_visible(std::string_view deprecated_in, std::string_view version,
                               std::string_view show_hidden) {
  long dmaj, dmin, vmaj, vmin;
  if (!parse_version(deprecated_in, dmaj, dmin) || !parse_version(version, vmaj, vmin))
    return false;
  if (vmaj != dmaj) return vmaj < dmaj;  // a new major has removed it
  if (vmin <= dmin) return true;         // deprecated in this release: still shown
  if (vmin == dmin + 1)                  // hidden: shown only for the previous minor
    return show_hidden == std::to_string(vmaj) + "." + std::to_string(vmin - 1);
  return false;  // X.Y+2 and later: removed
}

std::string_view listing_status(const family_def& d, std::string_view version) {
  if (d.when == "deprecated") {
    if (deprecated_family_visible(d.deprecated_in, version, "")) return "deprecated";
    long vmaj, vmin;
    if (parse_version(version, vmaj, vmin) && vmin > 0 &&
        deprecated_family_visible(d.deprecated_in, version,
                                  std::to_string(vmaj) + "." + std::to_string(vmin - 1)))
      return "hidden";
    return "removed";
  }
  if (d.status == "removed") return "removed";
  if (d.status == "deprecated") return "deprecated";
  if (!d.seeds.empty()) return "seed";
  return "upstream";
}

std::string catalog::default_path() {
  if (const char* env = std::getenv("SHMETRICS_CATALOG"); env && *env) return env;
  return SHMETRICS_CATALOG_DIR "/vllm_catalog.json";
}

const family_def* catalog::find(std::string_view key) const noexcept {
  for (auto& f : families_)
    if (f.key == key) return &f;
  return nullptr;
}

const family_def* catalog::find_name(std::string_view name) const noexcept {
  for (auto& f : families_)
    if (f.name == name) return &f;
  return nullptr;
}

const std::vector<double>* catalog::bucket_set(std::string_view name) const noexcept {
  for (auto& [n, b] : bucket_sets_)
    if (n == name) return &b;
  return nullptr;
}

namespace {

// "catalog JSON file PATH (where it came from, how to point at another)": a missing file is
// most often the installed default in a build tree, so say what to set.
std::string open_detail(const std::string& path) {
  std::string d = "catalog JSON file " + path;
  const char* env = std::getenv("SHMETRICS_CATALOG");
  if (env && *env && path == env)
    d += " (from $SHMETRICS_CATALOG)";
  else if (path == catalog::default_path())
    d += " (the installed default; set $SHMETRICS_CATALOG to the catalog's path, e.g. "
         "data/vllm_catalog.json in the source tree)";
  else
    d += " (set $SHMETRICS_CATALOG to the catalog's path)";
  return d;
}

}  // namespace

result<catalog> catalog::load(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rbe");
  if (!f) return error{errc::open_failed, errno, open_detail(path)};
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    text.append(buf, n);
  bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) return error{errc::open_failed, EIO, open_detail(path)};
  return parse(text, path);
}

result<catalog> catalog::select(const std::vector<std::string>& keys_or_names) const {
  for (auto& k : keys_or_names)
    if (!find(k) && !find_name(k))
      return error{errc::invalid_options, 0,
                   "catalog " + origin_ + ": select: no family has the key or name \"" + k +
                       "\" (keys look like vllm/time_to_first_token_seconds, names like "
                       "vllm:time_to_first_token_seconds)"};
  return select_if([&](const family_def& d) {
    for (auto& k : keys_or_names)
      if (k == d.key || k == d.name) return true;
    return false;
  });
}

catalog catalog::select_if(const std::function<bool(const family_def&)>& keep) const {
  catalog c;
  c.origin_ = origin_;
  c.vllm_version_ = vllm_version_;
  c.omni_seed_prefix_ = omni_seed_prefix_;
  c.omni_upstream_prefix_ = omni_upstream_prefix_;
  c.bucket_sets_ = bucket_sets_;
  c.upstream_releases_ = upstream_releases_;
  for (auto& d : families_)
    if (keep(d)) c.families_.push_back(d);
  c.selection_ = true;
  return c;
}

SHMETRICS_END_NAMESPACE
