// shmetrics-inspect: look at what writers really wrote, without the exporter in between
// (as AeronStat does for Aeron's counters file). docs/inspect.md describes every
// subcommand, its exit codes and its JSON.
//
//   shmetrics-inspect [FLAGS] list
//   shmetrics-inspect [FLAGS] show [SEGMENT|PID] [--name GLOB] [--label MATCHER]...
//   shmetrics-inspect [FLAGS] dump SEGMENT|PID
//   shmetrics-inspect [FLAGS] check [FILE...]
//   shmetrics-inspect [FLAGS] watch [--interval S] [--top N] [--count N]
//   shmetrics-inspect catalog [--json] [--status S] [--name GLOB] [--catalog PATH]
#include <algorithm>   // sort, max
#include <bit>         // bit_cast
#include <cerrno>      // errno
#include <cmath>       // isfinite
#include <cstdio>      // printf
#include <cstdlib>     // strtod
#include <cstring>     // strerror
#include <dirent.h>    // a pid's segments under any prefix
#include <exception>   // std::exception
#include <fcntl.h>     // open
#include <regex>       // label matchers =~ !~
#include <string>      // args
#include <sys/stat.h>  // stat
#include <unistd.h>    // geteuid
#include <vector>      // args

#include <shmetrics/config.hpp>
#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/text_format.hpp>

#include "inspect_common.hpp"
#include "inspect_raw.hpp"

namespace {

using namespace inspect;
namespace layout = shmetrics::layout;

const char* usage =
    "usage: shmetrics-inspect [FLAGS] COMMAND [ARGS]\n"
    "commands:\n"
    "  list                       every segment: pid, instance, state, start time,\n"
    "                             heartbeat age, format version, capacity used\n"
    "  show [SEGMENT|PID]         families and series with values (Prometheus text or a table)\n"
    "  dump SEGMENT|PID           the raw layout with offsets, record by record\n"
    "  check [FILE...]            validate files (default: every segment); exit 1 on problems\n"
    "  watch                      live view of the busiest series and their rates (q quits)\n"
    "  catalog                    the vLLM / vLLM-Omni catalog's families: type, labels,\n"
    "                             status (seed, upstream, deprecated, hidden, removed) and\n"
    "                             upstream source, and the upstream releases it matches\n"
    "flags:\n"
    "  --shm.dir DIR              where segments live (default /dev/shm)\n"
    "  --shm.prefix NAME          segment name prefix (default shmetrics; without it, a\n"
    "                             PID or instance id is looked for under any prefix)\n"
    "  --json                     JSON output (list, show, check, catalog); see docs/inspect.md\n"
    "  --format text|table        show: Prometheus text (default) or a table\n"
    "  --name GLOB                show, watch, catalog: only families whose name matches (* ?)\n"
    "  --label MATCHER            show, watch: name=value, name!=value, name=~re, name!~re\n"
    "                             (repeatable; all must match)\n"
    "  --interval SECONDS         watch: refresh period (default 1)\n"
    "  --top N                    watch: rows shown (default: fit the terminal)\n"
    "  --count N                  watch: exit after N refreshes\n"
    "  --status S                 catalog: only families listed as S\n"
    "  --catalog PATH             catalog: the catalog JSON (default $SHMETRICS_CATALOG, else\n"
    "                             the installed vllm_catalog.json)\n"
    "  --help, --version\n"
    "exit status: 0 ok, 1 nothing found / cannot read / problems found, 2 usage error\n";

constexpr const char* prog = "shmetrics-inspect";

// ---------------------------------------------------------------------------------------
// Flags

struct flag_spec {
  const char* name;
  bool takes_value;
  const char* commands;  // where it applies; nullptr: everywhere
};

constexpr flag_spec flags[] = {
    // --shm.* name where segments live: every segment command; catalog reads no segment.
    {"--shm.dir", true, "list show dump check watch"},
    {"--shm.prefix", true, "list show dump check watch"},
    {"--json", false, "list show check catalog"},
    {"--format", true, "show"},
    {"--name", true, "show watch catalog"},
    {"--label", true, "show watch"},
    {"--interval", true, "watch"},
    {"--top", true, "watch"},
    {"--count", true, "watch"},
    {"--status", true, "catalog"},
    {"--catalog", true, "catalog"},
};

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "%s: %s (see --help)\n", prog, msg.c_str());
  return 2;
}

bool parse_matcher(const std::string& s, label_matcher& m) {
  std::size_t p = s.find_first_of("=!");
  if (p == std::string::npos || p == 0) return false;
  m.name = s.substr(0, p);
  std::string rest = s.substr(p);
  if (rest.starts_with("=~")) {
    m.kind = label_matcher::op::re;
    m.value = rest.substr(2);
  } else if (rest.starts_with("!~")) {
    m.kind = label_matcher::op::nre;
    m.value = rest.substr(2);
  } else if (rest.starts_with("!=")) {
    m.kind = label_matcher::op::ne;
    m.value = rest.substr(2);
  } else if (rest.starts_with("=")) {
    m.kind = label_matcher::op::eq;
    m.value = rest.substr(1);
  } else {
    return false;
  }
  if (m.value.size() >= 2 && m.value.front() == '"' && m.value.back() == '"')
    m.value = m.value.substr(1, m.value.size() - 2);
  return shmetrics::detail::valid_label_name(m.name);
}

