#include "tokenizer.hpp"

#include <array>   // word table
#include <cctype>  // isalnum

namespace engine_sim {
namespace {

// FNV-1a: stable across runs and machines, which std::hash is not.
std::uint32_t fnv1a(std::string_view s) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

// Output text: plain words, so a streamed answer reads like (meaningless) English.
constexpr std::array<std::string_view, 32> words = {
    " the",   " model", " token",  " cache", " engine", " batch", " of",    " and",
    " a",     " to",    " is",     " in",    " with",   " for",   " that",  " on",
    " block", " step",  " stream", " data",  " time",   " audio", " stage", " text",
    " we",    " it",    " as",     " by",    " more",   " quick", " ready", "."};

}  // namespace

std::vector<std::uint32_t> tokenizer::encode(std::string_view text) {
  std::vector<std::uint32_t> ids;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    while (i < text.size() && text[i] == ' ')
      ++i;
    if (i == text.size()) {
      if (i > start) ids.push_back(fnv1a(text.substr(start)) % vocab_size);
      break;
    }
    auto alnum = [&](std::size_t k) { return std::isalnum(static_cast<unsigned char>(text[k])); };
    if (alnum(i)) {
      std::size_t word = i;
      while (i < text.size() && alnum(i) && i - word < 6)
        ++i;
    } else {
      ++i;  // one punctuation mark, newline or byte of a multi-byte character
    }
    ids.push_back(fnv1a(text.substr(start, i - start)) % vocab_size);
  }
  return ids;
}

std::string_view tokenizer::decode(std::uint32_t id) {
  return words[id % words.size()];
}

}  // namespace engine_sim
