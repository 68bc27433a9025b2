// shmetrics-exporter: HTTP endpoints (cpp-httplib) and content negotiation.
#pragma once

#include <httplib.h>

#include <string>  // options

#include "collector.hpp"
#include "log.hpp"

namespace shmetrics::exporter {

struct server_options {
  std::string host = "0.0.0.0";
  int port = 9400;
  std::string telemetry_path = "/metrics";
};

/// ":9400", "127.0.0.1:0", "[::1]:9400", "localhost:9400".
bool parse_listen_address(const std::string& s, std::string& host, int& port);

/// True when an Accept header prefers OpenMetrics 1.0 text over text 0.0.4 (highest q
/// first, header order breaking ties, as client_golang negotiates).
bool prefers_openmetrics(const std::string& accept);

/// True when an Accept-Encoding header allows gzip (q > 0).
bool accepts_gzip(const std::string& accept_encoding);

/// gzip (RFC 1952) of `in`, at a fast level: scrapes are frequent and bodies compress well.
std::string gzip(const std::string& in);

/// `GET /metrics`: collects (or joins a collection in flight), encodes as the Accept
/// header asks (text 0.0.4 or OpenMetrics 1.0), gzips when allowed. A failure is a 500
/// naming it, logged. The exporter's route; engine-sim serves it on its API port too.
void serve_metrics(const httplib::Request& req, httplib::Response& res, collector& coll,
                   logger& log);

void install_routes(httplib::Server& server, collector& coll, const server_options& opt,
                    logger& log);

}  // namespace shmetrics::exporter
