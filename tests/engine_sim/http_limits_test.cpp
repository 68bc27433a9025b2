// Slow and hostile clients against a real shmetrics-engine-sim process on a free loopback
// port (docs/engine-sim.md, "Slow and hostile clients"): endless request headers, slowloris
// connections, bodies over --max-request-bytes, and responses that outlive the request
// deadline. Timing checks are in seconds, for loaded 2-core CI machines.
#include <arpa/inet.h>
#include <poll.h>
#include <zlib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sim_support.hpp"

using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

using test::connect_to;

using test::read_reply;
using test::status_of;

// Sends `bytes` (until the server stops taking them) and returns its reply.
std::string send_and_read(int port, const std::string& bytes, milliseconds timeout) {
  int fd = connect_to(port);
  if (fd < 0) return "<connect failed>";
  std::size_t off = 0;
  auto until = clock_type::now() + timeout;
  while (off < bytes.size() && clock_type::now() < until) {
    pollfd p{fd, POLLOUT | POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if (p.revents & (POLLIN | POLLERR | POLLHUP)) break;  // answered (or closed) already
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  std::string r = read_reply(fd, milliseconds(3000));
  ::close(fd);
  return r;
}

// kB from /proc/PID/status (VmRSS, VmHWM: the peak).
long proc_kb(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  return -1;
}

// The processes that read the clients' requests: engine-sim, or its API servers.
std::vector<pid_t> front_pids(pid_t sim, bool fronted) {
  if (!fronted) return {sim};
  std::vector<pid_t> v;
  std::ifstream in("/proc/" + std::to_string(sim) + "/task/" + std::to_string(sim) + "/children");
  for (pid_t c; in >> c;)
    v.push_back(c);
  return v;
}

bool alive(pid_t pid) {
  return ::waitpid(pid, nullptr, WNOHANG) == 0;
}

// A small completion on a fresh connection: its status (-1: no answer in `timeout`).
int completion_status(int port, int timeout_s = 10) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(timeout_s, 0);
  c.set_read_timeout(timeout_s, 0);
  c.set_write_timeout(timeout_s, 0);
  auto r = c.Post("/v1/completions", R"({"prompt":"hello","max_tokens":4})", "application/json");
  return r ? r->status : -1;
}

// One connection sending a request line, then header lines without end, until the
// server answers or closes (cut), `limit` passes or `cap` bytes went out.
struct flood_result {
  bool cut = false;
  std::size_t sent = 0;
  std::string reply;
};

flood_result header_flood(int port, milliseconds limit, std::size_t cap = 128u << 20) {
  flood_result r;
  int fd = connect_to(port);
  if (fd < 0) return r;
  std::string lines;
  for (int i = 0; i < 4096; ++i)
    lines += "X-Flood-" + std::to_string(i % 1000) + ": v\r\n";
  std::string out = "GET /v1/models HTTP/1.1\r\nHost: x\r\n";
  std::size_t off = 0;
  auto until = clock_type::now() + limit;
  while (clock_type::now() < until && r.sent < cap) {
    pollfd p{fd, POLLOUT | POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
      r.cut = true;
      break;
    }
    ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      r.cut = true;
      break;
    }
    r.sent += static_cast<std::size_t>(n);
    off += static_cast<std::size_t>(n);
    if (off == out.size()) {
      out = lines;
      off = 0;
    }
  }
  r.reply = read_reply(fd, milliseconds(2000));
  ::close(fd);
  return r;
}

// `n` zero bytes, gzipped (~1000:1).
std::string gzip_zeros(std::size_t n) {
  z_stream z{};
  deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);
  std::vector<unsigned char> in(1 << 20, 0);
  std::string out;
  unsigned char buf[1 << 16];
  for (std::size_t left = n;;) {
    std::size_t k = std::min(left, in.size());
    left -= k;
    z.next_in = in.data();
    z.avail_in = static_cast<uInt>(k);
    int flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    int rc;
    do {
      z.next_out = buf;
      z.avail_out = sizeof buf;
      rc = deflate(&z, flush);
      out.append(reinterpret_cast<char*>(buf), sizeof buf - z.avail_out);
    } while (z.avail_out == 0);
    if (left == 0 && rc == Z_STREAM_END) break;
  }
  deflateEnd(&z);
  return out;
}

}  // namespace

