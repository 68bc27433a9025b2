#include "http.hpp"

#include <zlib.h>

#include <atomic>   // the last body size
#include <chrono>   // collection age
#include <cstdio>   // snprintf
#include <cstdlib>  // strtod
#include <future>   // one encoder, many waiters
#include <memory>   // shared bodies
#include <mutex>    // body cache

#include <shmetrics/config.hpp>
#include <shmetrics/detail/json_string.hpp>
#include <shmetrics/reader/text_format.hpp>

namespace shmetrics::exporter {

namespace {

std::string trim(std::string s) {
  auto b = s.find_first_not_of(" \t");
  auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return s;
}

// One entry of an Accept-like header: "type/sub;k=v;q=0.5".
struct accept_entry {
  std::string type;
  std::string version;
  double q = 1;
};

std::vector<accept_entry> parse_accept(const std::string& header) {
  std::vector<accept_entry> out;
  std::size_t start = 0;
  while (start <= header.size()) {
    std::size_t comma = header.find(',', start);
    std::string item =
        header.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? header.size() + 1 : comma + 1;
    accept_entry e;
    std::size_t p = 0;
    bool first = true;
    while (p <= item.size()) {
      std::size_t semi = item.find(';', p);
      std::string part =
          trim(item.substr(p, semi == std::string::npos ? std::string::npos : semi - p));
      p = semi == std::string::npos ? item.size() + 1 : semi + 1;
      if (first) {
        e.type = lower(part);
        first = false;
        continue;
      }
      auto eq = part.find('=');
      if (eq == std::string::npos) continue;
      std::string k = lower(trim(part.substr(0, eq))), v = trim(part.substr(eq + 1));
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      if (k == "q") e.q = std::strtod(v.c_str(), nullptr);
      if (k == "version") e.version = v;
    }
    if (!e.type.empty()) out.push_back(e);
  }
  return out;
}

}  // namespace

bool parse_listen_address(const std::string& s, std::string& host, int& port) {
  std::string h, p;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    h = s.substr(1, close - 1);
    p = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) return false;
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
    if (h.find(':') != std::string::npos) return false;  // bare IPv6 needs brackets
  }
  if (p.empty() || p.size() > 5) return false;
  int n = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  if (n > 65535) return false;
  host = h.empty() ? "0.0.0.0" : h;
  port = n;
  return true;
}

bool prefers_openmetrics(const std::string& accept) {
  const accept_entry* best = nullptr;
  bool best_om = false;
  for (const accept_entry& e : parse_accept(accept)) {
    bool om = e.type == "application/openmetrics-text" &&
              (e.version.empty() || e.version == "1.0.0" || e.version == "0.0.1");
    bool text = e.type == "text/plain" || e.type == "text/*" || e.type == "*/*";
    if (!(om || text) || e.q <= 0) continue;
    if (!best || e.q > best->q) {  // header order breaks ties: the first one stays
      best = &e;
      best_om = om;
    }
  }
  (void)best;
  return best_om;
}

bool accepts_gzip(const std::string& accept_encoding) {
  for (const accept_entry& e : parse_accept(accept_encoding))
    if ((e.type == "gzip" || e.type == "*") && e.q > 0) return true;
  return false;
}

std::string gzip(const std::string& in) {
  z_stream zs{};
  if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END ? out : std::string();
}

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

body_ptr encode(const collection& c, bool om) {
  // The size of the last body, to reserve the next one at once: growing a 64 MB body (1M
  // series) by doubling copies it ~10 times and holds two copies at the last step. Only
  // the pages written count toward RSS, so a little extra reservation costs nothing.
  static std::atomic<std::size_t> last_body{std::size_t{1} << 16};
  auto body = std::make_shared<std::string>();
  const std::size_t hint = last_body.load(std::memory_order_relaxed);
  body->reserve(hint + hint / 16);
  if (om) {
    encode_openmetrics(c.families, *body, c.labels.get(), &c.columns);
    *body += "# EOF\n";
  } else {
    encode_text(c.families, *body, c.labels.get(), &c.columns);
  }
  last_body.store(body->size(), std::memory_order_relaxed);
  return body;
}

