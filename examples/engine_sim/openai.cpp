#include "openai.hpp"

#include <simdjson.h>

#include <algorithm>  // max
#include <cmath>      // image resizing

#include "tokenizer.hpp"

namespace engine_sim {
namespace {

namespace dom = simdjson::dom;

bool fail(api_error& err, std::string msg, std::string param = {}) {
  err.status = 400;
  err.message = std::move(msg);
  err.param = std::move(param);
  return false;
}

// An integer field in [min, max]; absent leaves `out` alone. `set` tells it was given.
bool get_uint(dom::object obj, const char* key, std::uint64_t min, std::uint64_t max,
              std::uint32_t& out, bool* set, api_error& err) {
  dom::element v;
  if (obj[key].get(v)) return true;  // absent
  if (v.is_null()) return true;
  std::int64_t x = 0;
  if (v.get_int64().get(x) || x < static_cast<std::int64_t>(min) ||
      x > static_cast<std::int64_t>(max))
    return fail(err,
                std::string(key) + " must be an integer between " + std::to_string(min) + " and " +
                    std::to_string(max),
                key);
  out = static_cast<std::uint32_t>(x);
  if (set) *set = true;
  return true;
}

bool get_bool(dom::object obj, const char* key, bool& out, api_error& err) {
  dom::element v;
  if (obj[key].get(v) || v.is_null()) return true;
  if (v.get_bool().get(out)) return fail(err, std::string(key) + " must be a boolean", key);
  return true;
}

// A string field; absent or null leaves `out` alone.
bool get_string(dom::object obj, const char* key, std::string& out, api_error& err,
                const std::string& param) {
  dom::element v;
  if (obj[key].get(v) || v.is_null()) return true;
  std::string_view s;
  if (v.get_string().get(s)) return fail(err, param + " must be a string", param);
  out = s;
  return true;
}

// vLLM's kv_transfer_params: the keys the NixlConnector reads, type-checked; the proxy
// sends null for the ones it does not know yet.
bool parse_kv_transfer_params(dom::element v, kv_transfer_params& out, api_error& err) {
  const std::string name = "kv_transfer_params";
  dom::object kp;
  if (v.get_object().get(kp)) return fail(err, name + " must be an object", name);
  if (!get_bool(kp, "do_remote_decode", out.do_remote_decode, err) ||
      !get_bool(kp, "do_remote_prefill", out.do_remote_prefill, err))
    return false;
  dom::element ids;
  if (!kp["remote_block_ids"].get(ids) && !ids.is_null()) {
    dom::array arr;
    if (ids.get_array().get(arr))
      return fail(err, name + ".remote_block_ids must be a list of block ids", name);
    for (dom::element id : arr) {
      std::uint64_t x = 0;
      if (id.get_uint64().get(x))
        return fail(err, name + ".remote_block_ids must be a list of block ids", name);
    }
    out.remote_blocks = static_cast<std::uint32_t>(arr.size());
  }
  if (!get_string(kp, "remote_engine_id", out.remote_engine_id, err, name + ".remote_engine_id") ||
      !get_string(kp, "remote_request_id", out.remote_request_id, err,
                  name + ".remote_request_id") ||
      !get_string(kp, "remote_host", out.remote_host, err, name + ".remote_host"))
    return false;
  return get_uint(kp, "remote_port", 1, 65535, out.remote_port, nullptr, err);
}

// Strict base64 (RFC 4648, padded), as vLLM decodes a data URL (pybase64 with
// validate=True): anything else is refused, never skipped. "" and `why` on failure.
std::string base64_decode(std::string_view in, std::string& why) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.empty() || in.size() % 4 != 0) {
    why = "its length (" + std::to_string(in.size()) + ") is not a positive multiple of 4";
    return {};
  }
  std::size_t pad = in.ends_with("==") ? 2 : in.ends_with("=") ? 1 : 0;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    int v = i >= in.size() - pad ? 0 : value(in[i]);
    if (v < 0) {
      why = "byte " + std::to_string(i) + " is not a base64 digit";
      return {};
    }
    acc = acc << 6 | static_cast<std::uint32_t>(v);
    if (i % 4 == 3) {
      out += static_cast<char>(acc >> 16 & 0xff);
      out += static_cast<char>(acc >> 8 & 0xff);
      out += static_cast<char>(acc & 0xff);
      acc = 0;
    }
  }
  out.resize(out.size() - pad);
  return out;
}

