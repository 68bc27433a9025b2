// The HTTP(S) server of shmetrics-exporter and shmetrics-engine-sim (http/, built as the
// static library shmetrics_http_server: cpp-httplib and OpenSSL only). cpp-httplib parses
// and routes; this class owns each connection so that slow or hostile clients cannot
// starve the others:
//  - one thread per connection, created on demand up to `max_connections` (cpp-httplib's
//    default pool has 8 threads, so 8 slowloris connections used to stop every scrape);
//  - a deadline for each whole request (line, headers and body), not only for each read:
//    a client that sends a byte just before every read timeout is dropped all the same;
//  - optionally a deadline for writing each whole response too (response_timeout), so a
//    client that reads a byte a second cannot hold a worker (and the body) for hours,
//    and a capped kernel send buffer per connection (send_buffer_bytes);
//  - optionally a bound on connections waiting for a thread: past it a fixed 503 is
//    written from the accept loop, which reads only what has already arrived and never
//    waits (max_queued);
//  - no SO_REUSEPORT unless asked (port_sharing): a port in use is refused;
//  - a byte budget per request, so endless headers cannot grow memory, and optionally a
//    smaller one for the request line and headers and a body limit checked against the
//    declared Content-Length before any of the body is read;
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
#include <memory>              // SSL_CTX owner
#include <mutex>               // pool
#include <thread>              // pool
#include <vector>              // exited threads

namespace shmetrics::http_server {

struct ssl_ctx_free {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, ssl_ctx_free>;

struct connection_limits {
  std::size_t max_connections = 512;  // served at once; more wait for a free one
  // Connections waiting for a free thread (0: no bound). Past it: 503 and closed at once.
  std::size_t max_queued = 0;
  std::chrono::milliseconds request_timeout{10000};  // to receive one whole request
  std::chrono::milliseconds io_timeout{5000};        // for each read or write to progress
  // To write one whole response, from its first byte (0: none; engine-sim streams).
  std::chrono::milliseconds response_timeout{0};
  // SO_SNDBUF of each connection (0: the kernel's autotuning, up to tcp_wmem's 4 MiB on
  // Linux). Set, a client that does not read holds at most this much kernel memory, and
  // the rest of its response stays in the (shared) body instead of a copy in the kernel.
  int send_buffer_bytes = 0;
  std::chrono::seconds keep_alive_timeout{5};  // idle between requests
  std::size_t keep_alive_max_requests = 100;   // per connection
  std::size_t max_request_bytes = 128 * 1024;  // request line + headers + body
  // Request line + headers (0: only max_request_bytes). Past it: 400, connection closed.
  std::size_t max_header_bytes = 0;
  // A declared Content-Length over it gets 413 before any of the body is read, and the
  // connection is closed (0: left to cpp-httplib's payload_max_length, which reads and
  // drops the whole body first). Also sets payload_max_length.
  std::size_t max_body_bytes = 0;
};

/// A task queue that runs each job on its own thread, starting threads on demand up to
/// `max_threads` and letting idle ones exit after `idle`: a connection holds its thread
/// while it lasts, as a goroutine would in a Go exporter.
class elastic_pool final : public httplib::TaskQueue {
 public:
  /// `max_queued`: jobs waiting for a thread (0: no bound); a job past it runs at once on
  /// the caller's thread with shedding() true, and must only refuse its work, cheaply.
  explicit elastic_pool(std::size_t max_threads, std::size_t max_queued = 0,
                        std::chrono::milliseconds idle = std::chrono::seconds(30));
  ~elastic_pool() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;
  /// True inside a job that enqueue() ran at once because the queue was full.
  static bool shedding();

 private:
  void work();
  void reap_locked();
  std::size_t max_threads_;
  std::size_t max_queued_;
  std::chrono::milliseconds idle_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::map<std::thread::id, std::thread> threads_;
  std::vector<std::thread::id> exited_;
  std::size_t idle_ = 0;
  bool shutdown_ = false;
};

/// Who may listen on the same port. cpp-httplib sets SO_REUSEPORT on every listening
/// socket, so a second exporter started on a running one's port bound too, said
/// `listening`, and the kernel split the scrapes between the two.
enum class port_sharing {
  exclusive,  // a port in use is refused (EADDRINUSE): SO_REUSEADDR only
  first,      // exclusive too, but later `join` sockets of this user may share it
  join,       // joins a port that a `first` socket of this user holds (SO_REUSEPORT)
};

class guarded_server final : public httplib::Server {
 public:
  /// `tls`: serve HTTPS with this context (null: plain HTTP).
  guarded_server(connection_limits limits, ssl_ctx_ptr tls = nullptr,
                 port_sharing sharing = port_sharing::exclusive);

  /// Binds `host`:`port` (0: a free port) as `sharing` allows; returns the port, or -1
  /// with errno set (EADDRINUSE: another process listens there).
  int bind_listener(const std::string& host, int port);

  /// After binding: cpp-httplib 0.11 listens with a backlog of 5, so a burst of new
  /// connections (Prometheus and a few curls, or wrk) had SYNs dropped and waited for
  /// retransmits (1 s, 3 s, 7 s). Linux takes a second listen() as a new backlog.
  bool widen_backlog(int backlog = SOMAXCONN);

 private:
  bool process_and_close_socket(socket_t sock) override;
  bool wait_for_request(int fd) const;
  connection_limits limits_;
  ssl_ctx_ptr tls_;
  port_sharing sharing_;
};

}  // namespace shmetrics::http_server
