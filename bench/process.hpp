// shmetrics-bench: the real processes it runs (the exporter, wrk, Python) and what it
// reads about them from /proc.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>       // fdopen, fgets
#include <ctime>        // clock_getcpuclockid
#include <cstdlib>      // getenv
#include <fstream>      // /proc files
#include <sstream>      // /proc/<pid>/stat fields
#include <string>       // paths, lines
#include <string_view>  // prefixes
#include <vector>       // argv

extern char** environ;

namespace bench {

/// A child process with its stdout on a pipe; stderr goes where ours goes unless
/// `quiet_stderr`. The destructor stops it (SIGTERM, then waits).
class child {
 public:
  explicit child(const std::vector<std::string>& argv, bool quiet_stderr = false) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    if (quiet_stderr) posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    out_ = ::fdopen(fds[0], "r");
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_) std::fclose(out_);
  }

  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0; }

  /// The next line of its stdout, without the newline, into `l`; false at EOF.
  bool line(std::string& l) {
    char buf[4096];
    if (!out_ || !std::fgets(buf, sizeof buf, out_)) return false;
    l = buf;
    if (!l.empty() && l.back() == '\n') l.pop_back();
    return true;
  }

  /// Waits for it to exit; its exit status, or 128 + the signal that ended it.
  int wait() {
    int st = 0;
    if (pid_ <= 0) return -1;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

 private:
  pid_t pid_ = -1;
  std::FILE* out_ = nullptr;
};

inline bool is_executable(const std::string& p) {
  struct stat st {};
  return !p.empty() && ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(p.c_str(), X_OK) == 0;
}

/// `name` on $PATH, or "".
inline std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (is_executable(dir + "/" + name)) return dir + "/" + name;
  return {};
}

/// The directory of this executable (from /proc/self/exe).
inline std::string self_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  return p.substr(0, p.rfind('/'));
}

/// A field of /proc/<pid>/status in kB ("VmRSS", "VmHWM", "RssAnon", ...); -1 if absent.
inline double proc_status_kb(pid_t pid, std::string_view field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string l;
  while (std::getline(in, l))
    if (l.starts_with(field) && l.size() > field.size() && l[field.size()] == ':')
      return std::stod(l.substr(field.size() + 1));
  return -1;
}

/// User + system CPU seconds a process has used so far: its CPU-time clock (ns), else
/// /proc/<pid>/stat fields 14, 15 (clock ticks: 10 ms, too coarse for a few scrapes).
inline double proc_cpu_seconds(pid_t pid) {
  clockid_t clk;
  timespec ts{};
  if (::clock_getcpuclockid(pid, &clk) == 0 && ::clock_gettime(clk, &ts) == 0)
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return -1;
  std::istringstream f(s.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  // after ")": state is field 3; utime is 14, stime 15.
  for (int i = 3; i <= 15 && (f >> field); ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace bench
