// Test support: unique segment names in /dev/shm, cleanup, and running real processes.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>
#include <fcntl.h>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
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

/// Ends the test binary with meson's SKIP status (77) when a case's prerequisite (root, a
/// tool, a file) is missing: Catch2 v2 has no skip, and a case that returns early passes
/// without checking anything. Call it first thing in a case that is hidden from the
/// binary's main run (a `[.name]` tag) and run alone by its own meson test() (docs/testing.md),
/// so the exit ends that one case only. _Exit: nothing of the case to clean up yet, and
/// Catch2 has printed nothing we would lose.
[[noreturn]] inline void skip(const std::string& why) {
  std::fflush(stdout);
  std::fprintf(stderr, "SKIP: %s\n", why.c_str());
  std::fflush(stderr);
  std::_Exit(77);
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

/// A loopback TCP port that was free a moment ago (for servers that cannot take port 0).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// process_start_time_seconds of `pid`, read from /proc as process_metrics and the
/// exporter read their own.
inline double process_start_time_of(pid_t pid) {
  auto st = shmetrics::detail::read_proc_stat(("/proc/" + std::to_string(pid) + "/stat").c_str());
  return st.start_ticks == 0
             ? 0
             : shmetrics::detail::read_boot_time_s() +
                   static_cast<double>(st.start_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// Prometheus text as "name{labels}" -> value (comments skipped).
inline std::map<std::string, double> parse_samples(const std::string& text) {
  std::map<std::string, double> m;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    if (l.empty() || l[0] == '#') continue;
    auto sp = l.rfind(' ');
    m[l.substr(0, sp)] = std::stod(l.substr(sp + 1));
  }
  return m;
}

/// A real Prometheus server (Debian's /usr/bin/prometheus) on a free loopback port,
/// scraping 127.0.0.1:`target_port` every second; its files live in `dir`.
struct prometheus_server {
  std::string dir;
  int port = free_port();
  std::unique_ptr<child> proc;
  prometheus_server(std::string d, int target_port) : dir(std::move(d)) {
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/prometheus.yml") << "global:\n  scrape_interval: 1s\n"
                                              "scrape_configs:\n  - job_name: shmetrics\n"
                                              "    static_configs:\n      - targets: ['127.0.0.1:"
                                           << target_port << "']\n";
    proc = std::make_unique<child>(std::vector<std::string>{
        "/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
        "--storage.tsdb.path=" + dir + "/data",
        "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"});
  }
  ~prometheus_server() {
    proc.reset();
    std::filesystem::remove_all(dir);
  }
};

/// A TCP connection to 127.0.0.1:port (blocking), or -1.
inline int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// The status code of a raw HTTP reply ("HTTP/1.1 413 ..."), 0 if it is none.
inline int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
  return std::atoi(response.c_str() + 9);
}

/// Reads what the server sends on `fd` until it closes, a status line and headers
/// arrived, or `timeout` passes.
inline std::string read_reply(int fd, std::chrono::milliseconds timeout) {
  std::string out;
  char buf[4096];
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.find("\r\n\r\n") != std::string::npos) break;
  }
  return out;
}

/// Finds a family by name in a snapshot.
template <class Snap>
const shmetrics::family_snapshot* find_family(const Snap& s, const std::string& name) {
  for (auto& f : s.families)
    if (f.name == name) return &f;
  return nullptr;
}

/// A bound list and the values to look up in it.
struct bucket_case {
  std::vector<double> bounds, values;
};

/// Bound lists of every shape the CPU's bucket search tells apart (0-140 bounds: every
/// window, checkpoint and halving; and 255-4096), with uneven gaps, some negative; the
/// values are the bounds, their neighbours (v == bound belongs to that bucket: le), ±0,
/// ±Inf, the extreme finite values and random ones over the range and a little beyond.
/// NaN is not asked: observe() drops it before any search.
inline std::vector<bucket_case> bucket_search_cases() {
  std::mt19937_64 rng(7);
  std::vector<std::uint32_t> sizes;
  for (std::uint32_t n = 0; n <= 140; ++n)
    sizes.push_back(n);
  for (std::uint32_t n : {255u, 256u, 257u, 1000u, 4096u})
    sizes.push_back(n);
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<bucket_case> out;
  for (std::uint32_t n : sizes) {
    bucket_case c;
    for (std::uint32_t i = 0; i < n; ++i)
      c.bounds.push_back(-3.0 + i * 0.75 + (i % 3) * 0.1);
    c.values = {-inf,
                inf,
                0.0,
                -0.0,
                std::numeric_limits<double>::max(),
                std::numeric_limits<double>::lowest()};
    for (double x : c.bounds)
      c.values.insert(c.values.end(), {x, std::nextafter(x, -inf), std::nextafter(x, inf)});
    std::uniform_real_distribution<double> d(-5, n * 0.75 + 2);
    for (int k = 0; k < 500; ++k)
      c.values.push_back(d(rng));
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace test
