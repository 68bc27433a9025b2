// shmetrics-exporter: the HTTP(S) server. cpp-httplib parses and routes; this class owns
// each connection so that slow or hostile clients cannot starve the scrapes:
//  - one thread per connection, created on demand up to `max_connections` (cpp-httplib's
//    default pool has 8 threads, so 8 slowloris connections used to stop every scrape);
//  - a deadline for each whole request (line, headers and body), not only for each read:
//    a client that sends a byte just before every read timeout is dropped all the same;
//  - a byte budget per request, so endless headers cannot grow memory;
//  - TLS (OpenSSL) under the same deadline, handshake included.
#pragma once

#include <httplib.h>
#include <openssl/ssl.h>

#include <chrono>              // limits
#include <condition_variable>  // pool
#include <cstddef>             // limits
#include <deque>               // pool jobs
#include <functional>          // jobs
#include <map>                 // pool threads
#include <mutex>               // pool
#include <thread>              // pool
#include <vector>              // exited threads

#include "log.hpp"
#include "web_config.hpp"

namespace shmetrics::exporter {

struct connection_limits {
  std::size_t max_connections = 512;                 // served at once; more wait for a free one
  std::chrono::milliseconds request_timeout{10000};  // to receive one whole request
  std::chrono::milliseconds io_timeout{5000};        // for each read or write to progress
  std::chrono::seconds keep_alive_timeout{5};        // idle between requests
  std::size_t keep_alive_max_requests = 100;         // per connection
  std::size_t max_request_bytes = 128 * 1024;        // request line + headers + body
};

/// A task queue that runs each job on its own thread, starting threads on demand up to
/// `max_threads` and letting idle ones exit after `idle`: a connection holds its thread
/// while it lasts, as a goroutine would in a Go exporter.
class elastic_pool final : public httplib::TaskQueue {
 public:
  explicit elastic_pool(std::size_t max_threads,
                        std::chrono::milliseconds idle = std::chrono::seconds(30));
  ~elastic_pool() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

 private:
  void work();
  void reap_locked();
  std::size_t max_threads_;
  std::chrono::milliseconds idle_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::map<std::thread::id, std::thread> threads_;
  std::vector<std::thread::id> exited_;
  std::size_t idle_ = 0;
  bool shutdown_ = false;
};

class guarded_server final : public httplib::Server {
 public:
  /// `tls`: serve HTTPS with this context (null: plain HTTP).
  guarded_server(connection_limits limits, ssl_ctx_ptr tls);

  /// After binding: cpp-httplib 0.11 listens with a backlog of 5, so a burst of new
  /// connections (Prometheus and a few curls, or wrk) had SYNs dropped and waited for
  /// retransmits (1 s, 3 s, 7 s). Linux takes a second listen() as a new backlog.
  bool widen_backlog(int backlog = SOMAXCONN);

 private:
  bool process_and_close_socket(socket_t sock) override;
  bool wait_for_request(int fd) const;
  connection_limits limits_;
  ssl_ctx_ptr tls_;
};

/// Basic auth on every path (401 with `WWW-Authenticate: Basic` otherwise) and the
/// configured headers on every response. `auth` must outlive the server.
void install_web_config(httplib::Server& server, const web_config& cfg, basic_auth& auth,
                        logger& log);

}  // namespace shmetrics::exporter
