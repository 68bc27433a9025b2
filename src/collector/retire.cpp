// Dead writers: their last counter and histogram values folded into the retired totals,
// their segments removed after gc_dead_after.
#include <sys/file.h>  // flock
#include <unistd.h>    // unlink

#include <algorithm>  // max
#include <cerrno>     // errno
#include <cstring>    // strerror

#include "impl.hpp"
#include "merge.hpp"

SHMETRICS_BEGIN_NAMESPACE

using namespace collect_detail;

void collector::impl::retire(tracked& t) {
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

void collector::impl::reap_dead(clock::time_point now) {
  // Reap dead writers' segments after --shm.gc-dead-after, folding them first.
  if (opt_.gc_dead_after.count() <= 0) return;
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
          "path=" + logfmt_quote(t.name.path) + " err=" + logfmt_quote(std::strerror(errno)));
      ::flock(t.reader.fd(), LOCK_UN);
      ++it;
      continue;
    }
    log_.log(log_level::info, "dead segment removed",
             "path=" + logfmt_quote(t.name.path) + " pid=" + std::to_string(t.name.pid));
    retire(t);
    it = segments_.erase(it);
  }
}

SHMETRICS_END_NAMESPACE
