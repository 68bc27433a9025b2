// The collector's own families: build info, collections, segments by state, errors by
// reason, retired segments, dropped registrations, and process metrics.
#include <algorithm>  // remove_if

#include <shmetrics/config.hpp>
#include <shmetrics/detail/proc_self.hpp>

#include "impl.hpp"

SHMETRICS_BEGIN_NAMESPACE

namespace {

const char* const all_states[] = {"alive", "stalled", "dead", "closed", "restarted", "invalid"};
const char* const all_reasons[] = {
    "open_failed",    "not_a_regular_file", "truncated",  "bad_magic",  "unsupported_major",
    "corrupt_header", "corrupt_record",     "shrunk",     "map_failed", "family_conflict",
    "foreign_owner",  "out_of_memory",      "read_failed"};

family_snapshot make_family(std::string name, std::string help, layout::metric_type type,
                            std::vector<std::string> labels = {}) {
  family_snapshot f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  f.mode = layout::gauge_mode::sum;
  f.label_names = std::move(labels);
  return f;
}

void add_sample(family_snapshot& f, double v, std::vector<std::string> labels = {}) {
  series_snapshot s;
  s.label_values = std::move(labels);
  s.value = v;
  f.series.push_back(std::move(s));
}

// Process metrics as the Prometheus client libraries export them: the exporter's own,
// unless writers serve their own process_* families (see append_self_metrics).
void append_process_metrics(std::vector<family_snapshot>& out, double btime) {
  const auto p = ::shmetrics::detail::read_process_figures(btime);
  using layout::metric_type;
  auto f = make_family("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
                       metric_type::counter);
  add_sample(f, p.cpu_seconds);
  out.push_back(std::move(f));
  f = make_family("process_open_fds", "Number of open file descriptors.", metric_type::gauge);
  add_sample(f, p.open_fds);
  out.push_back(std::move(f));
  f = make_family("process_max_fds", "Maximum number of open file descriptors.",
                  metric_type::gauge);
  add_sample(f, p.max_fds);
  out.push_back(std::move(f));
  f = make_family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                  metric_type::gauge);
  add_sample(f, p.virtual_bytes);
  out.push_back(std::move(f));
  f = make_family("process_resident_memory_bytes", "Resident memory size in bytes.",
                  metric_type::gauge);
  add_sample(f, p.resident_bytes);
  out.push_back(std::move(f));
  f = make_family("process_start_time_seconds",
                  "Start time of the process since unix epoch in seconds.", metric_type::gauge);
  add_sample(f, p.start_time_s);
  out.push_back(std::move(f));
}

// The reason label for an exception met while reading one segment (counted, the segment

}  // namespace

void collector::impl::append_self_metrics(collection& c,
                                          const std::vector<segment_status>& status) {
  using layout::metric_type;
  auto& out = c.families;
  const std::size_t first_self = out.size();
  auto f = make_family("shmetrics_exporter_build_info",
                       "A metric with a constant '1' value labeled by version and segment format.",
                       metric_type::gauge, {"version", "format_version"});
  add_sample(f, 1,
             {SHMETRICS_VERSION_STRING, std::to_string(SHMETRICS_FORMAT_MAJOR) + "." +
                                            std::to_string(SHMETRICS_FORMAT_MINOR)});
  out.push_back(std::move(f));
  f = make_family("shmetrics_exporter_collections",
                  "Collections of all segments (scrapes share them).", metric_type::counter);
  add_sample(f, collections_);
  out.push_back(std::move(f));
  f = make_family("shmetrics_exporter_collection_duration_seconds",
                  "Duration of the last collection (discover, snapshot, merge).",
                  metric_type::gauge);
  add_sample(f, c.duration_s);
  out.push_back(std::move(f));
  f = make_family("shmetrics_exporter_segments", "Segments by writer state.", metric_type::gauge,
                  {"state"});
  for (const char* st : all_states) {
    double n = 0;
    for (auto& s : status)
      n += s.state == st ? 1 : 0;
    add_sample(f, n, {st});
  }
  out.push_back(std::move(f));
  f = make_family("shmetrics_exporter_segment_errors",
                  "Problems found in segments, by reason (each file and reason counted once).",
                  metric_type::counter, {"reason"});
  std::map<std::string, double> reasons = errors_;
  for (const char* r : all_reasons)
    reasons.try_emplace(r, 0);
  for (auto& [r, n] : reasons)
    add_sample(f, n, {r});
  out.push_back(std::move(f));
  f = make_family(
      "shmetrics_exporter_retired_segments",
      "Dead writers' segments removed after their counters were folded into the totals.",
      metric_type::counter);
  add_sample(f, retired_segments_);
  out.push_back(std::move(f));
  double dropped = 0;
  for (auto& [path, t] : segments_)
    dropped += static_cast<double>(t.reader.info().registrations_dropped);
  f = make_family("shmetrics_exporter_registrations_dropped",
                  "Registrations writers could not make because their segment was full.",
                  metric_type::gauge);
  add_sample(f, dropped);
  out.push_back(std::move(f));
  if (boot_time_s_ < 0) boot_time_s_ = ::shmetrics::detail::read_boot_time_s();
  append_process_metrics(out, boot_time_s_);
  // A family that writers serve wins over the exporter's own of that name: writers that
  // record their process (shmetrics::process_metrics) describe the engine, which is what
  // a vLLM dashboard's process_* panels mean, and one name may appear only once. Once
  // writers serve any process_* family, none of the exporter's is served: when the
  // engine is gone (its CPU counter stays, as every counter), its memory or start time
  // must not be replaced by the exporter's.
  const auto& served = plan_.served_names;
  const bool writers_process = std::any_of(
      served.begin(), served.end(), [](const std::string& n) { return n.starts_with("process_"); });
  if (!served.empty())
    out.erase(std::remove_if(out.begin() + static_cast<std::ptrdiff_t>(first_self), out.end(),
                             [&](const family_snapshot& f) {
                               return (writers_process && f.name.starts_with("process_")) ||
                                      std::find(served.begin(), served.end(), f.name) !=
                                          served.end();
                             }),
              out.end());
}

SHMETRICS_END_NAMESPACE
