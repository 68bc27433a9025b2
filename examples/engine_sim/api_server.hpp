// An API-server process of --api-server-count N: it shares the public port with its
// siblings (SO_REUSEPORT), forwards every request to the engine process over loopback
// HTTP, streams the answer back as it comes, and records the API server's own families
// (vLLM's prometheus_fastapi_instrumentator ones: http_requests_total,
// http_request_duration_seconds, http_request_duration_highr_seconds) into its own
// segment. A client that goes away cancels the upstream request, which aborts it in
// the engine.
#pragma once

#include <signal.h>  // sigset_t

#include "options.hpp"

namespace engine_sim {

/// Runs until one of `sigs` arrives (already blocked); returns the exit status.
int run_api_server(const options& opt, const sigset_t& sigs);

}  // namespace engine_sim
