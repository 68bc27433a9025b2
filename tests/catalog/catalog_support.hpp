// Catalog test support: the project's catalog, snapshots and text of a registry.
#pragma once

#include <catch2/catch.hpp>

#include <string>

#include <shmetrics/catalog/catalog.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/text_format.hpp>
#include "support.hpp"

namespace test {

inline const shmetrics::catalog& project_catalog() {
  static const shmetrics::catalog cat = [] {
    auto c = shmetrics::catalog::load(SHMETRICS_TEST_CATALOG);
    if (!c) FAIL(c.error().message());
    return std::move(*c);
  }();
  return cat;
}

inline shmetrics::segment_snapshot snapshot_of(const shmetrics::registry& reg) {
  auto rd = shmetrics::segment_reader::open(reg.path());
  REQUIRE(rd);
  auto s = rd->snapshot();
  REQUIRE(s);
  return std::move(*s);
}

inline std::string text_of(const shmetrics::registry& reg) {
  std::string out;
  shmetrics::encode_text(snapshot_of(reg).families, out);
  return out;
}

inline bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace test

#include <shmetrics/catalog/pipeline_stats.hpp>

namespace test {

/// The request of seed 000's worked example (Qwen3-Omni: thinker -> talker -> code2wav).
/// The raw values carry the digits the seed's tables round away, chosen so every
/// printed value matches the seed (and the seed's own rounding note: 245.895, not 245.896).
inline shmetrics::request_record worked_example() {
  shmetrics::request_record r;
  r.request_id = "chatcmpl-seed-000";
  r.arrival_ms = 0.057;  // the run started 0.057 ms before the request arrived
  r.finish_ms = 41299.190;
  auto stage = [](std::uint32_t id, std::uint64_t batch_id, std::uint64_t in, std::uint64_t out,
                  double post, double gen, std::uint64_t frames, double start, double end) {
    shmetrics::stage_event s;
    s.stage = id;
    s.batch_id = batch_id;
    s.batch_size = 1;
    s.num_tokens_in = in;
    s.num_tokens_out = out;
    s.postprocess_time_ms = post;
    s.stage_gen_time_ms = gen;
    s.audio_generated_frames = frames;
    s.start_ms = start;
    s.end_ms = end;
    return s;
  };
  r.stages = {stage(0, 38, 4860, 67, 256.158, 9910.007, 0, 0.057, 10192.346),
              stage(1, 274, 4826, 275, 0.491, 30379.198, 0, 10192.346, 40733.755),
              stage(2, 0, 4384, 0, 0.0, 160.745, 525525, 41000.0, 41207.496)};
  r.transfers = {{0, 0, 1, 0, 111900005.0, 78.7008, 111.8648, 2.0148},
                 {1, 0, 2, 0, 29504093.0, 18.7898, 31.7058, 2.8188}};
  return r;
}

}  // namespace test
