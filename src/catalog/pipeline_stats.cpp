// vLLM-Omni pipeline statistics: the seed-000 formulas and tables.
#include <shmetrics/catalog/pipeline_stats.hpp>

#include <algorithm>  // min/max
#include <cmath>      // llround
#include <cstdio>     // snprintf
#include <limits>     // infinity

SHMETRICS_BEGIN_NAMESPACE

request_e2e_stats e2e_stats(const request_record& r) {
  request_e2e_stats s;
  s.e2e_total_ms = r.finish_ms - r.arrival_ms;
  for (auto& st : r.stages) {
    if (st.stage == 0) s.e2e_total_tokens += st.num_tokens_in;
    s.e2e_total_tokens += st.num_tokens_out;
  }
  for (auto& t : r.transfers) {
    s.transfers_total_time_ms += t.total_time_ms();
    s.transfers_total_kbytes += t.size_kbytes();
  }
  return s;
}

void pipeline_stats::add(request_record r, double run_start_ms) {
  if (scope_ == stats_scope::online) {
    requests_.clear();
    run_start_ms_ = run_start_ms >= 0 ? run_start_ms : r.arrival_ms;
  }
  requests_.push_back(std::move(r));
}

overall_summary pipeline_stats::summary() const {
  overall_summary s;
  s.e2e_requests = requests_.size();
  double last = run_start_ms_;
  std::vector<double> lo, hi;
  for (auto& r : requests_) {
    last = std::max(last, r.finish_ms);
    s.e2e_total_tokens += e2e_stats(r).e2e_total_tokens;
    for (auto& st : r.stages) {
      if (st.stage >= lo.size()) {
        lo.resize(st.stage + 1, std::numeric_limits<double>::infinity());
        hi.resize(st.stage + 1, -std::numeric_limits<double>::infinity());
      }
      lo[st.stage] = std::min(lo[st.stage], st.start_ms);
      hi[st.stage] = std::max(hi[st.stage], st.end_ms);
    }
  }
  s.e2e_wall_time_ms = last - run_start_ms_;
  if (s.e2e_requests) s.e2e_avg_time_per_request_ms = s.e2e_wall_time_ms / double(s.e2e_requests);
  if (s.e2e_wall_time_ms > 0)
    s.e2e_avg_tokens_per_s = double(s.e2e_total_tokens) * 1000.0 / s.e2e_wall_time_ms;
  for (std::size_t i = 0; i < lo.size(); ++i)
    s.stage_wall_time_ms.push_back(hi[i] >= lo[i] ? hi[i] - lo[i] : 0.0);
  return s;
}

std::string format_number(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s(buf), out;
  std::size_t start = s[0] == '-' ? 1 : 0;
  std::size_t dot = s.find('.');
  if (dot == std::string::npos) dot = s.size();
  out.append(s, 0, start);
  for (std::size_t i = start; i < dot; ++i) {
    out += s[i];
    std::size_t left = dot - i - 1;
    if (left > 0 && left % 3 == 0) out += ',';
  }
  out.append(s, dot, std::string::npos);
  return out;
}

namespace {

std::string count(std::uint64_t v) {
  return format_number(static_cast<double>(v), 0);
}
std::string ms(double v) {
  return format_number(v, 3);
}

void row(std::string& out, const std::string& field, const std::vector<std::string>& cells) {
  out += "| " + field;
  for (auto& c : cells)
    out += " | " + c;
  out += " |\n";
}

void header(std::string& out, const std::string& title, const std::vector<std::string>& cols) {
  out += title + "\n";
  row(out, "Field", cols);
  out += "|---";
  for (std::size_t i = 0; i < cols.size(); ++i)
    out += "|---";
  out += "|\n";
}

}  // namespace

std::string format_summary(const overall_summary& s) {
  std::string out;
  header(out, "Overall Summary", {"Value"});
  row(out, "e2e_requests", {count(s.e2e_requests)});
  row(out, "e2e_wall_time_ms", {ms(s.e2e_wall_time_ms)});
  row(out, "e2e_total_tokens", {count(s.e2e_total_tokens)});
  row(out, "e2e_avg_time_per_request_ms", {ms(s.e2e_avg_time_per_request_ms)});
  row(out, "e2e_avg_tokens_per_s", {ms(s.e2e_avg_tokens_per_s)});
  for (std::size_t i = 0; i < s.stage_wall_time_ms.size(); ++i)
    row(out, "e2e_stage_" + std::to_string(i) + "_wall_time_ms", {ms(s.stage_wall_time_ms[i])});
  return out;
}

std::string format_request(const request_record& r) {
  std::string out;
  const request_e2e_stats e = e2e_stats(r);
  header(out, "RequestE2EStats", {"Value"});
  row(out, "e2e_total_ms", {ms(e.e2e_total_ms)});
  row(out, "e2e_total_tokens", {count(e.e2e_total_tokens)});
  row(out, "transfers_total_time_ms", {ms(e.transfers_total_time_ms)});
  row(out, "transfers_total_kbytes", {ms(e.transfers_total_kbytes)});

  if (!r.stages.empty()) {
    std::vector<std::string> cols;
    bool images = false;
    for (auto& st : r.stages) {
      cols.push_back(std::to_string(st.stage));
      images = images || st.image_num > 0 || !st.resolution.empty();
    }
    header(out, "StageRequestStats", cols);
    // Fields in alphabetical order, as vLLM-Omni prints them.
    auto stage_row = [&](const char* field, auto&& cell) {
      std::vector<std::string> cells;
      for (auto& st : r.stages)
        cells.push_back(cell(st));
      row(out, field, cells);
    };
    stage_row("audio_generated_frames", [](auto& st) { return count(st.audio_generated_frames); });
    stage_row("batch_id", [](auto& st) { return count(st.batch_id); });
    stage_row("batch_size", [](auto& st) { return count(st.batch_size); });
    if (images) stage_row("image_num", [](auto& st) { return count(st.image_num); });
    stage_row("num_tokens_in", [](auto& st) { return count(st.num_tokens_in); });
    stage_row("num_tokens_out", [](auto& st) { return count(st.num_tokens_out); });
    stage_row("postprocess_time_ms", [](auto& st) { return ms(st.postprocess_time_ms); });
    if (images) stage_row("resolution", [](auto& st) { return st.resolution; });
    stage_row("stage_gen_time_ms", [](auto& st) { return ms(st.stage_gen_time_ms); });
  }

  if (!r.transfers.empty()) {
    std::vector<std::string> cols;
    for (auto& t : r.transfers)
      cols.push_back(std::to_string(t.from_stage) + "->" + std::to_string(t.to_stage));
    header(out, "TransferEdgeStats", cols);
    auto edge_row = [&](const char* field, auto&& cell) {
      std::vector<std::string> cells;
      for (auto& t : r.transfers)
        cells.push_back(ms(cell(t)));
      row(out, field, cells);
    };
    edge_row("size_kbytes", [](auto& t) { return t.size_kbytes(); });
    edge_row("tx_time_ms", [](auto& t) { return t.tx_time_ms; });
    edge_row("rx_decode_time_ms", [](auto& t) { return t.rx_decode_time_ms; });
    edge_row("in_flight_time_ms", [](auto& t) { return t.in_flight_time_ms; });
  }
  return out;
}

std::string pipeline_stats::report() const {
  std::string out = format_summary(summary());
  for (auto& r : requests_)
    out += format_request(r);
  return out;
}

SHMETRICS_END_NAMESPACE
