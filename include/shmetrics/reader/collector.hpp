// shmetrics reader: the collector. What shmetrics-exporter serves, as a library: it
// discovers the segments of one or more prefixes in a directory, snapshots them, tells
// live writers from dead ones, merges every writer's families (gauge modes, retired
// totals of dead writers, counters that never go back) and encodes the result as
// Prometheus text 0.0.4 or OpenMetrics 1.0 (docs/collector.md).
//
//   shmetrics::collector coll({.dir = "/dev/shm", .prefixes = {"vllm"}});
//   auto c = coll.collect();                       // one flight, shared by concurrent callers
//   std::string body;
//   const auto fmt = shmetrics::negotiate_format(accept_header);
//   shmetrics::encode(*c, fmt, body);              // appends the whole exposition
//   // shmetrics::content_type(fmt) is the Content-Type; gzip() if accepts_gzip().
//
// One collection runs at a time; concurrent collect() calls share it. The collector logs
// through a callback (collector_options::log), rate limited per problem.
#ifndef SHMETRICS_READER_COLLECTOR_HPP
#define SHMETRICS_READER_COLLECTOR_HPP

#include <chrono>       // gc and timing
#include <cstdint>      // counters
#include <functional>   // the log callback
#include <map>          // log_rate_limit's keys
#include <memory>       // shared results
#include <mutex>        // log_rate_limit
#include <string>       // names
#include <string_view>  // headers
#include <vector>       // families

#include "../errc.hpp"
#include "snapshot.hpp"
#include "text_format.hpp"

SHMETRICS_BEGIN_NAMESPACE

enum class log_level { debug = 0, info = 1, warn = 2, error = 3 };

/// A log line: `msg`, and `extra` pre-formatted as logfmt key=value pairs (values quoted
/// with logfmt_quote where they may hold spaces), e.g. `path="/dev/shm/x.1.2" pid=1`.
/// Called from the thread that runs the collection; lines about one problem are rate
/// limited (once a minute, then `suppressed=N`).
using log_function =
    std::function<void(log_level level, const std::string& msg, const std::string& extra)>;

/// Lets lines about one problem (its key) out at most once per `every`, so that one bad
/// segment or client cannot flood a log: the collector's log and shmetrics-exporter's
/// use it. Thread-safe.
class log_rate_limit {
 public:
  /// True when a line for `key` may go out now; `extra` then gains `suppressed=N` when N
  /// lines for the key were held back since the last one.
  bool admit(const std::string& key, std::string& extra, std::chrono::seconds every);

 private:
  struct held {
    std::chrono::steady_clock::time_point last;
    long suppressed = 0;
  };
  std::mutex mu_;
  std::map<std::string, held> keys_;
};

/// `s` as a logfmt value (go-kit's rules): quoted, `"` and `\` escaped, \n \r \t by name,
/// other control characters as \u00XX, bytes that are not valid UTF-8 as \ufffd.
std::string logfmt_quote(std::string_view s);

struct collector_options {
  std::string dir = "/dev/shm";
  /// The segments' name prefixes (`<prefix>.<pid>.<instance>`): every prefix's writers are
  /// merged as one set (the same family from two prefixes merges as across writers). A
  /// prefix given twice counts once.
  std::vector<std::string> prefixes{"shmetrics"};
  /// Remove a dead writer's segment after this long (0: never), folding its last
  /// counter and histogram values into the collector's retired totals first. Also
  /// removes files a writer died creating (never readable), after this long and at
  /// least `unfinished_grace`.
  std::chrono::milliseconds gc_dead_after{60'000};
  /// Serve segments owned by other users too. Off: a file in a shared directory that
  /// another user planted is refused (`foreign_owner`), not served as ours.
  bool allow_other_users = false;
  /// Where the collector's log lines go (segments found and removed, writers that died,
  /// problems). Empty: nowhere.
  log_function log{};
};

/// What /segments lists for each segment.
struct segment_status {
  std::string path;
  std::uint32_t pid = 0;
  std::uint64_t instance = 0;
  std::string state;  // alive, stalled, dead, closed, restarted, invalid
  std::uint64_t families = 0, series = 0;
  double heartbeat_age_s = -1;
  std::string error;
};

/// One collection: the merged families ready to encode, and what each segment looked like.
/// Encode it with encode() below (or `encode_text(c->families, out, c->labels.get(),
/// &c->columns)`).
struct collection {
  // The merged families' definitions (their `series` empty: the values are in `columns`,
  // the labels in `labels`), then the collector's own families (shmetrics_exporter_*,
  // process_*) with their series.
  std::vector<family_snapshot> families;
  series_columns columns;  // the merged families' values, per family
  std::vector<segment_status> segments;
  double duration_s = 0;

