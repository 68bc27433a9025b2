// shmetrics reader: open a writer's segment read-only, validate it, snapshot it.
//
// The reader trusts nothing in a segment: every offset, length, count and string is
// checked against the mapping before use, and the write-once header is copied and
// validated once at open. Metadata is append-only, so refresh() parses only records
// published since the last call; values are re-read on every snapshot.
#ifndef SHMETRICS_READER_SEGMENT_READER_HPP
#define SHMETRICS_READER_SEGMENT_READER_HPP

#include <cstddef>      // size_t
#include <cstdint>      // sizes
#include <deque>        // parsed families, stable addresses
#include <string>       // path, label pool
#include <string_view>  // label values
#include <vector>       // series records, cursors

#include "../errc.hpp"
#include "mapping_guard.hpp"
#include "snapshot.hpp"

SHMETRICS_BEGIN_NAMESPACE

class segment_reader {
 public:
  /// Opens `path` read-only (O_NOFOLLOW) and validates the header.
  /// Fails: open_failed, not_a_regular_file, not_ready (empty or magic not yet
  /// published), truncated, bad_magic, unsupported_major, corrupt_header, map_failed.
  static result<segment_reader> open(const std::string& path);

  segment_reader() = default;
  segment_reader(segment_reader&&) noexcept;
  segment_reader& operator=(segment_reader&&) noexcept;
  segment_reader(const segment_reader&) = delete;
  segment_reader& operator=(const segment_reader&) = delete;
  ~segment_reader();

  /// Parses records published since the last call. Returns true if any were new.
  /// Fails: shrunk (file smaller than the header says), corrupt_header (counts beyond
  /// capacity), corrupt_record (an offset, length, name or value out of bounds, a string
  /// inside its own ref list, or records that reference more arena bytes or claim more
  /// cells in all than the segment holds: docs/segment-format.md, "Bounds"; the detail
  /// names the record and the limit).
  result<bool> refresh();

  /// refresh(), then the values of every series not removed, summed over shards. Copies every
  /// name and label: for repeated reads, refresh() + read_series() reuse storage.
  result<segment_snapshot> snapshot();

  /// snapshot() for repeated reads: fills `snap`, reusing it. When `snap` is what the last
  /// call left (pass the same object back, unmodified) and no record was published nor
  /// series removed since, only the values are read: no allocation. Returns true when the
  /// shape was rebuilt (names and labels copied: the first call, after new records, and
  /// after removals). Removed series are left out (series_removed()).
  result<bool> snapshot_into(segment_snapshot& snap);

  /// Label values of one series, in its family's label_names order: views into the
  /// reader's own copy (taken when the record was parsed and validated), valid until the
  /// next refresh().
  class label_values {
   public:
    std::size_t size() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }
    std::string_view operator[](std::size_t k) const noexcept {
      const std::size_t j = first_ + k;
      const std::size_t begin = j ? (*end_)[j - 1] : 0;
      return std::string_view(*pool_).substr(begin, (*end_)[j] - begin);
    }
    /// A copy as owning strings.
    std::vector<std::string> to_strings() const {
      std::vector<std::string> out;
      out.reserve(count_);
      for (std::size_t k = 0; k < count_; ++k)
        out.emplace_back((*this)[k]);
      return out;
    }

