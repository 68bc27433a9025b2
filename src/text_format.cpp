// shmetrics reader: Prometheus text format 0.0.4, byte-compatible with prometheus_client.
#include "shmetrics/reader/text_format.hpp"

#include <algorithm>     // std::sort
#include <charconv>      // std::to_chars (shortest round-trip)
#include <cmath>         // isnan, isinf
#include <system_error>  // std::errc

SHMETRICS_BEGIN_NAMESPACE

namespace {

// Python repr(float): shortest round-trip digits; exponent form when the decimal
// point position is <= -4 or > 16; always a '.0' or an exponent.
void append_python_repr(std::string& out, double v) {
  if (v == 0) {
    out += std::signbit(v) ? "-0.0" : "0.0";
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));  // [-]d[.ddd]e[+-]XX
  bool neg = sci[0] == '-';
  if (neg) sci.remove_prefix(1);
  std::size_t epos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, epos))
    if (c != '.') digits += c;
  int exp = 0;
  std::from_chars(sci.data() + epos + 1 + (sci[epos + 1] == '+'), sci.data() + sci.size(), exp);
  int decpt = exp + 1;
  if (neg) out += '-';
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += 'e';
    out += exp < 0 ? '-' : '+';
    int a = exp < 0 ? -exp : exp;
    if (a < 10) out += '0';
    out += std::to_string(a);
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-decpt), '0');
    out += digits;
  } else if (static_cast<std::size_t>(decpt) >= digits.size()) {
    out += digits;
    out.append(static_cast<std::size_t>(decpt) - digits.size(), '0');
    out += ".0";
  } else {
    out.append(digits, 0, static_cast<std::size_t>(decpt));
    out += '.';
    out.append(digits, static_cast<std::size_t>(decpt));
  }
}

}  // namespace

void append_float(std::string& out, double v) {
  // Fast path: whole numbers below 1e6 in magnitude (most counter and bucket values)
  // print as Python prints them, "<digits>.0", without the shortest-digits search.
  if (v > -1e15 && v < 1e6 && v == static_cast<double>(static_cast<long long>(v)) &&
      !(v == 0 && std::signbit(v))) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
    out.append(buf, static_cast<std::size_t>(r.ptr - buf));
    out += ".0";
    return;
  }
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  std::size_t start = out.size();
  append_python_repr(out, v);
  // prometheus_client floatToGoString: "Go switches to exponents sooner than Python":
  // a positive value whose repr has more than 6 integer digits becomes d.ddde+0N,
  // written exactly as Python writes it (so 1e10 is "1e+010").
  std::string_view s(out.data() + start, out.size() - start);
  std::size_t dot = s.find('.');
  if (v > 0 && dot != std::string_view::npos && dot > 6) {
    std::string mantissa;
    mantissa += s[0];
    mantissa += '.';
    mantissa.append(s.substr(1, dot - 1));
    mantissa.append(s.substr(dot + 1));
    while (!mantissa.empty() && (mantissa.back() == '0' || mantissa.back() == '.'))
      mantissa.pop_back();
    out.resize(start);
    out += mantissa;
    out += "e+0";
    out += std::to_string(dot - 1);
  }
}

std::string format_float(double v) {
  std::string s;
  append_float(s, v);
  return s;
}

