// shmetrics reader: surviving a segment that shrinks while it is mapped.
//
// Reading a MAP_SHARED page past the end of a truncated file raises SIGBUS. A reader
// cannot stop another process from truncating a file, and checking the size before
// each read leaves a window, so the reader registers every mapping here. A process-wide
// SIGBUS handler, on a fault inside a registered mapping, maps anonymous zero pages over
// the faulting page (the access then completes and reads zeros) and marks the mapping
// damaged; the reader sees the mark after its read and reports the segment as `shrunk`.
// Faults anywhere else go to the handler that was installed before ours, or kill the
// process as SIGBUS always did.
#ifndef SHMETRICS_READER_MAPPING_GUARD_HPP
#define SHMETRICS_READER_MAPPING_GUARD_HPP

#include <cstddef>  // size_t

#include "../config.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

class mapping_guard {
 public:
  mapping_guard() = default;
  /// Watches [base, base + size). Installs the handler on first use, and again if the
  /// host program has put its own SIGBUS handler in since (chained to from then on). If
  /// every slot is taken (more than 65536 mappings at once), the mapping is not watched.
  mapping_guard(const void* base, std::size_t size) noexcept;
  mapping_guard(mapping_guard&& o) noexcept : slot_(o.slot_) { o.slot_ = -1; }
  mapping_guard& operator=(mapping_guard&& o) noexcept;
  mapping_guard(const mapping_guard&) = delete;
  mapping_guard& operator=(const mapping_guard&) = delete;
  /// Stops watching. Call before munmap.
  ~mapping_guard();

  /// Whether a read ever touched a page past the end of the file. Sticky: the pages
  /// replaced by zeros no longer show the file.
  bool damaged() const noexcept;
  bool watching() const noexcept { return slot_ >= 0; }

 private:
  int slot_ = -1;
};

}  // namespace detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_READER_MAPPING_GUARD_HPP
