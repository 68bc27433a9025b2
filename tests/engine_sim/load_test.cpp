// engine-sim and shmetrics-loadgen under load (docs/engine-sim.md): engine-sim's listening
// sockets take a burst of connections (wide backlog, as the exporter's), and loadgen runs
// its requests on a bounded pool of reused threads and says why requests failed. Real
// processes, real sockets; backlogs read with iproute2's `ss`.
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sim_support.hpp"

namespace {

// The output of `cmd` (stdout), "" when it cannot run.
std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    out.append(buf, n);
  ::pclose(f);
  return out;
}

// The backlog (Send-Q) of every TCP socket listening on `port`, as `ss -ltn` shows it.
std::vector<long> listen_backlogs(int port) {
  std::vector<long> b;
  std::string out = run("ss -ltnH 'sport = :" + std::to_string(port) + "' 2>/dev/null");
  std::size_t pos = 0;
  for (std::size_t nl; (nl = out.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    char state[32];
    long recvq = 0, sendq = 0;
    if (std::sscanf(out.c_str() + pos, "%31s %ld %ld", state, &recvq, &sendq) == 3)
      b.push_back(sendq);
  }
  return b;
}

// The backlog of every TCP socket that process `pid` listens on (`ss -ltnp`).
std::vector<long> listen_backlogs_of(pid_t pid) {
  std::vector<long> b;
  std::string out = run("ss -ltnpH 2>/dev/null");
  std::string mark = "pid=" + std::to_string(pid) + ",";
  std::size_t pos = 0;
  for (std::size_t nl; (nl = out.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    std::string line = out.substr(pos, nl - pos);
    char state[32];
    long recvq = 0, sendq = 0;
    if (line.find(mark) != std::string::npos &&
        std::sscanf(line.c_str(), "%31s %ld %ld", state, &recvq, &sendq) == 3)
      b.push_back(sendq);
  }
  return b;
}

// What listen(SOMAXCONN) gives: the kernel caps a backlog at net.core.somaxconn.
long wide_backlog() {
  long cap = SOMAXCONN;
  std::ifstream("/proc/sys/net/core/somaxconn") >> cap;
  return std::min<long>(cap, SOMAXCONN);
}

// Whether `pid` is a zombie (exited, not yet waited for) or gone.
bool exited(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return true;
  auto paren = line.rfind(')');
  return paren == std::string::npos || line.compare(paren + 1, 3, " Z ") == 0;
}

}  // namespace

// Hidden, run alone by its own meson test (engine_sim_backlog): it may skip (exit 77).
TEST_CASE("engine-sim listens with the exporter's wide backlog, not cpp-httplib's 5",
          "[.backlog]") {
  if (run("ss -V 2>/dev/null").empty()) test::skip("no ss (iproute2): backlogs cannot be read");
  test::unique_prefix up;
  SECTION("one process") {
    simtest::server sim(simtest::sim_args(up, {}));
    REQUIRE(sim.port > 0);
    auto b = listen_backlogs(sim.port);
    REQUIRE(b.size() == 1);
    CHECK(b[0] == wide_backlog());
  }
  SECTION("API servers sharing the port") {
    simtest::server sim(simtest::sim_args(up, {"--api-server-count", "2"}));
    REQUIRE(sim.port > 0);
    std::vector<long> b;
    // The API servers bind one after the other: wait for both sockets.
    for (int i = 0; i < 100 && (b = listen_backlogs(sim.port)).size() < 2; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    REQUIRE(b.size() == 2);
    for (long x : b)
      CHECK(x == wide_backlog());
    // The engine process behind them listens on a private loopback port of its own.
    auto engine = listen_backlogs_of(sim.pid);
    REQUIRE(engine.size() == 1);
    CHECK(engine[0] == wide_backlog());
  }
}

TEST_CASE("loadgen runs requests on a bounded pool of reused threads", "[loadgen]") {
  test::unique_prefix up;
  simtest::server sim(simtest::sim_args(up, {}));
  REQUIRE(sim.port > 0);
  // Many short requests, at most 4 at a time: one thread per request would start a new
  // thread (a new id in /proc/PID/task) for each of them.
  test::child lg({LOADGEN_BIN, "--url", "http://127.0.0.1:" + std::to_string(sim.port), "--rate",
                  "150", "--duration", "2", "--drain", "30", "--max-inflight", "4", "--prompt-len",
                  "8", "--output-len", "2"});
  REQUIRE(lg.pid > 0);
  std::set<std::string> tids;
  std::size_t most = 0;
  const std::string task = "/proc/" + std::to_string(lg.pid) + "/task";
  for (;;) {
    std::error_code ec;
    std::size_t now = 0;
    for (auto it = std::filesystem::directory_iterator(task, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec), ++now)
      tids.insert(it->path().filename().string());
    if (ec) break;  // exited (a zombie's task dir still lists its main thread)
    most = std::max(most, now);
    if (exited(lg.pid)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  REQUIRE(lg.wait() == 0);
  std::string summary = lg.line();
  INFO(summary);
  unsigned long long ok = 0, failed = 0, unfinished = 0;
  REQUIRE(std::sscanf(summary.c_str(), "requests: %llu ok, %llu failed, %llu unfinished", &ok,
                      &failed, &unfinished) == 3);
  CHECK(failed == 0);
  CHECK(unfinished == 0);
  REQUIRE(ok >= 20);  // enough requests for the bound to mean something
  // main + progress + 4 workers (cpp-httplib's client starts no threads).
  CHECK(most <= 6);
  CHECK(tids.size() <= 6);
  std::string rest, l;
  while (!(l = lg.line()).empty())
    rest += l + "\n";
  CHECK(rest.find("failures: none\n") != std::string::npos);
}

TEST_CASE("loadgen counts failed requests by reason", "[loadgen]") {
  int port = test::free_port();  // nobody listens: every connect is refused
  test::child lg({LOADGEN_BIN, "--url", "http://127.0.0.1:" + std::to_string(port), "--rate", "40",
                  "--duration", "0.5", "--drain", "5"});
  REQUIRE(lg.pid > 0);
  CHECK(lg.wait() == 1);  // all failed
  std::string out, l;
  while (!(l = lg.line()).empty())
    out += l + "\n";
  INFO(out);
  unsigned long long ok = 0, failed = 0, unfinished = 0;
  REQUIRE(std::sscanf(out.c_str(), "requests: %llu ok, %llu failed, %llu unfinished", &ok, &failed,
                      &unfinished) == 3);
  CHECK(ok == 0);
  REQUIRE(failed > 0);
  CHECK(out.find("failures: " + std::to_string(failed) + " connect refused\n") !=
        std::string::npos);
}

namespace {
// Peak resident memory (VmHWM) of `pid` in kB; 0 once it is gone.
long peak_rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  long kb = 0;
  while (in >> key)
    if (key == "VmHWM:" && in >> kb) return kb;
  return 0;
}
}  // namespace

TEST_CASE("loadgen's memory does not grow with the latency samples it takes", "[loadgen]") {
  // A server of our own answers every streamed completion at once with 3,000 outputs:
  // 2,999 ITL samples per request, millions over the run. Kept one by one (8 bytes each,
  // in per-request vectors) they took ~32 MB per 1,000 requests; the histograms do not grow.
  std::string body;
  for (int i = 0; i < 3000; ++i)
    body += "data: {\"choices\":[{\"index\":0,\"text\":\" x\",\"finish_reason\":null}]}\n\n";
  body += "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n";
  body +=
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":3000,"
      "\"total_tokens\":3001}}\n\ndata: [DONE]\n\n";
  httplib::Server srv;
  srv.Post("/v1/completions", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(body, "text/event-stream");
  });
  int port = srv.bind_to_any_port("127.0.0.1");
  REQUIRE(port > 0);
  std::thread server([&] { srv.listen_after_bind(); });
  test::child lg({LOADGEN_BIN, "--url", "http://127.0.0.1:" + std::to_string(port), "--rate", "600",
                  "--duration", "2", "--drain", "60", "--max-inflight", "4", "--stream"});
  REQUIRE(lg.pid > 0);
  long peak = 0;
  while (!exited(lg.pid)) {
    peak = std::max(peak, peak_rss_kb(lg.pid));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(lg.wait() == 0);
  srv.stop();
  server.join();
  std::string out, l;
  while (!(l = lg.line()).empty())
    out += l + "\n";
  INFO(out << "peak RSS " << peak << " kB");
  unsigned long long ok = 0, failed = 0, unfinished = 0;
  REQUIRE(std::sscanf(out.c_str(), "requests: %llu ok, %llu failed, %llu unfinished", &ok, &failed,
                      &unfinished) == 3);
  CHECK(failed == 0);
  REQUIRE(ok >= 400);  // >= 1.2 million ITL samples
  // The same report: every sample counted.
  CHECK(out.find("(n=" + std::to_string(ok * 2999) + ")\n") != std::string::npos);
  CHECK(out.find("E2E") != std::string::npos);
  CHECK(peak > 0);
  CHECK(peak < 24 * 1024);
}
