#include "http.hpp"

#include <chrono>  // collection age
#include <cstdio>  // snprintf

#include <shmetrics/config.hpp>
#include <shmetrics/detail/json_string.hpp>

#include "metrics_handler.hpp"  // http/: GET /metrics

namespace shmetrics::exporter {

bool parse_listen_address(const std::string& s, std::string& host, int& port) {
  std::string h, p;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    h = s.substr(1, close - 1);
    p = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) return false;
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
    if (h.find(':') != std::string::npos) return false;  // bare IPv6 needs brackets
  }
  if (p.empty() || p.size() > 5) return false;
  int n = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  if (n > 65535) return false;
  host = h.empty() ? "0.0.0.0" : h;
  port = n;
  return true;
}

void install_routes(httplib::Server& server, collector& coll, const server_options& opt,
                    logger& log) {
  server.set_tcp_nodelay(true);  // without it keep-alive scrapes stall ~40 ms (Nagle)
  server.set_payload_max_length(64 * 1024);
  server.set_read_timeout(10, 0);
  server.set_write_timeout(10, 0);

  server.Get(opt.telemetry_path,
             [&coll, fn = log.callback()](const httplib::Request& req, httplib::Response& res) {
               http_server::serve_metrics(req, res, coll, fn);
             });

  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain; charset=utf-8");
  });

  server.Get("/segments", [&coll](const httplib::Request&, httplib::Response& res) {
    // As of now: the last collection if it is under a second old, else a new one.
    auto c = coll.latest_within(std::chrono::seconds(1));
    std::string j = "{\"segments\": [";
    bool first = true;
    for (const segment_status& s : c->segments) {
      char inst[24];
      std::snprintf(inst, sizeof inst, "%016llx", static_cast<unsigned long long>(s.instance));
      j += first ? "\n  " : ",\n  ";
      first = false;
      j += "{\"path\": " + detail::json_string(s.path) + ", \"pid\": " + std::to_string(s.pid) +
           ", \"instance\": \"" + inst + "\", \"state\": " + detail::json_string(s.state) +
           ", \"families\": " + std::to_string(s.families) +
           ", \"series\": " + std::to_string(s.series) + ", \"heartbeat_age_seconds\": ";
      if (s.heartbeat_age_s >= 0) {
        char age[32];
        std::snprintf(age, sizeof age, "%.3f", s.heartbeat_age_s);
        j += age;
      } else {
        j += "null";
      }
      j +=
          ", \"error\": " + (s.error.empty() ? std::string("null") : detail::json_string(s.error)) +
          "}";
    }
    j += "\n]}\n";
    res.set_content(j, "application/json");
  });

  std::string landing =
      "<!DOCTYPE html>\n<html><head><title>shmetrics exporter</title></head><body>\n"
      "<h1>shmetrics exporter</h1>\n<p>Version " SHMETRICS_VERSION_STRING
      "</p>\n<ul>\n<li><a href=\"" +
      opt.telemetry_path + "\">" + opt.telemetry_path +
      "</a>: metrics</li>\n<li><a href=\"/segments\">/segments</a>: segments and their writers "
      "(JSON)</li>\n<li><a href=\"/healthz\">/healthz</a>: health</li>\n</ul>\n</body></html>\n";
  server.Get("/", [landing](const httplib::Request&, httplib::Response& res) {
    res.set_content(landing, "text/html; charset=utf-8");
  });
}

}  // namespace shmetrics::exporter