bool parse_positive(const std::string& v, double& out) {
  char* end = nullptr;
  errno = 0;
  double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || errno || !std::isfinite(d) || d <= 0) return false;
  out = d;
  return true;
}

bool parse_count(const std::string& v, long& out) {
  char* end = nullptr;
  errno = 0;
  long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || errno || n <= 0) return false;
  out = n;
  return true;
}

// ---------------------------------------------------------------------------------------
// Opening segments, with the helpful errors the issue asks for.

std::string open_error(const std::string& path, const shmetrics::error& e) {
  if (e.code == shmetrics::errc::open_failed && e.sys_errno == EACCES)
    return path + ": permission denied (" + owner_of(path) + ")";
  if (e.code == shmetrics::errc::open_failed && e.sys_errno == ELOOP)
    return path + ": a symbolic link; segments are never opened through links";
  return e.message();
}

const char* type_name(layout::metric_type t) {
  switch (t) {
    case layout::metric_type::counter:
      return "counter";
    case layout::metric_type::gauge:
      return "gauge";
    case layout::metric_type::histogram:
      return "histogram";
    case layout::metric_type::info:
      return "info";
  }
  return "?";
}

const char* mode_name(layout::gauge_mode m) {
  constexpr const char* names[] = {"sum",      "max",      "min",      "latest",
                                   "live_sum", "live_max", "live_min", "live_latest"};
  auto i = static_cast<unsigned>(m);
  return i < 8 ? names[i] : "?";
}

std::string exposed_name(const shmetrics::family_snapshot& f) {
  return f.type == layout::metric_type::counter ? f.name + "_total" : f.name;
}

// One segment as `list` and `show` see it.
struct entry {
  shmetrics::segment_name name;
  bool opened = false;  // the reader accepted the header
  bool sound = false;   // ... and every record
  std::string error;    // why not
  shmetrics::segment_info info;
  bool alive = false;
  std::string state;  // alive | dead | restarted | invalid
};

void classify(std::vector<entry>& es) {
  for (auto& e : es) {
    if (!e.opened || !e.sound)
      e.state = "invalid";
    else
      e.state = e.alive ? "alive" : "dead";
  }
  // restarted: a dead writer whose pid has a newer segment of the same prefix (the
  // engine restarted in the same PID namespace, or the pid was reused). Its values are
  // history; the newer segment holds the current ones.
  for (auto& e : es) {
    if (e.state != "dead") continue;
    for (auto& o : es)
      if (&o != &e && o.opened && o.name.pid == e.name.pid &&
          o.info.created_realtime_ns > e.info.created_realtime_ns) {
        e.state = "restarted";
        break;
      }
  }
}

entry probe(const shmetrics::segment_name& n) {
  entry e;
  e.name = n;
  auto r = shmetrics::segment_reader::open(n.path);
  if (!r) {
    e.error = open_error(n.path, r.error());
    return e;
  }
  e.opened = true;
  auto ref = r->refresh();
  e.sound = static_cast<bool>(ref);
  if (!ref) e.error = ref.error().message();
  e.info = r->info();
  e.alive = r->writer_alive();
  return e;
}

std::string percent(std::uint64_t used, std::uint64_t cap) {
  if (cap == 0) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f%%",
                100.0 * static_cast<double>(used) / static_cast<double>(cap));
  return buf;
}

