// shmetrics reader: the Prometheus text exposition format 0.0.4, printed as
// prometheus_client (what vLLM runs) prints it.
#ifndef SHMETRICS_READER_TEXT_FORMAT_HPP
#define SHMETRICS_READER_TEXT_FORMAT_HPP

#include <cstddef>      // size_t
#include <cstdint>      // counts
#include <string>       // output buffer
#include <string_view>  // escaping input
#include <vector>       // families

#include "snapshot.hpp"

SHMETRICS_BEGIN_NAMESPACE

/// `text/plain; version=0.0.4; charset=utf-8`
inline constexpr std::string_view text_content_type = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `v` as prometheus_client's floatToGoString does: Python repr (shortest
/// round-trip, `1.0`, `0.001`, `1e-05`), positive values with 7+ integer digits in
/// exponent form (`1e+06`, `1.234567e+06`), and `+Inf`, `-Inf`, `NaN`.
void append_float(std::string& out, double v);
std::string format_float(double v);

/// Escapes for a 0.0.4 HELP line: `\` and LF only (a `\"` there fails promtool).
void append_escaped_help(std::string& out, std::string_view s);
/// Escapes for a label value: `\`, `"` and LF.
void append_escaped_label_value(std::string& out, std::string_view s);

/// One series' labels as printed: `{a="x",c="z"}` (empty without labels), and where a
/// histogram's bucket lines put `le="..."` (after the labels that sort before it).
struct label_block {
  std::string text;
  std::size_t split = 1;
  bool le_first = true;
};

/// Every series' label block, rendered ahead (per family, per series) so that encoding
/// the same shapes again only prints values: what an exporter serving many scrapes of
/// unchanged series wants. Valid while the families' label names and values and the
/// series order stay as they were when prepared; families past the prepared ones, or
/// whose series count differs, are rendered on the fly.
///
/// A family's blocks are stored back to back in one string (an exporter holds millions:
/// one std::string per series would cost a heap block and 32 bytes of header each).
struct prepared_labels {
  struct family_blocks {
    std::string text;              ///< every block's text, back to back
    std::vector<std::size_t> end;  ///< block i is text[end[i-1] (0 for i = 0), end[i])
    /// Histograms: where `le="..."` goes in block i (after the labels sorting before it).
    std::vector<std::size_t> split;
    bool le_first = true;  ///< histograms: no label name sorts before `le`
    bool histogram = false;
    std::vector<int> order;  ///< label indexes in printing order (le: -1)
    std::size_t size() const noexcept { return end.size(); }
  };
  std::vector<family_blocks> families;
};
void prepare_labels(const std::vector<family_snapshot>& families, prepared_labels& out);

/// Starts `out` for series of family `shape` (its series are not read): clears it and
/// computes the label order once.
void prepare_family(const family_snapshot& shape, prepared_labels::family_blocks& out);
/// Appends the label block of one more series of the family `out` was started for, its
/// label values in the family's label_names order (prepare_labels() does this per series).
void append_label_block(prepared_labels::family_blocks& out, const family_snapshot& shape,
                        const std::string_view* values);

/// Series values kept in columns instead of family_snapshot::series: what an exporter
/// holding millions of series uses (8 bytes a counter instead of a series_snapshot and
/// its label strings). Family i is printed from `families[i]` when its family_snapshot
/// has no series and `prepared` holds one label block per row; other families print
/// their series.
struct series_columns {
  struct family_columns {
    std::size_t rows = 0;                 ///< series
    std::vector<double> value;            ///< per series: the value; a histogram's sum
    std::vector<std::uint64_t> stamp_ns;  ///< gauges: CLOCK_MONOTONIC of the last set
    std::vector<std::uint64_t> buckets;   ///< histograms: bounds + 1 cumulative counts a series
  };
  std::vector<family_columns> families;
};

/// Appends every family in order: HELP and TYPE once, then its samples. Counters get
/// `_total`; info families print as gauges; histograms print cumulative `_bucket`
/// lines (+Inf last), then `_count`, then `_sum`. Labels are sorted by name (with
/// `le` among them), as prometheus_client prints them.
void encode_text(const std::vector<family_snapshot>& families, std::string& out,
                 const prepared_labels* prepared = nullptr,
                 const series_columns* columns = nullptr);

/// `application/openmetrics-text; version=1.0.0; charset=utf-8`
inline constexpr std::string_view openmetrics_content_type =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Appends every family in OpenMetrics 1.0 text: `# TYPE`, `# UNIT` (when the unit is a
/// suffix of the name), `# HELP` (escaping `\`, `"`, LF); counters typed by their base
/// name with `_total` samples; families named `*_info` of info type as OM `info`;
/// histogram counts as integers; no `_created`. Does NOT append `# EOF` (the caller
/// appends it once, after any families of its own).
void encode_openmetrics(const std::vector<family_snapshot>& families, std::string& out,
                        const prepared_labels* prepared = nullptr,
                        const series_columns* columns = nullptr);

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_READER_TEXT_FORMAT_HPP
