// shmetrics: the library version and the segment format version, at compile time (macros)
// and at run time (shmetrics::version()).
//
//   #if SHMETRICS_VERSION >= SHMETRICS_MAKE_VERSION(0, 2, 0)  // compile time
//   std::printf("%s\n", shmetrics::version().string);         // run time
#ifndef SHMETRICS_VERSION_HPP
#define SHMETRICS_VERSION_HPP

#include <string_view>  // version_info::string

#include "config.hpp"

/// A version as one comparable integer: major * 10000 + minor * 100 + patch.
#define SHMETRICS_MAKE_VERSION(major, minor, patch) ((major)*10000 + (minor)*100 + (patch))

/// The version of these headers, e.g. 100 for 0.1.0 (SHMETRICS_VERSION_STRING is "0.1.0").
#define SHMETRICS_VERSION \
  SHMETRICS_MAKE_VERSION(SHMETRICS_VERSION_MAJOR, SHMETRICS_VERSION_MINOR, SHMETRICS_VERSION_PATCH)

SHMETRICS_BEGIN_NAMESPACE

/// The library version and the segment format it writes and reads.
struct version_info {
  int major;
  int minor;
  int patch;
  std::string_view string;  ///< "MAJOR.MINOR.PATCH"
  int format_major;         ///< segment format (docs/segment-format.md)
  int format_minor;
};

/// The version this code was compiled from (the header-only writer is compiled into the
/// caller, so this is the version of the headers the caller included).
constexpr version_info version() noexcept {
  return {SHMETRICS_VERSION_MAJOR,  SHMETRICS_VERSION_MINOR, SHMETRICS_VERSION_PATCH,
          SHMETRICS_VERSION_STRING, SHMETRICS_FORMAT_MAJOR,  SHMETRICS_FORMAT_MINOR};
}

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_VERSION_HPP
