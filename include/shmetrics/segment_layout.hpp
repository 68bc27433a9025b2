// shmetrics: the segment layout, format 1.1. This header IS the contract between a
// writer and every reader; docs/segment-format.md repeats it in prose. Change it only
// with a version bump and a doc update.
//
//   offset 0                                                              segment_size
//   +-----------+-------------------+-------------------+---------+-------------------+
//   | header    | family records    | series records    | string  | value cells       |
//   | 256 B     | family_capacity x | series_capacity x | arena   | shard_count x     |
//   |           | 64 B              | 32 B              | (bytes) | shard_stride B    |
//   +-----------+-------------------+-------------------+---------+-------------------+
//
//   header (256 B):
//     0   magic                u64  "SHMETRIC" (published LAST, release)
//     8   version_major        u16
//     10  version_minor        u16
//     12  header_size          u32  256 in 1.0; readers use it to find nothing else
//     16  segment_size         u64  bytes; fstat size must be >= this
//     24  instance_id          u64  64 random bits, unique per writer registry
//     32  writer_pid           u32  as seen in the writer's PID namespace
//     36  shard_count          u32  value shards (shard 0 is the shared one)
//     40  writer_start_ticks   u64  /proc/self/stat field 22 (clock ticks since boot)
//     48  created_realtime_ns  u64  CLOCK_REALTIME at creation
//     56  created_monotonic_ns u64  CLOCK_MONOTONIC at creation
//     64  families_offset      u64
//     72  family_capacity      u32
//     76  family_record_size   u32  64 in 1.0
//     80  series_offset        u64
//     88  series_capacity      u32
//     92  series_record_size   u32  32 in 1.0
//     96  strings_offset       u64
//     104 strings_capacity     u64
//     112 cells_offset         u64
//     120 cells_per_shard      u32
//     124 reserved0            u32
//     128 shard_stride         u64  bytes between shards (multiple of 128)
//     136 series_removed       u64  (1.1) series records marked removed so far; release,
//                                   after the record's `removed` word
//     144 reserved             (write-once area ends at 192)
//     ---- hot line(s), written after publication ----
//     192 state                u64  1 ready, 2 closed cleanly by the writer
//     200 heartbeat_ns         u64  CLOCK_MONOTONIC of the writer's last heartbeat
//     208 heartbeat_count      u64  +1 per heartbeat (clock-free liveness)
//     216 families_published   u64  release: records [0, n) are complete
//     224 series_published     u64  release: records [0, n) are complete
//     232 strings_used         u64  bytes of the arena in use
//     240 cells_used           u64  cells per shard in use
//     248 registrations_dropped u64 registrations refused because the segment was full
//
//   family record (64 B): name, help, unit, label names and bucket bounds live in the arena.
//     0  name_off u32, name_len u32
//     8  help_off u32, help_len u32
//     16 unit_off u32, unit_len u32
//     24 labels_off u32  -> label_count x {u32 off, u32 len} in the arena (4-aligned)
//     28 label_count u16, type u8, gauge_mode u8
//     32 buckets_off u32 -> bucket_count x f64 in the arena (8-aligned), finite upper
//                           bounds, strictly increasing; +Inf is implicit
//     36 bucket_count u32
//     40 reserved (24 B)
//
//   series record (32 B):
//     0  family_index u32
//     4  cell_index u32   first cell of this series in every shard
//     8  labels_off u32   -> family.label_count x {u32 off, u32 len} (label values)
//     12 cell_count u32   counter 2, gauge 2, histogram bucket_count + 2
//     16 removed u64      (1.1) 0 live; 1 removed by the writer (set once, never cleared):
//                         readers of 1.1 skip the series, its cells are never reused
//     24 reserved (8 B)
//
//   value cells: cell i of shard k is the u64 at
//     cells_offset + k * shard_stride + i * 8.
//   counter   cell 0: u64 whole part, cell 1: f64 fractional part; both summed over shards
//   gauge     cell 0: f64 bits (shard 0 only), cell 1: CLOCK_MONOTONIC ns of last set
//             (written only for gauge_mode latest)
//   histogram cells 0..bucket_count: u64 non-cumulative counts (the last is +Inf),
//             cell bucket_count+1: f64 bits of the sum; all summed over shards.
//
// Memory ordering: every cell, and the published counters, are accessed only through
// naturally aligned 8-byte atomics (a 16-byte atomic load faults on a read-only
// mapping). Records and arena bytes are written with plain stores before the
// release-store of families_published / series_published, and read by a reader only
// below the count it loaded with acquire. See docs/segment-format.md.
#ifndef SHMETRICS_SEGMENT_LAYOUT_HPP
#define SHMETRICS_SEGMENT_LAYOUT_HPP

