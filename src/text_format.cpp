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

void render_labels(label_block& lb, const std::vector<std::string>& names,
                   const std::vector<int>& order, const std::vector<std::string>& values) {
  lb.text.clear();
  lb.split = 1;
  lb.le_first = true;
  bool first = true;
  for (int i : order) {
    if (i == le_label) {
      lb.le_first = first;
      lb.split = first ? 1 : lb.text.size();
      continue;
    }
    lb.text += first ? '{' : ',';
    first = false;
    lb.text += names[static_cast<std::size_t>(i)];
    lb.text += "=\"";
    append_escaped_label_value(lb.text, values[static_cast<std::size_t>(i)]);
    lb.text += '"';
  }
  if (!first) lb.text += '}';
}

// Appends the block with le="<le>" in its sorted place.
void append_with_le(std::string& out, const label_block& lb, const std::string& le) {
  if (lb.text.empty()) {
    out += "{le=\"";
    out += le;
    out += "\"}";
    return;
  }
  out.append(lb.text, 0, lb.split);
  out += lb.le_first ? "le=\"" : ",le=\"";
  out += le;
  out += '"';
  if (lb.le_first) out += ',';
  out.append(lb.text, lb.split, std::string::npos);
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

void prepare_labels(const std::vector<family_snapshot>& families, prepared_labels& out) {
  std::vector<int> order;
  out.families.resize(families.size());
  for (std::size_t fi = 0; fi < families.size(); ++fi) {
    const family_snapshot& f = families[fi];
    sort_labels(f, f.type == layout::metric_type::histogram, order);
    auto& blocks = out.families[fi];
    blocks.resize(f.series.size());
    for (std::size_t i = 0; i < f.series.size(); ++i)
      render_labels(blocks[i], f.label_names, order, f.series[i].label_values);
  }
}

namespace {
// The label block of series `i` of family `fi`: prepared, or rendered into `scratch`.
const label_block& labels_of(const prepared_labels* prepared, std::size_t fi,
                             const family_snapshot& f, std::size_t i, const std::vector<int>& order,
                             label_block& scratch) {
  if (prepared && fi < prepared->families.size() &&
      prepared->families[fi].size() == f.series.size())
    return prepared->families[fi][i];
  render_labels(scratch, f.label_names, order, f.series[i].label_values);
  return scratch;
}
}  // namespace

void encode_openmetrics(const std::vector<family_snapshot>& families, std::string& out,
                        const prepared_labels* prepared) {
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
    for (std::size_t i = 0; i < f.series.size(); ++i) {
      const series_snapshot& s = f.series[i];
      const label_block& lb = labels_of(prepared, fi, f, i, order, scratch);
      if (!hist) {
        out += sample;
        out += lb.text;
        out += ' ';
        if (info)
          out += '1';
        else
          append_float(out, s.value);
        out += '\n';
        continue;
      }
      for (std::size_t b = 0; b < le_text.size(); ++b) {
        out += name;
        out += "_bucket";
        append_with_le(out, lb, le_text[b]);
        out += ' ';
        append_uint(out, b < s.buckets.size() ? s.buckets[b] : 0);
        out += '\n';
      }
      out += name;
      out += "_count";
      out += lb.text;
      out += ' ';
      append_uint(out, s.count());
      out += '\n';
      out += name;
      out += "_sum";
      out += lb.text;
      out += ' ';
      append_float(out, s.sum);
      out += '\n';
    }
  }
}

void encode_text(const std::vector<family_snapshot>& families, std::string& out,
                 const prepared_labels* prepared) {
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

    for (std::size_t i = 0; i < f.series.size(); ++i) {
      const series_snapshot& s = f.series[i];
      const label_block& lb = labels_of(prepared, fi, f, i, order, scratch);
      if (!hist) {
        out += name;
        out += lb.text;
        out += ' ';
        append_float(out, s.value);
        out += '\n';
        continue;
      }
      for (std::size_t b = 0; b < le_text.size(); ++b) {
        out += name;
        out += "_bucket";
        append_with_le(out, lb, le_text[b]);
        out += ' ';
        append_float(out, b < s.buckets.size() ? static_cast<double>(s.buckets[b]) : 0.0);
        out += '\n';
      }
      out += name;
      out += "_count";
      out += lb.text;
      out += ' ';
      append_float(out, static_cast<double>(s.count()));
      out += '\n';
      out += name;
      out += "_sum";
      out += lb.text;
      out += ' ';
      append_float(out, s.sum);
      out += '\n';
    }
  }
}

SHMETRICS_END_NAMESPACE
