// Finding segments: new ones opened (or refused: unreadable, another user's), gone or
// replaced ones read a last time and retired, files a writer died creating removed.
#include <fcntl.h>     // open for the reaper
#include <sys/file.h>  // flock for the reaper
#include <sys/stat.h>  // stat for replaced files
#include <unistd.h>    // unlink

#include <algorithm>  // max
#include <set>        // seen paths

#include "impl.hpp"

SHMETRICS_BEGIN_NAMESPACE

using namespace collect_detail;

void collector::impl::discover(std::vector<segment_status>& bad) {
  // Every prefix's segments in path order (as one prefix's were), each path once (a
  // prefix given twice).
  std::vector<segment_name> found;
  for (const std::string& prefix : opt_.prefixes) {
    auto one = list_segments(opt_.dir, prefix);
    if (!one) {
      count_error("open_failed", opt_.dir, one.error().message());
      return;
    }
    found.insert(found.end(), std::make_move_iterator(one->begin()),
                 std::make_move_iterator(one->end()));
  }
  std::sort(found.begin(), found.end(), [](auto& x, auto& y) { return x.path < y.path; });
  found.erase(
      std::unique(found.begin(), found.end(), [](auto& x, auto& y) { return x.path == y.path; }),
      found.end());
  const std::vector<segment_name>* list = &found;
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
    log_.log(log_level::info, "segment removed", "path=" + logfmt_quote(t.name.path));
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
             "path=" + logfmt_quote(n.path) + " pid=" + std::to_string(n.pid));
    segments_.emplace(n.path, std::move(t));
  }
}

void collector::impl::reap_unfinished(const std::string& path) {
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
             "path=" + logfmt_quote(path) + " bytes=" + std::to_string(st.st_size));
  ::close(fd);
}

SHMETRICS_END_NAMESPACE
