// The HTTP server of engine-sim's public port, its API-server processes and the engine's
// private loopback port: the guarded_server of http/server.hpp (shared with the exporter), with
// limits for an inference API. cpp-httplib 0.11's own server reads request headers without any
// bound (one client sending endless header lines grew the process to 748 MB) and serves
// from a fixed pool (a few slowloris connections held every worker).
#pragma once

#include <atomic>   // listener done
#include <chrono>   // limits
#include <cstddef>  // sizes
#include <string>   // hosts
#include <thread>   // listener

#include "options.hpp"
#include "server.hpp"  // http/server.hpp: shmetrics_http_server

namespace engine_sim {

using shmetrics::http_server::guarded_server;
using shmetrics::http_server::port_sharing;

/// What a client may send and how slowly: limits on receiving a request only. A response
/// (a stream, or a long non-streamed one writing a space every 100 ms) takes as long as
/// the generation does.
inline shmetrics::http_server::connection_limits http_limits(const options& o) {
  shmetrics::http_server::connection_limits l;
  l.max_connections = 1024;  // one thread each; more wait for one
  l.request_timeout = std::chrono::seconds(o.request_timeout_s);  // line, headers, body
  l.io_timeout = std::chrono::seconds(5);          // each read or write (cpp-httplib's default)
  l.keep_alive_timeout = std::chrono::seconds(5);  // uvicorn's default
  l.keep_alive_max_requests = 1000;
  l.max_header_bytes = 64 * 1024;  // request line + headers: past it 400, closed
  l.max_body_bytes = static_cast<std::size_t>(o.max_request_bytes);  // past it 413, closed
  l.max_request_bytes = l.max_header_bytes + l.max_body_bytes;       // a chunked body too
  return l;
}

/// Binds `svr` to `host`:`port` (0: a free port) and starts its accept loop on `listener`,
/// which sets `done` when the loop ends. Returns the bound port, or -1 with errno set
/// (nothing started).
inline int start_listening(guarded_server& svr, const std::string& host, int port,
                           std::thread& listener, std::atomic<bool>& done) {
  int bound = svr.bind_listener(host, port);  // a port in use: -1, EADDRINUSE
  if (bound <= 0) return -1;
  svr.widen_backlog();
  listener = std::thread([&svr, &done] {
    svr.listen_after_bind();
    done = true;
  });
  return bound;
}

}  // namespace engine_sim
