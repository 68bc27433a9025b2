// shmetrics::detail: what Linux's /proc says about this process, read the way the
// Prometheus client libraries read it for their process_* families. Shared by the
// writer (registry's identity stamp, process_metrics) and the exporter (its own
// process_* families), so both parse /proc/self/stat one way.
//
// Cold path: each call opens and reads files under /proc. Never fails: a field that
// cannot be read is 0.
#ifndef SHMETRICS_DETAIL_PROC_SELF_HPP
#define SHMETRICS_DETAIL_PROC_SELF_HPP

#include <cstdint>         // tick counts
#include <cstdio>          // fopen /proc files
#include <cstdlib>         // strtod
#include <cstring>         // strrchr, strncmp
#include <dirent.h>        // counting /proc/self/fd
#include <sys/resource.h>  // RLIMIT_NOFILE
#include <unistd.h>        // sysconf

#include "../config.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

/// The fields of /proc/self/stat that the process_* families use, in the units the kernel
/// gives (clock ticks, bytes, pages). proc(5) numbers the fields from 1.
struct proc_stat {
  std::uint64_t utime_ticks = 0;  // field 14
  std::uint64_t stime_ticks = 0;  // field 15
  std::uint64_t start_ticks = 0;  // field 22, since boot
  std::uint64_t vsize_bytes = 0;  // field 23
  std::uint64_t rss_pages = 0;    // field 24
};

/// Reads `path` (this process's by default; tests read a child's).
inline proc_stat read_proc_stat(const char* path = "/proc/self/stat") noexcept {
  proc_stat s;
  std::FILE* f = std::fopen(path, "re");
  if (!f) return s;
  char buf[2048];
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  // Field 2 is the command name in parentheses, which may itself hold spaces and ')':
  // the fields from 3 on start after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p) return s;
  int field = 2;
  for (p += 1; *p != 0 && field < 24;) {
    while (*p == ' ')
      ++p;
    ++field;
    std::uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; ++p)
      v = v * 10 + static_cast<std::uint64_t>(*p - '0');
    while (*p != 0 && *p != ' ')  // the state letter, or a negative number's rest
      ++p;
    switch (field) {
      case 14:
        s.utime_ticks = v;
        break;
      case 15:
        s.stime_ticks = v;
        break;
      case 22:
        s.start_ticks = v;
        break;
      case 23:
        s.vsize_bytes = v;
        break;
      case 24:
        s.rss_pages = v;
        break;
      default:
        break;
    }
  }
  return s;
}

/// System boot time, seconds since the epoch (`btime` of /proc/stat); 0 if unreadable.
inline double read_boot_time_s() noexcept {
  double btime = 0;
  if (std::FILE* f = std::fopen("/proc/stat", "re")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "btime ", 6) == 0) btime = std::strtod(line + 6, nullptr);
    std::fclose(f);
  }
  return btime;
}

/// The values of the six process_* families, in their exposed units.
struct process_figures {
  double cpu_seconds = 0;     // process_cpu_seconds_total (user + system)
  double virtual_bytes = 0;   // process_virtual_memory_bytes
  double resident_bytes = 0;  // process_resident_memory_bytes
  double start_time_s = 0;    // process_start_time_seconds (since the epoch)
  double open_fds = 0;        // process_open_fds
  double max_fds = 0;         // process_max_fds (the soft limit)
};

/// Reads all six. `boot_time_s` from read_boot_time_s() (it never changes: read it once).
inline process_figures read_process_figures(double boot_time_s) noexcept {
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  proc_stat st = read_proc_stat();
  process_figures p;
  p.cpu_seconds = static_cast<double>(st.utime_ticks + st.stime_ticks) / ticks;
  p.virtual_bytes = static_cast<double>(st.vsize_bytes);
  p.resident_bytes = static_cast<double>(st.rss_pages) * page;
  p.start_time_s = boot_time_s + static_cast<double>(st.start_ticks) / ticks;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') p.open_fds += 1;
    ::closedir(d);
    p.open_fds -= 1;  // the directory stream itself
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) p.max_fds = static_cast<double>(rl.rlim_cur);
  return p;
}

}  // namespace detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_DETAIL_PROC_SELF_HPP