// An image's width and height from its header: PNG (IHDR) or JPEG (the first SOF marker).
bool image_size(std::string_view b, std::uint32_t& w, std::uint32_t& h) {
  auto u8 = [&](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(b[i]));
  };
  auto be16 = [&](std::size_t i) { return u8(i) << 8 | u8(i + 1); };
  auto be32 = [&](std::size_t i) { return be16(i) << 16 | be16(i + 2); };
  if (b.size() >= 24 && b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8) &&
      b.substr(12, 4) == "IHDR") {
    w = be32(16);
    h = be32(20);
    return w > 0 && h > 0;
  }
  if (b.size() < 4 || u8(0) != 0xFF || u8(1) != 0xD8) return false;
  for (std::size_t i = 2; i + 9 < b.size();) {  // JPEG segments: FF marker, 2-byte length
    if (u8(i) != 0xFF) return false;
    std::uint32_t marker = u8(i + 1);
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    bool sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      h = be16(i + 5);
      w = be16(i + 7);
      return w > 0 && h > 0;
    }
    i += 2 + be16(i + 2);
  }
  return false;
}

// Qwen2.5-VL's image processor (smart_resize): each side rounded to a multiple of 28
// pixels (14-pixel patches merged 2x2), the area kept within [56x56, 16384 x 28x28];
// one placeholder token per 28x28 tile.
std::uint32_t image_tokens(std::uint32_t width, std::uint32_t height) {
  constexpr double factor = 28, min_pixels = 56 * 56, max_pixels = 16384 * 28 * 28;
  double w = std::max(factor, std::round(width / factor) * factor);
  double h = std::max(factor, std::round(height / factor) * factor);
  if (w * h > max_pixels) {
    double beta = std::sqrt(static_cast<double>(width) * height / max_pixels);
    w = std::max(factor, std::floor(width / beta / factor) * factor);
    h = std::max(factor, std::floor(height / beta / factor) * factor);
  } else if (w * h < min_pixels) {
    double beta = std::sqrt(min_pixels / (static_cast<double>(width) * height));
    w = std::ceil(width * beta / factor) * factor;
    h = std::ceil(height * beta / factor) * factor;
  }
  return static_cast<std::uint32_t>(w / factor * (h / factor));
}

// An `image_url` part: the URL must be a base64 data URL of a PNG or JPEG. http(s)
// URLs are refused: vLLM would download them, and engine-sim has no network.
bool parse_image_part(dom::element part, mm_item& img, api_error& err) {
  std::string_view url;
  if (part["image_url"]["url"].get_string().get(url))
    return fail(err, "an image_url part needs image_url.url, a string", "messages");
  if (url.starts_with("http://") || url.starts_with("https://"))
    return fail(err,
                "image_url: http(s) URLs are not fetched: this server has no network access "
                "(vLLM would download the image); send the image inline as a data URL, "
                "data:image/png;base64,...",
                "messages");
  if (url.starts_with("file:"))  // vLLM's answer without --allowed-local-media-path
    return fail(err, "Cannot load local files without `--allowed-local-media-path`.", "messages");
  if (!url.starts_with("data:"))
    return fail(err, "image_url: the URL must be a data URL (data:image/png;base64,...)",
                "messages");
  auto comma = url.find(',');
  std::string_view spec = url.substr(5, comma == std::string_view::npos ? 0 : comma - 5);
  if (comma == std::string_view::npos || !spec.ends_with(";base64"))
    return fail(err, "Only base64 data URLs are supported for now.", "messages");
  if (!spec.starts_with("image/"))
    return fail(err,
                "image_url: the data URL's media type must be image/... (got \"" +
                    std::string(spec.substr(0, spec.size() - 7)) + "\")",
                "messages");
  std::string why;
  std::string bytes = base64_decode(url.substr(comma + 1), why);
  if (bytes.empty())
    return fail(err, "image_url: the data URL's base64 payload is invalid: " + why, "messages");
  if (!image_size(bytes, img.width, img.height))
    return fail(err,
                "image_url: cannot identify the image (" + std::to_string(bytes.size()) +
                    " bytes): PNG and JPEG are read",
                "messages");
  img.tokens = image_tokens(img.width, img.height);
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64 of the bytes: the cache key
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  img.hash = h;
  return true;
}

