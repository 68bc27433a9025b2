// shmetrics: compile-time configuration and version.
//
// No macro here may change the segment layout: the layout is a runtime-validated
// contract (docs/segment-format.md), so two translation units built with different
// macros still agree on every byte.
#ifndef SHMETRICS_CONFIG_HPP
#define SHMETRICS_CONFIG_HPP

#define SHMETRICS_VERSION_MAJOR 0
#define SHMETRICS_VERSION_MINOR 1
#define SHMETRICS_VERSION_PATCH 0
#define SHMETRICS_VERSION_STRING "0.1.0"

// The segment format this library writes and reads (docs/segment-format.md).
#define SHMETRICS_FORMAT_MAJOR 1
#define SHMETRICS_FORMAT_MINOR 1

// The inline namespace follows the segment major version, so two libraries in one
// engine that carry different formats cannot silently break the ODR.
#define SHMETRICS_BEGIN_NAMESPACE \
  namespace shmetrics {           \
  inline namespace v1 {
#define SHMETRICS_END_NAMESPACE \
  }                             \
  }

// SHMETRICS_EXCEPTIONS: 1 when the translation unit is compiled with exceptions.
// The hot path never throws; this only decides what result::value() does on an error
// (throw bad_result_access, or print the error and abort).
#ifdef SHMETRICS_EXCEPTIONS
// Use the provided definition.
#elif defined(__cpp_exceptions)
#define SHMETRICS_EXCEPTIONS 1
#else
#define SHMETRICS_EXCEPTIONS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SHMETRICS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SHMETRICS_ALWAYS_INLINE inline
#endif

#endif  // SHMETRICS_CONFIG_HPP