std::string age_text(const entry& e) {
  double age = heartbeat_age_s(e.info.heartbeat_ns);
  if (!e.opened || age < 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", age);
  return buf;
}

// Segments of the prefix in the directory, or a helpful error (where it looked).
bool find_segments(const options& o, std::vector<shmetrics::segment_name>& out) {
  auto segs = shmetrics::list_segments(o.dir, o.prefix);
  if (!segs) {
    int e = segs.error().sys_errno;
    std::fprintf(stderr, "%s: cannot read directory %s: %s\n", prog, o.dir.c_str(),
                 e ? std::strerror(e) : segs.error().message().c_str());
    return false;
  }
  out = std::move(*segs);
  return true;
}

void no_segments(const options& o) {
  std::fprintf(stderr, "%s: no segments found: looked for %s.<pid>.<instance> in %s\n", prog,
               o.prefix.c_str(), o.dir.c_str());
}

// ---------------------------------------------------------------------------------------
// list

int cmd_list(const options& o) {
  std::vector<shmetrics::segment_name> names;
  if (!find_segments(o, names)) return 1;
  std::vector<entry> es;
  for (auto& n : names)
    es.push_back(probe(n));
  classify(es);
  if (o.json) {
    std::string j = "{\"dir\":";
    json_string(j, o.dir);
    j += ",\"prefix\":";
    json_string(j, o.prefix);
    j += ",\"segments\":[";
    for (std::size_t k = 0; k < es.size(); ++k) {
      const entry& e = es[k];
      const auto& i = e.info;
      if (k) j += ',';
      j += "{\"path\":";
      json_string(j, e.name.path);
      j += ",\"file\":";
      json_string(j, e.name.file);
      j += ",\"pid\":" + std::to_string(e.name.pid) + ",\"instance\":\"" + hex16(e.name.instance) +
           "\",\"state\":\"" + e.state + "\",\"error\":";
      if (e.error.empty())
        j += "null";
      else
        json_string(j, e.error);
      if (!e.opened) {
        j += ",\"closed\":null,\"version\":null,\"start_time\":null,\"start_unix_ns\":null,"
             "\"heartbeat_age_s\":null,\"heartbeat_count\":null,\"segment_bytes\":null,"
             "\"shards\":null,\"families\":null,\"family_capacity\":null,\"series\":null,"
             "\"series_capacity\":null,\"string_bytes\":null,\"string_capacity\":null,"
             "\"cells\":null,\"cell_capacity\":null,\"registrations_dropped\":null}";
        continue;
      }
      j += std::string(",\"closed\":") +
           (i.state == layout::segment_state::closed ? "true" : "false");
      j += ",\"version\":\"" + std::to_string(i.version_major) + "." +
           std::to_string(i.version_minor) + "\",\"start_time\":\"" +
           iso_time(i.created_realtime_ns) +
           "\",\"start_unix_ns\":" + std::to_string(i.created_realtime_ns) +
           ",\"heartbeat_age_s\":";
      double age = heartbeat_age_s(i.heartbeat_ns);
      if (age < 0)
        j += "null";
      else
        json_number(j, std::round(age * 1000) / 1000);
      auto u = [&](const char* k2, std::uint64_t v) {
        j += ",\"";
        j += k2;
        j += "\":" + std::to_string(v);
      };
      u("heartbeat_count", i.heartbeat_count);
      u("segment_bytes", i.segment_size);
      u("shards", i.shard_count);
      u("families", i.families);
      u("family_capacity", i.family_capacity);
      u("series", i.series);
      u("series_capacity", i.series_capacity);
      u("string_bytes", i.string_bytes);
      u("string_capacity", i.string_capacity);
      u("cells", i.cells);
      u("cell_capacity", i.cell_capacity);
      u("registrations_dropped", i.registrations_dropped);
      j += '}';
    }
    j += "]}\n";
    std::fputs(j.c_str(), stdout);
    if (es.empty()) no_segments(o);
    return es.empty() ? 1 : 0;
  }
  if (es.empty()) {
    no_segments(o);
    return 1;
  }
  int w = 4;
  for (auto& e : es)
    w = std::max(w, static_cast<int>(e.name.path.size()));
  std::printf("%-*s %8s %-16s %-9s %-24s %8s %4s %11s %11s %4s %4s  %s\n", w, "PATH", "PID",
              "INSTANCE", "STATE", "STARTED", "HB_AGE", "VER", "FAMILIES", "SERIES", "STR", "CELL",
              "NOTE");
  for (auto& e : es) {
    const auto& i = e.info;
    std::string note = e.error;
    if (note.empty() && i.state == layout::segment_state::closed) note = "closed cleanly";
    if (note.empty() && i.registrations_dropped)
      note = std::to_string(i.registrations_dropped) + " registrations dropped (segment full)";
    if (!e.opened) {
      std::printf("%-*s %8u %-16s %-9s %-24s %8s %4s %11s %11s %4s %4s  %s\n", w,
                  e.name.path.c_str(), e.name.pid, hex16(e.name.instance).c_str(), e.state.c_str(),
                  "-", "-", "-", "-", "-", "-", "-", note.c_str());
      continue;
    }
    std::string ver = std::to_string(i.version_major) + "." + std::to_string(i.version_minor);
    std::string fam = std::to_string(i.families) + "/" + std::to_string(i.family_capacity);
    std::string ser = std::to_string(i.series) + "/" + std::to_string(i.series_capacity);
    std::printf("%-*s %8u %-16s %-9s %-24s %8s %4s %11s %11s %4s %4s  %s\n", w, e.name.path.c_str(),
                i.writer_pid, hex16(i.instance_id).c_str(), e.state.c_str(),
                iso_time(i.created_realtime_ns).c_str(), age_text(e).c_str(), ver.c_str(),
                fam.c_str(), ser.c_str(), percent(i.string_bytes, i.string_capacity).c_str(),
                percent(i.cells, i.cell_capacity).c_str(), note.c_str());
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// Selecting segments: a path, a file name in the directory, a pid or an instance id.

bool is_number(const std::string& s) {
  return !s.empty() && s.size() <= 10 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_instance(const std::string& s) {
  return s.size() == 16 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A file named <prefix>.<pid>.<16 hex digits> under any prefix: its prefix and name.
bool parse_any_prefix(const std::string& file, std::string& prefix, shmetrics::segment_name& n) {
  auto dot2 = file.rfind('.');
  if (dot2 == std::string::npos || dot2 == 0) return false;
  auto dot1 = file.rfind('.', dot2 - 1);
  if (dot1 == std::string::npos || dot1 == 0) return false;
  prefix = file.substr(0, dot1);
  return shmetrics::parse_segment_name(file, prefix, n);
}

// A pid or an instance id without --shm.prefix: the writer may use any prefix (the default
// one is only a guess), so every segment-named file of the directory is a candidate. Several
// prefixes are shown each, with a note on stderr.
bool select_any_prefix(const options& o, const std::string& sel,
                       std::vector<shmetrics::segment_name>& out) {
  DIR* d = ::opendir(o.dir.c_str());
  if (!d) {
    std::fprintf(stderr, "%s: cannot read directory %s: %s\n", prog, o.dir.c_str(),
                 std::strerror(errno));
    return false;
  }
  std::vector<std::string> prefixes;
  while (dirent* e = ::readdir(d)) {
    std::string p;
    shmetrics::segment_name n;
    if (!parse_any_prefix(e->d_name, p, n)) continue;
    if (std::to_string(n.pid) != sel && hex16(n.instance) != sel) continue;
    n.path = o.dir + (o.dir.ends_with('/') ? "" : "/") + n.file;
    out.push_back(std::move(n));
    if (std::find(prefixes.begin(), prefixes.end(), p) == prefixes.end()) prefixes.push_back(p);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.file < b.file; });
  std::sort(prefixes.begin(), prefixes.end());
  const char* what = is_number(sel) ? "pid" : "instance";
  if (out.empty()) {
    std::fprintf(stderr,
                 "%s: no segment matches %s %s: looked for <prefix>.<pid>.<instance> under any "
                 "prefix in %s\n",
                 prog, what, sel.c_str(), o.dir.c_str());
    return false;
  }
  if (prefixes.size() > 1) {
    std::string list;
    for (auto& p : prefixes)
      list += (list.empty() ? "" : ", ") + p;
    std::fprintf(stderr,
                 "%s: %s %s has segments under %zu prefixes (%s): all shown; --shm.prefix picks "
                 "one\n",
                 prog, what, sel.c_str(), prefixes.size(), list.c_str());
  }
  return true;
}

// Fills `out`; false (with a message printed) when nothing matches.
bool select_segments(const options& o, const std::string& sel,
                     std::vector<shmetrics::segment_name>& out) {
  if (!o.prefix_given && (is_number(sel) || is_instance(sel)))
    return select_any_prefix(o, sel, out);
  if (sel.find('/') != std::string::npos) {  // a path, maybe a copy outside the directory
    shmetrics::segment_name n;
    n.path = sel;
    n.file = sel.substr(sel.rfind('/') + 1);
    if (!shmetrics::parse_segment_name(n.file, o.prefix, n))
      n.file = sel.substr(sel.rfind('/') + 1);
    out.push_back(n);
    return true;
  }
  std::vector<shmetrics::segment_name> all;
  if (!find_segments(o, all)) return false;
  for (auto& n : all)
    if (sel.empty() || n.file == sel || (is_number(sel) && std::to_string(n.pid) == sel) ||
        hex16(n.instance) == sel)
      out.push_back(n);
  if (out.empty()) {
    if (sel.empty())
      no_segments(o);
    else
      std::fprintf(stderr, "%s: no segment matches %s: looked for %s.<pid>.<instance> in %s\n",
                   prog, sel.c_str(), o.prefix.c_str(), o.dir.c_str());
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// show

struct compiled_matcher {
  label_matcher m;
  std::regex re;
};

bool series_matches(const shmetrics::family_snapshot& f, const shmetrics::series_snapshot& s,
                    const std::vector<compiled_matcher>& ms) {
  for (auto& cm : ms) {
    std::string v;  // an absent label matches as "", as in PromQL
    for (std::size_t k = 0; k < f.label_names.size() && k < s.label_values.size(); ++k)
      if (f.label_names[k] == cm.m.name) v = s.label_values[k];
    bool ok = true;
    switch (cm.m.kind) {
      case label_matcher::op::eq:
        ok = v == cm.m.value;
        break;
      case label_matcher::op::ne:
        ok = v != cm.m.value;
        break;
      case label_matcher::op::re:
        ok = std::regex_match(v, cm.re);
        break;
      case label_matcher::op::nre:
        ok = !std::regex_match(v, cm.re);
        break;
    }
    if (!ok) return false;
  }
  return true;
}

std::vector<shmetrics::family_snapshot> filter(const std::vector<shmetrics::family_snapshot>& fs,
                                               const options& o,
                                               const std::vector<compiled_matcher>& ms) {
  std::vector<shmetrics::family_snapshot> out;
  for (auto& f : fs) {
    if (!o.name_glob.empty() && !glob_match(o.name_glob, f.name) &&
        !glob_match(o.name_glob, exposed_name(f)))
      continue;
    if (ms.empty()) {
      out.push_back(f);
      continue;
    }
    shmetrics::family_snapshot g = f;
    g.series.clear();
    for (auto& s : f.series)
      if (series_matches(f, s, ms)) g.series.push_back(s);
    if (!g.series.empty()) out.push_back(std::move(g));
  }
  return out;
}

std::string labels_text(const shmetrics::family_snapshot& f, const shmetrics::series_snapshot& s) {
  std::string t;
  for (std::size_t k = 0; k < f.label_names.size() && k < s.label_values.size(); ++k) {
    if (k) t += ',';
    t += f.label_names[k] + "=\"";
    shmetrics::append_escaped_label_value(t, s.label_values[k]);
    t += '"';
  }
  return t;
}

void json_family(std::string& j, const shmetrics::family_snapshot& f) {
  j += "{\"name\":";
  json_string(j, f.name);
  j += ",\"exposed_name\":";
  json_string(j, exposed_name(f));
  j += std::string(",\"type\":\"") + type_name(f.type) + "\"";
  j += ",\"help\":";
  json_string(j, f.help);
  j += ",\"unit\":";
  json_string(j, f.unit);
  j += ",\"gauge_mode\":";
  if (f.type == layout::metric_type::gauge)
    j += std::string("\"") + mode_name(f.mode) + "\"";
  else
    j += "null";
  j += ",\"label_names\":[";
  for (std::size_t k = 0; k < f.label_names.size(); ++k) {
    if (k) j += ',';
    json_string(j, f.label_names[k]);
  }
  j += "],\"bounds\":";
  if (f.type == layout::metric_type::histogram) {
    j += '[';
    for (std::size_t k = 0; k < f.bounds.size(); ++k) {
      if (k) j += ',';
      json_number(j, f.bounds[k]);
    }
    j += ']';
  } else {
    j += "null";
  }
  j += ",\"series\":[";
  for (std::size_t n = 0; n < f.series.size(); ++n) {
    const auto& s = f.series[n];
    if (n) j += ',';
    j += "{\"labels\":{";
    for (std::size_t k = 0; k < f.label_names.size() && k < s.label_values.size(); ++k) {
      if (k) j += ',';
      json_string(j, f.label_names[k]);
      j += ':';
      json_string(j, s.label_values[k]);
    }
    j += '}';
    if (f.type == layout::metric_type::histogram) {
      j += ",\"count\":" + std::to_string(s.count()) + ",\"sum\":";
      json_number(j, s.sum);
      j += ",\"buckets\":[";  // cumulative, the last is +Inf
      for (std::size_t k = 0; k < s.buckets.size(); ++k) {
        if (k) j += ',';
        j += std::to_string(s.buckets[k]);
      }
      j += ']';
    } else {
      j += ",\"value\":";
      json_number(j, s.value);
    }
    j += '}';
  }
  j += "]}";
}

int cmd_show(const options& o) {
  if (o.args.size() > 1) return usage_error("show takes at most one SEGMENT or PID");
  if (o.format != "text" && o.format != "table")
    return usage_error("--format must be text or table, not " + o.format);
  std::vector<compiled_matcher> ms;
  for (auto& m : o.labels) {
    compiled_matcher cm{m, {}};
    if (m.kind == label_matcher::op::re || m.kind == label_matcher::op::nre) {
      try {
        cm.re = std::regex(m.value, std::regex::ECMAScript);
      } catch (const std::regex_error&) {
        return usage_error("--label " + m.name + ": invalid regular expression " + m.value);
      }
    }
    ms.push_back(std::move(cm));
  }
  std::vector<shmetrics::segment_name> names;
  if (!select_segments(o, o.args.empty() ? "" : o.args[0], names)) return 1;
  int failed = 0;
  std::string j = "{\"segments\":[";
  bool first = true;
  for (auto& n : names) {
    auto r = shmetrics::segment_reader::open(n.path);
    if (!r) {
      std::fprintf(stderr, "%s: %s\n", prog, open_error(n.path, r.error()).c_str());
      ++failed;
      continue;
    }
    auto snap = r->snapshot();
    if (!snap) {
      std::fprintf(stderr, "%s: %s\n", prog, snap.error().message().c_str());
      ++failed;
      continue;
    }
    bool alive = r->writer_alive();
    auto fams = filter(snap->families, o, ms);
    const auto& i = snap->info;
    if (o.json) {
      if (!first) j += ',';
      first = false;
      j += "{\"path\":";
      json_string(j, n.path);
      j += ",\"pid\":" + std::to_string(i.writer_pid) + ",\"instance\":\"" + hex16(i.instance_id) +
           "\",\"alive\":" + (alive ? "true" : "false") + ",\"families\":[";
      for (std::size_t k = 0; k < fams.size(); ++k) {
        if (k) j += ',';
        json_family(j, fams[k]);
      }
      j += "]}";
      continue;
    }
    std::printf("# segment %s pid %u instance %s %s\n", n.path.c_str(), i.writer_pid,
                hex16(i.instance_id).c_str(), alive ? "alive" : "dead");
    if (o.format == "text") {
      std::string text;
      shmetrics::encode_text(fams, text);
      std::fputs(text.c_str(), stdout);
      continue;
    }
    std::size_t wn = 6, wl = 6;
    for (auto& f : fams) {
      wn = std::max(wn, exposed_name(f).size());
      for (auto& s : f.series)
        wl = std::max(wl, labels_text(f, s).size());
    }
    std::printf("%-*s %-9s %-*s %s\n", static_cast<int>(wn), "FAMILY", "TYPE", static_cast<int>(wl),
                "LABELS", "VALUE");
    for (auto& f : fams)
      for (auto& s : f.series) {
        std::string v;
        if (f.type == layout::metric_type::histogram) {
          v = "count=" + std::to_string(s.count()) + " sum=" + human_number(s.sum);
        } else {
          v = human_number(s.value);
        }
        std::printf("%-*s %-9s %-*s %s\n", static_cast<int>(wn), exposed_name(f).c_str(),
                    type_name(f.type), static_cast<int>(wl), labels_text(f, s).c_str(), v.c_str());
      }
  }
  if (o.json) {
    j += "]}\n";
    std::fputs(j.c_str(), stdout);
  }
  return failed ? 1 : 0;
}

// ---------------------------------------------------------------------------------------
// check

constexpr std::size_t max_problem_lines = 200;

// Collects problems: keeps the first `max_problem_lines` (all that are printed) and counts
// the rest, so a file with millions of faults costs no memory for them.
struct check_sink : walk_sink {
  std::vector<problem> problems;
  std::size_t problem_count = 0;
  std::uint64_t families = 0, series = 0;
  bool header_seen = false;
  void on_header(const layout::segment_header&, std::uint64_t) override { header_seen = true; }
  void on_family(const raw_family&) override { ++families; }
  void on_series(const raw_series&) override { ++series; }
  void on_problem(const problem& p) override {
    if (problem_count++ < max_problem_lines) problems.push_back(p);
  }
};

check_sink check_one(const std::string& path) {
  check_sink sink;
  try {
    walk_file(path, sink);
    // The reader is the authority the exporter uses: a file the walk passes but the
    // reader refuses is still a problem (the walk is a second, independent opinion).
    if (sink.problems.empty()) {
      auto r = shmetrics::segment_reader::open(path);
      auto s = r ? r->refresh() : shmetrics::result<bool>(r.error());
      if (!s) sink.on_problem({"reader", false, 0, open_error(path, s.error())});
    }
  } catch (const std::exception& e) {  // bad_alloc on an absurd size: report, never crash
    sink.on_problem({"file", false, 0, std::string("cannot check: ") + e.what()});
  }
  return sink;
}

std::string where_text(const problem& p) {
  if (!p.has_offset) return p.where;
  char buf[48];
  std::snprintf(buf, sizeof buf, " @%llu (0x%llx)", static_cast<unsigned long long>(p.offset),
                static_cast<unsigned long long>(p.offset));
  return p.where + buf;
}

int cmd_check(const options& o) {
  std::vector<std::string> files = o.args;
  if (files.empty()) {
    std::vector<shmetrics::segment_name> names;
    if (!find_segments(o, names)) return 1;
    if (names.empty()) {
      no_segments(o);
      return 1;
    }
    for (auto& n : names)
      files.push_back(n.path);
  }
  bool all_sound = true;
  std::string j = "{\"files\":[";
  for (std::size_t k = 0; k < files.size(); ++k) {
    const std::string& f = files[k];
    check_sink s = check_one(f);
    bool sound = s.problems.empty();
    all_sound &= sound;
    if (o.json) {
      if (k) j += ',';
      j += "{\"path\":";
      json_string(j, f);
      j += std::string(",\"sound\":") + (sound ? "true" : "false") +
           ",\"families\":" + std::to_string(s.families) +
           ",\"series\":" + std::to_string(s.series) + ",\"problems\":[";
      for (std::size_t n = 0; n < s.problems.size() && n < max_problem_lines; ++n) {
        const problem& p = s.problems[n];
        if (n) j += ',';
        j += "{\"where\":";
        json_string(j, p.where);
        j += ",\"offset\":" + (p.has_offset ? std::to_string(p.offset) : std::string("null"));
        j += ",\"what\":";
        json_string(j, p.what);
        j += '}';
      }
      j += "],\"problems_omitted\":" + std::to_string(s.problem_count - s.problems.size()) + '}';
      continue;
    }
    if (sound) {
      std::printf("%s: ok (%llu families, %llu series)\n", f.c_str(),
                  static_cast<unsigned long long>(s.families),
                  static_cast<unsigned long long>(s.series));
      continue;
    }
    for (std::size_t n = 0; n < s.problems.size() && n < max_problem_lines; ++n)
      std::printf("%s: %s: %s\n", f.c_str(), where_text(s.problems[n]).c_str(),
                  s.problems[n].what.c_str());
    if (s.problem_count > s.problems.size())
      std::printf("%s: ... and %zu more problems\n", f.c_str(),
                  s.problem_count - s.problems.size());
  }
  if (o.json) {
    j += std::string("],\"sound\":") + (all_sound ? "true" : "false") + "}\n";
    std::fputs(j.c_str(), stdout);
  }
  return all_sound ? 0 : 1;
}

// ---------------------------------------------------------------------------------------
// dump

struct dump_sink : walk_sink {
  int fd = -1;  // for the cell values, read with pread like the walk
  layout::segment_header h{};
  std::vector<raw_family> fams;  // for naming a series' family and decoding its cells
  std::size_t problems = 0;

  static void field(std::uint64_t off, const char* name, const std::string& v) {
    std::printf("  0x%04llx %-22s %s\n", static_cast<unsigned long long>(off), name, v.c_str());
  }
  static std::string u(std::uint64_t v) { return std::to_string(v); }
  static std::string x(std::uint64_t v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
  }
  static std::string arena(std::uint32_t off, std::uint32_t len) {
    return "arena " + std::to_string(off) + "+" + std::to_string(len);
  }
  static std::string quoted(const std::string& s) {
    std::string q;
    json_string(q, s);
    return q;
  }

  void on_header(const layout::segment_header& hd, std::uint64_t size) override {
    h = hd;
    std::printf("file size %llu bytes\nheader @0x0 (%u bytes)\n",
                static_cast<unsigned long long>(size), layout::header_size);
    field(0, "magic", x(h.magic) + " \"SHMETRIC\"");
    field(8, "version_major", u(h.version_major));
    field(10, "version_minor", u(h.version_minor));
    field(12, "header_size", u(h.header_size));
    field(16, "segment_size", u(h.segment_size));
    field(24, "instance_id", hex16(h.instance_id));
    field(32, "writer_pid", u(h.writer_pid));
    field(36, "shard_count", u(h.shard_count));
    field(40, "writer_start_ticks", u(h.writer_start_ticks));
    field(48, "created_realtime_ns",
          u(h.created_realtime_ns) + " " + iso_time(h.created_realtime_ns));
    field(56, "created_monotonic_ns", u(h.created_monotonic_ns));
    field(64, "families_offset", x(h.families_offset));
    field(72, "family_capacity", u(h.family_capacity));
    field(76, "family_record_size", u(h.family_record_size));
    field(80, "series_offset", x(h.series_offset));
    field(88, "series_capacity", u(h.series_capacity));
    field(92, "series_record_size", u(h.series_record_size));
    field(96, "strings_offset", x(h.strings_offset));
    field(104, "strings_capacity", u(h.strings_capacity));
    field(112, "cells_offset", x(h.cells_offset));
    field(120, "cells_per_shard", u(h.cells_per_shard));
    field(128, "shard_stride", u(h.shard_stride));
    const char* st = h.state == 1 ? " (ready)" : h.state == 2 ? " (closed)" : " (?)";
    field(192, "state", u(h.state) + st);
    field(200, "heartbeat_ns", u(h.heartbeat_ns));
    field(208, "heartbeat_count", u(h.heartbeat_count));
    field(216, "families_published", u(h.families_published));
    field(224, "series_published", u(h.series_published));
    field(232, "strings_used", u(h.strings_used));
    field(240, "cells_used", u(h.cells_used));
    field(248, "registrations_dropped", u(h.registrations_dropped));
  }

  void on_family(const raw_family& f) override {
    if (f.index == 0)
      std::printf("families @0x%llx (%llu published of %u, %u bytes each)\n",
                  static_cast<unsigned long long>(h.families_offset),
                  static_cast<unsigned long long>(h.families_published), h.family_capacity,
                  h.family_record_size);
    const auto& r = f.rec;
    auto type = static_cast<layout::metric_type>(r.type);
    std::printf("  [%u] @0x%llx type=%u(%s) gauge_mode=%u name=%s (%s)\n", f.index,
                static_cast<unsigned long long>(f.offset), r.type,
                r.type >= 1 && r.type <= 4 ? type_name(type) : "?", r.gauge_mode,
                quoted(f.name).c_str(), arena(r.name_off, r.name_len).c_str());
    std::printf("       help=%s (%s) unit=%s (%s)\n", quoted(f.help).c_str(),
                arena(r.help_off, r.help_len).c_str(), quoted(f.unit).c_str(),
                arena(r.unit_off, r.unit_len).c_str());
    std::string labels;
    for (auto& l : f.labels)
      labels += (labels.empty() ? "" : ",") + l;
    std::printf("       labels=[%s] (%u refs at arena %u)", labels.c_str(), r.label_count,
                r.labels_off);
    if (type == layout::metric_type::histogram) {
      std::string b;
      for (double v : f.bounds)
        b += (b.empty() ? "" : ",") + shmetrics::format_float(v);
      std::printf(" buckets=[%s] (%u f64 at arena %u)", b.c_str(), r.bucket_count, r.buckets_off);
    }
    std::printf("%s\n", f.ok ? "" : "  ** damaged **");
    fams.push_back(f);
  }

  void on_series(const raw_series& s) override {
    if (s.index == 0)
      std::printf("series @0x%llx (%llu published of %u, %u bytes each)\n",
                  static_cast<unsigned long long>(h.series_offset),
                  static_cast<unsigned long long>(h.series_published), h.series_capacity,
                  h.series_record_size);
    const auto& r = s.rec;
    const raw_family* f = r.family_index < fams.size() ? &fams[r.family_index] : nullptr;
    std::string labels;
    for (std::size_t k = 0; k < s.values.size(); ++k) {
      if (k) labels += ',';
      labels += (f && k < f->labels.size() ? f->labels[k] : "?") + "=" + quoted(s.values[k]);
    }
    std::printf("  [%u] @0x%llx family=%u(%s) cells=%u+%u {%s} (refs at arena %u)%s\n", s.index,
                static_cast<unsigned long long>(s.offset), r.family_index,
                f ? f->name.c_str() : "?", r.cell_index, r.cell_count, labels.c_str(), r.labels_off,
                s.ok ? "" : "  ** damaged **");
    if (!s.ok || !f || !f->ok || r.cell_count > 4098) return;
    // The raw cells of each shard that holds anything: what the reader sums.
    auto type = static_cast<layout::metric_type>(f->rec.type);
    bool shard0_only = type == layout::metric_type::gauge || type == layout::metric_type::info;
    for (std::uint32_t k = 0; k < (shard0_only ? 1u : h.shard_count); ++k) {
      std::uint64_t off = h.cells_offset + k * h.shard_stride + std::uint64_t{r.cell_index} * 8;
      std::vector<std::uint64_t> cells(r.cell_count);
      if (::pread(fd, cells.data(), cells.size() * 8, static_cast<off_t>(off)) !=
          static_cast<ssize_t>(cells.size() * 8))
        continue;
      if (k > 0 && std::all_of(cells.begin(), cells.end(), [](auto c) { return c == 0; })) continue;
      std::string v;
      for (std::size_t c = 0; c < cells.size(); ++c) {
        if (c) v += ' ';
        bool is_f64 = (type == layout::metric_type::counter && c == 1) || (shard0_only && c == 0) ||
                      (type == layout::metric_type::histogram && c + 1 == cells.size());
        v += is_f64 ? shmetrics::format_float(std::bit_cast<double>(cells[c]))
                    : std::to_string(cells[c]);
      }
      std::printf("       shard %u @0x%llx: %s\n", k, static_cast<unsigned long long>(off),
                  v.c_str());
    }
  }

  void on_problem(const problem& p) override {
    ++problems;
    std::printf("  !! %s: %s\n", where_text(p).c_str(), p.what.c_str());
  }
};

int cmd_dump(const options& o) {
  if (o.args.size() != 1) return usage_error("dump takes one SEGMENT (a path, file name or pid)");
  std::vector<shmetrics::segment_name> names;
  if (!select_segments(o, o.args[0], names)) return 1;
  int rc = 0;
  for (auto& n : names) {
    std::printf("segment %s\n", n.path.c_str());
    dump_sink sink;
    sink.fd = ::open(n.path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    try {
      walk_file(n.path, sink);
      if (sink.fd >= 0) {
        std::printf("strings @0x%llx: %llu of %llu bytes used\n",
                    static_cast<unsigned long long>(sink.h.strings_offset),
                    static_cast<unsigned long long>(sink.h.strings_used),
                    static_cast<unsigned long long>(sink.h.strings_capacity));
        std::printf("cells @0x%llx: %u shards x %llu bytes, %llu of %u cells per shard used\n",
                    static_cast<unsigned long long>(sink.h.cells_offset), sink.h.shard_count,
                    static_cast<unsigned long long>(sink.h.shard_stride),
                    static_cast<unsigned long long>(sink.h.cells_used), sink.h.cells_per_shard);
      }
    } catch (const std::exception& e) {
      std::printf("  !! cannot dump: %s\n", e.what());
      ++sink.problems;
    }
    if (sink.fd >= 0) ::close(sink.fd);
    if (sink.problems) {
      std::printf("%zu problems\n", sink.problems);
      rc = 1;
    }
  }
  return rc;
}

// ---------------------------------------------------------------------------------------

bool applies(const flag_spec& f, const std::string& cmd) {
  if (!f.commands) return true;
  std::string list = std::string(" ") + f.commands + " ";
  return list.find(" " + cmd + " ") != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  std::vector<std::string> pos;
  std::vector<std::string> used;  // flags seen, to check they apply to the command
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (flags_done || !a.starts_with("-") || a == "-") {
      pos.push_back(a);
      continue;
    }
    if (a == "--") {
      flags_done = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (a == "--version") {
      std::printf("%s %s (segment format %d.%d)\n", prog, SHMETRICS_VERSION_STRING,
                  SHMETRICS_FORMAT_MAJOR, SHMETRICS_FORMAT_MINOR);
      return 0;
    }
    std::size_t eq = a.find('=');
    std::string name = a.substr(0, eq);
    const flag_spec* spec = nullptr;
    for (auto& f : flags)
      if (name == f.name) spec = &f;
    if (!spec) return usage_error("unknown flag " + name);
    std::string v;
    if (spec->takes_value) {
      if (eq != std::string::npos)
        v = a.substr(eq + 1);
      else if (i + 1 < argc)
        v = argv[++i];
      else
        return usage_error(name + " needs a value");
      if (v.empty()) return usage_error(name + " needs a non-empty value");
    } else if (eq != std::string::npos) {
      return usage_error(name + " takes no value");
    }
    used.push_back(name);
    if (name == "--shm.dir") {
      o.dir = v;
    } else if (name == "--shm.prefix") {
      o.prefix = v;
      o.prefix_given = true;
    } else if (name == "--json") {
      o.json = true;
    } else if (name == "--format") {
      o.format = v;
    } else if (name == "--name") {
      o.name_glob = v;
    } else if (name == "--label") {
      label_matcher m;
      if (!parse_matcher(v, m))
        return usage_error("--label " + v + ": want name=value, name!=value, name=~re or name!~re");
      o.labels.push_back(m);
    } else if (name == "--interval") {
      if (!parse_positive(v, o.interval_s))
        return usage_error("--interval " + v + ": want a positive number of seconds");
    } else if (name == "--top") {
      if (!parse_count(v, o.top)) return usage_error("--top " + v + ": want a positive integer");
    } else if (name == "--count") {
      if (!parse_count(v, o.count))
        return usage_error("--count " + v + ": want a positive integer");
    } else if (name == "--status") {
      if (v != "seed" && v != "upstream" && v != "deprecated" && v != "hidden" && v != "removed")
        return usage_error("--status " + v +
                           ": want seed, upstream, deprecated, hidden or removed");
      o.status_filter = v;
    } else if (name == "--catalog") {
      o.catalog_path = v;
    }
  }
  if (pos.empty()) {
    std::fputs(usage, stderr);
    return 2;
  }
  std::string cmd = pos[0];
  o.args.assign(pos.begin() + 1, pos.end());
  if (cmd != "list" && cmd != "show" && cmd != "dump" && cmd != "check" && cmd != "watch" &&
      cmd != "catalog")
    return usage_error("unknown command " + cmd);
  for (auto& u : used)
    for (auto& f : flags)
      if (u == f.name && !applies(f, cmd)) return usage_error(u + " does not apply to " + cmd);
  if (cmd == "list") {
    if (!o.args.empty()) return usage_error("list takes no arguments");
    return cmd_list(o);
  }
  if (cmd == "show") return cmd_show(o);
  if (cmd == "dump") return cmd_dump(o);
  if (cmd == "check") return cmd_check(o);
  if (cmd == "catalog") {
    if (!o.args.empty())
      return usage_error("catalog takes no arguments (--catalog PATH names one)");
    return cmd_catalog(o);
  }
  if (!o.args.empty()) return usage_error("watch takes no arguments");
  return cmd_watch(o);
}
