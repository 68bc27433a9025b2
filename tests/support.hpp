// Test support: unique segment names in /dev/shm, cleanup, and running real processes.
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmetrics/shmetrics.hpp>
#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/snapshot.hpp>

extern char** environ;

namespace test {

/// A prefix no other test (or test process) uses; every segment under it is removed
/// when the guard goes away.
struct unique_prefix {
  std::string dir = "/dev/shm";
  std::string prefix;
  unique_prefix() {
    static std::atomic<int> n{0};
    prefix = "shmtest-" + std::to_string(getpid()) + "-" + std::to_string(n++);
  }
  ~unique_prefix() {
    auto segs = shmetrics::list_segments(dir, prefix);
    if (segs)
      for (auto& s : *segs)
        ::unlink(s.path.c_str());
  }
  shmetrics::registry_options options() const {
    shmetrics::registry_options o;
    o.dir = dir;
    o.prefix = prefix;
    o.max_families = 256;
    o.max_series = 4096;
    o.max_cells = 16384;
    o.string_bytes = 1 << 18;
    o.shards = 8;
    o.heartbeat_interval = std::chrono::milliseconds(50);
    return o;
  }
};

/// Runs a shell command, returns (exit status, stdout).
inline std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, out};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

/// A child process with its stdout on a pipe.
struct child {
  pid_t pid = -1;
  FILE* out = nullptr;

  explicit child(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe(fds) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    out = ::fdopen(fds[0], "r");
  }
  ~child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (out) std::fclose(out);
  }
  /// One line of the child's stdout, without the newline ("" at EOF).
  std::string line() {
    char buf[4096];
    if (!out || !std::fgets(buf, sizeof buf, out)) return {};
    std::string s(buf);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  /// Waits for exit; returns the exit status (or 128+signal).
  int wait() {
    int st = 0;
    ::waitpid(pid, &st, 0);
    pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  void kill(int sig = SIGKILL) { ::kill(pid, sig); }
};

/// Finds a family by name in a snapshot.
template <class Snap>
const shmetrics::family_snapshot* find_family(const Snap& s, const std::string& name) {
  for (auto& f : s.families)
    if (f.name == name) return &f;
  return nullptr;
}

}  // namespace test
