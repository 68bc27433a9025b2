// Hostile HTTP against the real shmetrics-exporter and shmetrics-engine-sim processes on
// free loopback ports: junk bytes, oversize request lines and headers, a TLS handshake on
// the plain port, slowloris, and a bounded wrk burst. Each must keep serving good requests.
#include <arpa/inet.h>
#include <httplib.h>
#include <poll.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../support.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

int port_of(const std::string& line) {  // "listening on http://HOST:PORT[/path]"
  auto scheme = line.find("://");
  if (scheme == std::string::npos) return -1;
  auto colon = line.find(':', scheme + 3);
  return colon == std::string::npos ? -1 : std::atoi(line.c_str() + colon + 1);
}

// A server under test: its process, port and a path that answers 200.
struct target {
  std::string name, good_path;
  std::unique_ptr<test::child> proc;
  int port = -1;
  bool alive() const { return ::waitpid(proc->pid, nullptr, WNOHANG) == 0; }
};

target start_exporter(const test::unique_prefix& up) {
  target t{"shmetrics-exporter", "/metrics", nullptr, -1};
  t.proc = std::make_unique<test::child>(
      std::vector<std::string>{EXPORTER_BIN, "--web.listen-address", "127.0.0.1:0", "--shm.dir",
                               up.dir, "--shm.prefix", up.prefix, "--log.level", "error"});
  t.port = port_of(t.proc->line());
  return t;
}

target start_engine_sim(const test::unique_prefix& up) {
  target t{"shmetrics-engine-sim", "/v1/models", nullptr, -1};
  t.proc = std::make_unique<test::child>(std::vector<std::string>{
      ENGINE_SIM_BIN, "--port", "0", "--host", "127.0.0.1", "--time-scale=0.02", "--shm.dir",
      up.dir, "--shm.prefix", up.prefix});
  t.port = port_of(t.proc->line());
  return t;
}

using test::connect_to;

// Sends `bytes` (as much as the server takes) and reads until the server closes or
// `timeout` passes; returns what came back.
std::string send_and_read(int port, const std::string& bytes,
                          milliseconds timeout = milliseconds(8000)) {
  int fd = connect_to(port);
  if (fd < 0) return "<connect failed>";
  std::size_t off = 0;
  auto until = clock_type::now() + timeout;
  while (off < bytes.size() && clock_type::now() < until) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;  // the server closed on us: fine, see what it said
    off += static_cast<std::size_t>(n);
  }
  auto left = std::chrono::duration_cast<milliseconds>(until - clock_type::now());
  std::string out = test::read_reply(fd, std::max(left, milliseconds(0)));
  ::close(fd);
  return out;
}

using test::status_of;

int good_status(const target& t, milliseconds timeout = milliseconds(3000)) {
  httplib::Client c("127.0.0.1", t.port);
  c.set_connection_timeout(0, static_cast<time_t>(timeout.count() * 1000));
  c.set_read_timeout(0, static_cast<time_t>(timeout.count() * 1000));
  auto r = c.Get(t.good_path.c_str());
  return r ? r->status : -1;
}

void hostile_requests(target& t) {
  INFO(t.name);
  REQUIRE(t.port > 0);
  REQUIRE(good_status(t) == 200);

  std::mt19937 rng(42);
  std::string junk(64 * 1024, '\0');
  for (char& c : junk)
    c = static_cast<char>(rng());
  std::string r = send_and_read(t.port, junk);
  CHECK((r.empty() || status_of(r) == 400));

  // Request line over cpp-httplib's 8 KiB limit: 414.
  r = send_and_read(t.port, "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(status_of(r) == 414);

  // One header over the 8 KiB line limit: 400.
  r = send_and_read(t.port,
                    "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n");
  CHECK(status_of(r) == 400);

  // Thousands of small headers (~240 KiB): refused or closed, not buffered without end.
  std::string many = "GET " + t.good_path + " HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 3000; ++i)
    many += "X-H" + std::to_string(i) + ": " + std::string(70, 'v') + "\r\n";
  r = send_and_read(t.port, many + "\r\n");
  INFO("3000 headers: " << r.substr(0, r.find('\r')));
  CHECK(t.alive());

  using namespace std::string_literals;
  for (const std::string& odd :
       {"\r\n\r\n"s, "GET / HTTP/9.9\r\n\r\n"s, "GET\0/ HTTP/1.1\r\n\r\n"s,
        "FOO / HTTP/1.1\r\nHost: x\r\n\r\n"s, "GET / HTTP/1.1\r\nNoColon\r\n\r\n"s,
        "GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"s,
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"s}) {
    r = send_and_read(t.port, odd, milliseconds(3000));
    int st = status_of(r);
    INFO("odd request " << odd << " -> " << r.substr(0, r.find('\r')));
    // cpp-httplib is lenient with some (a header line without ':' is skipped): any answer
    // but a server error, or a closed connection.
    CHECK((r.empty() || (st >= 200 && st < 500)));
  }

  // A TLS handshake on the plain port: it fails, and nothing else does.
  auto [rc, out] = test::run(
      "curl -sk -m 3 -o /dev/null https://127.0.0.1:" + std::to_string(t.port) + "/ 2>&1");
  CHECK(rc != 0);

  CHECK(t.alive());
  CHECK(good_status(t) == 200);
}

// `n` connections that send a request head one byte at a time, `every` apart, for
// `duration`, while good requests go on. Returns how many slow connections the server
// closed by the end.
struct slowloris_result {
  int good = 0, good_ok = 0, closed = 0;
  double worst_good_ms = 0;
};

slowloris_result slowloris(target& t, int n, milliseconds every, milliseconds duration) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = connect_to(t.port);
    if (fd >= 0) fds.push_back(fd);
  }
  std::vector<bool> closed(fds.size(), false);
  const std::string head = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  slowloris_result res;
  auto start = clock_type::now();
  std::size_t step = 0;
  auto next_good = start;
  while (clock_type::now() - start < duration) {
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (closed[i]) continue;
      char c = step < head.size() ? head[step] : 'z';
      if (::send(fds[i], &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) closed[i] = true;
      pollfd p{fds[i], POLLIN, 0};
      char buf[256];
      if (::poll(&p, 1, 0) > 0 && ::recv(fds[i], buf, sizeof buf, MSG_DONTWAIT) <= 0)
        closed[i] = true;
    }
    ++step;
    // Good requests during the first 4 s, while every slow connection is still open.
    if (clock_type::now() < start + milliseconds(4000) && clock_type::now() >= next_good) {
      auto t0 = clock_type::now();
      int st = good_status(t, milliseconds(2000));
      double ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
      ++res.good;
      res.good_ok += st == 200;
      res.worst_good_ms = std::max(res.worst_good_ms, ms);
      next_good = clock_type::now() + milliseconds(200);
    }
    std::this_thread::sleep_for(every);
  }
  for (std::size_t i = 0; i < fds.size(); ++i) {
    res.closed += closed[i];
    ::close(fds[i]);
  }
  return res;
}

