// Test support for engine-sim: the server and an exporter as child processes on free
// loopback ports, and the exporter's samples as a map.
#pragma once

#include <httplib.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../support.hpp"

namespace simtest {

/// Port from a "listening on http://HOST:PORT[/path]" line.
inline int port_of(const std::string& line) {
  auto scheme = line.find("://");
  if (scheme == std::string::npos) return -1;
  auto colon = line.find(':', scheme + 3);
  if (colon == std::string::npos) return -1;
  return std::atoi(line.c_str() + colon + 1);
}

struct server : test::child {
  int port = -1;
  explicit server(const std::vector<std::string>& argv) : test::child(argv) {
    port = port_of(line());
  }
  httplib::Client client(int timeout_s = 30) const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(timeout_s, 0);
    c.set_tcp_nodelay(true);
    return c;
  }
};

/// engine-sim with test-speed timing on a free port, writing under `up`.
inline std::vector<std::string> sim_args(const test::unique_prefix& up,
                                         std::vector<std::string> extra) {
  std::vector<std::string> a = {
      ENGINE_SIM_BIN,      "--port",    "0",    "--host",       "127.0.0.1",
      "--time-scale=0.02", "--shm.dir", up.dir, "--shm.prefix", up.prefix};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

struct exporter : server {
  explicit exporter(const test::unique_prefix& up)
      : server({EXPORTER_BIN, "--web.listen-address", "127.0.0.1:0", "--shm.dir", up.dir,
                "--shm.prefix", up.prefix, "--log.level", "warn"}) {}
  /// Sample lines as "name{labels}" -> value.
  std::map<std::string, double> samples() const {
    auto r = client().Get("/metrics");
    if (!r || r->status != 200) return {};
    return test::parse_samples(r->body);
  }
};

/// Sum of the samples named `name` (exactly, labels aside) whose labels contain `filter`.
inline double sum(const std::map<std::string, double>& s, const std::string& name,
                  const std::string& filter = "") {
  double t = 0;
  for (auto& [k, v] : s) {
    auto brace = k.find('{');
    if (k.substr(0, brace) != name) continue;
    if (!filter.empty() && k.find(filter) == std::string::npos) continue;
    t += v;
  }
  return t;
}

}  // namespace simtest
