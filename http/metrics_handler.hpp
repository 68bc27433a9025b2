// GET /metrics over cpp-httplib: the collector's latest collection, encoded as the request
// negotiates (shmetrics/reader/collector.hpp). Internal to shmetrics (http/, not
// installed): the route of shmetrics-exporter and of engine-sim's API port.
#pragma once

#include <httplib.h>

#include <shmetrics/reader/collector.hpp>

namespace shmetrics::http_server {

/// `GET /metrics`: collects (or joins a collection in flight), encodes as the Accept
/// header asks (text 0.0.4 or OpenMetrics 1.0), gzips when allowed. A failure is a 500
/// naming it, logged to `log` (may be empty).
void serve_metrics(const httplib::Request& req, httplib::Response& res, collector& coll,
                   const log_function& log);

}  // namespace shmetrics::http_server
