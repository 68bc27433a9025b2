#include "server.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>  // min
#include <cerrno>     // EAGAIN
#include <climits>    // INT_MAX
#include <cstdint>    // SIZE_MAX
#include <csignal>    // SIGPIPE
#include <cstring>    // memcpy
#include <strings.h>  // strncasecmp

namespace shmetrics::http_server {

namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Waits up to `timeout` for `events` on `fd`.
bool wait_fd(int fd, short events, milliseconds timeout) {
  auto until = clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(until - clock::now());
    if (left.count() < 0) return false;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

void endpoint(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
               : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (r != 0 || ::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, host, sizeof host, serv,
                              sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return;
  ip = host;
  port = std::atoi(serv);
}

// One connection, plain or TLS, on a non-blocking socket. Reads are buffered (cpp-httplib
// reads request lines a byte at a time), limited by the request's deadline and byte budget.
class conn_stream final : public httplib::Stream {
 public:
  conn_stream(int fd, SSL* ssl, const connection_limits& lim) : fd_(fd), ssl_(ssl), lim_(lim) {
    begin_request();
  }

  void begin_request() {
    deadline_ = clock::now() + lim_.request_timeout;
    writing_ = false;
    budget_ = lim_.max_request_bytes;
    in_head_ = first_line_ = true;
    head_bytes_ = line_len_ = declared_ = 0;
  }

  bool buffered() const { return off_ < len_ || (ssl_ && SSL_pending(ssl_) > 0); }

  // The request ran past its deadline or byte budget. cpp-httplib then answers 400 and
  // would keep the connection for the next request, which would start a fresh deadline:
  // the connection must be closed instead.
  bool overrun() const { return overrun_; }

  // The declared body was over max_body_bytes: nothing of it is read (cpp-httplib then
  // answers 413), and the connection must be closed.
  bool refused() const { return refused_; }

  bool is_readable() const override { return buffered() || wait_fd(fd_, POLLIN, read_wait()); }
  bool is_writable() const override {
    milliseconds w = write_wait();
    return w.count() > 0 && wait_fd(fd_, POLLOUT, w);
  }

  ssize_t read(char* ptr, size_t size) override {
    if (refused_) return -1;
    if (off_ == len_) {
      ssize_t r = fill();
      if (r <= 0) return r;
    }
    std::size_t k = std::min(size, len_ - off_);
    if (in_head_ && !scan_head(k)) {
      overrun_ = true;
      return -1;
    }
    std::memcpy(ptr, buf_ + off_, k);
    off_ += k;
    return static_cast<ssize_t>(k);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!writing_) {  // the response's first write: its deadline starts now
      writing_ = true;
      write_deadline_ = clock::now() + lim_.response_timeout;
    }
    for (;;) {
      if (write_wait().count() <= 0) return -1;  // past the response's deadline
      short want;
      if (ssl_) {
        ERR_clear_error();
        int r = SSL_write(ssl_, ptr, static_cast<int>(std::min<size_t>(size, INT_MAX)));
        if (r > 0) return r;
        int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_WRITE)
          want = POLLOUT;
        else if (e == SSL_ERROR_WANT_READ)
          want = POLLIN;
        else
          return -1;
      } else {
        ssize_t r = ::send(fd_, ptr, size, MSG_NOSIGNAL);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        want = POLLOUT;
      }
      if (!wait_fd(fd_, want, write_wait())) return -1;  // a client that stopped reading
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    endpoint(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    endpoint(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  // The per-read or per-write timeout, cut by `deadline` (0 once it has passed).
  milliseconds wait_before(clock::time_point deadline) const {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
    return std::max(milliseconds(0), std::min(left, lim_.io_timeout));
  }
  // How long the next read may wait: cut by the request's deadline.
  milliseconds read_wait() const { return wait_before(deadline_); }
  // How long the next write may wait: cut by the response's deadline, if it has one.
  milliseconds write_wait() const {
    if (lim_.response_timeout.count() <= 0 || !writing_) return lim_.io_timeout;
    return wait_before(write_deadline_);
  }

  // Follows the request line and headers as cpp-httplib reads them (a byte at a time):
  // counts them against max_header_bytes, notes the largest Content-Length and where the
  // head ends (the first "\r\n" line after the request line). May shorten `k` so that a
  // read never crosses the end of the head. False when the head is over its budget.
  bool scan_head(std::size_t& k) {
    for (std::size_t i = 0; i < k; ++i) {
      if (lim_.max_header_bytes > 0 && ++head_bytes_ > lim_.max_header_bytes) return false;
      char c = buf_[off_ + i];
      if (c != '\n') {
        if (line_len_ < sizeof line_) line_[line_len_] = c;
        ++line_len_;
        continue;
      }
      bool blank = line_len_ == 1 && line_[0] == '\r';
      if (blank && !first_line_) {
        in_head_ = false;
        k = i + 1;
        if (lim_.max_body_bytes > 0 && declared_ > lim_.max_body_bytes) refused_ = true;
        return true;
      }
      if (!first_line_) note_content_length();
      first_line_ = false;
      line_len_ = 0;
    }
    return true;
  }

  void note_content_length() {
    static constexpr char name[] = "content-length:";
    constexpr std::size_t n = sizeof name - 1;
    if (line_len_ < n || ::strncasecmp(line_, name, n) != 0) return;
    if (line_len_ > sizeof line_) {  // a value longer than we kept: treat it as huge
      declared_ = SIZE_MAX;
      return;
    }
    std::size_t v = 0;
    for (std::size_t i = n; i < line_len_; ++i) {
      char c = line_[i];
      if (c == ' ' || c == '\t' || c == '\r') continue;
      if (c < '0' || c > '9') break;
      std::size_t d = static_cast<std::size_t>(c - '0');
      v = v > (SIZE_MAX - d) / 10 ? SIZE_MAX : v * 10 + d;
    }
    declared_ = std::max(declared_, v);
  }

  // Refills the buffer: > 0 bytes, 0 at end of stream, -1 on error, timeout or budget spent.
  ssize_t fill() {
    off_ = len_ = 0;
    if (budget_ == 0) {
      overrun_ = true;
      return -1;
    }
    std::size_t want = std::min(sizeof buf_, budget_);
    for (;;) {
      short ev;
      ssize_t n;
      if (ssl_) {
        ERR_clear_error();
        n = SSL_read(ssl_, buf_, static_cast<int>(want));
        if (n <= 0) {
          int e = SSL_get_error(ssl_, static_cast<int>(n));
          if (e == SSL_ERROR_ZERO_RETURN) return 0;
          if (e == SSL_ERROR_WANT_READ)
            ev = POLLIN;
          else if (e == SSL_ERROR_WANT_WRITE)
            ev = POLLOUT;
          else
            return -1;
        }
      } else {
        n = ::recv(fd_, buf_, want, 0);
        if (n == 0) return 0;
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
          ev = POLLIN;
        }
      }
      if (n > 0) {
        len_ = static_cast<std::size_t>(n);
        budget_ -= len_;
        return n;
      }
      milliseconds w = read_wait();
      if (w.count() <= 0 || !wait_fd(fd_, ev, w)) {  // too slow: drop it
        overrun_ = true;
        return -1;
      }
    }
  }

  int fd_;
  SSL* ssl_;
  const connection_limits& lim_;
  clock::time_point deadline_;
  bool writing_ = false;  // the response has started: write_deadline_ is set
  clock::time_point write_deadline_;
  std::size_t budget_ = 0;
  bool overrun_ = false;
  bool refused_ = false;
  // The request line and headers (scan_head).
  bool in_head_ = true, first_line_ = true;
  std::size_t head_bytes_ = 0, line_len_ = 0, declared_ = 0;
  char line_[64];
  char buf_[4096];
  std::size_t off_ = 0, len_ = 0;
};

bool tls_handshake(int fd, SSL* ssl, const connection_limits& lim) {
  auto deadline = clock::now() + lim.request_timeout;
  for (;;) {
    ERR_clear_error();
    int r = SSL_accept(ssl);
    if (r == 1) return true;
    int e = SSL_get_error(ssl, r);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0) return false;  // not TLS, or a failed handshake
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
    if (left.count() <= 0 || !wait_fd(fd, ev, std::min(left, lim.io_timeout))) return false;
  }
}

// A client speaking plain HTTP to the TLS port gets a readable 400, as from Go's servers,
// instead of a handshake failure it cannot explain. A TLS record starts with 0x16; a
// request line with an upper-case method.
bool plain_http_on_tls(int fd, const connection_limits& lim) {
  unsigned char first = 0;
  if (!wait_fd(fd, POLLIN, lim.io_timeout) || ::recv(fd, &first, 1, MSG_PEEK) != 1) return false;
  if (first < 'A' || first > 'Z') return false;
  static const char reply[] =
      "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
  [[maybe_unused]] ssize_t n = ::send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
  // Read what the client sent before closing: closing with unread bytes sends a reset,
  // which can destroy the reply before the client reads it.
  ::shutdown(fd, SHUT_WR);
  char sink[4096];
  for (int i = 0; i < 16 && wait_fd(fd, POLLIN, milliseconds(100)); ++i)
    if (::recv(fd, sink, sizeof sink, 0) <= 0) break;
  return true;
}

}  // namespace

namespace {
thread_local bool shedding_now = false;
}  // namespace

elastic_pool::elastic_pool(std::size_t max_threads, std::size_t max_queued,
                           std::chrono::milliseconds idle)
    : max_threads_(std::max<std::size_t>(max_threads, 1)),
      max_queued_(max_queued),
      idle_timeout_(idle) {}

bool elastic_pool::shedding() {
  return shedding_now;
}

elastic_pool::~elastic_pool() {
  shutdown();
}

void elastic_pool::reap_locked() {
  for (auto id : exited_) {
    auto it = threads_.find(id);
    if (it == threads_.end()) continue;
    it->second.join();  // it has left work(): nothing more to wait for
    threads_.erase(it);
  }
  exited_.clear();
}

void elastic_pool::enqueue(std::function<void()> fn) {
  std::unique_lock<std::mutex> lk(mu_);
  reap_locked();
  if (max_queued_ > 0 && threads_.size() >= max_threads_ && jobs_.size() >= max_queued_ + idle_) {
    // Every thread busy and the queue full: a queued connection would only hold a file
    // descriptor (and its client) until a thread frees up, maybe minutes later.
    lk.unlock();
    shedding_now = true;
    fn();
    shedding_now = false;
    return;
  }
  jobs_.push_back(std::move(fn));
  if (idle_ < jobs_.size() && threads_.size() < max_threads_) {
    std::thread t([this] { work(); });
    auto id = t.get_id();
    threads_.emplace(id, std::move(t));
  }
  lk.unlock();
  cv_.notify_one();
}

void elastic_pool::work() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    ++idle_;
    bool woken = cv_.wait_for(lk, idle_timeout_, [this] { return !jobs_.empty() || shutdown_; });
    --idle_;
    if (jobs_.empty()) {
      if (shutdown_ || !woken) break;
      continue;
    }
    auto fn = std::move(jobs_.front());
    jobs_.pop_front();
    lk.unlock();
    fn();
    fn = nullptr;
    lk.lock();
  }
  exited_.push_back(std::this_thread::get_id());
}

