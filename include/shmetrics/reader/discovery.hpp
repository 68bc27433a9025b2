// shmetrics reader: finding segments in a directory.
#ifndef SHMETRICS_READER_DISCOVERY_HPP
#define SHMETRICS_READER_DISCOVERY_HPP

#include <cstdint>  // pid, instance
#include <string>   // paths
#include <vector>   // results

#include "../errc.hpp"

SHMETRICS_BEGIN_NAMESPACE

struct segment_name {
  std::string path;  ///< dir + "/" + file name
  std::string file;  ///< <prefix>.<pid>.<instance>
  std::uint32_t pid = 0;
  std::uint64_t instance = 0;
};

/// Parses `<prefix>.<pid>.<16 hex digits>`; false if `file` is not such a name.
bool parse_segment_name(const std::string& file, const std::string& prefix, segment_name& out);

/// Every entry of `dir` named like a segment of `prefix`, sorted by name. Does not
/// open them. Fails: open_failed (the directory cannot be read; detail names it).
result<std::vector<segment_name>> list_segments(const std::string& dir, const std::string& prefix);

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_READER_DISCOVERY_HPP
