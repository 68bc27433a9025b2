// shmetrics reader: the Prometheus text exposition format 0.0.4, printed as
// prometheus_client (what vLLM runs) prints it.
#pragma once

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

/// Appends every family in order: HELP and TYPE once, then its samples. Counters get
/// `_total`; info families print as gauges; histograms print cumulative `_bucket`
/// lines (+Inf last), then `_count`, then `_sum`. Labels are sorted by name (with
/// `le` among them), as prometheus_client prints them.
void encode_text(const std::vector<family_snapshot>& families, std::string& out);

/// `application/openmetrics-text; version=1.0.0; charset=utf-8`
inline constexpr std::string_view openmetrics_content_type =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Appends every family in OpenMetrics 1.0 text: `# TYPE`, `# UNIT` (when the unit is a
/// suffix of the name), `# HELP` (escaping `\`, `"`, LF); counters typed by their base
/// name with `_total` samples; families named `*_info` of info type as OM `info`;
/// histogram counts as integers; no `_created`. Does NOT append `# EOF` (the caller
/// appends it once, after any families of its own).
void encode_openmetrics(const std::vector<family_snapshot>& families, std::string& out);

SHMETRICS_END_NAMESPACE