void elastic_pool::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
  for (;;) {
    std::thread t;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (threads_.empty()) break;
      t = std::move(threads_.begin()->second);
      threads_.erase(threads_.begin());
    }
    t.join();
  }
}

guarded_server::guarded_server(connection_limits limits, ssl_ctx_ptr tls, port_sharing sharing)
    : limits_(limits), tls_(std::move(tls)), sharing_(sharing) {
  // cpp-httplib's default sets SO_REUSEPORT: two processes of one user could both listen.
  set_socket_options([sharing](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);  // past TIME_WAIT only
    if (sharing != port_sharing::exclusive)
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEPORT, &yes, sizeof yes);
  });
  std::signal(SIGPIPE, SIG_IGN);  // SSL_write writes with write(2): a gone client must not kill us
  std::size_t n = limits_.max_connections, q = limits_.max_queued;
  new_task_queue = [n, q] { return new elastic_pool(n, q); };
  set_keep_alive_max_count(limits_.keep_alive_max_requests);
  set_keep_alive_timeout(limits_.keep_alive_timeout.count());
  if (limits_.max_body_bytes > 0) set_payload_max_length(limits_.max_body_bytes);
}

namespace {

// Whether `host`:`port` can be bound without SO_REUSEPORT, i.e. nobody listens there: a
// `first` socket has SO_REUSEPORT set (for its `join` siblings), so another process of
// the same user could join it unless we look first. False with errno set.
bool port_is_free(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  std::string serv = std::to_string(port);
  if (::getaddrinfo(host.c_str(), serv.c_str(), &hints, &res) != 0 || !res) {
    errno = EADDRNOTAVAIL;
    return false;
  }
  // The first address, as cpp-httplib binds the first one that works.
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0) err = errno;
    ::close(fd);
  }
  ::freeaddrinfo(res);
  errno = err;
  return err == 0;
}

}  // namespace