TEST_CASE("endless request headers: cut off at the header budget, memory stays small",
          "[engine_sim][http][flood]") {
  for (bool fronted : {false, true}) {
    INFO((fronted ? "--api-server-count 2" : "one process"));
    test::unique_prefix up;
    std::vector<std::string> extra = {"--pipeline", "llm"};
    if (fronted) extra.insert(extra.end(), {"--api-server-count", "2"});
    simtest::server sim(simtest::sim_args(up, extra));
    REQUIRE(sim.port > 0);
    REQUIRE(completion_status(sim.port) == 200);
    auto front = front_pids(sim.pid, fronted);
    REQUIRE(front.size() == (fronted ? 2u : 1u));
    long rss0 = 0;
    for (pid_t p : front)
      rss0 += proc_kb(p, "VmRSS");

    // Flooding connections, one after another on each of 4 threads, for 3 s; good
    // requests meanwhile. cpp-httplib's own server kept every header line of the first
    // connection (748 MB in a few seconds) and never closed it.
    std::mutex m;
    std::vector<flood_result> floods;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        auto stop = clock_type::now() + 3s;
        while (clock_type::now() < stop) {
          auto r = header_flood(sim.port, 8s);
          std::lock_guard lk(m);
          floods.push_back(std::move(r));
        }
      });
    int good = 0, good_ok = 0;
    auto t0 = clock_type::now();
    while (clock_type::now() - t0 < 3s) {
      int st = completion_status(sim.port);
      ++good;
      good_ok += st == 200;
      std::this_thread::sleep_for(300ms);
    }
    for (auto& t : threads)
      t.join();

    long hwm = 0;  // the peaks, summed
    for (pid_t p : front)
      hwm += proc_kb(p, "VmHWM");
    std::size_t most = 0;
    int cut = 0, answered = 0;
    for (auto& f : floods) {
      most = std::max(most, f.sent);
      cut += f.cut;
      int st = status_of(f.reply);
      answered += st == 400 || st == 431;
      INFO("flood reply: " << f.reply.substr(0, f.reply.find('\r')));
      CHECK((f.reply.empty() || st == 400 || st == 431));
    }
    std::printf(
        "header flood%s: %zu connections, %d cut off (%d with 400/431), at most %.1f MiB sent "
        "on one; %d/%d good requests 200; peak RSS %ld -> %ld MB\n",
        fronted ? " (--api-server-count 2)" : "", floods.size(), cut, answered,
        static_cast<double>(most) / (1 << 20), good_ok, good, rss0 / 1024, hwm / 1024);
    CHECK(floods.size() >= 4);
    CHECK(cut == static_cast<int>(floods.size()));
    // 64 KiB of headers are read; the rest is what the socket buffers took.
    CHECK(most < (24u << 20));
    CHECK(good >= 3);
    CHECK(good_ok == good);
    CHECK(hwm - rss0 < 100 * 1024);
    CHECK(alive(sim.pid));
    CHECK(completion_status(sim.port) == 200);
  }
}

