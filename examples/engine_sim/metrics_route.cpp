#include "metrics_route.hpp"

#if ENGINE_SIM_METRICS_ROUTE
#include "../../exporter/collector.hpp"
#include "../../exporter/http.hpp"
#include "../../exporter/log.hpp"
#endif

namespace engine_sim {

bool add_metrics_route(httplib::Server& svr, const std::string& dir, const std::string& prefix) {
#if ENGINE_SIM_METRICS_ROUTE
  namespace ex = shmetrics::exporter;
  // Process-lifetime and never destroyed: handlers may still run while the process leaves
  // through _Exit (docs/engine-sim.md, Shutdown).
  auto* log = new ex::logger(ex::log_level::warn);
  ex::collector_options o;
  o.dir = dir;
  o.prefix = prefix;
  o.gc_dead_after = std::chrono::milliseconds(0);  // removing dead segments is the sidecar's job
  auto* coll = new ex::collector(o, *log);
  svr.Get("/metrics", [coll, log](const httplib::Request& req, httplib::Response& res) {
    ex::serve_metrics(req, res, *coll, *log);
  });
  return true;
#else
  (void)svr, (void)dir, (void)prefix;
  return false;
#endif
}

}  // namespace engine_sim
