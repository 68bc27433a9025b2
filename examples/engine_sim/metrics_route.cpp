#include "metrics_route.hpp"

#include <cstdio>  // the log

#include <shmetrics/reader/collector.hpp>

#include "metrics_handler.hpp"  // http/: GET /metrics over the collector

namespace engine_sim {

void add_metrics_route(httplib::Server& svr, const std::string& dir, const std::string& prefix) {
  // Process-lifetime and never destroyed: handlers may still run while the process leaves
  // through _Exit (docs/engine-sim.md, Shutdown).
  shmetrics::collector_options o;
  o.dir = dir;
  o.prefixes = {prefix};
  o.gc_dead_after = std::chrono::milliseconds(0);  // removing dead segments is the sidecar's job
  // Warnings and errors on stderr as logfmt lines, as the exporter writes them.
  o.log = [](shmetrics::log_level level, const std::string& msg, const std::string& extra) {
    if (level < shmetrics::log_level::warn) return;
    std::fprintf(stderr, "level=%s msg=%s%s%s\n",
                 level == shmetrics::log_level::warn ? "warn" : "error",
                 shmetrics::logfmt_quote(msg).c_str(), extra.empty() ? "" : " ", extra.c_str());
  };
  auto* coll = new shmetrics::collector(o);
  svr.Get("/metrics", [coll, log = o.log](const httplib::Request& req, httplib::Response& res) {
    shmetrics::http_server::serve_metrics(req, res, *coll, log);
  });
}

}  // namespace engine_sim