void append_escaped_help(std::string& out, std::string_view s) {
  if (s.find_first_of("\\\n") == std::string_view::npos) {  // nothing to escape: one append
    out += s;
    return;
  }
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

void append_escaped_label_value(std::string& out, std::string_view s) {
  // Values are short: one plain scan beats three memchr calls.
  bool plain = true;
  for (char c : s)
    plain &= c != '\\' && c != '"' && c != '\n';
  if (plain) {  // nothing to escape: one append
    out += s;
    return;
  }
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

namespace {

constexpr int le_label = -1;

// One series' label block as the encoders print it: its text and where `le` goes.
struct block_view {
  std::string_view text;
  std::size_t split = 1;
  bool le_first = true;
};

// Appends `{a="x",c="z"}` (nothing without labels) to `text`, in `order`; returns where
// `le` goes (for histograms) and sets `le_first`. `value(i)` is label i's value.
template <class Value>
std::size_t render_labels(std::string& text, const std::vector<std::string>& names,
                          const std::vector<int>& order, bool& le_first, Value&& value) {
  const std::size_t start = text.size();
  std::size_t split = 1;
  le_first = true;
  bool first = true;
  for (int i : order) {
    if (i == le_label) {
      le_first = first;
      split = first ? 1 : text.size() - start;
      continue;
    }
    text += first ? '{' : ',';
    first = false;
    text += names[static_cast<std::size_t>(i)];
    text += "=\"";
    append_escaped_label_value(text, value(static_cast<std::size_t>(i)));
    text += '"';
  }
  if (!first) text += '}';
  return split;
}

void render_labels(label_block& lb, const std::vector<std::string>& names,
                   const std::vector<int>& order, const std::vector<std::string>& values) {
  lb.text.clear();
  lb.split = render_labels(lb.text, names, order, lb.le_first,
                           [&](std::size_t i) -> std::string_view { return values[i]; });
}

// Appends the block with le="<le>" in its sorted place.
void append_with_le(std::string& out, const block_view& lb, const std::string& le) {
  if (lb.text.empty()) {
    out += "{le=\"";
    out += le;
    out += "\"}";
    return;
  }
  out.append(lb.text.data(), lb.split);
  out += lb.le_first ? "le=\"" : ",le=\"";
  out += le;
  out += '"';
  if (lb.le_first) out += ',';
  out.append(lb.text.substr(lb.split));
}

}  // namespace

namespace {

void sort_labels(const family_snapshot& f, bool with_le, std::vector<int>& order) {
  order.clear();
  for (int i = 0; i < static_cast<int>(f.label_names.size()); ++i)
    order.push_back(i);
  if (with_le) order.push_back(le_label);
  auto name_of = [&](int i) -> std::string_view {
    return i == le_label ? std::string_view("le")
                         : std::string_view(f.label_names[static_cast<std::size_t>(i)]);
  };
  std::sort(order.begin(), order.end(), [&](int a, int b) { return name_of(a) < name_of(b); });
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

}  // namespace

void prepare_family(const family_snapshot& shape, prepared_labels::family_blocks& out) {
  out.text.clear();
  out.end.clear();
  out.split.clear();
  out.histogram = shape.type == layout::metric_type::histogram;
  sort_labels(shape, out.histogram, out.order);
  out.le_first = true;
  for (int i : out.order) {
    if (i == le_label) break;
    out.le_first = false;
  }
}

void append_label_block(prepared_labels::family_blocks& out, const family_snapshot& shape,
                        const std::string_view* values) {
  bool le_first;
  const std::size_t split = render_labels(out.text, shape.label_names, out.order, le_first,
                                          [&](std::size_t i) { return values[i]; });
  out.end.push_back(out.text.size());
  if (out.histogram) out.split.push_back(split);
}

void prepare_labels(const std::vector<family_snapshot>& families, prepared_labels& out) {
  std::vector<std::string_view> values;
  out.families.resize(families.size());
  for (std::size_t fi = 0; fi < families.size(); ++fi) {
    const family_snapshot& f = families[fi];
    auto& blocks = out.families[fi];
    prepare_family(f, blocks);
    blocks.end.reserve(f.series.size());
    if (blocks.histogram) blocks.split.reserve(f.series.size());
    for (const series_snapshot& s : f.series) {
      values.assign(s.label_values.begin(), s.label_values.end());
      values.resize(f.label_names.size());  // a short series prints empty values
      append_label_block(blocks, f, values.data());
    }
  }
}

namespace {

// The label block of series `i` of family `fi`: prepared, or rendered into `scratch`.
block_view labels_of(const prepared_labels* prepared, std::size_t fi, const family_snapshot& f,
                     std::size_t i, const std::vector<int>& order, label_block& scratch) {
  if (prepared && fi < prepared->families.size() &&
      prepared->families[fi].size() == f.series.size()) {
    const auto& b = prepared->families[fi];
    const std::size_t begin = i ? b.end[i - 1] : 0;
    return {std::string_view(b.text).substr(begin, b.end[i] - begin), b.histogram ? b.split[i] : 1,
            b.le_first};
  }
  render_labels(scratch, f.label_names, order, f.series[i].label_values);
  return {scratch.text, scratch.split, scratch.le_first};
}

// The encoders print a family's series from one of two sources, through the same
// (inlined) loop: its family_snapshot::series, or columns with prepared label blocks.
struct snapshot_rows {
  const prepared_labels* prepared;
  std::size_t fi;
  const family_snapshot& f;
  const std::vector<int>& order;
  label_block& scratch;
  std::size_t size() const { return f.series.size(); }
  block_view labels(std::size_t i) const { return labels_of(prepared, fi, f, i, order, scratch); }
  double value(std::size_t i) const { return f.series[i].value; }
  std::uint64_t bucket(std::size_t i, std::size_t b) const {
    const series_snapshot& s = f.series[i];
    return b < s.buckets.size() ? s.buckets[b] : 0;
  }
  std::uint64_t count(std::size_t i) const { return f.series[i].count(); }
  double sum(std::size_t i) const { return f.series[i].sum; }
};

struct column_rows {
  const prepared_labels::family_blocks& blocks;
  const series_columns::family_columns& col;
  std::size_t nb;  // histograms: bounds + 1
  std::size_t size() const { return col.rows; }
  block_view labels(std::size_t i) const {
    const std::size_t begin = i ? blocks.end[i - 1] : 0;
    return {std::string_view(blocks.text).substr(begin, blocks.end[i] - begin),
            blocks.histogram ? blocks.split[i] : 1, blocks.le_first};
  }
  double value(std::size_t i) const { return col.value[i]; }
  std::uint64_t bucket(std::size_t i, std::size_t b) const { return col.buckets[i * nb + b]; }
  std::uint64_t count(std::size_t i) const { return col.buckets[i * nb + nb - 1]; }
  double sum(std::size_t i) const { return col.value[i]; }
};

// Family fi's columns, when it is to be printed from them (see series_columns).
const series_columns::family_columns* columns_of(const series_columns* columns,
                                                 const prepared_labels* prepared, std::size_t fi,
                                                 const family_snapshot& f) {
  if (!columns || !prepared || fi >= columns->families.size() || fi >= prepared->families.size() ||
      !f.series.empty())
    return nullptr;
  const auto& col = columns->families[fi];
  const auto& blocks = prepared->families[fi];
  const bool hist = f.type == layout::metric_type::histogram;
  if (blocks.size() != col.rows || col.value.size() != col.rows || blocks.histogram != hist ||
      (hist && col.buckets.size() != col.rows * (f.bounds.size() + 1)))
    return nullptr;
  return &col;
}

// The samples of one family, in either format. They differ in how they print counts:
// prometheus_client's text format prints every value as a float ("5.0"), OpenMetrics
// prints bucket and _count values as integers. `sample` is the name of a non-histogram
// sample (a counter's with _total); an info sample's value is 1.
template <class Rows>
void sample_rows(std::string& out, const Rows& rows, bool openmetrics, bool hist, bool info,
                 const std::string& name, const std::string& sample,
                 const std::vector<std::string>& le_text) {
  auto append_count = [&out, openmetrics](std::uint64_t n) {
    if (openmetrics)
      append_uint(out, n);
    else
      append_float(out, static_cast<double>(n));
  };
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const block_view lb = rows.labels(i);
    if (!hist) {
      out += sample;
      out += lb.text;
      out += ' ';
      if (info)
        out += '1';
      else
        append_float(out, rows.value(i));
      out += '\n';
      continue;
    }
    for (std::size_t b = 0; b < le_text.size(); ++b) {
      out += name;
      out += "_bucket";
      append_with_le(out, lb, le_text[b]);
      out += ' ';
      append_count(rows.bucket(i, b));
      out += '\n';
    }
    out += name;
    out += "_count";
    out += lb.text;
    out += ' ';
    append_count(rows.count(i));
    out += '\n';
    out += name;
    out += "_sum";
    out += lb.text;
    out += ' ';
    append_float(out, rows.sum(i));
    out += '\n';
  }
}

}  // namespace

void encode_openmetrics(const std::vector<family_snapshot>& families, std::string& out,
                        const prepared_labels* prepared, const series_columns* columns) {
  std::vector<int> order;
  std::vector<std::string> le_text;
  std::string name, sample;
  label_block scratch;
  for (std::size_t fi = 0; fi < families.size(); ++fi) {
    const family_snapshot& f = families[fi];
    const bool hist = f.type == layout::metric_type::histogram;
    const bool info =
        f.type == layout::metric_type::info && f.name.size() > 5 && f.name.ends_with("_info");
    name = info ? f.name.substr(0, f.name.size() - 5) : f.name;
    const char* type_word = f.type == layout::metric_type::counter ? "counter"
                            : hist                                 ? "histogram"
                            : info                                 ? "info"
                                                                   : "gauge";
    out += "# TYPE ";
    out += name;
    out += ' ';
    out += type_word;
    out += '\n';
    if (!f.unit.empty() && !info && name.size() > f.unit.size() + 1 && name.ends_with(f.unit) &&
        name[name.size() - f.unit.size() - 1] == '_') {
      out += "# UNIT ";
      out += name;
      out += ' ';
      out += f.unit;
      out += '\n';
    }
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped_label_value(out, f.help);  // OM escapes HELP like label values
    out += '\n';

    sort_labels(f, hist, order);
    sample = f.type == layout::metric_type::counter ? name + "_total" : info ? f.name : name;
    if (hist) {
      le_text.clear();
      for (double b : f.bounds)
        le_text.push_back(format_float(b));
      le_text.push_back("+Inf");
    }
    if (const auto* col = columns_of(columns, prepared, fi, f))
      sample_rows(out, column_rows{prepared->families[fi], *col, f.bounds.size() + 1}, true, hist,
                  info, name, sample, le_text);
    else
      sample_rows(out, snapshot_rows{prepared, fi, f, order, scratch}, true, hist, info, name,
                  sample, le_text);
  }
}

void encode_text(const std::vector<family_snapshot>& families, std::string& out,
                 const prepared_labels* prepared, const series_columns* columns) {
  std::vector<int> order;
  std::vector<std::string> le_text;
  std::string name;
  label_block scratch;
  for (std::size_t fi = 0; fi < families.size(); ++fi) {
    const family_snapshot& f = families[fi];
    const bool hist = f.type == layout::metric_type::histogram;
    name = f.name;
    if (f.type == layout::metric_type::counter) name += "_total";
    const char* type_word = f.type == layout::metric_type::counter     ? "counter"
                            : f.type == layout::metric_type::histogram ? "histogram"
                                                                       : "gauge";
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped_help(out, f.help);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type_word;
    out += '\n';

    sort_labels(f, hist, order);
    if (hist) {
      le_text.clear();
      for (double b : f.bounds)
        le_text.push_back(format_float(b));
      le_text.push_back("+Inf");
    }
    if (const auto* col = columns_of(columns, prepared, fi, f))
      sample_rows(out, column_rows{prepared->families[fi], *col, f.bounds.size() + 1}, false, hist,
                  false, name, name, le_text);
    else
      sample_rows(out, snapshot_rows{prepared, fi, f, order, scratch}, false, hist, false, name,
                  name, le_text);
  }
}

SHMETRICS_END_NAMESPACE