// Chat messages through a ChatML template, as Qwen models format them. An image becomes
// <|vision_start|>, one placeholder token per 28x28 tile (ids drawn from the image's
// hash, so the same image hits the prefix cache and another one does not, as vLLM's
// block hashes include the image's) and <|vision_end|>.
bool chat_prompt(dom::element msgs, std::vector<std::uint32_t>& prompt,
                 std::vector<mm_item>& images, api_error& err) {
  dom::array arr;
  if (msgs.get_array().get(arr) || arr.size() == 0)
    return fail(err, "messages must be a non-empty array", "messages");
  std::string text;  // since the last image
  for (dom::element m : arr) {
    dom::object mo;
    std::string_view role;
    if (m.get_object().get(mo) || mo["role"].get_string().get(role))
      return fail(err, "each message needs a string role", "messages");
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" &&
        role != "developer")
      return fail(err, "unknown message role: " + std::string(role), "messages");
    text += "<|im_start|>";
    text += role;
    text += "\n";
    dom::element content;
    if (mo["content"].get(content) || content.is_null()) {
      // An assistant turn with tool calls only has no content.
    } else if (content.is_string()) {
      text += std::string_view(content.get_string().value_unsafe());
    } else if (content.is_array()) {
      dom::array parts = content.get_array().value_unsafe();
      for (dom::element p : parts) {
        std::string_view type, t;
        if (p["type"].get_string().get(type))
          return fail(err, "each content part needs a type", "messages");
        if (type == "text") {
          if (p["text"].get_string().get(t))
            return fail(err, "a text part needs a string text", "messages");
          text += t;
        } else if (type == "image_url") {
          mm_item img;
          if (!parse_image_part(p, img, err)) return false;
          text += "<|vision_start|>";
          auto ids = tokenizer::encode(text);
          prompt.insert(prompt.end(), ids.begin(), ids.end());
          text = "<|vision_end|>";
          img.offset = static_cast<std::uint32_t>(prompt.size());
          std::uint64_t x = img.hash;
          for (std::uint32_t i = 0; i < img.tokens; ++i) {  // splitmix64 over the hash
            std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            prompt.push_back(static_cast<std::uint32_t>((z ^ (z >> 31)) % tokenizer::vocab_size));
          }
          images.push_back(img);
        } else {
          text += "<|" + std::string(type) + "|>";  // other media: a placeholder
        }
      }
    } else {
      return fail(err, "message content must be a string or an array", "messages");
    }
    text += "<|im_end|>\n";
  }
  text += "<|im_start|>assistant\n";
  auto ids = tokenizer::encode(text);
  prompt.insert(prompt.end(), ids.begin(), ids.end());
  return true;
}

// Every endpoint's start: the body must be a JSON object, with an optional "model"
// string. `obj` lives in `parser`.
bool parse_body(dom::parser& parser, std::string_view body, dom::object& obj, std::string& model,
                api_error& err) {
  dom::element doc;
  if (auto e = parser.parse(body.data(), body.size()).get(doc))
    return fail(err, std::string("invalid JSON: ") + simdjson::error_message(e));
  if (doc.get_object().get(obj)) return fail(err, "the request body must be a JSON object");
  return get_string(obj, "model", model, err, "model");
}

}  // namespace