#include <atomic>   // std::atomic_ref
#include <cstddef>  // offsetof
#include <cstdint>  // fixed-width fields

#include "config.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace layout {

/// "SHMETRIC" read as a little-endian u64.
inline constexpr std::uint64_t magic = 0x43495254454D4853ULL;
inline constexpr std::uint16_t version_major = SHMETRICS_FORMAT_MAJOR;
inline constexpr std::uint16_t version_minor = SHMETRICS_FORMAT_MINOR;

inline constexpr std::uint32_t header_size = 256;
inline constexpr std::uint32_t family_record_size = 64;
inline constexpr std::uint32_t series_record_size = 32;
inline constexpr std::uint32_t shard_alignment = 128;  // two cache lines, as Aeron pads
inline constexpr std::uint32_t max_shards = 64;

enum class metric_type : std::uint8_t { counter = 1, gauge = 2, histogram = 3, info = 4 };

/// How the exporter merges one gauge family across writer processes (like
/// prometheus_client's multiprocess_mode). live_* modes ignore dead writers.
enum class gauge_mode : std::uint8_t {
  sum = 0,
  max = 1,
  min = 2,
  latest = 3,
  live_sum = 4,
  live_max = 5,
  live_min = 6,
  live_latest = 7,
};

enum class segment_state : std::uint64_t { initializing = 0, ready = 1, closed = 2 };

struct segment_header {
  std::uint64_t magic;
  std::uint16_t version_major;
  std::uint16_t version_minor;
  std::uint32_t header_size;
  std::uint64_t segment_size;
  std::uint64_t instance_id;
  std::uint32_t writer_pid;
  std::uint32_t shard_count;
  std::uint64_t writer_start_ticks;
  std::uint64_t created_realtime_ns;
  std::uint64_t created_monotonic_ns;
  std::uint64_t families_offset;
  std::uint32_t family_capacity;
  std::uint32_t family_record_size;
  std::uint64_t series_offset;
  std::uint32_t series_capacity;
  std::uint32_t series_record_size;
  std::uint64_t strings_offset;
  std::uint64_t strings_capacity;
  std::uint64_t cells_offset;
  std::uint32_t cells_per_shard;
  std::uint32_t reserved0;
  std::uint64_t shard_stride;
  // 1.1: the one header word written after publication outside the hot lines; 0 in 1.0
  // segments (reserved, zero), so a 1.1 reader sees nothing removed there.
  std::uint64_t series_removed;
  std::uint64_t reserved1[6];
  // hot fields: 8-byte atomics only
  std::uint64_t state;
  std::uint64_t heartbeat_ns;
  std::uint64_t heartbeat_count;
  std::uint64_t families_published;
  std::uint64_t series_published;
  std::uint64_t strings_used;
  std::uint64_t cells_used;
  std::uint64_t registrations_dropped;
};

struct family_record {
  std::uint32_t name_off, name_len;
  std::uint32_t help_off, help_len;
  std::uint32_t unit_off, unit_len;
  std::uint32_t labels_off;
  std::uint16_t label_count;
  std::uint8_t type;
  std::uint8_t gauge_mode;
  std::uint32_t buckets_off;
  std::uint32_t bucket_count;
  std::uint64_t reserved[3];
};

