// Responses are never compressed, as vLLM's (uvicorn, no GZipMiddleware).
//
// cpp-httplib 0.11 built with CPPHTTPLIB_ZLIB_SUPPORT / CPPHTTPLIB_BROTLI_SUPPORT (as
// Debian's is) gzips or brotli-compresses every application/json response of a client
// that sends `Accept-Encoding: gzip` (httpx, so the openai SDK, does by default), with no
// option to turn it off. A chunked body goes through the compressor with Z_NO_FLUSH, so
// the one-space writes of a waiting non-streamed response never reach the socket: a
// client that left was not noticed and its request ran to the end instead of being
// aborted.
#pragma once

#include <httplib.h>

namespace engine_sim {

/// Makes `svr` ignore Accept-Encoding: every response goes out as written. And
/// Content-Encoding: request bodies are taken as sent, as uvicorn does (cpp-httplib would
/// inflate a gzip or br body with no limit on the result: a 32 MiB body of compressed
/// zeros is 32 GB inflated). This is `svr`'s one pre-routing handler (cpp-httplib keeps
/// one): `on_request`, when given, also runs there, before each request is routed.
inline void serve_uncompressed(httplib::Server& svr, void (*on_request)() = nullptr) {
  svr.set_pre_routing_handler([on_request](const httplib::Request& req, httplib::Response&) {
    if (on_request) on_request();
    // cpp-httplib decides on compression from the request's Accept-Encoding when it writes
    // the response, and on inflating the body from its Content-Encoding when it reads the
    // body, after this handler. The Request is Server::process_request's own non-const
    // local, handed to handlers as const, so dropping the headers here is well defined.
    auto& headers = const_cast<httplib::Request&>(req).headers;
    headers.erase("Accept-Encoding");
    headers.erase("Content-Encoding");
    return httplib::Server::HandlerResponse::Unhandled;
  });
}

}  // namespace engine_sim
