// shmetrics-loadgen: an open-loop load generator for OpenAI-compatible servers.
//
//   shmetrics-loadgen --url http://127.0.0.1:8000 --rate 4 --duration 30 --stream
//
// Requests arrive as a Poisson process at --rate per second (open loop: a slow server
// builds a queue, as real traffic does). Prompt and output lengths are drawn uniformly
// within +-50% of their means. A progress line goes to stderr every second; at the end a
// latency summary (TTFT, ITL, e2e percentiles, throughput) and a `failures:` line with
// the failed requests counted by reason go to stdout.
//
// Requests run on a pool of at most --max-inflight worker threads, started as needed
// and reused: one thread per request (even detached) cost a thread creation and an
// 8 MB stack mapping per request, and a joinable one kept every finished request's
// stack mapped, so a long soak ran into vm.max_map_count. Latencies go into fixed
// log-scale histograms as requests finish, so memory does not grow with the run either.
#include <netdb.h>       // getaddrinfo
#include <poll.h>        // poll
#include <sys/socket.h>  // connect
#include <unistd.h>      // close

#include <algorithm>           // min, max
#include <array>               // histogram buckets
#include <atomic>              // counters
#include <cerrno>              // ECONNREFUSED
#include <cmath>               // histogram buckets
#include <chrono>              // clocks
#include <condition_variable>  // pool
#include <cstdio>              // printf
#include <cstdlib>             // _Exit
#include <cstring>             // strerror
#include <deque>               // pool jobs
#include <functional>          // pool jobs
#include <map>                 // failures by reason
#include <mutex>               // samples
#include <random>              // arrivals, lengths
#include <string>              // bodies
#include <thread>              // workers
#include <vector>              // samples

#include <httplib.h>

#include <shmetrics/config.hpp>  // --version

#include "../engine_sim/flags.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct config {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string model;  // empty: the server's
  double rate = 2, duration = 10, drain = 60;
  bool stream = false, chat = false, ignore_eos = true, audio = false;
  bool images = false;  ///< POST /v1/images/generations instead of text
  std::string size = "512x512";
  std::uint32_t steps = 0, n_images = 1;  ///< steps 0: the server's default
  std::uint32_t prompt_len = 256, output_len = 128, max_inflight = 256;
  std::uint64_t seed = 0;
};

struct sample {
  double ttft = -1, e2e = 0;
  std::vector<double> itl;
  std::uint64_t tokens = 0;
};