   private:
    friend class segment_reader;
    label_values(const std::string& pool, const std::vector<std::size_t>& end, std::size_t first,
                 std::size_t count) noexcept
        : pool_(&pool), end_(&end), first_(first), count_(count) {}
    const std::string* pool_;
    const std::vector<std::size_t>* end_;
    std::size_t first_, count_;
  };

  /// Records parsed so far (by refresh()). Families are stable: records are append-only,
  /// and a family reference stays valid for the reader's life. Series indices are stable
  /// too: a removed series keeps its index (series_removed()).
  std::size_t family_count() const noexcept { return families_.size(); }
  std::size_t series_count() const noexcept { return series_.size(); }
  /// Whether the writer removed series `i` (format 1.1, family::remove()), as of the last
  /// refresh(). A removed series is never served again: snapshots leave it out, and
  /// read_values() still reads its (orphaned) cells. Final: it never comes back.
  bool series_removed(std::size_t i) const noexcept { return i < removed_.size() && removed_[i]; }
  /// How many parsed series are removed; grows when refresh() sees removals.
  std::size_t removed_count() const noexcept { return removed_count_; }
  /// Family `i`'s definition; its `series` is empty.
  const family_snapshot& family(std::size_t i) const noexcept { return families_[i].shape; }
  std::uint32_t series_family(std::size_t i) const noexcept { return series_[i].family; }
  label_values series_labels(std::size_t i) const noexcept {
    return label_values(label_pool_, value_end_, series_[i].first_value,
                        families_[series_[i].family].shape.label_names.size());
  }

  /// Cumulative bucket counts series `i` has (bounds + 1 for a histogram, else 0).
  std::uint32_t bucket_slots(std::size_t i) const noexcept {
    const family_meta& fm = families_[series_[i].family];
    return fm.shape.type == layout::metric_type::histogram
               ? static_cast<std::uint32_t>(fm.shape.bounds.size()) + 1
               : 0;
  }

  /// The values of series `i` (< series_count()) summed over shards, without a
  /// series_snapshot (an exporter keeps millions): `out.value` is the counter, gauge or
  /// info value or the histogram's sum, `out.stamp_ns` a gauge's set time, and a
  /// histogram's bucket_slots(i) cumulative counts are appended to `buckets`. Allocates
  /// only when `buckets` must grow. Reads the mapping without a size check: call
  /// damaged() after a batch of reads.
  void read_values(std::size_t i, series_values& out, std::vector<std::uint64_t>& buckets) const;

  /// The values of series `i` (< series_count()) summed over shards, into `out`'s
  /// value, stamp_ns, buckets and sum; label_values is left alone. Allocates only when
  /// `out.buckets` must grow. Reads the mapping without a size check: call damaged()
  /// after a batch of reads.
  void read_series(std::size_t i, series_snapshot& out) const;

  /// Whether a read touched a page past the end of a file that shrank under it (the read
  /// saw zeros there instead of dying of SIGBUS). Sticky; refresh() then fails `shrunk`.
  bool damaged() const noexcept { return guard_.damaged(); }

  /// Owner of the file when it was opened (the exporter refuses other users' segments).
  std::uint32_t owner_uid() const noexcept { return uid_; }

  /// The header as of now (identity fields from open, hot fields re-read).
  segment_info info() const;

  /// Whether the writer still holds its lifetime lock (works across PID namespaces).
  /// False also when the writer exited cleanly.
  bool writer_alive() const;

  const std::string& path() const noexcept { return path_; }
  /// The read-only descriptor (for flock probes and reaping).
  int fd() const noexcept { return fd_; }
  std::uint64_t instance_id() const noexcept { return hdr_.instance_id; }
  /// (st_dev, st_ino) of the mapped file, to notice a replaced or removed path.
  std::uint64_t device() const noexcept { return dev_; }
  std::uint64_t inode() const noexcept { return ino_; }

 private:
  struct family_meta {
    family_snapshot shape;  // series left empty
    std::uint32_t cells_per_series;
  };
  // Millions of these in an exporter: no strings of their own. The label values are
  // value_end_[first_value ..) in label_pool_.
  struct series_meta {
    std::uint32_t family;
    std::uint32_t cell_index;
    std::size_t first_value;
  };

  struct arena_budget;  // what the records may still reference of the arena
  error corrupt(errc c, std::string what) const;
  error shrunk_error() const;
  result<std::string> read_string(std::uint32_t off, std::uint32_t len, const std::string& what,
                                  arena_budget& budget) const;
  error check_ref_list(std::uint32_t off, std::uint32_t count, const std::string& what,
                       arena_budget& budget) const;
  result<bool> parse_family(std::uint32_t index);
  result<bool> parse_series(std::uint32_t index);

  std::string path_;
  int fd_ = -1;
  const char* base_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t dev_ = 0, ino_ = 0;
  std::uint32_t uid_ = 0;
  detail::mapping_guard guard_;
  layout::segment_header hdr_{};  // write-once part, copied at open
  std::deque<family_meta> families_;
  std::vector<series_meta> series_;
  std::string label_pool_;              // every series' label values, back to back
  std::vector<std::size_t> value_end_;  // value j is label_pool_[value_end_[j-1], value_end_[j])
  std::vector<std::uint32_t> cursor_;   // snapshot_into: next series per family
  // Bounds on what a segment can make the reader hold (checked as records are parsed,
  // never on a value read): arena bytes the parsed records reference in all, at most the
  // arena's size; cells the parsed series claim in all, at most a shard's.
  std::uint64_t arena_referenced_ = 0;
  std::uint64_t cells_claimed_ = 0;
  // Removed series (format 1.1): flags by series index, empty until the first removal (no
  // memory per series for writers that never remove). The header's series_removed count
  // as last seen: the records' flags are scanned again only when it moves.
  std::vector<bool> removed_;
  std::size_t removed_count_ = 0;
  std::uint64_t removed_seen_ = 0;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_READER_SEGMENT_READER_HPP
