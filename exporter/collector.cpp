#include "collector.hpp"

#include <malloc.h>    // malloc_trim after a big plan rebuild
#include <fcntl.h>     // open for the reaper
#include <sys/file.h>  // flock for the reaper
#include <sys/stat.h>  // stat for replaced files
#include <unistd.h>    // unlink

#include <algorithm>      // remove_if
#include <set>            // seen paths
#include <string_view>    // family names, label blocks
#include <unordered_map>  // newest definitions, carried series

#include <shmetrics/config.hpp>
#include <shmetrics/detail/proc_self.hpp>

#include "merge.hpp"

namespace shmetrics::exporter {

namespace {

using clock = std::chrono::steady_clock;

// A writer whose heartbeat has not moved for this long, while it still holds its lock,
// is "stalled" (alive but hung). Ten default heartbeat intervals.
constexpr auto stall_after = std::chrono::seconds(10);

// A file a writer has not finished creating is left alone at least this long.
constexpr auto unfinished_grace = std::chrono::seconds(2);

// Plans of at least this many series give their freed memory back after a rebuild
// (malloc_trim walks the heap: a few ms at 1M series, not worth it for small plans).
constexpr std::size_t trim_after_series = 100'000;

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
// skipped, the others served): a hostile file that makes the reader allocate too much.
std::string exception_reason(const std::exception& e) {
  return dynamic_cast<const std::bad_alloc*>(&e) ? "out_of_memory" : "read_failed";
}

double monotonic_now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

std::string reason_of(errc code) {
  switch (code) {
    case errc::open_failed:
      return "open_failed";
    case errc::not_a_regular_file:
      return "not_a_regular_file";
    case errc::not_ready:
      return "not_ready";
    case errc::truncated:
      return "truncated";
    case errc::bad_magic:
      return "bad_magic";
    case errc::unsupported_major:
      return "unsupported_major";
    case errc::corrupt_header:
      return "corrupt_header";
    case errc::corrupt_record:
      return "corrupt_record";
    case errc::shrunk:
      return "shrunk";
    case errc::map_failed:
      return "map_failed";
    default:
      return "other";
  }
}

collector::collector(collector_options opt, logger& log)
    : opt_(std::move(opt)), log_(log), pool_(std::make_shared<buffer_pool>()) {}

std::shared_ptr<const collection> collector::latest() const {
  std::lock_guard lock(mu_);
  return latest_;
}

std::shared_ptr<const collection> collector::latest_within(std::chrono::milliseconds max_age) {
  {
    std::lock_guard lock(mu_);
    if (latest_ && clock::now() - latest_started_ < max_age) return latest_;
  }
  return collect();
}

std::shared_ptr<const collection> collector::collect() {
  std::unique_lock lock(mu_);
  if (in_flight_) {
    // Coalesce: every scrape that arrives during a collection shares its result.
    std::uint64_t gen = generation_;
    cv_.wait(lock, [&] { return generation_ != gen; });
    return latest_;
  }
  in_flight_ = true;
  const auto started = clock::now();
  lock.unlock();
  std::shared_ptr<collection> c;
  try {
    c = run_once();
  } catch (const std::exception& e) {
    log_.log(log_level::error, "collection failed", "err=" + logger::quote(e.what()));
  }
  lock.lock();
  if (c) {
    latest_ = std::move(c);
    latest_started_ = started;
  }
  if (!latest_) latest_ = std::make_shared<collection>();
  in_flight_ = false;
  ++generation_;
  cv_.notify_all();
  return latest_;
}

void collector::count_error(const std::string& reason, const std::string& key,
                            const std::string& message) {
  // Each distinct problem (file + reason) is counted once, however many scrapes see it.
  if (reported_.emplace(key + "\n" + reason, true).second) errors_[reason] += 1;
  log_.log_limited(log_level::warn, key + "\n" + reason, message, "reason=" + reason);
}

bool collector::read_values(tracked& t) {
  auto fresh = t.reader.refresh();
  if (!fresh) {
    t.error = fresh.error().message();
    count_error(reason_of(fresh.code()), t.name.path, t.error);
    return false;
  }
  // Into scratch first: a read that finds the file shrunk must not replace good values.
  const std::size_t n = t.reader.series_count();
  t.scratch.resize(n);
  t.scratch_buckets.clear();  // capacity kept: no allocation in the steady state
  for (std::size_t i = 0; i < n; ++i)
    t.reader.read_values(i, t.scratch[i], t.scratch_buckets);
  if (t.reader.damaged()) {
    auto e = t.reader.refresh();  // fails `shrunk` now, with the message to show
    t.error = e ? "file shrank while mapped" : e.error().message();
    count_error("shrunk", t.name.path, t.error);
    return false;
  }
  t.values.swap(t.scratch);
  t.buckets.swap(t.scratch_buckets);
  t.families_covered = t.reader.family_count();
  t.error.clear();
  return true;
}

void collector::read_values_guarded(tracked& t) {
  try {
    read_values(t);
  } catch (const std::exception& e) {
    // One segment's failure (a hostile file making the reader allocate too much, say) is
    // counted and that segment keeps its last good values; the others are read fresh.
    t.error = e.what();
    count_error(exception_reason(e), t.name.path, t.name.path + ": " + e.what());
  }
}

std::vector<family_snapshot> collector::families_of(const tracked& t) const {
  std::vector<family_snapshot> out;
  out.reserve(t.families_covered);
  for (std::size_t f = 0; f < t.families_covered; ++f)
    out.push_back(t.reader.family(f));
  std::size_t off = 0;  // into t.buckets
  for (std::size_t i = 0; i < t.values.size(); ++i) {
    if (t.reader.series_removed(i)) {  // not folded into retired totals either
      off += t.reader.bucket_slots(i);
      continue;
    }
    series_snapshot& s = out[t.reader.series_family(i)].series.emplace_back();
    s.label_values = t.reader.series_labels(i).to_strings();
    if (const std::uint32_t nb = t.reader.bucket_slots(i)) {
      s.buckets.assign(t.buckets.begin() + static_cast<std::ptrdiff_t>(off),
                       t.buckets.begin() + static_cast<std::ptrdiff_t>(off + nb));
      s.sum = t.values[i].value;
      off += nb;
    } else {
      s.value = t.values[i].value;
      s.stamp_ns = t.values[i].stamp_ns;
    }
  }
  return out;
}

void collector::retire(tracked& t) {
  // Fold the last values of counters and histograms into the retired totals, so that
  // no merged counter goes backwards when a dead writer's segment goes away. Each
  // definition keeps its own total: a family whose definition changed (an upgrade) is
  // not dropped here; the plan decides which definition is served.
  for (family_snapshot& f : families_of(t)) {
    if (f.type != layout::metric_type::counter && f.type != layout::metric_type::histogram)
      continue;
    std::size_t i = 0;
    while (i < retired_.size() && !(retired_[i].name == f.name && same_definition(retired_[i], f)))
      ++i;
    if (i == retired_.size()) {
      retired_.emplace_back();
      retired_created_.push_back(0);
    }
    merged_set all;
    if (!retired_[i].name.empty()) all.add(retired_[i], false);
    all.add(f, false);
    retired_[i] = std::move(all.families().front());
    retired_created_[i] = std::max(retired_created_[i], t.created_ns);
  }
  ++retired_version_;
  retired_segments_ += 1;
}

void collector::discover(std::vector<segment_status>& bad) {
  auto list = list_segments(opt_.dir, opt_.prefix);
  if (!list) {
    count_error("open_failed", opt_.dir, list.error().message());
    return;
  }
  std::set<std::string> present;
  for (const segment_name& n : *list)
    present.insert(n.path);
  std::erase_if(unfinished_, [&](const auto& u) { return !present.count(u.first); });

  // Gone or replaced: a last read through our mapping (still valid after unlink), then fold.
  for (auto it = segments_.begin(); it != segments_.end();) {
    tracked& t = it->second;
    struct stat st;
    bool replaced = present.count(it->first) && ::stat(it->first.c_str(), &st) == 0 &&
                    (static_cast<std::uint64_t>(st.st_ino) != t.reader.inode() ||
                     static_cast<std::uint64_t>(st.st_dev) != t.reader.device());
    if (present.count(it->first) && !replaced) {
      ++it;
      continue;
    }
    read_values_guarded(t);
    log_.log(log_level::info, "segment removed", "path=" + logger::quote(t.name.path));
    retire(t);
    it = segments_.erase(it);
  }

  const auto me = static_cast<std::uint32_t>(::geteuid());
  for (const segment_name& n : *list) {
    if (segments_.count(n.path)) continue;
    auto refuse = [&](const std::string& reason, const std::string& message) {
      count_error(reason, n.path, message);
      segment_status s;
      s.path = n.path;
      s.pid = n.pid;
      s.instance = n.instance;
      s.state = "invalid";
      s.error = message;
      bad.push_back(std::move(s));
    };
    result<segment_reader> r{errc::open_failed, n.path};
    try {
      r = segment_reader::open(n.path);
    } catch (const std::exception& e) {  // out of memory on a hostile file: skip it
      refuse(exception_reason(e), n.path + ": " + e.what());
      continue;
    }
    if (!r) {
      if (r.code() == errc::not_ready) {  // a writer still initializing (or killed doing it)
        reap_unfinished(n.path);
        continue;
      }
      refuse(reason_of(r.code()), r.error().message());
      continue;
    }
    if (!opt_.allow_other_users && r->owner_uid() != me) {
      refuse("foreign_owner", n.path + ": owned by uid " + std::to_string(r->owner_uid()) +
                                  ", not by this exporter's uid " + std::to_string(me) +
                                  " (--shm.allow-other-users serves it)");
      continue;
    }
    tracked t{n, std::move(*r), {}, {}, {}, {}, 0, true, 0, clock::now(), {}, {}, 0};
    t.created_ns = t.reader.info().created_realtime_ns;
    log_.log(log_level::info, "segment found",
             "path=" + logger::quote(n.path) + " pid=" + std::to_string(n.pid));
    segments_.emplace(n.path, std::move(t));
  }
}

void collector::reap_unfinished(const std::string& path) {
  // A writer killed between creating its file and publishing the magic leaves a file no
  // reader can read and nobody removes. A writer takes its lifetime lock right after
  // creating the file, so a file still unreadable after the grace period whose lock we
  // can take has no writer: remove it (under the lock: a writer cannot start on it).
  if (opt_.gc_dead_after.count() <= 0) return;
  const auto now = clock::now();
  auto [it, fresh] = unfinished_.try_emplace(path, now);
  const clock::duration grace = std::max<clock::duration>(opt_.gc_dead_after, unfinished_grace);
  if (fresh || now - it->second < grace) return;
  unfinished_.erase(it);
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return;
  struct stat st;
  const bool ours = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                    (opt_.allow_other_users || st.st_uid == ::geteuid());
  if (ours && ::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::unlink(path.c_str()) == 0)
    log_.log(log_level::info, "unfinished segment removed",
             "path=" + logger::quote(path) + " bytes=" + std::to_string(st.st_size));
  ::close(fd);
}

void collector::update_plan() {
  std::vector<plan_input> inputs;
  inputs.reserve(segments_.size());
  for (auto& [path, t] : segments_)
    inputs.push_back({t.reader.device(), t.reader.inode(), t.families_covered, t.values.size(),
                      t.reader.removed_count(), t.alive});
  if (plan_.version != 0 && inputs == plan_.inputs && retired_version_ == plan_.retired_version)
    return;
  std::size_t series_total = 0;
  {
    merge_plan p;
    p.inputs = std::move(inputs);
    p.retired_version = retired_version_;
    p.version = plan_.version + 1;
    // The plan keeps no label values: each merged series' label block is rendered once,
    // when the series is first seen, into one string per family, shared by every result.
    auto labels = std::make_shared<prepared_labels>();
    merged_set m;
    // A family that writers define differently (an upgrade changed a histogram's buckets
    // or a family's type): the newest writer's definition is served, newest by the
    // segment's creation time (retired totals by the newest writer folded into them).
    // The other definitions' series are counted as conflicts and kept (retired totals
    // too), so that they are served again if that definition wins again.
    struct newest {
      const family_snapshot* shape;
      std::uint64_t created;
      bool contested;
    };
    std::unordered_map<std::string_view, newest> winner;
    auto vote = [&](const family_snapshot& f, std::uint64_t created) {
      auto [it, fresh] = winner.try_emplace(f.name, newest{&f, created, false});
      if (fresh) return;
      newest& w = it->second;
      if (!same_definition(*w.shape, f)) w.contested = true;
      if (created > w.created) w = {&f, created, w.contested};
    };
    for (auto& [path, t] : segments_)
      for (std::size_t f = 0; f < t.families_covered; ++f)
        vote(t.reader.family(f), t.created_ns);
    for (std::size_t f = 0; f < retired_.size(); ++f)
      vote(retired_[f], retired_created_[f]);
    auto slot_of = [&](const family_snapshot& shape) {
      // The exporter's own names are the exporter's: a writer's family of that name would
      // print a second # TYPE line.
      if (shape.name.starts_with("shmetrics_exporter_")) return merged_set::no_slot;
      auto w = winner.find(shape.name);
      if (w != winner.end() && w->second.contested && !same_definition(*w->second.shape, shape))
        return merged_set::no_slot;
      std::size_t slot = m.family_slot(shape);
      while (labels->families.size() < m.families().size()) {
        const family_snapshot& added = m.families()[labels->families.size()];
        prepare_family(added, labels->families.emplace_back());
      }
      return slot;
    };
    std::vector<std::string_view> values;  // one series' label values, for rendering
    auto place = [&](std::size_t fam, const auto& label_values) {
      auto [index, fresh] = m.index_slot(fam, label_values);
      if (fresh) {
        values.resize(label_values.size());
        for (std::size_t k = 0; k < values.size(); ++k)
          values[k] = label_values[k];
        append_label_block(labels->families[fam], m.families()[fam], values.data());
      }
      return target{static_cast<std::uint32_t>(fam), static_cast<std::uint32_t>(index), fresh};
    };
    for (auto& [path, t] : segments_) {
      // Where each of this writer's families goes (not_served: conflict or a dead live_*
      // gauge).
      std::vector<std::uint32_t> family_target(t.families_covered, not_served);
      for (std::size_t f = 0; f < t.families_covered; ++f) {
        const family_snapshot& shape = t.reader.family(f);
        std::size_t slot = slot_of(shape);
        if (slot == merged_set::no_slot) {
          count_error("family_conflict", path + "\n" + shape.name,
                      "family " + shape.name + " in " + path +
                          " has a different type, labels or buckets than a newer writer's, "
                          "prints a sample name of another family or is the exporter's own; "
                          "not served from this segment");
          continue;
        }
        if (!skipped_when_dead(shape, t.alive)) family_target[f] = static_cast<std::uint32_t>(slot);
      }
      auto& targets = p.segment_targets.emplace_back(t.values.size());
      for (std::size_t i = 0; i < t.values.size(); ++i) {
        std::uint32_t fam = family_target[t.reader.series_family(i)];
        if (fam == not_served || t.reader.series_removed(i))  // removed: never served again
          targets[i] = {not_served, t.reader.bucket_slots(i), false};
        else
          targets[i] = place(fam, t.reader.series_labels(i));
      }
      series_total += t.values.size();
    }
    for (const family_snapshot& f : retired_) {
      auto& targets = p.retired_targets.emplace_back(f.series.size());
      std::size_t fam = slot_of(f);
      if (fam == merged_set::no_slot)
        count_error("family_conflict", "retired\n" + f.name,
                    "retired totals of family " + f.name +
                        " have another definition than the one served; kept, not served");
      for (std::size_t i = 0; i < f.series.size(); ++i) {
        if (fam == merged_set::no_slot)
          targets[i].family = not_served;
        else
          targets[i] = place(fam, f.series[i].label_values);
      }
      series_total += f.series.size();
    }
    for (auto& b : labels->families) {  // growth slack: up to half of each
      b.text.shrink_to_fit();
      b.end.shrink_to_fit();
      b.split.shrink_to_fit();
    }
    p.labels = std::move(labels);
    for (std::size_t f = 0; f < m.families().size(); ++f)
      p.series_counts.push_back(m.series_count(f));
    p.families = std::move(m.families());
    for (const family_snapshot& f : p.families)
      if (f.name.starts_with("process_")) p.served_names.push_back(f.name);
    carry_over(p);
    plan_ = std::move(p);
  }  // the merge index (a node per series) is freed here
#ifdef __GLIBC__
  // A big rebuild frees tens of MB of index nodes and old shapes spread over the heap;
  // give them back instead of keeping them resident until the next rebuild.
  if (series_total >= trim_after_series) ::malloc_trim(0);
#endif
}

std::shared_ptr<collection> collector::take_buffer() {
  // Results come back to the pool when the last scrape holding them lets go (the
  // deleter), so a collection is only rewritten when nobody reads it. Steady state: two
  // buffers alternate, the latest and the one being filled.
  std::unique_ptr<collection> c;
  {
    std::lock_guard lock(pool_->mu);
    for (auto& b : pool_->free)
      if (b->plan_version == plan_.version) std::swap(b, pool_->free.back());
    if (!pool_->free.empty()) {
      c = std::move(pool_->free.back());
      pool_->free.pop_back();
    }
  }
  if (!c) c = std::make_unique<collection>();
  return std::shared_ptr<collection>(c.release(), [pool = pool_](collection* done) {
    std::unique_ptr<collection> owned(done);
    std::lock_guard lock(pool->mu);
    if (pool->free.size() < 2) pool->free.push_back(std::move(owned));
  });
}

void collector::fill_values(collection& c) {
  if (c.plan_version != plan_.version) {
    // The shape changed: copy the families' definitions and size their value columns
    // once; the label blocks are the plan's, shared, not copied.
    c.families = plan_.families;
    c.columns.families.resize(c.families.size());
    for (std::size_t f = 0; f < c.families.size(); ++f) {
      const family_snapshot& fam = c.families[f];
      auto& col = c.columns.families[f];
      col.rows = plan_.series_counts[f];
      col.value.assign(col.rows, 0);
      col.stamp_ns.assign(fam.type == layout::metric_type::gauge ? col.rows : 0, 0);
      col.buckets.assign(
          fam.type == layout::metric_type::histogram ? col.rows * (fam.bounds.size() + 1) : 0, 0);
    }
    c.plan_version = plan_.version;
    c.labels = plan_.labels;
  } else {
    c.families.resize(plan_.families.size());  // drop the previous self-metrics
  }
  // Every served target is written (the first source of each merged series copies), so
  // nothing needs clearing between collections of one plan.
  std::size_t k = 0;
  for (auto& [path, t] : segments_) {
    const auto& targets = plan_.segment_targets[k++];
    const std::uint64_t* buckets = t.buckets.data();
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const target& to = targets[i];
      if (to.family == not_served) {
        buckets += to.series;  // its histogram counts, if any
        continue;
      }
      const family_snapshot& f = c.families[to.family];
      const std::size_t nb = f.type == layout::metric_type::histogram ? f.bounds.size() + 1 : 0;
      combine(f.type, f.mode, c.columns.families[to.family], to.series, t.values[i], buckets, nb,
              to.first);
      buckets += nb;
    }
  }
  for (std::size_t f = 0; f < retired_.size(); ++f)
    for (std::size_t i = 0; i < retired_[f].series.size(); ++i) {
      const target& to = plan_.retired_targets[f][i];
      if (to.family == not_served) continue;
      const family_snapshot& m = c.families[to.family];
      const series_snapshot& s = retired_[f].series[i];
      const bool hist = m.type == layout::metric_type::histogram;
      const std::size_t nb = hist ? m.bounds.size() + 1 : 0;
      if (hist && s.buckets.size() != nb) continue;  // cannot happen: same bounds
      combine(m.type, m.mode, c.columns.families[to.family], to.series,
              {hist ? s.sum : s.value, s.stamp_ns}, s.buckets.data(), nb, to.first);
    }
}

namespace {

std::string_view label_block_of(const prepared_labels::family_blocks& b, std::size_t i) {
  const std::size_t begin = i ? b.end[i - 1] : 0;
  return std::string_view(b.text).substr(begin, b.end[i] - begin);
}

// A merged value `raw` plus its offset, held at `last` (the offset growing by the
// difference) if it would read less: see keep_monotonic.
template <class T>
T held(T raw, T last, T& offset) {
  T v = raw + offset;
  if (v < last) {
    offset += last - v;
    v = last;
  }
  return v;
}

}  // namespace

void collector::carry_over(const merge_plan& next) {
  // Each counter and histogram series of the next plan takes what the same series (same
  // family name and type, same label block; for buckets, the same bound) last read and
  // its offset: a plan rebuilt when writers come and go must not let a series go back.
  std::vector<carried_family> out(next.families.size());
  std::unordered_map<std::string_view, std::size_t> old_family;
  for (std::size_t f = 0; f < carried_.size(); ++f)
    old_family.emplace(plan_.families[f].name, f);
  for (std::size_t f = 0; f < next.families.size(); ++f) {
    const family_snapshot& shape = next.families[f];
    const bool hist = shape.type == layout::metric_type::histogram;
    if (shape.type != layout::metric_type::counter && !hist) continue;
    const std::size_t rows = next.series_counts[f], nb = hist ? shape.bounds.size() + 1 : 0;
    carried_family& to = out[f];
    to.last.assign(rows, 0);
    to.offset.assign(rows, 0);
    to.last_b.assign(rows * nb, 0);
    to.offset_b.assign(rows * nb, 0);
    auto it = old_family.find(shape.name);
    if (it == old_family.end()) continue;
    const family_snapshot& old = plan_.families[it->second];
    if (old.type != shape.type || old.label_names != shape.label_names) continue;
    const carried_family& from = carried_[it->second];
    const std::size_t onb = hist ? old.bounds.size() + 1 : 0;
    std::vector<std::size_t> bucket_from(nb, onb);  // onb: no such bound before
    for (std::size_t b = 0, o = 0; b + 1 < nb; ++b) {
      while (o < old.bounds.size() && old.bounds[o] < shape.bounds[b])
        ++o;
      if (o < old.bounds.size() && old.bounds[o] == shape.bounds[b]) bucket_from[b] = o;
    }
    if (nb) bucket_from[nb - 1] = onb - 1;  // +Inf: _count
    auto copy_row = [&](std::size_t r, std::size_t o) {
      to.last[r] = from.last[o];
      to.offset[r] = from.offset[o];
      for (std::size_t b = 0; b < nb; ++b)
        if (bucket_from[b] < onb) {
          to.last_b[r * nb + b] = from.last_b[o * onb + bucket_from[b]];
          to.offset_b[r * nb + b] = from.offset_b[o * onb + bucket_from[b]];
        }
    };
    const prepared_labels::family_blocks& nblocks = next.labels->families[f];
    const prepared_labels::family_blocks& oblocks = plan_.labels->families[it->second];
    const std::size_t old_rows = from.last.size();
    // Rows in the same order first (the common case: a plan rebuilt for a new series keeps
    // the others where they were), then the rest by label block.
    std::size_t r = 0;
    while (r < rows && r < old_rows && label_block_of(nblocks, r) == label_block_of(oblocks, r)) {
      copy_row(r, r);
      ++r;
    }
    if (r < rows && r < old_rows) {
      std::unordered_map<std::string_view, std::size_t> index;
      for (std::size_t o = r; o < old_rows; ++o)
        index.emplace(label_block_of(oblocks, o), o);
      for (; r < rows; ++r)
        if (auto x = index.find(label_block_of(nblocks, r)); x != index.end())
          copy_row(r, x->second);
    }
  }
  carried_ = std::move(out);
}

void collector::keep_monotonic(collection& c) {
  // Merged counters, histogram buckets and _sum never read less than they last did while
  // this exporter lives. Sums of doubles depend on their order (live writers in path
  // order, retired totals last), so a writer leaving can take a few ulps off a total;
  // a family whose definition changes drops the other definition's totals. Either would
  // read as a counter reset in Prometheus (rate() jumps by the whole total). Where a
  // value reads less than last time, the difference is added to it from then on (an
  // offset): the series stays where it was and keeps counting the increments it sees.
  for (std::size_t f = 0; f < carried_.size(); ++f) {
    const family_snapshot& shape = c.families[f];
    auto& col = c.columns.families[f];
    carried_family& k = carried_[f];
    if (shape.type == layout::metric_type::counter) {
      for (std::size_t r = 0; r < col.rows; ++r)
        col.value[r] = k.last[r] = held(col.value[r], k.last[r], k.offset[r]);
    } else if (shape.type == layout::metric_type::histogram) {
      const std::size_t nb = shape.bounds.size() + 1;
      for (std::size_t r = 0; r < col.rows; ++r) {
        std::uint64_t* b = col.buckets.data() + r * nb;
        std::uint64_t* last = k.last_b.data() + r * nb;
        std::uint64_t* off = k.offset_b.data() + r * nb;
        const std::uint64_t count_before = last[nb - 1], count_offset_before = off[nb - 1];
        std::uint64_t cumulative = 0;  // buckets stay cumulative (le order) after offsets
        for (std::size_t j = 0; j < nb; ++j) {
          cumulative = std::max(cumulative, held(b[j], last[j], off[j]));
          b[j] = last[j] = cumulative;
        }
        // _sum legitimately goes down when negative values are observed (then _count
        // grew); it is held only when no new observation explains the drop.
        const bool observed = last[nb - 1] > count_before && off[nb - 1] == count_offset_before;
        col.value[r] = k.last[r] =
            observed ? col.value[r] + k.offset[r] : held(col.value[r], k.last[r], k.offset[r]);
      }
    }
  }
}

std::shared_ptr<collection> collector::run_once() {
  auto t0 = clock::now();
  std::vector<segment_status> status;
  discover(status);
  const auto now = clock::now();
  const double now_mono = monotonic_now_s();

  if (segments_.empty() && status.empty()) {
    // Said once, until segments appear again: a typo in --shm.prefix or --shm.dir
    // otherwise looks like an engine with no metrics.
    if (!none_found_logged_)
      log_.log(log_level::warn, "no segment matches",
               "dir=" + logger::quote(opt_.dir) +
                   " pattern=" + logger::quote(opt_.prefix + ".<pid>.<instance>"));
    none_found_logged_ = true;
  } else {
    none_found_logged_ = false;
  }

  std::set<std::uint32_t> live_pids;
  for (auto& [path, t] : segments_) {
    read_values_guarded(t);
    bool alive = t.reader.writer_alive();
    if (alive && !t.alive) t.last_hb_change = now;
    if (!alive && t.alive) {
      t.dead_since = now;
      // Once per segment: its lock is free from now on.
      const bool closed = t.reader.info().state == layout::segment_state::closed;
      log_.log(closed ? log_level::info : log_level::warn, closed ? "writer exited" : "writer died",
               "path=" + logger::quote(path) + " pid=" + std::to_string(t.name.pid));
    }
    t.alive = alive;
    if (alive) live_pids.insert(t.name.pid);
  }

  // Reap dead writers' segments after --shm.gc-dead-after, folding them first.
  if (opt_.gc_dead_after.count() > 0) {
    for (auto it = segments_.begin(); it != segments_.end();) {
      tracked& t = it->second;
      if (t.alive || now - t.dead_since < opt_.gc_dead_after) {
        ++it;
        continue;
      }
      // Take the writer's lock ourselves: if we get it, nobody owns the segment.
      if (::flock(t.reader.fd(), LOCK_EX | LOCK_NB) != 0) {
        ++it;
        continue;
      }
      if (::unlink(t.name.path.c_str()) != 0) {
        log_.log_limited(
            log_level::warn, t.name.path + "\nunlink", "cannot remove dead segment",
            "path=" + logger::quote(t.name.path) + " err=" + logger::quote(std::strerror(errno)));
        ::flock(t.reader.fd(), LOCK_UN);
        ++it;
        continue;
      }
      log_.log(log_level::info, "dead segment removed",
               "path=" + logger::quote(t.name.path) + " pid=" + std::to_string(t.name.pid));
      retire(t);
      it = segments_.erase(it);
    }
  }

  for (auto& [path, t] : segments_) {
    segment_info info = t.reader.info();
    if (info.heartbeat_count != t.last_hb_count) {
      t.last_hb_count = info.heartbeat_count;
      t.last_hb_change = now;
    }
    segment_status s;
    s.path = path;
    s.pid = t.name.pid;
    s.instance = t.name.instance;
    s.families = t.families_covered;
    s.series = t.values.size();
    s.heartbeat_age_s = now_mono - static_cast<double>(info.heartbeat_ns) * 1e-9;
    s.error = t.error;
    if (t.alive)
      s.state = now - t.last_hb_change > stall_after ? "stalled" : "alive";
    else if (info.state == layout::segment_state::closed)
      s.state = "closed";
    else if (live_pids.count(t.name.pid))
      s.state = "restarted";  // the same pid writes a newer segment (a restarted container)
    else
      s.state = "dead";
    status.push_back(std::move(s));
  }

  update_plan();
  std::shared_ptr<collection> c = take_buffer();
  fill_values(*c);
  keep_monotonic(*c);
  c->segments = std::move(status);
  collections_ += 1;
  c->duration_s = std::chrono::duration<double>(clock::now() - t0).count();
  append_self_metrics(*c, c->segments);
  return c;
}

void collector::append_self_metrics(collection& c, const std::vector<segment_status>& status) {
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

}  // namespace shmetrics::exporter
