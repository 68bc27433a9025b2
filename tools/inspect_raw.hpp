// shmetrics-inspect: a raw, record-by-record walk of a segment file, for `dump` and
// `check`.
//
// The reader library (segment_reader) stops at the first fault, which is right for an
// exporter but not for someone debugging a damaged file: this walk goes on past a bad
// record and reports every problem with its byte offset. It reads with pread() into
// its own buffers and never maps the file, so a file that shrinks or is replaced while
// it is read gives a "short read" problem, never SIGBUS.
#pragma once

#include <cstdint>  // offsets
#include <string>   // decoded strings
#include <vector>   // labels, bounds

#include <shmetrics/segment_layout.hpp>

namespace inspect {

struct problem {
  std::string where;         ///< "header", "family 3 name", "series 7", "file"
  bool has_offset = false;   ///< false when the problem is about the file as a whole
  std::uint64_t offset = 0;  ///< byte offset in the file of the faulty field or record
  std::string what;
};

struct raw_family {
  std::uint32_t index = 0;
  std::uint64_t offset = 0;  ///< of the record in the file
  shmetrics::layout::family_record rec{};
  std::string name, help, unit;  ///< decoded when inside the arena (else empty)
  std::vector<std::string> labels;
  std::vector<double> bounds;
  bool ok = true;  ///< no problem found in this record
};

struct raw_series {
  std::uint32_t index = 0;
  std::uint64_t offset = 0;
  shmetrics::layout::series_record rec{};
  std::vector<std::string> values;  ///< label values, decoded when readable
  bool ok = true;
};

/// Receives what the walk finds, in file order. Every callback is optional.
struct walk_sink {
  virtual ~walk_sink() = default;
  /// The header copy (only when at least 256 bytes could be read).
  virtual void on_header(const shmetrics::layout::segment_header&, std::uint64_t /*file_size*/) {}
  virtual void on_family(const raw_family&) {}
  virtual void on_series(const raw_series&) {}
  virtual void on_problem(const problem&) {}
};

/// Walks `path` (never following a symlink). Every fault is reported to the sink, and
/// the walk carries on wherever the layout still makes sense. Thread-safe (own fd).
/// Allocates. May throw std::bad_alloc on absurd sizes; callers catch it.
void walk_file(const std::string& path, walk_sink& sink);

/// "uid 0 (root), mode 0600" for a permission-denied message.
std::string owner_of(const std::string& path);

}  // namespace inspect