struct series_record {
  std::uint32_t family_index;
  std::uint32_t cell_index;
  std::uint32_t labels_off;
  std::uint32_t cell_count;
  std::uint64_t removed;  // 1.1: 8-byte atomic, written after publication (remove())
  std::uint64_t reserved;
};

/// A string reference into the arena (label names and label values).
struct string_ref {
  std::uint32_t off, len;
};

static_assert(sizeof(segment_header) == header_size);
static_assert(offsetof(segment_header, magic) == 0);
static_assert(offsetof(segment_header, version_major) == 8);
static_assert(offsetof(segment_header, version_minor) == 10);
static_assert(offsetof(segment_header, header_size) == 12);
static_assert(offsetof(segment_header, segment_size) == 16);
static_assert(offsetof(segment_header, instance_id) == 24);
static_assert(offsetof(segment_header, writer_pid) == 32);
static_assert(offsetof(segment_header, shard_count) == 36);
static_assert(offsetof(segment_header, writer_start_ticks) == 40);
static_assert(offsetof(segment_header, created_realtime_ns) == 48);
static_assert(offsetof(segment_header, created_monotonic_ns) == 56);
static_assert(offsetof(segment_header, families_offset) == 64);
static_assert(offsetof(segment_header, family_capacity) == 72);
static_assert(offsetof(segment_header, family_record_size) == 76);
static_assert(offsetof(segment_header, series_offset) == 80);
static_assert(offsetof(segment_header, series_capacity) == 88);
static_assert(offsetof(segment_header, series_record_size) == 92);
static_assert(offsetof(segment_header, strings_offset) == 96);
static_assert(offsetof(segment_header, strings_capacity) == 104);
static_assert(offsetof(segment_header, cells_offset) == 112);
static_assert(offsetof(segment_header, cells_per_shard) == 120);
static_assert(offsetof(segment_header, shard_stride) == 128);
static_assert(offsetof(segment_header, series_removed) == 136);
static_assert(offsetof(segment_header, state) == 192);
static_assert(offsetof(segment_header, heartbeat_ns) == 200);
static_assert(offsetof(segment_header, heartbeat_count) == 208);
static_assert(offsetof(segment_header, families_published) == 216);
static_assert(offsetof(segment_header, series_published) == 224);
static_assert(offsetof(segment_header, strings_used) == 232);
static_assert(offsetof(segment_header, cells_used) == 240);
static_assert(offsetof(segment_header, registrations_dropped) == 248);

static_assert(sizeof(family_record) == family_record_size);
static_assert(offsetof(family_record, name_off) == 0);
static_assert(offsetof(family_record, help_off) == 8);
static_assert(offsetof(family_record, unit_off) == 16);
static_assert(offsetof(family_record, labels_off) == 24);
static_assert(offsetof(family_record, label_count) == 28);
static_assert(offsetof(family_record, type) == 30);
static_assert(offsetof(family_record, gauge_mode) == 31);
static_assert(offsetof(family_record, buckets_off) == 32);
static_assert(offsetof(family_record, bucket_count) == 36);

static_assert(sizeof(series_record) == series_record_size);
static_assert(offsetof(series_record, family_index) == 0);
static_assert(offsetof(series_record, cell_index) == 4);
static_assert(offsetof(series_record, labels_off) == 8);
static_assert(offsetof(series_record, cell_count) == 12);
static_assert(offsetof(series_record, removed) == 16);
static_assert(sizeof(string_ref) == 8);

// Cross-process sharing is legitimate only with lock-free, address-free atomics.
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint64_t>::required_alignment <= 8);

/// Cells a series of this family type uses in each shard.
constexpr std::uint32_t cells_for(metric_type t, std::uint32_t bucket_count) noexcept {
  switch (t) {
    case metric_type::counter:
      return 2;
    case metric_type::gauge:
      return 2;
    case metric_type::info:
      return 2;
    case metric_type::histogram:
      return bucket_count + 2;
  }
  return 0;
}

}  // namespace layout
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_SEGMENT_LAYOUT_HPP
