// A crash loop in a small /dev/shm: an engine with default registry options is started,
// registers a vLLM-sized set of series, counts, and is SIGKILLed, 40 times over, in a
// private 8 MiB tmpfs (a Kubernetes `emptyDir: {medium: Memory, sizeLimit: 8Mi}`), with
// a real shmetrics-exporter (default flags but a short --shm.gc-dead-after) watching.
// Every start must succeed, the tmpfs must stay far from full, and the exporter must
// serve every killed engine's counts.
//
// Needs a private mount namespace (root or CAP_SYS_ADMIN); exits 77 (skip) otherwise.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <shmetrics/shmetrics.hpp>

#include "../private_tmpfs.hpp"

#ifndef EXPORTER_BIN
#error "EXPORTER_BIN must name shmetrics-exporter"
#endif

namespace {

constexpr int engines = 40;

// The engine: default options (the point of the test), ~300 series, one request counted.
[[noreturn]] void engine(const std::string& dir, int ready_fd) {
  shmetrics::registry_options o;
  o.dir = dir;
  o.prefix = "vllm";
  auto reg = shmetrics::registry::create(o);
  if (!reg) {
    std::fprintf(stderr, "engine: %s\n", reg.error().message().c_str());
    ::_exit(3);
  }
  std::vector<double> ttft = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,  0.75,
                              1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160., 640., 2560.};
  for (int i = 0; i < 40; ++i) {
    auto f = reg->add_counter({.name = "vllm:c" + std::to_string(i),
                               .help = "A counter.",
                               .labels = {"model_name", "engine"}});
    for (int e = 0; e < 4; ++e)
      (void)f->with_labels({"meta-llama/Llama-3.1-8B-Instruct", std::to_string(e)});
  }
  for (int i = 0; i < 12; ++i) {
    auto f = reg->add_histogram({.name = "vllm:h" + std::to_string(i),
                                 .help = "A histogram.",
                                 .labels = {"model_name", "engine"},
                                 .buckets = ttft});
    for (int e = 0; e < 4; ++e)
      f->with_labels({"meta-llama/Llama-3.1-8B-Instruct", std::to_string(e)})->observe(0.3);
  }
  auto requests = reg->add_counter({.name = "vllm:request_success", .help = "Requests."});
  requests->with_labels({})->inc();
  char ok = 1;
  (void)!::write(ready_fd, &ok, 1);
  for (;;)
    ::pause();
}

double served(int port, const std::string& sample) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(10, 0);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return -1;
  for (std::size_t p = r->body.find(sample + " "); p != std::string::npos;
       p = r->body.find(sample + " ", p + 1))
    if (p == 0 || r->body[p - 1] == '\n') return std::stod(r->body.substr(p + sample.size() + 1));
  return -2;
}

int checks(const std::string& dir) {
  // The exporter, in this mount namespace, on a port it picks.
  int out[2];
  EXPECT(::pipe(out) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  std::vector<std::string> args = {
      EXPORTER_BIN, "--web.listen-address", "127.0.0.1:0", "--shm.dir",   dir,   "--shm.prefix",
      "vllm",       "--shm.gc-dead-after",  "100ms",       "--log.level", "warn"};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t exporter = -1;
  EXPECT(posix_spawn(&exporter, argv[0], &fa, nullptr, argv.data(), environ) == 0);
  ::close(out[1]);
  char line[256] = {};
  FILE* f = ::fdopen(out[0], "r");
  EXPECT(f && std::fgets(line, sizeof line, f));
  const char* colon = std::strrchr(line, ':');
  const int port = colon ? std::atoi(colon + 1) : 0;
  EXPECT(port > 0);
  if (port <= 0) return 1;

  std::uint64_t worst_used = 0;
  int started = 0;
  for (int i = 0; i < engines; ++i) {
    int ready[2];
    EXPECT(::pipe(ready) == 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(ready[0]);
      engine(dir, ready[1]);
    }
    ::close(ready[1]);
    char ok = 0;
    const bool up = ::read(ready[0], &ok, 1) == 1;
    ::close(ready[0]);
    started += up;
    // A scrape sees it alive (its counts reach the exporter), then it is killed.
    EXPECT(served(port, "vllm:request_success_total") >= 1);
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!up) std::fprintf(stderr, "engine %d did not start (exit %d)\n", i, WEXITSTATUS(st));
    struct statvfs vfs;
    EXPECT(::statvfs(dir.c_str(), &vfs) == 0);
    worst_used = std::max<std::uint64_t>(worst_used, (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize);
    // The exporter reaps it after --shm.gc-dead-after, keeping its counts.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    served(port, "vllm:request_success_total");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double total = served(port, "vllm:request_success_total");
  const double retired = served(port, "shmetrics_exporter_retired_segments_total");
  struct statvfs vfs;
  EXPECT(::statvfs(dir.c_str(), &vfs) == 0);
  const std::uint64_t used_at_end = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
  std::printf(
      "crash loop: %d of %d engines started; served vllm:request_success_total %g, "
      "retired %g; tmpfs used at most %llu KiB, %llu KiB at the end\n",
      started, engines, total, retired, static_cast<unsigned long long>(worst_used / 1024),
      static_cast<unsigned long long>(used_at_end / 1024));
  EXPECT(started == engines);
  EXPECT(total == engines);  // every killed engine's count, none lost, none twice
  EXPECT(retired >= engines - 1);
  EXPECT(worst_used < 4u << 20);  // a default segment once reserved 9.6 MiB
  EXPECT(used_at_end < 1u << 20);
  ::kill(exporter, SIGTERM);
  ::waitpid(exporter, nullptr, 0);
  return test::failures ? 1 : 0;
}

}  // namespace

int main() {
  return test::run_in_private_tmpfs("8m", checks);
}
