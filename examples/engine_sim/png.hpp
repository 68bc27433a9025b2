// A deterministic picture as a PNG file (8-bit RGB, zlib's deflate), and base64, for
// /v1/images/generations' b64_json.
#pragma once

#include <cstdint>      // sizes, seed
#include <string>       // bytes
#include <string_view>  // base64 input

namespace engine_sim {

/// A `width` x `height` PNG whose picture depends only on `seed` (a gradient with a
/// pattern), so the same prompt gives the same image. Empty if zlib fails.
std::string render_png(std::uint32_t width, std::uint32_t height, std::uint64_t seed);
/// RFC 4648 base64 with padding.
std::string base64(std::string_view bytes);

}  // namespace engine_sim
