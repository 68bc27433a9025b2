// The collector: flight control (one collection at a time, shared by concurrent
// callers), one collection from discovery to self-metrics, and its log.
#include <set>  // live pids

#include "impl.hpp"

SHMETRICS_BEGIN_NAMESPACE

using namespace collect_detail;

namespace {

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

collector::collector(collector_options opt) : impl_(std::make_unique<impl>(std::move(opt))) {}
collector::~collector() = default;

std::shared_ptr<const collection> collector::collect() {
  return impl_->collect();
}

std::shared_ptr<const collection> collector::latest() const {
  return impl_->latest();
}

std::shared_ptr<const collection> collector::latest_within(std::chrono::milliseconds max_age) {
  return impl_->latest_within(max_age);
}

collector::impl::impl(collector_options opt)
    : opt_(std::move(opt)), log_(opt_.log), pool_(std::make_shared<buffer_pool>()) {}

std::shared_ptr<const collection> collector::impl::latest() const {
  std::lock_guard lock(mu_);
  return latest_;
}

std::shared_ptr<const collection> collector::impl::latest_within(
    std::chrono::milliseconds max_age) {
  {
    std::lock_guard lock(mu_);
    if (latest_ && clock::now() - latest_started_ < max_age) return latest_;
  }
  return collect();
}

std::shared_ptr<const collection> collector::impl::collect() {
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
    log_.log(log_level::error, "collection failed", "err=" + logfmt_quote(e.what()));
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

void collector::impl::count_error(const std::string& reason, const std::string& key,
                                  const std::string& message) {
  // Each distinct problem (file + reason) is counted once, however many scrapes see it.
  if (reported_.emplace(key + "\n" + reason, true).second) errors_[reason] += 1;
  log_.log_limited(log_level::warn, key + "\n" + reason, message, "reason=" + reason);
}

std::shared_ptr<collection> collector::impl::run_once() {
  auto t0 = clock::now();
  std::vector<segment_status> status;
  discover(status);
  const auto now = clock::now();
  const double now_mono = monotonic_now_s();

  if (segments_.empty() && status.empty()) {
    // Said once, until segments appear again: a typo in --shm.prefix or --shm.dir
    // otherwise looks like an engine with no metrics.
    if (!none_found_logged_) {
      std::string patterns;  // each prefix's, comma-separated
      for (const std::string& prefix : opt_.prefixes)
        patterns += (patterns.empty() ? "" : ",") + prefix + ".<pid>.<instance>";
      log_.log(log_level::warn, "no segment matches",
               "dir=" + logfmt_quote(opt_.dir) + " pattern=" + logfmt_quote(patterns));
    }
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
               "path=" + logfmt_quote(path) + " pid=" + std::to_string(t.name.pid));
    }
    t.alive = alive;
    if (alive) live_pids.insert(t.name.pid);
  }

  reap_dead(now);

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

SHMETRICS_END_NAMESPACE
