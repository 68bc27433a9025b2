#include "metrics_handler.hpp"

#include <atomic>  // responses in flight
#include <chrono>  // collection age
#include <memory>  // shared bodies
#include <mutex>   // the last collection

namespace shmetrics::http_server {

namespace {

using body_ptr = std::shared_ptr<const std::string>;

// Sends `body` through a content provider with a known length: cpp-httplib then leaves
// it alone (with set_content it would compress text/* a second time, and slowly). Every
// response of one encoded body shares it (a slow reader holds a reference, not a copy).
void send(httplib::Response& res, body_ptr body, const std::string& type, bool gzipped,
          std::shared_ptr<void> token) {
  if (gzipped) res.set_header("Content-Encoding", "gzip");
  res.set_header("Vary", "Accept, Accept-Encoding");
  const std::size_t size = body->size();
  res.set_content_provider(size, type,
                           [body = std::move(body), token = std::move(token)](
                               std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                             sink.write(body->data() + offset, length);
                             return true;
                           });
}

// Under a flood of scrapes (many responses still being written: slow readers, or just
// many clients), a scrape serves the latest collection if it is under a second old
// instead of starting another. Each collection held by a response is a body in memory,
// so this bounds them to about one a second for as long as a response may last (its
// deadline), whatever the number of clients. Otherwise every scrape gets a collection
// that started after it arrived, as before.
class flood_guard {
 public:
  static constexpr int busy_responses = 16;
  static constexpr auto max_age = std::chrono::seconds(1);

  std::shared_ptr<const collection> collect(collector& coll) {
    if (active_.load(std::memory_order_relaxed) >= busy_responses) {
      std::lock_guard lk(mu_);
      if (auto c = last_.lock(); c && std::chrono::steady_clock::now() - last_at_ < max_age)
        return c;
    }
    auto c = coll.collect();
    std::lock_guard lk(mu_);
    if (last_.owner_before(c) || c.owner_before(last_)) {  // a new one: its age starts now
      last_ = c;
      last_at_ = std::chrono::steady_clock::now();
    }
    return c;
  }

  // Held by a response until it is written (or dropped).
  std::shared_ptr<void> response_token() {
    active_.fetch_add(1, std::memory_order_relaxed);
    return std::shared_ptr<void>(
        nullptr, [this](void*) { active_.fetch_sub(1, std::memory_order_relaxed); });
  }

 private:
  std::atomic<int> active_{0};
  std::mutex mu_;
  std::weak_ptr<const collection> last_;
  std::chrono::steady_clock::time_point last_at_;
};

}  // namespace

void serve_metrics(const httplib::Request& req, httplib::Response& res, collector& coll,
                   const log_function& log) {
  // Never destroyed: worker threads may still serve while the process exits.
  static body_cache* const cache = new body_cache;
  static flood_guard* const flood = new flood_guard;
  try {
    auto token = flood->response_token();
    auto c = flood->collect(coll);
    const exposition_format fmt = negotiate_format(req.get_header_value("Accept"));
    bool gz = accepts_gzip(req.get_header_value("Accept-Encoding"));
    send(res, cache->get(c, fmt, gz), std::string(content_type(fmt)), gz, std::move(token));
  } catch (const std::exception& e) {
    if (log) log(log_level::error, "scrape failed", "err=" + logfmt_quote(e.what()));
    res.status = 500;
    res.set_content(std::string("scrape failed: ") + e.what() + "\n", "text/plain; charset=utf-8");
  }
}

}  // namespace shmetrics::http_server
