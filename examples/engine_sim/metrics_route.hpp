// engine-sim's GET /metrics on its API port, where vLLM serves it: vLLM's own tests, its
// docs' Prometheus configs and `curl localhost:8000/metrics` read it there. The body is the
// exporter's (exporter/http.cpp serve_metrics over a collector of this process's prefix),
// read from the segments, so it never touches an engine thread; shmetrics-exporter stays
// the sidecar a deployment scrapes.
#pragma once

#include <httplib.h>

#include <string>

namespace engine_sim {

/// Adds GET /metrics to `svr`: every segment under `dir` with `prefix`, merged as
/// shmetrics-exporter merges them. False when built without the exporter (yaml-cpp,
/// libcrypt missing): then /metrics stays a 404.
bool add_metrics_route(httplib::Server& svr, const std::string& dir, const std::string& prefix);

}  // namespace engine_sim
