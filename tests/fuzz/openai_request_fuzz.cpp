// libFuzzer target: engine-sim's OpenAI request-body parser (parse_request) on arbitrary
// bodies. The first byte picks /v1/completions or /v1/chat/completions.
//
// A body that parses must describe a request the engine can run; one that does not
// must yield a 400 with a message, and error_body() must render it.
#include <cstdint>
#include <string_view>

#include "openai.hpp"
#include "tokenizer.hpp"

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  auto kind = (data[0] & 1) ? engine_sim::api_kind::chat : engine_sim::api_kind::completion;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  engine_sim::api_request req;
  engine_sim::api_error err;
  if (engine_sim::parse_request(kind, body, req, err)) {
    check(req.kind == kind && req.n >= 1);
    for (auto t : req.prompt)
      check(t < engine_sim::tokenizer::vocab_size);
  } else {
    check(err.status == 400 && !err.message.empty());
    check(!engine_sim::error_body(err).empty());
  }
  return 0;
}