  // The collector reuses a collection nobody holds any more: when its merged shape is
  // the current plan's, only the values are rewritten (no allocation).
  std::uint64_t plan_version = 0;  // 0: no shape yet
  /// The merged series' label blocks, rendered once per plan and shared (immutable) by the
  /// plan and every collection of its shape: at 1M series they are the largest part.
  std::shared_ptr<const prepared_labels> labels;
};

class collector {
 public:
  explicit collector(collector_options opt);
  ~collector();
  collector(const collector&) = delete;
  collector& operator=(const collector&) = delete;

  /// The result of a collection that started after this call was made, shared with
  /// every concurrent caller (one flight at a time). Thread-safe.
  std::shared_ptr<const collection> collect();

  /// The latest collection without starting one; null before the first.
  std::shared_ptr<const collection> latest() const;

  /// The latest collection if it started less than `max_age` ago, else a new one
  /// (collect()): what endpoints that report state as of now use (/segments), so that
  /// with no scraper yet a writer killed minutes ago does not read `alive`.
  std::shared_ptr<const collection> latest_within(std::chrono::milliseconds max_age);

  struct impl;  // src/collector/impl.hpp

 private:
  std::unique_ptr<impl> impl_;
};

/// The label-friendly name of an error code (`truncated`, `bad_magic`, ...).
std::string reason_of(errc code);

// ---- encoding and content negotiation ------------------------------------------------

enum class exposition_format { text, openmetrics };

/// True when an Accept header prefers OpenMetrics 1.0 text over text 0.0.4 (highest q
/// first, header order breaking ties, as client_golang negotiates).
bool prefers_openmetrics(std::string_view accept);

/// The format an Accept header asks for (prefers_openmetrics()).
inline exposition_format negotiate_format(std::string_view accept) {
  return prefers_openmetrics(accept) ? exposition_format::openmetrics : exposition_format::text;
}

/// The Content-Type of a body in `f`.
inline std::string_view content_type(exposition_format f) {
  return f == exposition_format::openmetrics ? openmetrics_content_type : text_content_type;
}

/// True when an Accept-Encoding header allows gzip (q > 0).
bool accepts_gzip(std::string_view accept_encoding);

/// Appends the whole exposition of `c` in `f` to `out` (OpenMetrics with its `# EOF`).
void encode(const collection& c, exposition_format f, std::string& out);

/// gzip (RFC 1952) of `in` into `out` (replaced), at a fast level: scrapes are frequent
/// and bodies compress well. With libdeflate where the build found it, else zlib. False
/// (and `out` empty) if compression fails.
bool gzip(std::string_view in, std::string& out);

/// The encoded bodies of the latest collection, one per format and encoding: callers
/// that share a collection share its bodies too, encoded once, instead of each building
/// (and, while a slow client reads it, holding) its own copy. Thread-safe.
class body_cache {
 public:
  body_cache();
  ~body_cache();
  body_cache(const body_cache&) = delete;
  body_cache& operator=(const body_cache&) = delete;

  /// The body of `c` in `f`, gzipped if `gz`; encoded by the first caller, waited for by
  /// the others. Throws what encoding threw.
  std::shared_ptr<const std::string> get(const std::shared_ptr<const collection>& c,
                                         exposition_format f, bool gz);

 private:
  struct state;
  std::unique_ptr<state> state_;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_READER_COLLECTOR_HPP
