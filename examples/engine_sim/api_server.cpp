#include "api_server.hpp"

#include <atomic>              // cancel flag
#include <chrono>              // durations
#include <condition_variable>  // upstream -> downstream
#include <cerrno>              // errno
#include <cstdio>              // printf
#include <cstring>             // strerror
#include <memory>              // shared calls
#include <mutex>               // calls
#include <string>              // bodies
#include <thread>              // upstream calls

#include <httplib.h>
#include <sys/prctl.h>  // PR_SET_PDEATHSIG

#include "http_limits.hpp"
#include "http_metrics.hpp"
#include "lifecycle.hpp"
#include "no_compression.hpp"
#include "openai.hpp"

namespace engine_sim {
namespace {

using clock_type = std::chrono::steady_clock;

// One forwarded request: a thread talks to the engine, the response provider drains
// what it received.
struct call {
  std::mutex m;
  std::condition_variable cv;
  bool headers = false, done = false;
  int status = 502;
  std::string content_type = "application/json";
  std::string pending;
  std::atomic<bool> cancelled{false};
  clock_type::time_point start = clock_type::now();
  bool recorded = false;
  lifecycle::reply_token token;
};

std::shared_ptr<call> forward(int engine_port, const httplib::Request& in) {
  auto c = std::make_shared<call>();
  // The query string too (/sleep?level=2, /wake_up?tags=weights).
  std::thread([c, engine_port, method = in.method,
               path = httplib::append_query_params(in.path, in.params), body = in.body,
               type = in.get_header_value("Content-Type")] {
    httplib::Client cli("127.0.0.1", engine_port);
    cli.set_read_timeout(24 * 3600, 0);  // a long generation is not an error
    cli.set_tcp_nodelay(true);
    httplib::Request req;
    req.method = method;
    req.path = path;
    req.body = body;
    req.set_header("Content-Type", type.empty() ? "application/json" : type);
    req.response_handler = [c](const httplib::Response& r) {
      std::lock_guard lk(c->m);
      c->status = r.status;
      if (r.has_header("Content-Type")) c->content_type = r.get_header_value("Content-Type");
      c->headers = true;
      c->cv.notify_all();
      return !c->cancelled;
    };
    req.content_receiver = [c](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
      std::lock_guard lk(c->m);
      c->pending.append(d, n);
      c->cv.notify_all();
      return !c->cancelled;  // false closes the upstream connection: the engine aborts
    };
    auto res = cli.send(req);
    std::lock_guard lk(c->m);
    if (!res && !c->headers && !c->cancelled)
      c->pending = error_body({502, "the engine process is not reachable", {}});
    c->done = true;
    c->cv.notify_all();
  }).detach();
  return c;
}

}  // namespace

int run_api_server(const options& opt, const sigset_t& sigs) {
  // The parent (the engine process) stops this one with SIGTERM; if it dies, so do we.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  std::string err;
  auto hm = http_metrics::open(opt, err);
  if (!hm) {
    std::fprintf(stderr, "shmetrics-engine-sim: api server %d: %s\n", opt.api_server_rank,
                 err.c_str());
    return 1;
  }

  // As the engine process's (main.cpp). Rank 0 takes the port as its own (refused if
  // another process listens there); its siblings join it (SO_REUSEPORT).
  guarded_server svr(http_limits(opt), nullptr,
                     opt.api_server_rank == 0 ? port_sharing::first : port_sharing::join);
  svr.set_tcp_nodelay(true);
  serve_uncompressed(svr, http_metrics::stamp_request_start);
  const int engine_port = opt.engine_port;

  // vLLM's instrumentator leaves /health, /version and /metrics out.
  auto proxy = [&, engine_port](const httplib::Request& req, httplib::Response& res,
                                bool instrumented) {
    if (lifecycle::stopping) {
      res.status = 503;
      res.set_content(lifecycle::shutdown_error, "application/json");
      return;
    }
    // Timed from before routing, as the instrumentator's middleware times it; taking the
    // stamp also keeps it from timing the connection's next request.
    const auto started = http_metrics::take_request_start();
    auto c = forward(engine_port, req);
    c->start = started;
    std::string handler = req.path;
    auto record = [&, c, handler, method = req.method, instrumented](int status) {
      if (!instrumented || c->recorded) return;
      c->recorded = true;
      double s = std::chrono::duration<double>(clock_type::now() - c->start).count();
      hm->record(handler, method, status, s);
    };
    {
      std::unique_lock lk(c->m);
      c->cv.wait(lk, [&] { return c->headers || c->done; });
      res.status = c->status;
      if (!c->headers) {  // the engine did not answer
        res.set_content(c->pending, "application/json");
        record(res.status);
        return;
      }
    }
    int status = res.status;
    res.set_chunked_content_provider(
        c->content_type,
        [c, record, status](std::size_t, httplib::DataSink& sink) {
          std::string out;
          bool done = false;
          {
            std::unique_lock lk(c->m);
            c->cv.wait_for(lk, std::chrono::milliseconds(100),
                           [&] { return c->done || !c->pending.empty() || lifecycle::stopping; });
            out.swap(c->pending);
            done = c->done;
          }
          if (lifecycle::stopping && !done) {
            c->cancelled = true;
            out += lifecycle::shutdown_tail(c->content_type);
            done = true;
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) {
            c->cancelled = true;  // the client left: drop the upstream request
            return false;
          }
          if (done) {
            record(status);  // before the last chunk: a client that has it sees the count
            sink.done();
          }
          return true;
        },
        [c, record, status](bool) {
          c->cancelled = true;
          record(status);
        });
  };
  svr.Get("/health", [&](const auto& req, auto& res) { proxy(req, res, false); });
  svr.Get("/version", [&](const auto& req, auto& res) { proxy(req, res, false); });
  svr.Get("/metrics", [&](const auto& req, auto& res) { proxy(req, res, false); });
  svr.Get("/v1/models", [&](const auto& req, auto& res) { proxy(req, res, true); });
  svr.Post("/v1/completions", [&](const auto& req, auto& res) { proxy(req, res, true); });
  svr.Post("/v1/chat/completions", [&](const auto& req, auto& res) { proxy(req, res, true); });
  svr.Post("/v1/images/generations", [&](const auto& req, auto& res) { proxy(req, res, true); });
  if (opt.engine.enable_sleep_mode) {  // the engine process sleeps; it times them
    svr.Post("/sleep", [&](const auto& req, auto& res) { proxy(req, res, true); });
    svr.Post("/wake_up", [&](const auto& req, auto& res) { proxy(req, res, true); });
    svr.Get("/is_sleeping", [&](const auto& req, auto& res) { proxy(req, res, true); });
  }
  // NixlConnector notices are not API traffic (NIXL sends them outside HTTP in vLLM).
  if (opt.engine.nixl)
    svr.Post("/internal/nixl/notify", [&](const auto& req, auto& res) { proxy(req, res, false); });
  svr.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404 && res.body.empty())
      res.set_content(error_body({404, "Not Found", {}}), "application/json");
    // No route matched: the instrumentator's "none" handler. A routed request is counted
    // by proxy(), before its last chunk.
    if (req.matches.empty()) hm->record_answered(req, res.status);
  });

  std::atomic<bool> listener_done{false};
  std::thread listener;
  int port = start_listening(svr, opt.host, opt.port, listener, listener_done);
  if (port <= 0) {
    std::fprintf(stderr, "shmetrics-engine-sim: api server %d: cannot listen on %s:%d: %s\n",
                 opt.api_server_rank, opt.host.c_str(), opt.port, std::strerror(errno));
    return 1;
  }
  std::printf("listening on http://%s:%d\nwriting %s\n", opt.host.c_str(), port,
              hm->segment_path().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  auto until = clock_type::now() + std::chrono::milliseconds(1000);
  lifecycle::stopping = true;
  lifecycle::drain(lifecycle::active_replies, until);
  svr.stop();
  // See main(): a client still sending its request can hold the listener; the segment
  // goes with hm.
  for (int i = 0; i < 40 && !listener_done; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (!listener_done) {
    hm->close();  // unlinks the segment; _Exit skips destructors
    std::fflush(stdout);
    std::_Exit(0);
  }
  listener.join();
  return 0;
}

}  // namespace engine_sim