// wrk -t2 -c32 for 5 s on `path`: every reply a 2xx, no socket errors (timeouts, resets),
// and the server still up.
void check_wrk(const target& t, const char* who, const std::string& path) {
  auto [rc, out] = test::run(
      "wrk -t2 -c32 -d5s --timeout 2s http://127.0.0.1:" + std::to_string(t.port) + path + " 2>&1");
  double rps = 0;
  long non2xx = 0;
  if (auto p = out.find("Requests/sec:"); p != std::string::npos)
    rps = std::atof(out.c_str() + p + 13);
  if (auto p = out.find("Non-2xx or 3xx responses:"); p != std::string::npos)
    non2xx = std::atol(out.c_str() + p + 25);
  std::printf("wrk -t2 -c32 -d5s %s %s: %.0f requests/s, non-2xx %ld\n", who, path.c_str(), rps,
              non2xx);
  INFO(out);
  CHECK(rc == 0);
  CHECK(rps > 50);
  CHECK(non2xx == 0);
  CHECK(out.find("Socket errors") == std::string::npos);
  CHECK(t.alive());
}

bool have_wrk() {
  return test::run("command -v wrk >/dev/null 2>&1").first == 0;
}

}  // namespace

TEST_CASE("junk, oversize and TLS bytes get an error or a closed connection, never a crash",
          "[http][hardening]") {
  test::unique_prefix up;
  auto ex = start_exporter(up);
  hostile_requests(ex);
  test::unique_prefix up2;
  auto sim = start_engine_sim(up2);
  hostile_requests(sim);

  // The exporter reads at most 128 KiB of one request: a 16 MiB request line is cut off
  // there (connection closed) instead of being buffered whole.
  std::string huge = "GET /" + std::string(16 << 20, 'a');
  auto t0 = clock_type::now();
  std::string r = send_and_read(ex.port, huge, milliseconds(5000));
  CHECK(r.empty());
  CHECK(clock_type::now() - t0 < milliseconds(5000));
  CHECK(ex.alive());
  CHECK(good_status(ex) == 200);
}

TEST_CASE("slowloris connections do not starve good requests", "[http][hardening][slowloris]") {
  test::unique_prefix up;
  auto ex = start_exporter(up);
  REQUIRE(ex.port > 0);
  // 96 connections trickling a byte every 250 ms, each within the 5 s read timeout, for
  // 13 s: cpp-httplib's default 8-thread pool served none of the good requests here. The
  // exporter's 10 s request deadline must then have closed every one of them.
  auto r = slowloris(ex, 96, milliseconds(250), milliseconds(13000));
  std::printf("slowloris vs exporter: %d/%d good requests 200, worst %.0f ms, %d/96 slow closed\n",
              r.good_ok, r.good, r.worst_good_ms, r.closed);
  CHECK(r.good >= 5);
  CHECK(r.good_ok == r.good);
  CHECK(r.closed == 96);
  CHECK(ex.alive());

  test::unique_prefix up2;
  auto sim = start_engine_sim(up2);
  REQUIRE(sim.port > 0);
  auto s = slowloris(sim, 96, milliseconds(250), milliseconds(4500));
  std::printf("slowloris vs engine-sim: %d/%d good requests 200, worst %.0f ms\n", s.good_ok,
              s.good, s.worst_good_ms);
  CHECK(s.good >= 5);
  CHECK(s.good_ok == s.good);
  CHECK(sim.alive());
}

// Hidden ([.wrk]): its own meson test, which skips (77) without wrk.
TEST_CASE("a bounded wrk burst: no non-2xx responses to good requests", "[http][hardening][.wrk]") {
  if (!have_wrk()) test::skip("wrk is not on PATH");
  // The exporter serves engine-sim's vLLM families (same prefix): a realistic scrape body.
  test::unique_prefix up;
  auto sim = start_engine_sim(up);
  auto ex = start_exporter(up);
  REQUIRE(sim.port > 0);
  REQUIRE(ex.port > 0);
  REQUIRE(good_status(ex) == 200);

  check_wrk(ex, "exporter", "/metrics");
  check_wrk(sim, "engine-sim", "/v1/models");
  CHECK(good_status(ex) == 200);
}
