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
  if (s.find_first_of("\\\"\n") == std::string_view::npos) {  // nothing to escape: one append
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

// Appends {a="x",le="0.1",b="y"} with labels sorted by name; `le` may be null.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<int>& order, const std::vector<std::string>& values,
                   const std::string* le) {
  bool first = true;
  for (int i : order) {
    if (i == le_label && !le) continue;
    out += first ? '{' : ',';
    first = false;
    if (i == le_label) {
      out += "le=\"";
      out += *le;
    } else {
      out += names[static_cast<std::size_t>(i)];
      out += "=\"";
      append_escaped_label_value(out, values[static_cast<std::size_t>(i)]);
    }
    out += '"';
  }
  if (!first) out += '}';
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

void encode_openmetrics(const std::vector<family_snapshot>& families, std::string& out) {
  std::vector<int> order;
  std::vector<std::string> le_text;
  std::string name, sample;
  for (const family_snapshot& f : families) {
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
    for (const series_snapshot& s : f.series) {
      if (!hist) {
        out += sample;
        append_labels(out, f.label_names, order, s.label_values, nullptr);
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
        append_labels(out, f.label_names, order, s.label_values, &le_text[b]);
        out += ' ';
        append_uint(out, b < s.buckets.size() ? s.buckets[b] : 0);
        out += '\n';
      }
      out += name;
      out += "_count";
      append_labels(out, f.label_names, order, s.label_values, nullptr);
      out += ' ';
      append_uint(out, s.count());
      out += '\n';
      out += name;
      out += "_sum";
      append_labels(out, f.label_names, order, s.label_values, nullptr);
      out += ' ';
      append_float(out, s.sum);
      out += '\n';
    }
  }
}

void encode_text(const std::vector<family_snapshot>& families, std::string& out) {
  std::vector<int> order;
  std::vector<std::string> le_text;
  std::string name;
  for (const family_snapshot& f : families) {
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

    for (const series_snapshot& s : f.series) {
      if (!hist) {
        out += name;
        append_labels(out, f.label_names, order, s.label_values, nullptr);
        out += ' ';
        append_float(out, s.value);
        out += '\n';
        continue;
      }
      for (std::size_t b = 0; b < le_text.size(); ++b) {
        out += name;
        out += "_bucket";
        append_labels(out, f.label_names, order, s.label_values, &le_text[b]);
        out += ' ';
        append_float(out, b < s.buckets.size() ? static_cast<double>(s.buckets[b]) : 0.0);
        out += '\n';
      }
      out += name;
      out += "_count";
      append_labels(out, f.label_names, order, s.label_values, nullptr);
      out += ' ';
      append_float(out, static_cast<double>(s.count()));
      out += '\n';
      out += name;
      out += "_sum";
      append_labels(out, f.label_names, order, s.label_values, nullptr);
      out += ' ';
      append_float(out, s.sum);
      out += '\n';
    }
  }
}

SHMETRICS_END_NAMESPACE