// The encoded bodies of the latest collection, one per format and encoding: the scrapes
// that share a collection share its bodies too, encoded once, instead of each building
// (and, while a slow client reads it, holding) its own copy. An entry names its
// collection by the shared_ptr's control block (a weak_ptr, which keeps that block, and
// so its identity, alive): the collector reuses a collection object nobody holds under a
// new shared_ptr, so the object's address alone could name a collection since rewritten.
class body_cache {
 public:
  body_ptr get(const std::shared_ptr<const collection>& c, bool om, bool gz) {
    slot& s = slots_[(om ? 2 : 0) + (gz ? 1 : 0)];
    std::promise<body_ptr> mine;
    std::shared_future<body_ptr> f;
    bool encoder = false;
    {
      std::lock_guard lk(mu_);
      if (!s.of.expired() && !s.of.owner_before(c) && !c.owner_before(s.of)) {
        f = s.body;
      } else {  // the first scrape of this collection in this form: it encodes
        f = mine.get_future().share();
        s.of = c;
        s.body = f;
        encoder = true;
      }
    }
    if (encoder) {  // outside the lock: a newer collection need not wait for this one
      try {
        mine.set_value(gz ? std::make_shared<const std::string>(gzip(*get(c, om, false)))
                          : encode(*c, om));
      } catch (...) {
        mine.set_exception(std::current_exception());
      }
    }
    return f.get();  // waits for the encoder; rethrows what it threw
  }

 private:
  struct slot {
    std::weak_ptr<const collection> of;
    std::shared_future<body_ptr> body;
  };
  std::mutex mu_;
  slot slots_[4];  // text, text+gzip, OpenMetrics, OpenMetrics+gzip
};

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
                   logger& log) {
  // Never destroyed: worker threads may still serve while the process exits.
  static body_cache* const cache = new body_cache;
  static flood_guard* const flood = new flood_guard;
  try {
    auto token = flood->response_token();
    auto c = flood->collect(coll);
    bool om = prefers_openmetrics(req.get_header_value("Accept"));
    bool gz = accepts_gzip(req.get_header_value("Accept-Encoding"));
    send(res, cache->get(c, om, gz), std::string(om ? openmetrics_content_type : text_content_type),
         gz, std::move(token));
  } catch (const std::exception& e) {
    log.log(log_level::error, "scrape failed", "err=" + logger::quote(e.what()));
    res.status = 500;
    res.set_content(std::string("scrape failed: ") + e.what() + "\n", "text/plain; charset=utf-8");
  }
}

void install_routes(httplib::Server& server, collector& coll, const server_options& opt,
                    logger& log) {
  server.set_tcp_nodelay(true);  // without it keep-alive scrapes stall ~40 ms (Nagle)
  server.set_payload_max_length(64 * 1024);
  server.set_read_timeout(10, 0);
  server.set_write_timeout(10, 0);

  server.Get(opt.telemetry_path,
             [&coll, &log](const httplib::Request& req, httplib::Response& res) {
               serve_metrics(req, res, coll, log);
             });

  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain; charset=utf-8");
  });

  server.Get("/segments", [&coll](const httplib::Request&, httplib::Response& res) {
    // As of now: the last collection if it is under a second old, else a new one.
    auto c = coll.latest_within(std::chrono::seconds(1));
    std::string j = "{\"segments\": [";
    bool first = true;
    for (const segment_status& s : c->segments) {
      char inst[24];
      std::snprintf(inst, sizeof inst, "%016llx", static_cast<unsigned long long>(s.instance));
      j += first ? "\n  " : ",\n  ";
      first = false;
      j += "{\"path\": " + detail::json_string(s.path) + ", \"pid\": " + std::to_string(s.pid) +
           ", \"instance\": \"" + inst + "\", \"state\": " + detail::json_string(s.state) +
           ", \"families\": " + std::to_string(s.families) +
           ", \"series\": " + std::to_string(s.series) + ", \"heartbeat_age_seconds\": ";
      if (s.heartbeat_age_s >= 0) {
        char age[32];
        std::snprintf(age, sizeof age, "%.3f", s.heartbeat_age_s);
        j += age;
      } else {
        j += "null";
      }
      j +=
          ", \"error\": " + (s.error.empty() ? std::string("null") : detail::json_string(s.error)) +
          "}";
    }
    j += "\n]}\n";
    res.set_content(j, "application/json");
  });

  std::string landing =
      "<!DOCTYPE html>\n<html><head><title>shmetrics exporter</title></head><body>\n"
      "<h1>shmetrics exporter</h1>\n<p>Version " SHMETRICS_VERSION_STRING
      "</p>\n<ul>\n<li><a href=\"" +
      opt.telemetry_path + "\">" + opt.telemetry_path +
      "</a>: metrics</li>\n<li><a href=\"/segments\">/segments</a>: segments and their writers "
      "(JSON)</li>\n<li><a href=\"/healthz\">/healthz</a>: health</li>\n</ul>\n</body></html>\n";
  server.Get("/", [landing](const httplib::Request&, httplib::Response& res) {
    res.set_content(landing, "text/html; charset=utf-8");
  });
}

}  // namespace shmetrics::exporter
