// shmetrics-exporter: HTTP endpoints (cpp-httplib). Content negotiation and encoding are
// the reader library's (shmetrics/reader/collector.hpp), GET /metrics is http/'s.
#pragma once

#include <httplib.h>

#include <string>  // options

#include <shmetrics/reader/collector.hpp>

#include "log.hpp"

namespace shmetrics::exporter {

struct server_options {
  std::string host = "0.0.0.0";
  int port = 9400;
  std::string telemetry_path = "/metrics";
};

/// ":9400", "127.0.0.1:0", "[::1]:9400", "localhost:9400".
bool parse_listen_address(const std::string& s, std::string& host, int& port);

void install_routes(httplib::Server& server, collector& coll, const server_options& opt,
                    logger& log);

}  // namespace shmetrics::exporter
