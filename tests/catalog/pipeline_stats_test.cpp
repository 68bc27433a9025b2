// Seed 000: the pipeline statistics, its formulas and its tables, on the worked example.
#include "catalog_support.hpp"

using namespace shmetrics;

TEST_CASE("the seed's worked example reproduces", "[catalog][pipeline]") {
  const request_record r = test::worked_example();
  const request_e2e_stats e = e2e_stats(r);
  REQUIRE(e.e2e_total_tokens == 5202);  // 4,860 + 67 + 275 + 0
  REQUIRE(e.transfers_total_kbytes == Approx(138089.939).margin(0.001));
  REQUIRE(e.transfers_total_time_ms == Approx(245.895).margin(0.001));
  REQUIRE(e.e2e_total_ms == Approx(41299.133).margin(0.001));

  pipeline_stats online(stats_scope::online);
  online.add(r, 0.0);
  const overall_summary s = online.summary();
  REQUIRE(s.e2e_requests == 1);
  REQUIRE(s.e2e_total_tokens == 5202);
  REQUIRE(s.e2e_wall_time_ms == Approx(41299.190).margin(0.001));
  REQUIRE(s.e2e_avg_tokens_per_s == Approx(125.959).margin(0.001));  // 5,202 x 1000 / wall
  REQUIRE(s.stage_wall_time_ms.size() == 3);
  REQUIRE(s.stage_wall_time_ms[2] == Approx(207.496).margin(0.001));

  // The tables, as the seed prints them.
  const std::string expected =
      "Overall Summary\n"
      "| Field | Value |\n"
      "|---|---|\n"
      "| e2e_requests | 1 |\n"
      "| e2e_wall_time_ms | 41,299.190 |\n"
      "| e2e_total_tokens | 5,202 |\n"
      "| e2e_avg_time_per_request_ms | 41,299.190 |\n"
      "| e2e_avg_tokens_per_s | 125.959 |\n"
      "| e2e_stage_0_wall_time_ms | 10,192.289 |\n"
      "| e2e_stage_1_wall_time_ms | 30,541.409 |\n"
      "| e2e_stage_2_wall_time_ms | 207.496 |\n"
      "RequestE2EStats\n"
      "| Field | Value |\n"
      "|---|---|\n"
      "| e2e_total_ms | 41,299.133 |\n"
      "| e2e_total_tokens | 5,202 |\n"
      "| transfers_total_time_ms | 245.895 |\n"
      "| transfers_total_kbytes | 138,089.939 |\n"
      "StageRequestStats\n"
      "| Field | 0 | 1 | 2 |\n"
      "|---|---|---|---|\n"
      "| audio_generated_frames | 0 | 0 | 525,525 |\n"
      "| batch_id | 38 | 274 | 0 |\n"
      "| batch_size | 1 | 1 | 1 |\n"
      "| num_tokens_in | 4,860 | 4,826 | 4,384 |\n"
      "| num_tokens_out | 67 | 275 | 0 |\n"
      "| postprocess_time_ms | 256.158 | 0.491 | 0.000 |\n"
      "| stage_gen_time_ms | 9,910.007 | 30,379.198 | 160.745 |\n"
      "TransferEdgeStats\n"
      "| Field | 0->1 | 1->2 |\n"
      "|---|---|---|\n"
      "| size_kbytes | 109,277.349 | 28,812.591 |\n"
      "| tx_time_ms | 78.701 | 18.790 |\n"
      "| rx_decode_time_ms | 111.865 | 31.706 |\n"
      "| in_flight_time_ms | 2.015 | 2.819 |\n";
  REQUIRE(online.report() == expected);
}

TEST_CASE("offline scope sums a batch, online is always one request", "[catalog][pipeline]") {
  request_record a = test::worked_example();
  request_record b = test::worked_example();
  b.request_id = "second";
  b.arrival_ms += 1000;
  b.finish_ms += 1000;
  for (auto& st : b.stages) {
    st.start_ms += 1000;
    st.end_ms += 1000;
  }
  pipeline_stats offline(stats_scope::offline, 0.0);
  offline.add(a);
  offline.add(b);
  auto s = offline.summary();
  REQUIRE(s.e2e_requests == 2);
  REQUIRE(s.e2e_total_tokens == 2 * 5202);
  REQUIRE(s.e2e_wall_time_ms == Approx(42299.190));
  REQUIRE(s.e2e_avg_time_per_request_ms == Approx(42299.190 / 2));
  REQUIRE(s.e2e_avg_tokens_per_s == Approx(2 * 5202 * 1000.0 / 42299.190));
  REQUIRE(s.stage_wall_time_ms[0] == Approx(10192.289 + 1000));

  pipeline_stats online(stats_scope::online);
  online.add(a, 0.0);
  online.add(b, 1000.0);
  REQUIRE(online.summary().e2e_requests == 1);
  REQUIRE(online.summary().e2e_wall_time_ms == Approx(41299.190));
}

TEST_CASE("numbers print with thousands separators and 3 decimals", "[catalog][pipeline]") {
  REQUIRE(format_number(0, 3) == "0.000");
  REQUIRE(format_number(999.9994, 3) == "999.999");
  REQUIRE(format_number(1000, 0) == "1,000");
  REQUIRE(format_number(1234567.891, 3) == "1,234,567.891");
  REQUIRE(format_number(-4860, 0) == "-4,860");
}
