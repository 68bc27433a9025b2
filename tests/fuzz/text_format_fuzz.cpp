// libFuzzer target: the text-format encoders on arbitrary snapshots.
//
// The reader only hands the encoder validated names, but label values and help texts are
// arbitrary UTF-8 and values arbitrary doubles. Checks: format_float round-trips through
// strtod for every double (prometheus_client's floatToGoString is lossless), an escaped
// label value never leaves a raw `"` or LF, and both encoders terminate every line.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include <shmetrics/reader/text_format.hpp>

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_float(double v) {
  std::string s = shmetrics::format_float(v);
  if (std::isnan(v)) return check(s == "NaN");
  double back = std::strtod(s.c_str(), nullptr);
  check(back == v && std::signbit(back) == std::signbit(v));
}

void check_label_escape(const std::string& v) {
  std::string out;
  shmetrics::append_escaped_label_value(out, v);
  for (std::size_t i = 0; i < out.size(); ++i) {
    check(out[i] != '\n');
    if (out[i] == '\\') {
      check(i + 1 < out.size() && std::strchr("\\\"n", out[i + 1]) != nullptr);
      ++i;
    } else {
      check(out[i] != '"');
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using shmetrics::layout::metric_type;
  FuzzedDataProvider in(data, size);
  std::vector<shmetrics::family_snapshot> fams;
  const char* names[] = {"a", "b_seconds", "c:d", "e_info", "f_total"};
  while (in.remaining_bytes() > 0 && fams.size() < 8) {
    auto& f = fams.emplace_back();
    f.name = names[in.ConsumeIntegralInRange<int>(0, 4)];
    f.type = static_cast<metric_type>(in.ConsumeIntegralInRange<int>(1, 4));
    f.help = in.ConsumeRandomLengthString(64);
    f.unit = in.ConsumeBool() ? "seconds" : "";
    int nlabels = in.ConsumeIntegralInRange<int>(0, 3);
    for (int l = 0; l < nlabels; ++l)
      f.label_names.push_back(std::string(1, static_cast<char>('a' + l)));
    if (f.type == metric_type::histogram) {
      double b = in.ConsumeFloatingPoint<double>();
      for (int i = in.ConsumeIntegralInRange<int>(0, 4); i > 0; --i)
        f.bounds.push_back(b += 1 + std::abs(in.ConsumeProbability<double>()));
    }
    for (int s = in.ConsumeIntegralInRange<int>(0, 3); s > 0; --s) {
      auto& ser = f.series.emplace_back();
      for (int l = 0; l < nlabels; ++l) {
        ser.label_values.push_back(in.ConsumeRandomLengthString(32));
        check_label_escape(ser.label_values.back());
      }
      ser.value = in.ConsumeFloatingPoint<double>();
      check_float(ser.value);
      if (f.type == metric_type::histogram) {
        std::uint64_t c = 0;
        for (std::size_t b = 0; b <= f.bounds.size(); ++b)
          ser.buckets.push_back(c += in.ConsumeIntegralInRange<std::uint64_t>(0, 1000));
        ser.sum = in.ConsumeFloatingPoint<double>();
      }
    }
  }
  std::string text, om;
  shmetrics::encode_text(fams, text);
  shmetrics::encode_openmetrics(fams, om);
  check(text.empty() || text.back() == '\n');
  check(om.empty() || om.back() == '\n');
  return 0;
}
