// The OpenAI wire format: request bodies parsed and validated with simdjson's DOM API,
// responses and SSE chunks written as JSON text.
#pragma once

#include <cstdint>      // token counts
#include <string>       // JSON text
#include <string_view>  // bodies
#include <vector>       // prompts, outputs

#include <shmetrics/detail/json_string.hpp>

namespace engine_sim {

enum class api_kind : std::uint8_t { completion, chat };

/// A request's `kv_transfer_params` (vLLM's field for P/D disaggregation; the
/// NixlConnector reads these keys, others are ignored as there).
struct kv_transfer_params {
  bool do_remote_decode = false;    ///< prefill side: keep the KV for a decode instance
  bool do_remote_prefill = false;   ///< decode side: pull the prompt's KV from remote_*
  std::uint32_t remote_blocks = 0;  ///< how many remote_block_ids
  std::string remote_engine_id, remote_request_id, remote_host;
  std::uint32_t remote_port = 0;
  /// A pull the NixlConnector can start: do_remote_prefill with every remote_* key (vLLM
  /// serves a request with less without KV transfer, as here).
  bool pull() const {
    return do_remote_prefill && remote_blocks > 0 && !remote_engine_id.empty() &&
           !remote_request_id.empty() && !remote_host.empty() && remote_port > 0;
  }
};

/// One image of a chat request (an `image_url` part with a base64 data URL): where its
/// placeholder tokens sit in the prompt and what identifies it.
struct mm_item {
  std::uint64_t hash = 0;    ///< of the decoded bytes: the multimodal cache's key
  std::uint32_t offset = 0;  ///< first placeholder token in the prompt
  std::uint32_t tokens = 0;  ///< placeholder tokens (the encoder's output length)
  std::uint32_t width = 0, height = 0;
};

/// A validated request body.
struct api_request {
  api_kind kind = api_kind::completion;
  std::string model;  ///< empty: not given (the served model)
  std::vector<std::uint32_t> prompt;
  std::uint32_t max_tokens = 0;
  bool max_tokens_set = false;
  std::uint32_t n = 1;
  bool stream = false;
  bool include_usage = false;  ///< stream_options.include_usage
  bool ignore_eos = false;
  bool audio = false;  ///< "audio" in modalities
  std::int64_t priority =
      0;  ///< vLLM's `priority`: lower runs first (--scheduling-policy priority)
  kv_transfer_params kv_params;
  std::vector<mm_item> images;  ///< chat: the images, in prompt order
};

/// A validated POST /v1/images/generations body (OpenAI's, plus vLLM-Omni's
/// num_inference_steps).
struct image_request {
  std::string model;  ///< empty: not given
  std::string prompt;
  std::uint32_t n = 1;
  std::uint32_t width = 1024, height = 1024;
  std::uint32_t steps = 0;  ///< num_inference_steps; 0: the model's default
};

/// A client error: HTTP status and an OpenAI error body.
struct api_error {
  int status = 400;
  std::string message;
  std::string param;  ///< the offending field, or empty
};

/// Parses `body`; on failure returns false and fills `err` (always status 400 here;
/// the model check, 404, is the server's).
bool parse_request(api_kind kind, std::string_view body, api_request& out, api_error& err);

/// Parses an images request; sizes must be multiples of 16 in [16, 2048] (a diffusion
/// transformer's latent patches), `response_format` only `b64_json`.
bool parse_image_request(std::string_view body, image_request& out, api_error& err);
/// The images response: `{"created", "data": [{"b64_json"}...]}`.
std::string images_response_json(long created, const std::vector<std::string>& b64_pngs);

/// `{"error": {"message", "type", "param", "code"}}`, as OpenAI and vLLM send it.
std::string error_body(const api_error& e);
/// `s` as a JSON string literal, quotes included; bytes that are not UTF-8 (a client's
/// prompt or model name) become U+FFFD, so every response parses.
using shmetrics::detail::json_string;

/// What a response reports about one finished (or streaming) request.
struct api_result {
  std::string id, model;
  long created = 0;
  std::vector<std::string> texts;           ///< per choice
  std::vector<std::string> finish_reasons;  ///< per choice
  std::uint32_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  std::string audio_json;          ///< chat with audio: the `audio` object, else empty
  std::string kv_transfer_params;  ///< a JSON object (prefill side of P/D), else empty
};
std::string usage_json(const api_result& r);
/// The prefill instance's answer to a do_remote_decode request: where its KV waits for the
/// decode instance (the NixlConnector's request_finished).
std::string kv_transfer_params_json(const std::vector<std::uint32_t>& block_ids,
                                    const std::string& engine_id, const std::string& request_id,
                                    const std::string& host, int port);
/// The decode instance's notice that it read a request's KV (POST /internal/nixl/notify).
bool parse_nixl_notice(std::string_view body, std::string& engine_id, std::string& request_id);
/// The non-streaming response body.
std::string response_json(api_kind kind, const api_result& r);
/// One SSE chunk's JSON: `delta` text for `choice`, or the finishing chunk when
/// `finish_reason` is not empty; `role` adds the chat role delta.
std::string chunk_json(api_kind kind, const api_result& r, std::size_t choice,
                       std::string_view delta, std::string_view finish_reason, bool role);
/// The usage-only chunk of stream_options.include_usage.
std::string usage_chunk_json(api_kind kind, const api_result& r);

}  // namespace engine_sim