/// Latencies from 1 us to ~2.4 h in buckets 1% wide (2,300 counters, ~18 KB, whatever
/// the number of samples). The mean, count, minimum and maximum are exact; a percentile is
/// the geometric middle of the bucket holding the sample of that rank in sorted order (the
/// rank the report used when it sorted every sample), so within 0.5% of it, and clamped to
/// [min, max].
class latency_histogram {
 public:
  void add(double s) {
    ++n_;
    sum_ += s;
    min_ = std::min(min_, s);
    max_ = std::max(max_, s);
    ++buckets_[index(s)];
  }
  std::uint64_t count() const { return n_; }
  double mean() const { return n_ ? sum_ / static_cast<double>(n_) : 0; }
  double percentile(double p) const {
    if (n_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(p / 100.0 * static_cast<double>(n_ - 1) + 0.5);
    std::uint64_t seen = 0;
    std::size_t i = 0;
    for (; i + 1 < buckets_.size(); ++i)
      if ((seen += buckets_[i]) > rank) break;
    double mid = i == 0 ? lowest : lowest * std::pow(growth, static_cast<double>(i) - 0.5);
    return std::clamp(mid, min_, max_);
  }

 private:
  static constexpr double lowest = 1e-6, growth = 1.01;
  static std::size_t index(double s) {
    if (!(s > lowest)) return 0;  // also NaN
    double i = std::floor(std::log(s / lowest) / std::log(growth)) + 1;
    return static_cast<std::size_t>(std::min(i, static_cast<double>(bucket_count - 1)));
  }
  static constexpr std::size_t bucket_count = 2300;  // 1.01^2300 us: ~2.4 h
  std::array<std::uint64_t, bucket_count> buckets_{};
  std::uint64_t n_ = 0;
  double sum_ = 0, min_ = HUGE_VAL, max_ = -HUGE_VAL;
};

struct stats {
  std::mutex m;
  latency_histogram ttft, itl, e2e;               ///< under m
  std::uint64_t tokens = 0;                       ///< under m
  std::map<std::string, std::uint64_t> failures;  ///< by reason, under m
  std::atomic<std::uint64_t> sent{0}, ok{0}, errors{0}, inflight{0};
};

/// At most `max` threads, each started when a job finds no idle one and reused for the
/// next jobs; close() runs what is queued and joins them all.
class worker_pool {
 public:
  explicit worker_pool(std::size_t max) : max_(max) {}
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;
  ~worker_pool() { close(); }
  void submit(std::function<void()> job) {
    std::lock_guard lk(m_);
    jobs_.push_back(std::move(job));
    if (jobs_.size() > idle_ && threads_.size() < max_)
      threads_.emplace_back([this] { work(); });
    else
      cv_.notify_one();
  }
  void close() {
    {
      std::lock_guard lk(m_);
      closing_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      t.join();
    threads_.clear();
  }

 private:
  void work() {
    std::unique_lock lk(m_);
    for (;;) {
      ++idle_;
      cv_.wait(lk, [this] { return closing_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;  // closing, nothing left
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lk.unlock();
      job();
      lk.lock();
    }
  }
  std::size_t max_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool closing_ = false;
};

double since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

std::string body_for(const config& c, std::uint32_t prompt_words, std::uint32_t max_tokens,
                     std::uint64_t n) {
  std::string text;
  // Every fourth request shares a prefix with the others, as a common system prompt.
  if (n % 4 == 0) text = "You are a helpful assistant. Answer briefly and clearly.";
  for (std::uint32_t i = 0; i < prompt_words; ++i)
    text += " w" + std::to_string((n * 131 + i * 7) % 997);
  std::string b = "{";
  if (!c.model.empty()) b += "\"model\":\"" + c.model + "\",";
  if (c.images) {
    b += "\"prompt\":\"" + text + "\",\"n\":" + std::to_string(c.n_images) + ",\"size\":\"" +
         c.size + "\",\"response_format\":\"b64_json\"";
    if (c.steps) b += ",\"num_inference_steps\":" + std::to_string(c.steps);
    return b + "}";
  }
  if (c.chat)
    b += "\"messages\":[{\"role\":\"user\",\"content\":\"" + text + "\"}]";
  else
    b += "\"prompt\":\"" + text + "\"";
  b += ",\"max_tokens\":" + std::to_string(max_tokens);
  b += std::string(",\"ignore_eos\":") + (c.ignore_eos ? "true" : "false");
  if (c.audio) b += ",\"modalities\":[\"text\",\"audio\"]";
  if (c.stream) b += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}";
  return b + "}";
}

/// Why connecting to `host`:`port` fails (an errno; 0 if it connects now; ETIMEDOUT
/// after 1 s): a second try, for a failed request's reason only.
int connect_error(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* ai = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &ai) != 0 || !ai)
    return EADDRNOTAVAIL;
  int e = 0;
  int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    e = errno;
  } else if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    e = errno;
    pollfd p{fd, POLLOUT, 0};
    socklen_t len = sizeof e;
    if (e == EINPROGRESS)
      e = ::poll(&p, 1, 1000) <= 0                                ? ETIMEDOUT
          : ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0 ? errno
                                                                  : e;
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(ai);
  return e;
}

