// shmetrics reader: what a snapshot of a segment holds. Owning, plain data; the encoder
// and the exporter's merge work on these.
#ifndef SHMETRICS_READER_SNAPSHOT_HPP
#define SHMETRICS_READER_SNAPSHOT_HPP

#include <cstdint>  // counts
#include <string>   // names
#include <vector>   // families, series

#include "../segment_layout.hpp"

SHMETRICS_BEGIN_NAMESPACE

/// One series' values, summed over the writer's shards.
struct series_snapshot {
  std::vector<std::string> label_values;  ///< in the family's label_names order
  double value = 0;                       ///< counter, gauge, info
  std::uint64_t stamp_ns = 0;             ///< gauge: CLOCK_MONOTONIC of the last set (latest modes)
  std::vector<std::uint64_t> buckets;     ///< histogram: CUMULATIVE counts, bounds.size()+1 entries
  double sum = 0;                         ///< histogram sum
  /// Histogram observation count: the +Inf bucket, so `+Inf == _count` by construction.
  std::uint64_t count() const noexcept { return buckets.empty() ? 0 : buckets.back(); }
};

/// One series' values without storage of their own (segment_reader::read_values): the
/// value (counter, gauge, info) or a histogram's sum, and a gauge's set time.
struct series_values {
  double value = 0;
  std::uint64_t stamp_ns = 0;
};

struct family_snapshot {
  std::string name;  ///< as stored: counters without `_total`
  std::string help, unit;
  layout::metric_type type = layout::metric_type::gauge;
  layout::gauge_mode mode = layout::gauge_mode::live_sum;
  std::vector<std::string> label_names;
  std::vector<double> bounds;  ///< histogram finite upper bounds; +Inf implied
  std::vector<series_snapshot> series;
};

/// Identity, liveness and capacity of one segment, from its header.
struct segment_info {
  std::string path;
  std::uint16_t version_major = 0, version_minor = 0;
  std::uint64_t segment_size = 0;
  std::uint64_t instance_id = 0;
  std::uint32_t writer_pid = 0;
  std::uint32_t shard_count = 0;
  std::uint64_t writer_start_ticks = 0;
  std::uint64_t created_realtime_ns = 0, created_monotonic_ns = 0;
  layout::segment_state state = layout::segment_state::initializing;
  std::uint64_t heartbeat_ns = 0, heartbeat_count = 0;
  std::uint64_t families = 0, family_capacity = 0;
  std::uint64_t series = 0, series_capacity = 0;  ///< series: records, removed ones included
  std::uint64_t series_removed = 0;               ///< removed series (left out of snapshots)
  std::uint64_t string_bytes = 0, string_capacity = 0;
  std::uint64_t cells = 0, cell_capacity = 0;
  std::uint64_t registrations_dropped = 0;
};

struct segment_snapshot {
  segment_info info;
  std::vector<family_snapshot> families;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_READER_SNAPSHOT_HPP