bool parse_request(api_kind kind, std::string_view body, api_request& out, api_error& err) {
  out = {};
  out.kind = kind;
  dom::parser parser;
  dom::object obj;
  if (!parse_body(parser, body, obj, out.model, err)) return false;
  dom::element v;
  if (kind == api_kind::completion) {
    if (obj["prompt"].get(v)) return fail(err, "prompt is required", "prompt");
    if (v.is_string()) {
      out.prompt = tokenizer::encode(v.get_string().value_unsafe());
    } else if (v.is_array()) {
      // Token ids, or a list with one prompt (batches of prompts are not simulated).
      dom::array arr = v.get_array().value_unsafe();
      if (arr.size() == 1 && arr.at(0).is_string()) {
        out.prompt = tokenizer::encode(arr.at(0).get_string().value_unsafe());
      } else {
        for (dom::element t : arr) {
          std::int64_t id = 0;
          if (t.get_int64().get(id) || id < 0 || id >= tokenizer::vocab_size)
            return fail(err,
                        "prompt must be a string or a list of token ids in [0, " +
                            std::to_string(tokenizer::vocab_size) + ")",
                        "prompt");
          out.prompt.push_back(static_cast<std::uint32_t>(id));
        }
      }
    } else {
      return fail(err, "prompt must be a string or a list of token ids", "prompt");
    }
    if (out.prompt.empty()) return fail(err, "prompt must not be empty", "prompt");
  } else {
    if (obj["messages"].get(v)) return fail(err, "messages is required", "messages");
    if (!chat_prompt(v, out.prompt, out.images, err)) return false;
  }
  const std::uint64_t big = 1u << 30;
  if (!get_uint(obj, "max_tokens", 1, big, out.max_tokens, &out.max_tokens_set, err)) return false;
  if (kind == api_kind::chat &&
      !get_uint(obj, "max_completion_tokens", 1, big, out.max_tokens, &out.max_tokens_set, err))
    return false;
  if (!get_uint(obj, "n", 1, 16, out.n, nullptr, err)) return false;
  if (!get_bool(obj, "stream", out.stream, err)) return false;
  if (!get_bool(obj, "ignore_eos", out.ignore_eos, err)) return false;
  if (!obj["stream_options"].get(v) && !v.is_null()) {
    dom::object so;
    if (v.get_object().get(so))
      return fail(err, "stream_options must be an object", "stream_options");
    if (!get_bool(so, "include_usage", out.include_usage, err)) return false;
    if (so.size() > 0 && !out.stream)  // vLLM's check, word for word
      return fail(err, "Stream options can only be defined when `stream=True`.", "stream_options");
  }
  if (!obj["temperature"].get(v) && !v.is_null()) {
    double t = 0;
    if (v.get_double().get(t) || t < 0 || t > 2)
      return fail(err, "temperature must be a number between 0 and 2", "temperature");
  }
  if (!obj["priority"].get(v) && !v.is_null() && v.get_int64().get(out.priority))
    return fail(err, "priority must be an integer", "priority");
  if (!obj["kv_transfer_params"].get(v) && !v.is_null() &&
      !parse_kv_transfer_params(v, out.kv_params, err))
    return false;
  if (!obj["modalities"].get(v) && !v.is_null()) {
    dom::array arr;
    if (v.get_array().get(arr)) return fail(err, "modalities must be an array", "modalities");
    for (dom::element m : arr) {
      std::string_view s;
      if (m.get_string().get(s) || (s != "text" && s != "audio"))
        return fail(err, "modalities may hold \"text\" and \"audio\"", "modalities");
      if (s == "audio") out.audio = true;
    }
  }
  return true;
}

bool parse_image_request(std::string_view body, image_request& out, api_error& err) {
  out = {};
  dom::parser parser;
  dom::object obj;
  if (!parse_body(parser, body, obj, out.model, err)) return false;
  dom::element v;
  std::string_view prompt;
  if (obj["prompt"].get(v) || v.get_string().get(prompt) || prompt.empty())
    return fail(err, "prompt is required and must be a non-empty string", "prompt");
  out.prompt = prompt;
  if (!get_uint(obj, "n", 1, 10, out.n, nullptr, err)) return false;
  if (!get_uint(obj, "num_inference_steps", 1, 1000, out.steps, nullptr, err)) return false;
  if (!obj["size"].get(v) && !v.is_null()) {
    std::string_view size;
    unsigned w = 0, h = 0;
    char tail = 0;
    std::string sz;
    if (!v.get_string().get(size)) sz = size;
    if (sz.empty() || std::sscanf(sz.c_str(), "%ux%u%c", &w, &h, &tail) != 2 || w < 16 || h < 16 ||
        w > 2048 || h > 2048 || w % 16 || h % 16)
      return fail(err,
                  "size must be \"WIDTHxHEIGHT\" with each side a multiple of 16 between 16 "
                  "and 2048, e.g. \"1024x1024\"",
                  "size");
    out.width = w;
    out.height = h;
  }
  if (!obj["response_format"].get(v) && !v.is_null()) {
    std::string_view f;
    if (v.get_string().get(f) || (f != "b64_json" && f != "url"))
      return fail(err, "response_format must be \"b64_json\"", "response_format");
    if (f == "url")
      return fail(err,
                  "response_format \"url\" is not supported: this server does not host "
                  "images; ask for \"b64_json\" and decode the PNG from the response",
                  "response_format");
  }
  return true;
}

std::string images_response_json(long created, const std::vector<std::string>& b64_pngs) {
  std::string o = "{\"created\":" + std::to_string(created) + ",\"data\":[";
  for (std::size_t i = 0; i < b64_pngs.size(); ++i) {
    if (i) o += ",";
    o += "{\"b64_json\":\"" + b64_pngs[i] + "\",\"revised_prompt\":null}";
  }
  return o + "]}";
}

