// A deterministic stand-in tokenizer: the same text always gives the same ids, so a
// repeated prompt hits the prefix cache exactly as it would with a real model.
#pragma once

#include <cstdint>      // token ids
#include <string>       // text
#include <string_view>  // input
#include <vector>       // ids

namespace engine_sim {

class tokenizer {
 public:
  static constexpr std::uint32_t vocab_size = 32000;

  /// Words and punctuation marks become one token each (with the space before them
  /// folded in, as BPE tokenizers do); long words are cut every 6 bytes.
  static std::vector<std::uint32_t> encode(std::string_view text);
  /// The text of one generated token (a word with its leading space).
  static std::string_view decode(std::uint32_t id);
};

}  // namespace engine_sim
