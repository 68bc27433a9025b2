// shmetrics reader: the Prometheus text exposition format 0.0.4, printed as
// prometheus_client (what vLLM runs) prints it.
#pragma once

#include <cstddef>      // size_t
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
struct prepared_labels {
  std::vector<std::vector<label_block>> families;
};
void prepare_labels(const std::vector<family_snapshot>& families, prepared_labels& out);

/// Appends every family in order: HELP and TYPE once, then its samples. Counters get
/// `_total`; info families print as gauges; histograms print cumulative `_bucket`
/// lines (+Inf last), then `_count`, then `_sum`. Labels are sorted by name (with
/// `le` among them), as prometheus_client prints them.
void encode_text(const std::vector<family_snapshot>& families, std::string& out,
                 const prepared_labels* prepared = nullptr);

/// `application/openmetrics-text; version=1.0.0; charset=utf-8`
inline constexpr std::string_view openmetrics_content_type =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Appends every family in OpenMetrics 1.0 text: `# TYPE`, `# UNIT` (when the unit is a
/// suffix of the name), `# HELP` (escaping `\`, `"`, LF); counters typed by their base
/// name with `_total` samples; families named `*_info` of info type as OM `info`;
/// histogram counts as integers; no `_created`. Does NOT append `# EOF` (the caller
/// appends it once, after any families of its own).
void encode_openmetrics(const std::vector<family_snapshot>& families, std::string& out,
                        const prepared_labels* prepared = nullptr);

SHMETRICS_END_NAMESPACE