void one_request(const config& c, stats& st, std::string body) {
  httplib::Client cli(c.host, c.port);
  cli.set_tcp_nodelay(true);
  cli.set_read_timeout(600, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = c.images ? "/v1/images/generations"
             : c.chat ? "/v1/chat/completions"
                      : "/v1/completions";
  req.body = std::move(body);
  req.headers.emplace("Content-Type", "application/json");
  sample s;
  auto t0 = clock_type::now();
  double last = 0;
  std::string buf, full;
  req.content_receiver = [&](const char* data, std::size_t len, std::uint64_t, std::uint64_t) {
    full.append(data, len);
    if (!c.stream) return true;
    buf.append(data, len);
    // Each SSE event with text is one output (one or more tokens: a server sends what a
    // step produced, or what piled up); [DONE] and the usage chunk are not. ITL is timed
    // per output, as vLLM's benchmark times it; tokens come from the usage chunk.
    for (std::size_t end; (end = buf.find("\n\n")) != std::string::npos; buf.erase(0, end + 2)) {
      std::string_view ev(buf.data(), end);
      if (auto u = ev.find("\"completion_tokens\":"); u != std::string_view::npos)
        s.tokens = std::strtoull(ev.data() + u + 20, nullptr, 10);
      if (!ev.starts_with("data: {") || ev.find("\"finish_reason\":null") == std::string_view::npos)
        continue;
      double t = since(t0);
      if (s.ttft < 0)
        s.ttft = t;
      else
        s.itl.push_back(t - last);
      last = t;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  bool sent = cli.send(req, res, err);
  bool ok = sent && res.status == 200;
  s.e2e = since(t0);
  std::string why;  // the failure's reason, counted by it: no details (bodies, times)
  if (!sent || res.status <= 0) {
    switch (err) {
      case httplib::Error::Connection:
        // cpp-httplib read the connect's error (SO_ERROR) but does not return it.
        if (int e = connect_error(c.host, c.port); e == ECONNREFUSED)
          why = "connect refused";
        else
          why = std::string("connect failed (") + (e ? std::strerror(e) : "connects now") + ")";
        break;
      case httplib::Error::ConnectionTimeout:
        why = "connect timeout";
        break;
      case httplib::Error::Read:
        why = "read failed or timed out";
        break;
      case httplib::Error::Write:
        why = "write failed";
        break;
      default:
        why = "cpp-httplib error " + httplib::to_string(err);
        break;
    }
  } else if (res.status != 200) {
    why = "HTTP " + std::to_string(res.status);
  } else if (c.stream   ? full.find("data: [DONE]") == std::string::npos
             : c.images ? full.find("\"b64_json\":") == std::string::npos
                        : full.find("\"completion_tokens\":") == std::string::npos) {
    // A 200 cut short (the server stopped mid-stream) or without what we count.
    why = c.stream   ? "bad body (no data: [DONE])"
          : c.images ? "bad body (no b64_json)"
                     : "bad body (no usage)";
    ok = false;
  }
  if (ok && !c.stream) {
    // Not streamed: the first token is the whole answer; tokens from usage.
    s.ttft = s.e2e;
    auto p = full.find("\"completion_tokens\":");
    if (p != std::string::npos) s.tokens = std::strtoull(full.c_str() + p + 20, nullptr, 10);
  }
  if (ok && c.images)  // "tokens" are the images returned
    for (std::size_t p = 0; (p = full.find("\"b64_json\":", p)) != std::string::npos; ++p)
      ++s.tokens;
  if (ok) {
    ++st.ok;
    std::lock_guard lk(st.m);
    st.ttft.add(s.ttft);
    st.e2e.add(s.e2e);
    for (double x : s.itl)
      st.itl.add(x);
    st.tokens += s.tokens;
  } else {
    // Counted by reason for the summary; a failure count alone cannot tell a refused
    // connection (listen backlog) from a server's 4xx/5xx. Printed as they happen for
    // the first 10 failures and the first of each new reason, so a flood of failures
    // prints a few lines, not one per request.
    std::uint64_t n = ++st.errors, of_reason = 0;
    {
      std::lock_guard lk(st.m);
      of_reason = ++st.failures[why];
    }
    if (n <= 10 || of_reason == 1) {
      std::string detail = res.status > 0 ? ": " + full.substr(0, 200) : "";
      std::fprintf(stderr, "[loadgen] request failed after %.3f s: %s%s\n", s.e2e, why.c_str(),
                   detail.c_str());
      if (n == 10)
        std::fprintf(stderr, "[loadgen] further failures: only the first of each reason\n");
    }
  }
}

void summary_line(const char* name, const latency_histogram& h) {
  std::printf("%-5s ms  mean %8.2f  p50 %8.2f  p90 %8.2f  p99 %8.2f  (n=%llu)\n", name,
              h.mean() * 1000, h.percentile(50) * 1000, h.percentile(90) * 1000,
              h.percentile(99) * 1000, static_cast<unsigned long long>(h.count()));
}

}  // namespace

int main(int argc, char** argv) {
  config c;
  engine_sim::flag_parser p("shmetrics-loadgen", argc, argv);
  while (p.next()) {
    if (p.is("--help") || p.is("-h")) {
      std::puts(
          "usage: shmetrics-loadgen [--url http://127.0.0.1:8000] [--model NAME] [--rate R/s]\n"
          "  [--duration S] [--drain S] [--stream] [--chat] [--prompt-len N] [--output-len N]\n"
          "  [--max-inflight N] [--audio] [--no-ignore-eos] [--seed N]\n"
          "  [--images [--size WxH] [--steps N] [--n N]]   image generation (--pipeline "
          "diffusion)");
      return 0;
    } else if (p.is("--version")) {
      std::printf("shmetrics-loadgen %s (segment format %d.%d)\n", SHMETRICS_VERSION_STRING,
                  SHMETRICS_FORMAT_MAJOR, SHMETRICS_FORMAT_MINOR);
      return 0;
    } else if (p.is("--url")) {
      std::string u = p.string();
      if (!u.starts_with("http://"))
        p.fail("invalid value for --url: " + u + " (http://HOST:PORT)");
      u = u.substr(7);
      auto colon = u.rfind(':');
      if (colon == std::string::npos) p.fail("invalid value for --url: needs a port");
      c.host = u.substr(0, colon);
      c.port = std::atoi(u.c_str() + colon + 1);
      if (c.port <= 0 || c.port > 65535) p.fail("invalid value for --url: bad port");
    } else if (p.is("--model")) {
      c.model = p.string();
    } else if (p.is("--rate")) {
      c.rate = p.number(0.001, 100000);
    } else if (p.is("--duration")) {
      c.duration = p.number(0, 1e7);
    } else if (p.is("--drain")) {
      c.drain = p.number(0, 1e7);
    } else if (p.is("--stream")) {
      c.stream = p.boolean();
    } else if (p.is("--chat")) {
      c.chat = p.boolean();
    } else if (p.is("--audio")) {
      c.audio = p.boolean();  // modalities text + audio: the omni pipeline speaks
    } else if (p.is("--images")) {
      c.images = p.boolean();
    } else if (p.is("--size")) {
      c.size = p.string();
      unsigned w = 0, h = 0;
      char tail = 0;
      if (std::sscanf(c.size.c_str(), "%ux%u%c", &w, &h, &tail) != 2 || !w || !h)
        p.fail("invalid value for --size: " + c.size + " (WxH)");
    } else if (p.is("--steps")) {
      c.steps = static_cast<std::uint32_t>(p.uint(1, 1000));
    } else if (p.is("--n")) {
      c.n_images = static_cast<std::uint32_t>(p.uint(1, 10));
    } else if (p.is("--no-ignore-eos")) {
      c.ignore_eos = !p.boolean();
    } else if (p.is("--prompt-len")) {
      c.prompt_len = static_cast<std::uint32_t>(p.uint(1, 100000));
    } else if (p.is("--output-len")) {
      c.output_len = static_cast<std::uint32_t>(p.uint(1, 100000));
    } else if (p.is("--max-inflight")) {
      c.max_inflight = static_cast<std::uint32_t>(p.uint(1, 100000));
    } else if (p.is("--seed")) {
      c.seed = p.uint();
    } else {
      p.unknown();
    }
  }

  stats st;
  std::mt19937_64 rng(c.seed);
  std::exponential_distribution<double> gap(c.rate);
  auto draw = [&](std::uint32_t mean) {
    std::uniform_int_distribution<std::uint32_t> d(std::max(1u, mean / 2), mean + mean / 2);
    return d(rng);
  };
  auto t0 = clock_type::now();
  double next = 0, next_report = 1;
  std::atomic<bool> reporting{true};
  std::thread progress([&] {
    while (reporting) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      double t = since(t0);
      if (t < next_report) continue;
      next_report += 1;
      std::fprintf(stderr, "[loadgen %5.0fs] sent %llu  done %llu  errors %llu  in flight %llu\n",
                   t, static_cast<unsigned long long>(st.sent.load()),
                   static_cast<unsigned long long>(st.ok.load()),
                   static_cast<unsigned long long>(st.errors.load()),
                   static_cast<unsigned long long>(st.inflight.load()));
    }
  });
  worker_pool pool(c.max_inflight);
  while ((next += gap(rng)) < c.duration) {
    std::this_thread::sleep_until(
        t0 + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(next)));
    if (st.inflight.load() >= c.max_inflight) continue;  // shed: the client is saturated
    std::uint64_t n = st.sent++;
    ++st.inflight;
    std::string body = body_for(c, draw(c.prompt_len) * 3 / 4, draw(c.output_len), n);
    // A job's last touch of `c` and `st` is the decrement, which main waits for below.
    pool.submit([&c, &st, body = std::move(body)]() mutable {
      one_request(c, st, std::move(body));
      --st.inflight;
    });
  }
  // Arrivals are over; wait up to --drain seconds for the requests still in flight, then
  // report on what finished (the rest is counted as unfinished).
  auto deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                          std::chrono::duration<double>(c.drain));
  while (st.inflight.load() > 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  bool drained = st.inflight.load() == 0;
  double wall = since(t0);
  if (drained) pool.close();
  reporting = false;
  progress.join();
  std::lock_guard lk(st.m);

  const std::uint64_t tokens = st.tokens;
  std::printf(
      "requests: %llu ok, %llu failed, %llu unfinished in %.1f s (%.2f req/s, %.1f output "
      "%s/s)\n",
      static_cast<unsigned long long>(st.ok.load()),
      static_cast<unsigned long long>(st.errors.load()),
      static_cast<unsigned long long>(st.inflight.load()), wall,
      static_cast<double>(st.ok.load()) / wall, static_cast<double>(tokens) / wall,
      c.images ? "images" : "tokens");
  if (!c.images) summary_line("TTFT", st.ttft);
  if (c.stream) summary_line("ITL", st.itl);
  summary_line("E2E", st.e2e);
  std::string reasons;
  for (auto& [why, n] : st.failures)
    reasons += (reasons.empty() ? "" : ", ") + std::to_string(n) + " " + why;
  std::printf("failures: %s\n", reasons.empty() ? "none" : reasons.c_str());
  std::fflush(stdout);
  int rc = st.errors.load() > 0 && st.ok.load() == 0 ? 1 : 0;
  if (!drained) std::_Exit(rc);  // workers still hold their connections: no join
  return rc;
}
