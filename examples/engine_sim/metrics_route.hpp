// engine-sim's GET /metrics on its API port, where vLLM serves it: vLLM's own tests, its
// docs' Prometheus configs and `curl localhost:8000/metrics` read it there. The body is the
// exporter's (the reader library's collector over this process's prefix, served by http/'s
// serve_metrics as the exporter serves it), read from the segments, so it never touches an
// engine thread; shmetrics-exporter stays the sidecar a deployment scrapes.
#pragma once

#include <httplib.h>

#include <string>

namespace engine_sim {

/// Adds GET /metrics to `svr`: every segment under `dir` with `prefix`, merged as
/// shmetrics-exporter merges them.
void add_metrics_route(httplib::Server& svr, const std::string& dir, const std::string& prefix);

}  // namespace engine_sim