TEST_CASE("64 slowloris connections do not stop others; the request deadline closes them",
          "[engine_sim][http][slowloris]") {
  test::unique_prefix up;
  // A 3 s request deadline (60 s by default) so that the test sees it close them.
  simtest::server sim(
      simtest::sim_args(up, {"--pipeline", "llm", "--internal.request-timeout", "3"}));
  REQUIRE(sim.port > 0);
  REQUIRE(completion_status(sim.port) == 200);

  // A byte a second each, within every per-read timeout: cpp-httplib's default 8-thread
  // pool served nobody else, and its 5 s read timeout never closed them.
  std::vector<int> fds;
  for (int i = 0; i < 64; ++i) {
    int fd = connect_to(sim.port);
    if (fd >= 0) fds.push_back(fd);
  }
  REQUIRE(fds.size() == 64);
  std::vector<char> closed(fds.size(), 0);
  std::atomic<bool> run{true};
  std::thread trickle([&] {
    const std::string head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    for (std::size_t step = 0; run; ++step) {
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (closed[i]) continue;
        char c = step < head.size() ? head[step] : 'z';
        if (::send(fds[i], &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) closed[i] = 1;
        pollfd p{fds[i], POLLIN, 0};
        char buf[256];
        if (::poll(&p, 1, 0) > 0 && ::recv(fds[i], buf, sizeof buf, MSG_DONTWAIT) <= 0)
          closed[i] = 1;
      }
      for (int k = 0; k < 10 && run; ++k)
        std::this_thread::sleep_for(100ms);
    }
  });
  int good = 0, good_ok = 0;
  double worst = 0;
  auto t0 = clock_type::now();
  while (clock_type::now() - t0 < 9s) {
    auto t = clock_type::now();
    int st = completion_status(sim.port, 5);
    worst = std::max(worst, std::chrono::duration<double>(clock_type::now() - t).count());
    ++good;
    good_ok += st == 200;
    std::this_thread::sleep_for(500ms);
  }
  run = false;
  trickle.join();
  int n_closed = 0;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    n_closed += closed[i];
    ::close(fds[i]);
  }
  std::printf("slowloris x64: %d/%d good requests 200 (worst %.2f s), %d/64 slow closed\n", good_ok,
              good, worst, n_closed);
  CHECK(good >= 5);
  CHECK(good_ok == good);
  CHECK(n_closed == 64);
  CHECK(alive(sim.pid));
}

