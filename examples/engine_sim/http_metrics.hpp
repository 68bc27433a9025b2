// vLLM's API-server HTTP families, as prometheus_fastapi_instrumentator's defaults give
// them on vLLM's /metrics whatever --api-server-count is: http_requests_total{handler,
// method,status} (status grouped 2xx, 4xx, ...), http_request_duration_seconds{handler,
// method} (buckets 0.1, 0.5, 1) and http_request_duration_highr_seconds. They go into a
// segment of their own: one per API-server process, or the engine process's API layer
// when it serves the API itself (--api-server-count 1).
#pragma once

#include <chrono>       // request stamps
#include <memory>       // open()
#include <mutex>        // label lookups
#include <string>       // errors, paths
#include <string_view>  // handlers

#include <httplib.h>

#include <shmetrics/shmetrics.hpp>

#include "options.hpp"

namespace engine_sim {

class http_metrics {
 public:
  /// A segment under opt.shm_dir / opt.shm_prefix with the three families; null and
  /// `err` set when it cannot be made.
  static std::unique_ptr<http_metrics> open(const options& opt, std::string& err);

  /// One answered request. `handler` is the route (vLLM's instrumentator labels a path
  /// no route matched "none"). Any thread; takes a lock for the label lookup.
  void record(std::string_view handler, std::string_view method, int status, double seconds);

  /// Marks the start of the request that this thread serves now. Installed as
  /// serve_uncompressed's hook, so it runs before routing; a connection's requests are
  /// served on one thread, one after the other.
  static void stamp_request_start() noexcept;

  /// The stamp of the request this thread serves (now, when there is none), which it
  /// clears: for a handler that records its request itself, later (the API servers'
  /// proxy, before a stream's last chunk). Left in place, the stamp would time a later
  /// request of the same connection that never reaches routing.
  static std::chrono::steady_clock::time_point take_request_start() noexcept;

  /// A request that cpp-httplib answered, as the instrumentator sees it: labelled with
  /// its route, or "none" when no route matched (cpp-httplib fills `matches` for the
  /// route it runs); not counted when excluded, or when it never reached routing (no
  /// stamp: uvicorn refuses those before the application sees them). On the thread that
  /// served it, after stamp_request_start().
  void record_answered(const httplib::Request& req, int status);

  /// Records this process's process_* families (CPU, memory, fds, start time) in the
  /// segment, sampled every second: vLLM's /metrics has them from prometheus_client's
  /// process collector when one API server serves it (none with several). False and
  /// `err` set when they cannot be registered.
  bool record_process(std::string& err);

  /// The segment's path, for the "writing" line.
  std::string segment_path() const { return reg_.path(); }

  /// Closes the segment now (and unlinks it): before std::_Exit, which runs no destructor.
  void close() {
    process_ = {};  // its sampling thread writes into the segment: stop it first
    reg_ = shmetrics::registry{};
  }

 private:
  explicit http_metrics(shmetrics::registry reg) : reg_(std::move(reg)) {}
  /// The instrumentator leaves these paths out (vLLM's excluded_handlers).
  static bool excluded(std::string_view path);
  /// Seconds since this thread's stamp, which it clears; negative when there is none (a
  /// request refused before routing).
  static double take_request_seconds() noexcept;

  shmetrics::registry reg_;
  std::mutex m_;
  shmetrics::counter_family requests_;
  shmetrics::histogram_family duration_;
  shmetrics::histogram highr_;
  shmetrics::process_metrics process_;  // after reg_: destroyed before it
};

}  // namespace engine_sim
