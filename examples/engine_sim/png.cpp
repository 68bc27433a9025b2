#include "png.hpp"

#include <vector>  // scanlines

#include <zlib.h>

namespace engine_sim {
namespace {

void put32(std::string& out, std::uint32_t v) {
  out += static_cast<char>(v >> 24);
  out += static_cast<char>(v >> 16);
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v);
}

// A PNG chunk: length, type, data, CRC-32 of type and data.
void chunk(std::string& out, const char* type, const std::string& data) {
  put32(out, static_cast<std::uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  out += body;
  put32(out, static_cast<std::uint32_t>(
                 crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
}

}  // namespace

std::string render_png(std::uint32_t width, std::uint32_t height, std::uint64_t seed) {
  // Scanlines: filter byte 0 (None), then RGB triples. Colours from the seed; diagonal
  // bands so the picture is not one colour.
  std::vector<unsigned char> raw;
  raw.reserve(std::size_t{height} * (1 + std::size_t{width} * 3));
  unsigned char r0 = seed & 0xff, g0 = (seed >> 8) & 0xff, b0 = (seed >> 16) & 0xff;
  unsigned band = 8 + ((seed >> 24) & 31);
  for (std::uint32_t y = 0; y < height; ++y) {
    raw.push_back(0);
    for (std::uint32_t x = 0; x < width; ++x) {
      bool stripe = ((x + y) / band) % 2;
      raw.push_back(static_cast<unsigned char>(r0 + x * 255 / (width ? width : 1)));
      raw.push_back(static_cast<unsigned char>(g0 + y * 255 / (height ? height : 1)));
      raw.push_back(static_cast<unsigned char>(stripe ? b0 : 255 - b0));
    }
  }
  uLongf packed_len = compressBound(uLong(raw.size()));
  std::string packed(packed_len, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_len, raw.data(), uLong(raw.size()),
                Z_BEST_SPEED) != Z_OK)
    return {};
  packed.resize(packed_len);

  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put32(ihdr, width);
  put32(ihdr, height);
  ihdr += '\x08';  // bit depth
  ihdr += '\x02';  // colour type: truecolour (RGB)
  ihdr += '\x00';  // deflate
  ihdr += '\x00';  // adaptive filtering
  ihdr += '\x00';  // no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", packed);
  chunk(png, "IEND", {});
  return png;
}

std::string base64(std::string_view in) {
  static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    std::uint32_t v = std::uint32_t(static_cast<unsigned char>(in[i])) << 16 |
                      std::uint32_t(static_cast<unsigned char>(in[i + 1])) << 8 |
                      static_cast<unsigned char>(in[i + 2]);
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i < in.size()) {
    std::uint32_t v = std::uint32_t(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) v |= std::uint32_t(static_cast<unsigned char>(in[i + 1])) << 8;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace engine_sim