TEST_CASE("a body over --max-request-bytes gets 413; a long prompt under it is read",
          "[engine_sim][http][body]") {
  test::unique_prefix up;
  simtest::server sim(simtest::sim_args(up, {"--pipeline", "llm"}));
  REQUIRE(sim.port > 0);

  // Over the default 32 MiB, declared: 413 at once, before any of the body.
  auto t0 = clock_type::now();
  std::string r = send_and_read(sim.port,
                                "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                "application/json\r\nContent-Length: 41943040\r\n\r\n{",
                                5000ms);
  double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  INFO(r.substr(0, r.find('\r')) << " after " << s << " s");
  CHECK(status_of(r) == 413);
  CHECK(s < 3);
  CHECK(completion_status(sim.port) == 200);

  test::unique_prefix up2;
  simtest::server small(
      simtest::sim_args(up2, {"--pipeline", "llm", "--max-request-bytes", "1048576"}));
  REQUIRE(small.port > 0);
  auto body = [](std::size_t prompt_bytes) {
    return "{\"prompt\":\"" + std::string(prompt_bytes, 'a') + "\",\"max_tokens\":4}";
  };
  // 2 MiB sent whole: the 413 still reaches the client (read before the close).
  std::string big = body(2u << 20);
  r = send_and_read(small.port,
                    "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                    "application/json\r\nContent-Length: " +
                        std::to_string(big.size()) + "\r\n\r\n" + big,
                    8000ms);
  INFO(r.substr(0, r.find('\r')));
  CHECK(status_of(r) == 413);
  // Under the limit: read and parsed (900 KiB of prompt is over --max-model-len: a 400
  // that says so).
  auto cli = small.client();
  auto res = cli.Post("/v1/completions", body(900u << 10), "application/json");
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(res->body.find("maximum context length") != std::string::npos);
  // Chunked, so without a Content-Length to check: cut off at the byte budget.
  std::string chunked =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string chunk(64 << 10, 'a');
  for (int i = 0; i < 48; ++i)  // 3 MiB
    chunked += "10000\r\n" + chunk + "\r\n";
  r = send_and_read(small.port, chunked + "0\r\n\r\n", 8000ms);
  INFO("chunked 3 MiB: " << r.substr(0, r.find('\r')));
  CHECK((r.empty() || status_of(r) == 400 || status_of(r) == 413));
  CHECK(alive(small.pid));
  CHECK(completion_status(small.port) == 200);

  // A gzip body is taken as sent, as uvicorn takes it (cpp-httplib inflated it without
  // limit): 512 MiB of zeros in ~0.5 MiB is a JSON error, not 512 MB more memory.
  long rss0 = proc_kb(sim.pid, "VmRSS");
  std::string bomb = gzip_zeros(512u << 20);
  res = sim.client().Post("/v1/completions", {{"Content-Encoding", "gzip"}}, bomb,
                          "application/json");
  REQUIRE(res);
  long hwm = proc_kb(sim.pid, "VmHWM");
  std::printf("gzip body of %.2f MiB (512 MiB inflated): %d, peak RSS %ld -> %ld MB\n",
              static_cast<double>(bomb.size()) / (1 << 20), res->status, rss0 / 1024, hwm / 1024);
  CHECK(res->status == 400);
  CHECK(hwm - rss0 < 100 * 1024);
  CHECK(alive(sim.pid));
}

TEST_CASE("responses outlive the request deadline: a stream and a waiting JSON response",
          "[engine_sim][http][deadline]") {
  test::unique_prefix up;
  // A 1 s request deadline and ~20 ms a token: both responses take ~3 s.
  simtest::server sim(simtest::sim_args(
      up, {"--pipeline", "llm", "--time-scale", "1", "--internal.request-timeout", "1"}));
  REQUIRE(sim.port > 0);
  auto body = [](bool stream) {
    return std::string(R"({"prompt":"hello","max_tokens":150,"ignore_eos":true)") +
           (stream ? R"(,"stream":true})" : "}");
  };
  struct reply {
    int status = -1;
    std::string body;
  } streamed, plain;
  auto post = [&](bool stream, reply& out) {
    if (auto r = sim.client(60).Post("/v1/completions", body(stream), "application/json")) {
      out.status = r->status;
      out.body = r->body;
    }
  };
  auto t0 = clock_type::now();
  std::thread a([&] { post(true, streamed); });
  std::thread b([&] { post(false, plain); });
  a.join();
  b.join();
  double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  std::printf("two 150-token responses past a 1 s request deadline: %.2f s\n", s);
  CHECK(s > 1.5);
  CHECK(streamed.status == 200);
  CHECK(plain.status == 200);
  CHECK(streamed.body.ends_with("data: [DONE]\n\n"));
  CHECK(plain.body.find("\"completion_tokens\":150") != std::string::npos);
}

TEST_CASE(
    "a request refused before routing is not counted, also after a routed one on its "
    "connection",
    "[engine_sim][http][stamp]") {
  auto servers = GENERATE(1, 2);  // --api-server-count: the API layer in-process, or in front
  INFO("--api-server-count " << servers);
  test::unique_prefix up;
  simtest::server sim(
      simtest::sim_args(up, {"--pipeline", "llm", "--api-server-count", std::to_string(servers)}));
  REQUIRE(sim.port > 0);
  simtest::exporter exp(up);
  REQUIRE(exp.port > 0);
  // One connection: a routed request, then an unreadable one, refused before routing
  // (uvicorn refuses it before the application sees it).
  const std::string both =
      "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
      "NOT AN HTTP REQUEST LINE\r\nHost: x\r\n\r\n";
  int fd = connect_to(sim.port);
  REQUIRE(fd >= 0);
  REQUIRE(::send(fd, both.data(), both.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(both.size()));
  std::string r;  // both replies: until the server closes (after the 400) or 5 s
  for (auto until = clock_type::now() + 5000ms;
       clock_type::now() < until && r.find("HTTP/1.1 400") == std::string::npos;) {
    std::string more = read_reply(fd, 500ms);
    if (more.empty()) break;
    r += more;
  }
  ::close(fd);
  INFO(r);
  CHECK(status_of(r) == 200);
  CHECK(r.find("HTTP/1.1 400") != std::string::npos);
  auto s = exp.samples();
  std::string counted;
  for (auto& [k, v] : s)
    if (k.starts_with("http_requests_total")) counted += k + " " + std::to_string(v) + "\n";
  INFO(counted);
  CHECK(s["http_requests_total{handler=\"/v1/models\",method=\"GET\",status=\"2xx\"}"] == 1);
  CHECK(simtest::sum(s, "http_requests_total") == 1);
  CHECK(simtest::sum(s, "http_request_duration_highr_seconds_count") == 1);
}
