// Content negotiation (Accept, Accept-Encoding), encoding a collection in each format,
// gzip, and the body cache that lets the scrapes of one collection share its bodies.
// gzip: libdeflate where the build found it (SHMETRICS_GZIP_LIBDEFLATE, src/meson.build),
// else zlib.
#ifdef SHMETRICS_GZIP_LIBDEFLATE
#include <libdeflate.h>
#else
#include <zlib.h>
#endif

#include <atomic>   // the last body size
#include <cstdlib>  // strtod
#include <future>   // one encoder, many waiters
#include <mutex>    // body cache

#include <shmetrics/reader/collector.hpp>

SHMETRICS_BEGIN_NAMESPACE

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

std::vector<accept_entry> parse_accept(std::string_view header_view) {
  const std::string header(header_view);
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

bool prefers_openmetrics(std::string_view accept) {
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

bool accepts_gzip(std::string_view accept_encoding) {
  for (const accept_entry& e : parse_accept(accept_encoding))
    if ((e.type == "gzip" || e.type == "*") && e.q > 0) return true;
  return false;
}

#ifdef SHMETRICS_GZIP_LIBDEFLATE

// libdeflate's level 1 is 1.8x faster than zlib's level 1 on a 10k-series body and its
// output a little smaller (docs/performance.md, "gzip"). It compresses a whole buffer in
// one call; a compressor per call (a few hundred KB, freed at once) keeps this
// thread-safe and costs nothing measurable beside the compression.
bool gzip(std::string_view in, std::string& out) {
  out.clear();
  libdeflate_compressor* c = libdeflate_alloc_compressor(1);
  if (c == nullptr) return false;
  out.resize(libdeflate_gzip_compress_bound(c, in.size()));
  const std::size_t n = libdeflate_gzip_compress(c, in.data(), in.size(), out.data(), out.size());
  libdeflate_free_compressor(c);
  out.resize(n);  // 0: it did not fit the bound (cannot happen), and `out` is empty
  return n != 0;
}

#else

bool gzip(std::string_view in, std::string& out) {
  out.clear();
  z_stream zs{};
  if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out.resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) out.clear();
  return rc == Z_STREAM_END;
}

#endif

void encode(const collection& c, exposition_format f, std::string& out) {
  if (f == exposition_format::openmetrics) {
    encode_openmetrics(c.families, out, c.labels.get(), &c.columns);
    out += "# EOF\n";
  } else {
    encode_text(c.families, out, c.labels.get(), &c.columns);
  }
}

namespace {

using body_ptr = std::shared_ptr<const std::string>;

body_ptr encode_body(const collection& c, exposition_format f) {
  // The size of the last body, to reserve the next one at once: growing a 64 MB body (1M
  // series) by doubling copies it ~10 times and holds two copies at the last step. Only
  // the pages written count toward RSS, so a little extra reservation costs nothing.
  static std::atomic<std::size_t> last_body{std::size_t{1} << 16};
  auto body = std::make_shared<std::string>();
  const std::size_t hint = last_body.load(std::memory_order_relaxed);
  body->reserve(hint + hint / 16);
  encode(c, f, *body);
  last_body.store(body->size(), std::memory_order_relaxed);
  return body;
}

}  // namespace

// An entry names its collection by the shared_ptr's control block (a weak_ptr, which
// keeps that block, and so its identity, alive): the collector reuses a collection object
// nobody holds under a new shared_ptr, so the object's address alone could name a
// collection since rewritten.
struct body_cache::state {
  struct slot {
    std::weak_ptr<const collection> of;
    std::shared_future<body_ptr> body;
  };
  std::mutex mu_;
  slot slots_[4];  // text, text+gzip, OpenMetrics, OpenMetrics+gzip
};

body_cache::body_cache() : state_(std::make_unique<state>()) {}
body_cache::~body_cache() = default;

body_ptr body_cache::get(const std::shared_ptr<const collection>& c, exposition_format fmt,
                         bool gz) {
  const bool om = fmt == exposition_format::openmetrics;
  state::slot& s = state_->slots_[(om ? 2 : 0) + (gz ? 1 : 0)];
  std::promise<body_ptr> mine;
  std::shared_future<body_ptr> f;
  bool encoder = false;
  {
    std::lock_guard lk(state_->mu_);
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
      if (gz) {
        auto z = std::make_shared<std::string>();
        gzip(*get(c, fmt, false), *z);
        mine.set_value(std::move(z));
      } else {
        mine.set_value(encode_body(*c, fmt));
      }
    } catch (...) {
      mine.set_exception(std::current_exception());
    }
  }
  return f.get();  // waits for the encoder; rethrows what it threw
}

SHMETRICS_END_NAMESPACE