int guarded_server::bind_listener(const std::string& host, int port) {
  if (port == 0) {
    int p = bind_to_any_port(host);
    return p > 0 ? p : -1;
  }
  // Also for `exclusive`, where bind_to_port alone would refuse: it leaves errno as the
  // last of its calls left it, and the error message must say why.
  if (sharing_ != port_sharing::join && !port_is_free(host, port)) return -1;
  return bind_to_port(host, port) ? port : -1;
}

bool guarded_server::widen_backlog(int backlog) {
  return svr_sock_ != INVALID_SOCKET && ::listen(svr_sock_, backlog) == 0;
}

bool guarded_server::wait_for_request(int fd) const {
  auto until = clock::now() + limits_.keep_alive_timeout;
  // In short slices, so that stop() is not held up by idle keep-alive connections.
  while (svr_sock_ != INVALID_SOCKET && clock::now() < until)
    if (wait_fd(fd, POLLIN, milliseconds(100))) return true;
  return false;
}

namespace {

// Over the connection limit, on the accept loop's thread: a fixed 503 if the socket takes
// it at once, then closed. What the client has sent already is read first (closing with
// unread bytes sends a reset, which can destroy the reply before the client reads it);
// nothing here waits. A TLS client gets no readable reply, only the closed connection.
void shed(int fd, bool tls) {
  char sink[4096];
  while (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
  }
  static const char reply[] =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: 32\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
      "too many connections, try again\n";
  if (!tls) {
    [[maybe_unused]] ssize_t n = ::send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

}  // namespace

bool guarded_server::process_and_close_socket(socket_t sock) {
  if (elastic_pool::shedding()) {
    shed(sock, tls_ != nullptr);
    return false;
  }
  ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
  if (limits_.send_buffer_bytes > 0)
    ::setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &limits_.send_buffer_bytes,
                 sizeof limits_.send_buffer_bytes);
  SSL* ssl = nullptr;
  bool ok = true;
  if (tls_ && plain_http_on_tls(sock, limits_)) {
    ok = false;
  } else if (tls_) {
    ssl = SSL_new(tls_.get());
    ok = ssl && SSL_set_fd(ssl, sock) == 1 && tls_handshake(sock, ssl, limits_);
  }
  bool ret = false;
  if (ok) {
    conn_stream s(sock, ssl, limits_);
    for (std::size_t left = limits_.keep_alive_max_requests;
         left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
      if (!s.buffered() && !wait_for_request(sock)) break;
      s.begin_request();
      bool closed = false;
      ret = process_request(s, left == 1, closed, [ssl](httplib::Request& r) { r.ssl = ssl; });
      if (!ret || closed || s.overrun()) break;
      if (s.refused()) {
        // The 413 is written; the client may still be sending the body. Closing with
        // unread bytes sends a reset, which can destroy the reply before the client reads
        // it: stop writing, then read and drop what comes for a short while.
        ::shutdown(sock, SHUT_WR);
        char sink[4096];
        auto until = clock::now() + milliseconds(1000);
        while (
            wait_fd(sock, POLLIN, std::chrono::duration_cast<milliseconds>(until - clock::now())))
          if (::recv(sock, sink, sizeof sink, 0) <= 0) break;
        break;
      }
    }
  }
  if (ssl) {
    if (ok) {
      ERR_clear_error();
      SSL_shutdown(ssl);  // a close_notify, best effort: the socket is closed right after
    }
    SSL_free(ssl);
  }
  ERR_clear_error();  // OpenSSL's error queue is per thread: leave nothing for the next job
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ret;
}

}  // namespace shmetrics::http_server