std::string kv_transfer_params_json(const std::vector<std::uint32_t>& block_ids,
                                    const std::string& engine_id, const std::string& request_id,
                                    const std::string& host, int port) {
  std::string ids;
  for (auto b : block_ids)
    ids += (ids.empty() ? "" : ",") + std::to_string(b);
  return "{\"do_remote_prefill\":true,\"do_remote_decode\":false,\"remote_block_ids\":[" + ids +
         "],\"remote_engine_id\":" + json_string(engine_id) +
         ",\"remote_request_id\":" + json_string(request_id) +
         ",\"remote_host\":" + json_string(host) + ",\"remote_port\":" + std::to_string(port) +
         ",\"tp_size\":1}";
}

bool parse_nixl_notice(std::string_view body, std::string& engine_id, std::string& request_id) {
  dom::parser parser;
  dom::object obj;
  std::string_view e, r;
  if (parser.parse(body.data(), body.size()).get_object().get(obj) ||
      obj["remote_engine_id"].get_string().get(e) || obj["remote_request_id"].get_string().get(r))
    return false;
  engine_id = e;
  request_id = r;
  return true;
}

std::string error_body(const api_error& e) {
  const char* type = e.status == 404   ? "NotFoundError"
                     : e.status == 503 ? "ServiceUnavailableError"
                                       : "BadRequestError";
  return "{\"error\":{\"message\":" + json_string(e.message) + ",\"type\":\"" + type +
         "\",\"param\":" + (e.param.empty() ? std::string("null") : json_string(e.param)) +
         ",\"code\":" + std::to_string(e.status) + "}}";
}

std::string usage_json(const api_result& r) {
  return "{\"prompt_tokens\":" + std::to_string(r.prompt_tokens) +
         ",\"total_tokens\":" + std::to_string(r.prompt_tokens + r.completion_tokens) +
         ",\"completion_tokens\":" + std::to_string(r.completion_tokens) +
         ",\"prompt_tokens_details\":{\"cached_tokens\":" + std::to_string(r.cached_tokens) + "}}";
}

namespace {
std::string head(api_kind kind, const api_result& r, bool chunk) {
  const char* object = kind == api_kind::completion
                           ? "text_completion"
                           : (chunk ? "chat.completion.chunk" : "chat.completion");
  return "{\"id\":" + json_string(r.id) + ",\"object\":\"" + object +
         "\",\"created\":" + std::to_string(r.created) + ",\"model\":" + json_string(r.model);
}
std::string reason(std::string_view f) {
  return f.empty() ? std::string("null") : json_string(f);
}
}  // namespace

std::string response_json(api_kind kind, const api_result& r) {
  std::string o = head(kind, r, false) + ",\"choices\":[";
  for (std::size_t i = 0; i < r.texts.size(); ++i) {
    if (i) o += ",";
    o += "{\"index\":" + std::to_string(i) + ",";
    if (kind == api_kind::completion) {
      o += "\"text\":" + json_string(r.texts[i]);
    } else {
      o += "\"message\":{\"role\":\"assistant\",\"content\":" + json_string(r.texts[i]);
      if (!r.audio_json.empty()) o += ",\"audio\":" + r.audio_json;
      o += "}";
    }
    // stop_reason is vLLM's (the stop string or token id that ended the choice; null for
    // EOS and length, which is how the simulated choices end).
    o += ",\"logprobs\":null,\"finish_reason\":" + reason(r.finish_reasons[i]) +
         ",\"stop_reason\":null}";
  }
  o += "],\"usage\":" + usage_json(r);
  if (!r.kv_transfer_params.empty()) o += ",\"kv_transfer_params\":" + r.kv_transfer_params;
  return o + "}";
}

std::string chunk_json(api_kind kind, const api_result& r, std::size_t choice,
                       std::string_view delta, std::string_view finish_reason, bool role) {
  std::string o = head(kind, r, true) + ",\"choices\":[{\"index\":" + std::to_string(choice) + ",";
  if (kind == api_kind::completion) {
    o += "\"text\":" + json_string(delta);
  } else {
    o += "\"delta\":{";
    if (role) o += "\"role\":\"assistant\",";
    o += "\"content\":" + json_string(delta) + "}";
  }
  return o + ",\"logprobs\":null,\"finish_reason\":" + reason(finish_reason) +
         ",\"stop_reason\":null}]}";
}

std::string usage_chunk_json(api_kind kind, const api_result& r) {
  return head(kind, r, true) + ",\"choices\":[],\"usage\":" + usage_json(r) + "}";
}

}  // namespace engine_sim
