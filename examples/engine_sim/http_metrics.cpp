#include "http_metrics.hpp"

#include <chrono>  // request times

namespace engine_sim {

std::unique_ptr<http_metrics> http_metrics::open(const options& opt, std::string& err) {
  shmetrics::registry_options ro;
  ro.dir = opt.shm_dir;
  ro.prefix = opt.shm_prefix;
  ro.max_families = 16;
  ro.max_series = 256;
  auto reg = shmetrics::registry::create(ro);
  if (!reg) {
    err = reg.error().message();
    return nullptr;
  }
  std::unique_ptr<http_metrics> hm(new http_metrics(std::move(*reg)));
  auto requests =
      hm->reg_.add_counter({.name = "http_requests_total",
                            .help = "Total number of requests by method, status and handler.",
                            .labels = {"handler", "method", "status"}});
  auto duration = hm->reg_.add_histogram(
      {.name = "http_request_duration_seconds",
       .help = "Latency with only few buckets by handler. Made to be only used if aggregation by "
               "handler is important.",
       .labels = {"handler", "method"},
       .buckets = {0.1, 0.5, 1}});
  auto highr = hm->reg_.add_histogram(
      {.name = "http_request_duration_highr_seconds",
       .help = "Latency with many buckets but no API specific labels. Made for more accurate "
               "percentile calculations.",
       .buckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1,  1.5, 2,
                   2.5,  3,     3.5,  4,     4.5, 5,    7.5, 10,   30, 60}});
  if (!requests || !duration || !highr) {
    err = "cannot register the HTTP families";
    return nullptr;
  }
  hm->requests_ = *requests;
  hm->duration_ = *duration;
  hm->highr_ = highr->with_labels({}).value_or(shmetrics::histogram{});
  return hm;
}

namespace {
using clock_type = std::chrono::steady_clock;
thread_local clock_type::time_point request_start;
}  // namespace

void http_metrics::stamp_request_start() noexcept {
  request_start = clock_type::now();
}

clock_type::time_point http_metrics::take_request_start() noexcept {
  clock_type::time_point t = request_start;
  request_start = {};
  return t == clock_type::time_point{} ? clock_type::now() : t;
}

double http_metrics::take_request_seconds() noexcept {
  if (request_start == clock_type::time_point{}) return -1;
  return std::chrono::duration<double>(clock_type::now() - take_request_start()).count();
}

bool http_metrics::excluded(std::string_view path) {
  // The NixlConnector's notices are ours (vLLM sends them outside HTTP).
  for (std::string_view p : {"/metrics", "/health", "/load", "/ping", "/version", "/server_info",
                             "/internal/nixl/notify"})
    if (path == p) return true;
  return false;
}

void http_metrics::record_answered(const httplib::Request& req, int status) {
  double s = take_request_seconds();
  if (s < 0 || excluded(req.path)) return;
  record(req.matches.empty() ? "none" : std::string_view(req.path), req.method, status, s);
}

bool http_metrics::record_process(std::string& err) {
  auto pm = shmetrics::process_metrics::create(reg_);
  if (!pm) {
    err = pm.error().message();
    return false;
  }
  process_ = std::move(*pm);
  process_.sample_every(std::chrono::seconds(1));
  return true;
}

void http_metrics::record(std::string_view handler, std::string_view method, int status,
                          double seconds) {
  std::string group = std::to_string(status / 100) + "xx";  // status grouped, as upstream
  std::lock_guard lk(m_);
  if (auto c = requests_.with_labels({handler, method, group})) c->inc();
  if (auto h = duration_.with_labels({handler, method})) h->observe(seconds);
  highr_.observe(seconds);
}

}  // namespace engine_sim
