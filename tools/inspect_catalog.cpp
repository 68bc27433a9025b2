// shmetrics-inspect catalog: the vLLM / vLLM-Omni families the catalog knows, each with
// its type, labels, listing status and where upstream defines it, and the upstream
// releases the catalog matches (docs/inspect.md, docs/catalog.md).
//
// It reads the catalog JSON (--catalog PATH, else $SHMETRICS_CATALOG, else the installed
// one), not a segment: it needs the catalog loader, which needs simdjson. A build without
// simdjson says so and exits 1.
#include <algorithm>  // max
#include <cstdio>     // printf
#include <string>     // output
#include <vector>     // rows

#include "inspect_common.hpp"

#ifdef SHMETRICS_INSPECT_CATALOG
#include <shmetrics/catalog/catalog.hpp>
#endif

namespace inspect {

#ifndef SHMETRICS_INSPECT_CATALOG

int cmd_catalog(const options&) {
  std::fprintf(stderr,
               "shmetrics-inspect: catalog: this build has no catalog loader (built without "
               "simdjson)\n");
  return 1;
}

#else

namespace {

const char* type_text(shmetrics::layout::metric_type t) {
  switch (t) {
    case shmetrics::layout::metric_type::counter:
      return "counter";
    case shmetrics::layout::metric_type::histogram:
      return "histogram";
    case shmetrics::layout::metric_type::info:
      return "info";
    default:
      return "gauge";
  }
}

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (auto& s : v)
    out += (out.empty() ? "" : sep) + s;
  return out;
}

// "repo:path@ref", a 40-digit commit shortened to 12 as git does for people.
std::string source_text(const shmetrics::upstream_source& u) {
  if (u.repo.empty()) return "-";
  std::string ref = u.ref.size() == 40 ? u.ref.substr(0, 12) : u.ref;
  return u.repo + ":" + u.path + "@" + ref;
}

void json_strings(std::string& out, const std::vector<std::string>& v) {
  out += '[';
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    json_string(out, v[i]);
  }
  out += ']';
}

}  // namespace

int cmd_catalog(const options& o) {
  std::string path = o.catalog_path.empty() ? shmetrics::catalog::default_path() : o.catalog_path;
  auto cat = shmetrics::catalog::load(path);
  if (!cat) {
    std::fprintf(stderr, "shmetrics-inspect: %s\n", cat.error().message().c_str());
    return 1;
  }
  const std::string& version = cat->vllm_version();

  struct row {
    const shmetrics::family_def* f;
    std::string_view status;
  };
  std::vector<row> rows;
  for (auto& f : cat->families()) {
    auto st = shmetrics::listing_status(f, version);
    if (!o.status_filter.empty() && st != o.status_filter) continue;
    if (!o.name_glob.empty() && !glob_match(o.name_glob, f.name)) continue;
    rows.push_back({&f, st});
  }

  if (o.json) {
    std::string out = "{\"catalog\":";
    json_string(out, path);
    out += ",\"vllm_version\":";
    json_string(out, version);
    out += ",\"upstream_releases\":[";
    bool first = true;
    for (auto& r : cat->upstream_releases()) {
      out += first ? "{" : ",{";
      first = false;
      out += "\"name\":";
      json_string(out, r.name);
      out += ",\"repo\":";
      json_string(out, r.repo);
      out += ",\"release\":";
      json_string(out, r.release);
      out += ",\"ref\":";
      json_string(out, r.ref);
      out += '}';
    }
    out += "],\"families\":[";
    first = true;
    for (auto& r : rows) {
      const auto& f = *r.f;
      out += first ? "{" : ",{";
      first = false;
      out += "\"key\":";
      json_string(out, f.key);
      out += ",\"name\":";
      json_string(out, f.name);
      out += ",\"type\":";
      json_string(out, type_text(f.type));
      out += ",\"labels\":";
      json_strings(out, f.labels);
      out += ",\"status\":";
      json_string(out, r.status);
      out += ",\"when\":";
      json_string(out, f.when);
      out += ",\"upstream\":";
      if (f.upstream.repo.empty()) {
        out += "null";
      } else {
        out += "{\"repo\":";
        json_string(out, f.upstream.repo);
        out += ",\"path\":";
        json_string(out, f.upstream.path);
        out += ",\"ref\":";
        json_string(out, f.upstream.ref);
        out += '}';
      }
      out += ",\"seeds\":";
      json_strings(out, f.seeds);
      out += '}';
    }
    out += "]}\n";
    std::fputs(out.c_str(), stdout);
    return rows.empty() ? 1 : 0;
  }

  std::printf("catalog %s (vLLM %s)\n", path.c_str(), version.c_str());
  for (auto& r : cat->upstream_releases())
    std::printf("matches %s: %s %s @%s\n", r.name.c_str(), r.repo.c_str(), r.release.c_str(),
                r.ref.c_str());
  if (rows.empty()) {
    std::printf("no family%s%s\n", o.status_filter.empty() ? "" : " with status ",
                o.status_filter.c_str());
    return 1;
  }
  // Aligned columns; the source last, as it is the longest.
  std::size_t wn = 4, wt = 4, ws = 6, wl = 6;
  std::vector<std::string> labels;
  for (auto& r : rows) {
    labels.push_back(r.f->labels.empty() ? "-" : joined(r.f->labels, ","));
    wn = std::max(wn, r.f->name.size());
    wt = std::max(wt, std::string_view(type_text(r.f->type)).size());
    ws = std::max(ws, r.status.size());
    wl = std::max(wl, labels.back().size());
  }
  auto w = [](std::size_t n) { return static_cast<int>(n); };
  std::printf("%-*s  %-*s  %-*s  %-*s  %s\n", w(wn), "NAME", w(wt), "TYPE", w(ws), "STATUS", w(wl),
              "LABELS", "SOURCE");
  std::size_t counts[5] = {};
  const char* order[5] = {"seed", "upstream", "deprecated", "hidden", "removed"};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& f = *rows[i].f;
    std::string src = source_text(f.upstream);
    if (!f.seeds.empty()) src += " (seed " + joined(f.seeds, ", ") + ")";
    std::printf("%-*s  %-*s  %-*s  %-*s  %s\n", w(wn), f.name.c_str(), w(wt), type_text(f.type),
                w(ws), std::string(rows[i].status).c_str(), w(wl), labels[i].c_str(), src.c_str());
    for (std::size_t k = 0; k < 5; ++k)
      if (rows[i].status == order[k]) ++counts[k];
  }
  std::printf("%zu families: %zu seed, %zu upstream, %zu deprecated, %zu hidden, %zu removed\n",
              rows.size(), counts[0], counts[1], counts[2], counts[3], counts[4]);
  return 0;
}

#endif

}  // namespace inspect
