// shmetrics-engine-sim end to end: a real server process, a real exporter process, real
// HTTP. Responses are OpenAI-shaped, bad input is refused without harm, and the vllm:*
// metrics the exporter serves agree exactly with what the responses report.
#include <catch2/catch.hpp>

#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "sim_support.hpp"

using namespace std::chrono_literals;
namespace dom = simdjson::dom;

namespace {

struct usage {
  std::uint64_t prompt = 0, completion = 0, total = 0, cached = 0;
};

usage usage_of(dom::element doc) {
  usage u;
  dom::element x = doc["usage"];
  u.prompt = x["prompt_tokens"].get_uint64().value();
  u.completion = x["completion_tokens"].get_uint64().value();
  u.total = x["total_tokens"].get_uint64().value();
  u.cached = x["prompt_tokens_details"]["cached_tokens"].get_uint64().value();
  return u;
}

std::string completion_body(const std::string& prompt, int max_tokens, bool stream = false) {
  return "{\"model\":\"sim\",\"prompt\":\"" + prompt +
         "\",\"max_tokens\":" + std::to_string(max_tokens) + ",\"ignore_eos\":true" +
         (stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "") + "}";
}

/// The SSE events of a streamed body; checks the framing as it goes.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> ev;
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto end = body.find("\n\n", pos);
    REQUIRE(end != std::string::npos);  // every event ends with a blank line
    std::string e = body.substr(pos, end - pos);
    pos = end + 2;
    if (e.starts_with(":")) continue;  // comment (keep-alive)
    REQUIRE(e.starts_with("data: "));
    REQUIRE(e.find('\n') == std::string::npos);
    ev.push_back(e.substr(6));
  }
  return ev;
}

/// A non-streamed completion of `max_tokens` that must succeed; its usage.
usage complete(const simtest::server& sim, const std::string& prompt, int max_tokens) {
  auto r =
      sim.client().Post("/v1/completions", completion_body(prompt, max_tokens), "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  dom::parser p;
  return usage_of(p.parse(r->body));
}

/// 24 prompts of 17 tokens, each asked once: 96 full blocks of 4 tokens that nobody asks
/// for again, enough to push older cached blocks out of a pool of 64.
void fill_pool(const simtest::server& sim, int max_tokens) {
  for (int i = 0; i < 24; ++i)
    complete(sim,
             std::to_string(i) +
                 " distinct words to fill the pool with blocks that nobody asks for again so"
                 " they age",
             max_tokens);
}

struct sim_env {
  test::unique_prefix up;
  simtest::server sim;
  simtest::exporter exp;
  explicit sim_env(std::vector<std::string> extra = {"--pipeline", "llm", "--served-model-name",
                                                     "sim"})
      : sim(simtest::sim_args(up, extra)), exp(up) {
    REQUIRE(sim.port > 0);
    REQUIRE(exp.port > 0);
  }
};

}  // namespace

TEST_CASE("engine-sim answers the OpenAI endpoints", "[engine_sim][api]") {
  sim_env env;
  auto c = env.sim.client();
  dom::parser parser;

  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  auto v = c.Get("/version");
  REQUIRE(v);
  CHECK(std::string(parser.parse(v->body)["version"].get_string().value()).size() > 0);
  auto m = c.Get("/v1/models");
  REQUIRE(m);
  {
    dom::element doc = parser.parse(m->body);
    CHECK(std::string_view(doc["object"].get_string().value()) == "list");
    CHECK(std::string_view(doc["data"].at(0)["id"].get_string().value()) == "sim");
  }

  SECTION("completion, not streamed") {
    auto r =
        c.Post("/v1/completions", completion_body("the quick brown fox", 7), "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    dom::element doc = parser.parse(r->body);
    CHECK(std::string_view(doc["object"].get_string().value()) == "text_completion");
    CHECK(std::string_view(doc["model"].get_string().value()) == "sim");
    CHECK(std::string_view(doc["id"].get_string().value()).starts_with("cmpl-"));
    dom::element ch = doc["choices"].at(0);
    CHECK(std::string_view(ch["finish_reason"].get_string().value()) == "length");
    CHECK(ch["stop_reason"].is_null());  // vLLM's field: present, null at length
    CHECK(std::string_view(ch["text"].get_string().value()).size() > 0);
    auto u = usage_of(doc);
    CHECK(u.prompt == 4);
    CHECK(u.completion == 7);
    CHECK(u.total == 11);
  }
  SECTION("chat, not streamed, token-id prompts and n") {
    auto r = c.Post("/v1/chat/completions",
                    R"({"messages":[{"role":"system","content":"be brief"},)"
                    R"({"role":"user","content":[{"type":"text","text":"hello"}]}],)"
                    R"("max_tokens":5,"ignore_eos":true,"n":2})",
                    "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    dom::element doc = parser.parse(r->body);
    CHECK(std::string_view(doc["object"].get_string().value()) == "chat.completion");
    dom::array choices = doc["choices"].get_array();
    CHECK(choices.size() == 2);
    for (dom::element ch : choices) {
      CHECK(std::string_view(ch["message"]["role"].get_string().value()) == "assistant");
      CHECK(std::string_view(ch["message"]["content"].get_string().value()).size() > 0);
    }
    CHECK(usage_of(doc).completion == 10);
    auto t =
        c.Post("/v1/completions", R"({"prompt":[1,2,3,4,5,6],"max_tokens":3})", "application/json");
    REQUIRE(t);
    REQUIRE(t->status == 200);
    dom::element td = parser.parse(t->body);
    CHECK(usage_of(td).prompt == 6);
    CHECK(usage_of(td).completion <= 3);
  }
  SECTION("streamed: SSE chunks, a finishing chunk, usage, [DONE]") {
    for (std::string path : {"/v1/completions", "/v1/chat/completions"}) {
      std::string body =
          path == "/v1/completions"
              ? completion_body("stream me please", 9, true)
              : R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":9,"ignore_eos":true,)"
                R"("stream":true,"stream_options":{"include_usage":true}})";
      auto r = c.Post(path.c_str(), body, "application/json");
      REQUIRE(r);
      REQUIRE(r->status == 200);
      CHECK(r->get_header_value("Content-Type").starts_with("text/event-stream"));
      auto ev = sse_events(r->body);
      REQUIRE(ev.size() >= 3);
      CHECK(ev.back() == "[DONE]");
      std::size_t deltas = 0, finishes = 0;
      usage u;
      for (std::size_t i = 0; i + 1 < ev.size(); ++i) {
        dom::element doc = parser.parse(ev[i]);
        dom::array choices = doc["choices"].get_array();
        if (choices.size() == 0) {
          u = usage_of(doc);
          continue;
        }
        dom::element ch = choices.at(0);
        CHECK(ch["stop_reason"].is_null());  // vLLM's field, in every chunk's choice
        if (ch["finish_reason"].is_null()) {
          ++deltas;
        } else {
          ++finishes;
          CHECK(std::string_view(ch["finish_reason"].get_string().value()) == "length");
        }
        if (path != "/v1/completions") {
          CHECK(std::string_view(doc["object"].get_string().value()) == "chat.completion.chunk");
          if (i == 0)
            CHECK(std::string_view(ch["delta"]["role"].get_string().value()) == "assistant");
        }
      }
      // A chunk holds what is new since the last one: one token per step, or several
      // when the client reads slower than the engine steps.
      CHECK(deltas >= 1);
      CHECK(deltas <= 9);
      CHECK(finishes == 1);
      CHECK(u.completion == 9);
    }
  }
}

TEST_CASE("bad requests get 400 or 404 with an OpenAI error, and the server keeps serving",
          "[engine_sim][errors]") {
  sim_env env;
  auto c = env.sim.client();
  dom::parser parser;
  auto expect = [&](const char* path, const std::string& body, int status, const char* param) {
    auto r = c.Post(path, body, "application/json");
    INFO(path << " " << body);
    REQUIRE(r);
    CHECK(r->status == status);
    dom::element doc;
    REQUIRE(!parser.parse(r->body).get(doc));
    dom::element e = doc["error"];
    CHECK(std::string_view(e["message"].get_string().value()).size() > 0);
    CHECK(e["code"].get_int64().value() == status);
    if (param) CHECK(std::string_view(e["param"].get_string().value()) == param);
  };
  expect("/v1/completions", "{\"prompt\": \"x\",", 400, nullptr);
  expect("/v1/completions", "[1,2]", 400, nullptr);
  expect("/v1/completions", "{}", 400, "prompt");
  expect("/v1/completions", R"({"prompt":""})", 400, "prompt");
  expect("/v1/completions", R"({"prompt":"x","max_tokens":"ten"})", 400, "max_tokens");
  expect("/v1/completions", R"({"prompt":"x","max_tokens":0})", 400, "max_tokens");
  expect("/v1/completions", R"({"prompt":"x","max_tokens":100000})", 400, "max_tokens");
  expect("/v1/completions", R"({"prompt":"x","n":0})", 400, "n");
  expect("/v1/completions", R"({"prompt":"x","stream":"yes"})", 400, "stream");
  expect("/v1/completions", R"({"prompt":[1,-2]})", 400, "prompt");
  expect("/v1/chat/completions", R"({"messages":[]})", 400, "messages");
  expect("/v1/chat/completions",
         R"({"messages":[{"role":"user","content":"x"}],"modalities":["smell"]})", 400,
         "modalities");
  expect("/v1/completions", R"({"model":"gpt-5","prompt":"x"})", 404, "model");
  expect("/v1/chat/completions", R"({"model":"gpt-5","messages":[{"role":"user","content":"x"}]})",
         404, "model");
  auto nf = c.Get("/v1/nothing");
  REQUIRE(nf);
  CHECK(nf->status == 404);
  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  auto ok = c.Post("/v1/completions", completion_body("still here", 2), "application/json");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  // Nothing bad reached the engine.
  auto s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:request_success_total") == 1);
}

TEST_CASE("vllm:* counters and histograms agree exactly with the responses",
          "[engine_sim][metrics]") {
  sim_env env({"--pipeline", "llm", "--served-model-name", "sim", "--block-size", "4"});
  auto before = env.exp.samples();
  CHECK(simtest::sum(before, "vllm:num_requests_running") == 0);
  dom::parser parser;
  std::uint64_t prompt = 0, completion = 0, itl = 0, cached = 0;
  int requests = 0;
  std::mutex mu;
  auto run = [&](int k) {
    auto c = env.sim.client();
    dom::parser p;
    for (int i = 0; i < 4; ++i) {
      // The same long prompt from every client: later requests hit the prefix cache.
      std::string text = "a shared system prompt that is long enough to fill several blocks " +
                         std::to_string(k * 10 + i);
      bool stream = (i + k) % 2 == 0;
      auto r = c.Post("/v1/completions", completion_body(text, 3 + i * 5 + k, stream),
                      "application/json");
      REQUIRE(r);
      REQUIRE(r->status == 200);
      usage u;
      if (stream) {
        auto ev = sse_events(r->body);
        u = usage_of(p.parse(ev[ev.size() - 2]));
      } else {
        u = usage_of(p.parse(r->body));
      }
      std::lock_guard lk(mu);
      prompt += u.prompt;
      completion += u.completion;
      itl += u.completion - 1;
      cached += u.cached;
      ++requests;
    }
  };
  std::vector<std::thread> clients;
  for (int k = 0; k < 4; ++k)
    clients.emplace_back(run, k);
  for (auto& t : clients)
    t.join();
  REQUIRE(requests == 16);
  auto s = env.exp.samples();
  auto d = [&](const std::string& name, const std::string& filter = "") {
    return simtest::sum(s, name, filter) - simtest::sum(before, name, filter);
  };
  CHECK(d("vllm:prompt_tokens_total") == prompt);
  CHECK(d("vllm:generation_tokens_total") == completion);
  CHECK(d("vllm:request_success_total", "finished_reason=\"length\"") == requests);
  CHECK(d("vllm:request_success_total") == requests);
  CHECK(d("vllm:time_to_first_token_seconds_count") == requests);
  CHECK(d("vllm:e2e_request_latency_seconds_count") == requests);
  CHECK(d("vllm:request_queue_time_seconds_count") == requests);
  CHECK(d("vllm:request_prompt_tokens_count") == requests);
  CHECK(d("vllm:request_prompt_tokens_sum") == prompt);
  CHECK(d("vllm:request_generation_tokens_sum") == completion);
  CHECK(d("vllm:inter_token_latency_seconds_count") == itl);
  CHECK(d("vllm:iteration_tokens_total_sum") >= completion);
  // Repeated prompts share blocks: the prefix cache hits, and usage reports it.
  CHECK(cached > 0);
  CHECK(d("vllm:prefix_cache_hits_total") >= cached);
  CHECK(d("vllm:prompt_tokens_cached_total") == cached);
  CHECK(d("vllm:prefix_cache_queries_total") >= prompt);
  // Idle again: the gauges are back to 0.
  CHECK(simtest::sum(s, "vllm:num_requests_running") == 0);
  CHECK(simtest::sum(s, "vllm:num_requests_waiting") == 0);
  CHECK(simtest::sum(s, "vllm:kv_cache_usage_perc") == 0);
  // No --speculative-config nor --kv-cache-metrics: none of their families, as vLLM.
  for (auto& [k, v] : s) {
    CHECK(!k.starts_with("vllm:spec_decode"));
    CHECK(!k.starts_with("vllm:kv_block"));
    CHECK(!k.starts_with("vllm:lora_requests_info"));
    CHECK(!k.starts_with("vllm:kv_offload"));
  }
}

TEST_CASE("a small KV pool preempts and still finishes every request", "[engine_sim][preempt]") {
  sim_env env({"--pipeline", "llm", "--served-model-name", "sim", "--block-size", "4",
               "--num-gpu-blocks", "24", "--max-num-batched-tokens", "64"});
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int k = 0; k < 4; ++k)
    clients.emplace_back([&, k] {
      auto c = env.sim.client();
      auto r = c.Post("/v1/completions", completion_body("client " + std::to_string(k), 30),
                      "application/json");
      if (r && r->status == 200) ++ok;
    });
  for (auto& t : clients)
    t.join();
  CHECK(ok == 4);
  auto s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:num_preemptions_total") > 0);
  CHECK(simtest::sum(s, "vllm:request_success_total", "finished_reason=\"length\"") == 4);
  CHECK(simtest::sum(s, "vllm:generation_tokens_total") == 120);
  CHECK(simtest::sum(s, "vllm:kv_cache_usage_perc") == 0);
}

TEST_CASE("--speculative-config: drafts, acceptances and positions add up", "[engine_sim][spec]") {
  sim_env env({"--pipeline", "llm", "--served-model-name", "sim", "--speculative-config",
               R"({"method": "ngram", "num_speculative_tokens": 3})"});
  constexpr int clients = 4, per_client = 2, max_tokens = 40;
  std::atomic<int> ok{0}, streamed_tokens{0};
  std::vector<std::thread> ts;
  for (int k = 0; k < clients; ++k)
    ts.emplace_back([&, k] {
      auto c = env.sim.client();
      dom::parser p;
      for (int i = 0; i < per_client; ++i) {
        bool stream = i == 1;
        auto r = c.Post("/v1/completions",
                        completion_body("draft " + std::to_string(k), max_tokens, stream),
                        "application/json");
        if (!r || r->status != 200) continue;
        if (stream) {  // several tokens per event now: usage still counts every one
          auto ev = sse_events(r->body);
          streamed_tokens += static_cast<int>(usage_of(p.parse(ev[ev.size() - 2])).completion);
        }
        ++ok;
      }
    });
  for (auto& t : ts)
    t.join();
  REQUIRE(ok == clients * per_client);
  CHECK(streamed_tokens == clients * max_tokens);
  auto s = env.exp.samples();
  const int requests = clients * per_client;
  const double drafts = simtest::sum(s, "vllm:spec_decode_num_drafts_total");
  const double draft_tokens = simtest::sum(s, "vllm:spec_decode_num_draft_tokens_total");
  const double accepted = simtest::sum(s, "vllm:spec_decode_num_accepted_tokens_total");
  const std::string per_pos = "vllm:spec_decode_num_accepted_tokens_per_pos_total";
  double pos[3];
  for (int j = 0; j < 3; ++j)
    pos[j] = simtest::sum(s, per_pos, "position=\"" + std::to_string(j) + "\"");
  CHECK(simtest::sum(s, "vllm:generation_tokens_total") == requests * max_tokens);
  CHECK(drafts > 0);
  CHECK(draft_tokens == 3 * drafts);
  // Positions 0..k-1, each accepted only after the ones before it.
  CHECK(s.count(per_pos + "{engine=\"0\",model_name=\"sim\",position=\"2\"}") == 1);
  CHECK(s.count(per_pos + "{engine=\"0\",model_name=\"sim\",position=\"3\"}") == 0);
  CHECK(pos[0] >= pos[1]);
  CHECK(pos[1] >= pos[2]);
  CHECK(pos[0] + pos[1] + pos[2] == accepted);
  // Each decode step of a request gives its accepted drafts plus one token, so the tokens
  // after the first are drafts + accepted, less what max_tokens cut from a last step.
  const double decoded = requests * (max_tokens - 1);
  CHECK(drafts + accepted >= decoded);
  CHECK(drafts + accepted <= decoded + requests * 3);
  // One inter-token latency per decode step, not per token: fewer than without drafts.
  CHECK(simtest::sum(s, "vllm:inter_token_latency_seconds_count") == drafts);
  CHECK(drafts < decoded);
  // The default acceptance rate 0.7 per position: 0.51 of the draft tokens on average.
  CHECK(accepted / draft_tokens > 0.3);
  CHECK(accepted / draft_tokens < 0.75);
}

TEST_CASE("--kv-cache-metrics: block lifetimes, idle times and reuse gaps",
          "[engine_sim][kv_residency]") {
  // 64 blocks of 4 tokens, every cached block followed.
  sim_env env({"--pipeline", "llm", "--served-model-name", "sim", "--kv-cache-metrics",
               "--kv-cache-metrics-sample", "1", "--num-gpu-blocks", "64", "--block-size", "4"});
  auto t0 = std::chrono::steady_clock::now();
  // The same prompt again: its cached blocks are reused.
  const std::string shared = "one two three four five six seven eight nine ten eleven twelve";
  complete(env.sim, shared, 8);
  complete(env.sim, shared, 8);
  auto s = env.exp.samples();
  const double reuses = simtest::sum(s, "vllm:kv_block_reuse_gap_seconds_count");
  // 12 prompt tokens: 3 full blocks; a hit leaves the last token to compute, so 2 hit.
  CHECK(reuses == 2);
  CHECK(simtest::sum(s, "vllm:kv_block_lifetime_seconds_count") == 0);  // nothing evicted yet
  // Distinct prompts fill the pool: cached blocks are evicted, oldest idle first.
  fill_pool(env.sim, 8);
  s = env.exp.samples();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double evicted = simtest::sum(s, "vllm:kv_block_lifetime_seconds_count");
  CHECK(evicted > 0);
  CHECK(simtest::sum(s, "vllm:kv_block_idle_before_evict_seconds_count") == evicted);
  // A block is idle for part of its life at most, and lives no longer than the test.
  CHECK(simtest::sum(s, "vllm:kv_block_idle_before_evict_seconds_sum") <=
        simtest::sum(s, "vllm:kv_block_lifetime_seconds_sum"));
  CHECK(simtest::sum(s, "vllm:kv_block_lifetime_seconds_sum") <= evicted * elapsed);
  CHECK(simtest::sum(s, "vllm:kv_block_reuse_gap_seconds_count") == reuses);
  CHECK(s.count("vllm:kv_block_lifetime_seconds_bucket{engine=\"0\",le=\"1800.0\",model_name="
                "\"sim\"}") == 1);  // vLLM's KV_CACHE_RESIDENCY buckets
}

TEST_CASE("--enable-lora: adapters as models, max_loras per batch, lora_requests_info",
          "[engine_sim][lora]") {
  // Steps of 4 ms: 40 tokens take ~160 ms, so requests for the two adapters overlap.
  sim_env env({"--pipeline", "llm", "--served-model-name", "sim", "--time-scale", "0.2",
               "--enable-lora", "--max-loras", "1", "--lora-modules", "sql=/loras/sql",
               "chat=/loras/chat"});
  dom::parser parser;
  auto models = env.sim.client().Get("/v1/models");
  REQUIRE(models);
  dom::element list = parser.parse(models->body);
  std::vector<std::string> ids, parents;
  for (dom::element m : list["data"].get_array()) {
    ids.emplace_back(std::string_view(m["id"].get_string().value()));
    parents.emplace_back(m["parent"].is_null() ? "null"
                                               : std::string(m["parent"].get_string().value()));
  }
  CHECK(ids == std::vector<std::string>{"sim", "sql", "chat"});
  CHECK(parents == std::vector<std::string>{"null", "sim", "sim"});

  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (const char* m : {"sql", "chat", "sql", "chat"})
    ts.emplace_back([&, m] {
      dom::parser p;
      auto r = env.sim.client().Post("/v1/completions",
                                     std::string(R"({"model":")") + m +
                                         R"(","prompt":"hi","max_tokens":40,"ignore_eos":true})",
                                     "application/json");
      if (r && r->status == 200 &&
          std::string_view(p.parse(r->body)["model"].get_string().value()) == m)
        ++ok;  // vLLM answers with the adapter's name
    });
  for (auto& t : ts)
    t.join();
  CHECK(ok == 4);
  auto bad = env.sim.client().Post("/v1/completions", R"({"model":"nope","prompt":"x"})",
                                   "application/json");
  REQUIRE(bad);
  CHECK(bad->status == 404);

  // One adapter per batch: at some step one ran while the other waited. Every adapter set
  // seen has its series (value: the wall-clock time it was last seen); the newest is the
  // idle one, nothing running or waiting.
  auto s = env.exp.samples();
  const std::string info = "vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=";
  bool one_ran_other_waited = s.count(info + "\"sql\",waiting_lora_adapters=\"chat\"}") ||
                              s.count(info + "\"chat\",waiting_lora_adapters=\"sql\"}");
  CHECK(one_ran_other_waited);
  CHECK(s.count(info + "\"sql,chat\",waiting_lora_adapters=\"\"}") == 0);  // never both
  double newest = 0, idle = s[info + "\"\",waiting_lora_adapters=\"\"}"];
  for (auto& [k, v] : s)
    if (k.starts_with("vllm:lora_requests_info{")) newest = std::max(newest, v);
  CHECK(idle == newest);
  double wall =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(idle > wall - 60);
  CHECK(idle <= wall);
  CHECK(simtest::sum(s, "vllm:request_success_total") == 4);  // the base model's name
}

namespace {
/// 64 GPU blocks of 4 tokens and an OffloadingConnector CPU tier of 1000 blocks.
std::vector<std::string> offload_sim_args() {
  return {"--pipeline",
          "llm",
          "--served-model-name",
          "sim",
          "--num-gpu-blocks",
          "64",
          "--block-size",
          "4",
          "--kv-transfer-config",
          R"({"kv_connector": "OffloadingConnector", "kv_role": "kv_both",)"
          R"( "kv_connector_extra_config": {"num_cpu_blocks": 1000}})"};
}
}  // namespace

TEST_CASE("--kv-transfer-config OffloadingConnector: stores, loads, external cache hits",
          "[engine_sim][kv_offload]") {
  sim_env env(offload_sim_args());
  const std::string again =
      "a prompt that comes back after the pool forgot it and the offload tier did not";
  complete(env.sim, again, 4);
  // Distinct prompts push its blocks out of the GPU pool (not out of the CPU tier).
  fill_pool(env.sim, 4);
  auto u = complete(env.sim, again, 4);
  auto s = env.exp.samples();
  const double block_bytes = 4 * 57344.0;  // 4 tokens of a 7B model's bf16 KV
  const double hits = simtest::sum(s, "vllm:external_prefix_cache_hits_total");
  CHECK(hits > 0);
  CHECK(u.cached >= hits);  // the returning prompt's cached tokens: loaded (and local)
  CHECK(simtest::sum(s, "vllm:prompt_tokens_by_source_total", "external_kv_transfer") == hits);
  CHECK(simtest::sum(s, "vllm:external_prefix_cache_queries_total") >=
        simtest::sum(s, "vllm:prompt_tokens_total"));
  const double loaded = simtest::sum(s, "vllm:kv_offload_load_bytes_total");
  const double stored = simtest::sum(s, "vllm:kv_offload_store_bytes_total");
  CHECK(loaded == hits / 4 * block_bytes);
  CHECK(stored > 0);
  CHECK(std::fmod(stored, block_bytes) == 0);
  CHECK(simtest::sum(s, "vllm:kv_offload_load_size_sum") == loaded);
  CHECK(simtest::sum(s, "vllm:kv_offload_store_size_sum") == stored);
  CHECK(simtest::sum(s, "vllm:kv_offload_load_time_total") == Approx(loaded / 25e9));
  // vLLM's deprecated duplicates, by transfer_type.
  CHECK(simtest::sum(s, "vllm:kv_offload_total_bytes_total", "CPU_to_GPU") == loaded);
  CHECK(simtest::sum(s, "vllm:kv_offload_total_bytes_total", "GPU_to_CPU") == stored);
  CHECK(simtest::sum(s, "vllm:kv_offload_size_count", "GPU_to_CPU") ==
        simtest::sum(s, "vllm:kv_offload_store_size_count"));
}

namespace {

// 64 token ids: 4 whole KV blocks of 16 tokens.
std::string prompt_ids() {
  std::string ids;
  for (int i = 0; i < 64; ++i)
    ids += (i ? "," : "") + std::to_string(1000 + i);
  return "[" + ids + "]";
}

// What vLLM's toy proxy sends the prefill instance: the request, max_tokens 1, not
// streamed, and the kv_transfer_params that ask it to keep the KV for a decode instance.
const std::string proxy_to_prefill =
    R"("max_tokens":1,"stream":false,"kv_transfer_params":{"do_remote_decode":true,)"
    R"("do_remote_prefill":false,"remote_engine_id":null,"remote_block_ids":null,)"
    R"("remote_host":null,"remote_port":null})";

// The prefill's answer to the proxy: its kv_transfer_params, as JSON text. It names every
// block of the prompt (16 tokens each).
std::string prefill(const simtest::server& p, const std::string& path, const std::string& request) {
  auto r = p.client().Post(path, "{" + request + "," + proxy_to_prefill + "}", "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  dom::parser parser;
  dom::element doc = parser.parse(r->body);
  dom::element kv = doc["kv_transfer_params"];
  CHECK(kv["do_remote_prefill"].get_bool().value());
  CHECK(!kv["do_remote_decode"].get_bool().value());
  CHECK(kv["remote_block_ids"].get_array().size() == (usage_of(doc).prompt + 15) / 16);
  CHECK(std::string_view(kv["remote_request_id"].get_string().value()) ==
        std::string_view(doc["id"].get_string().value()));
  CHECK(std::string_view(kv["remote_engine_id"].get_string().value()).size() > 0);
  CHECK(std::string_view(kv["remote_host"].get_string().value()) == "127.0.0.1");
  CHECK(kv["remote_port"].get_int64().value() == p.port);
  CHECK(kv["tp_size"].get_int64().value() == 1);
  CHECK(usage_of(doc).completion == 1);
  return simdjson::minify(kv);
}

/// Polls `exp` until `name` reaches `want` (at most `s` seconds); its last value.
double await_sum(const simtest::exporter& exp, const std::string& name, double want, double s) {
  double v = 0;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(s);
       std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(50ms))
    if ((v = simtest::sum(exp.samples(), name)) == want) break;
  return v;
}

}  // namespace

TEST_CASE("--kv-transfer-config NixlConnector: a prefill and a decode instance, as vLLM's proxy",
          "[engine_sim][nixl]") {
  // A short VLLM_NIXL_ABORT_REQUEST_TIMEOUT, so a prefill whose decode never comes expires.
  auto nixl = [](const char* extra) {
    return std::vector<std::string>{
        "--pipeline",
        "llm",
        "--served-model-name",
        "sim",
        "--kv-transfer-config",
        std::string(R"({"kv_connector": "NixlConnector", "kv_role": "kv_both",)") +
            R"( "kv_connector_extra_config": {"abort_request_timeout": 1)" + extra + "}}"};
  };
  sim_env p(nixl("")), d(nixl("")), failing(nixl(R"(, "failure_rate": 1)"));
  const std::string ids = prompt_ids();
  const double bytes = 64 * 57344.0;  // 4 blocks of 16 tokens of a 7B model's bf16 KV
  const double bw = 40e9;

  // 1. Completions: the prefill keeps the prompt's 4 blocks for the decode instance.
  std::string kv = prefill(p.sim, "/v1/completions", R"("model":"sim","prompt":)" + ids);
  CHECK(simtest::sum(p.exp.samples(), "vllm:kv_cache_usage_perc") > 0);
  // The decode instance pulls them and streams the answer.
  auto r = d.sim.client().Post("/v1/completions",
                               R"({"model":"sim","prompt":)" + ids +
                                   R"(,"max_tokens":8,"ignore_eos":true,"stream":true,)"
                                   R"("stream_options":{"include_usage":true},)"
                                   R"("kv_transfer_params":)" +
                                   kv + "}",
                               "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  auto ev = sse_events(r->body);
  REQUIRE(ev.size() >= 3);
  CHECK(ev.back() == "[DONE]");
  dom::parser parser;
  auto u = usage_of(parser.parse(ev[ev.size() - 2]));
  CHECK(u.prompt == 64);
  CHECK(u.completion == 8);
  CHECK(u.cached == 63);  // vLLM recomputes the last prompt token to sample the first
  auto s = d.exp.samples();
  CHECK(simtest::sum(s, "vllm:nixl_bytes_transferred_count") == 1);  // one transfer
  CHECK(simtest::sum(s, "vllm:nixl_bytes_transferred_sum") == bytes);
  CHECK(simtest::sum(s, "vllm:nixl_num_descriptors_sum") == 4 * 56);  // blocks x K, V regions
  // The transfer takes its post time plus the bytes at the link's bandwidth.
  const double xfer = simtest::sum(s, "vllm:nixl_xfer_time_seconds_sum");
  const double post = simtest::sum(s, "vllm:nixl_post_time_seconds_sum");
  CHECK(simtest::sum(s, "vllm:nixl_xfer_time_seconds_count") == 1);
  CHECK(simtest::sum(s, "vllm:nixl_post_time_seconds_count") == 1);
  CHECK(post > 0);
  CHECK(post < 0.001);
  CHECK(xfer - post == Approx(bytes / bw));
  CHECK(simtest::sum(s, "vllm:prompt_tokens_by_source_total", "external_kv_transfer") == 64);
  CHECK(simtest::sum(s, "vllm:external_prefix_cache_hits_total") == 64);
  CHECK(simtest::sum(s, "vllm:prompt_tokens_total") == 64);
  CHECK(simtest::sum(s, "vllm:generation_tokens_total") == 8);

  // 2. Chat: the same flow, the decode answer not streamed.
  const std::string chat =
      R"("model":"sim","messages":[{"role":"user","content":"tell me about disaggregated )"
      R"(prefill and decode, at length"}])";
  kv = prefill(p.sim, "/v1/chat/completions", chat);
  r = d.sim.client().Post("/v1/chat/completions",
                          "{" + chat + R"(,"max_tokens":4,"kv_transfer_params":)" + kv + "}",
                          "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  dom::element doc = parser.parse(r->body);
  CHECK(usage_of(doc).cached == usage_of(doc).prompt - 1);
  CHECK(doc["kv_transfer_params"].error() == simdjson::NO_SUCH_FIELD);  // D answers without
  CHECK(await_sum(d.exp, "vllm:nixl_bytes_transferred_count", 2, 1) == 2);

  // 3. A prefill whose decode never comes, and one whose pull fails (recomputed on D):
  // both expire on the prefill instance after the timeout; the two read ones do not.
  prefill(p.sim, "/v1/completions", R"("model":"sim","prompt":"nobody decodes this one")");
  kv = prefill(p.sim, "/v1/completions", R"("model":"sim","prompt":"this pull fails")");
  r = failing.sim.client().Post("/v1/completions",
                                R"({"model":"sim","prompt":"this pull fails","max_tokens":3,)"
                                R"("ignore_eos":true,"kv_transfer_params":)" +
                                    kv + "}",
                                "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(usage_of(parser.parse(r->body)).cached == 0);
  s = failing.exp.samples();
  CHECK(simtest::sum(s, "vllm:nixl_num_failed_transfers_total") == 1);
  CHECK(simtest::sum(s, "vllm:nixl_bytes_transferred_count") == 0);
  CHECK(simtest::sum(s, "vllm:prompt_tokens_by_source_total", "external_kv_transfer") == 0);
  CHECK(await_sum(p.exp, "vllm:nixl_num_kv_expired_reqs_total", 2, 3) == 2);
  std::this_thread::sleep_for(300ms);  // nothing else expires
  s = p.exp.samples();
  CHECK(simtest::sum(s, "vllm:nixl_num_kv_expired_reqs_total") == 2);
  CHECK(simtest::sum(s, "vllm:kv_cache_usage_perc") == 0);
  CHECK(simtest::sum(d.exp.samples(), "vllm:nixl_num_failed_notifications_total") == 0);

  // 4. Without kv_transfer_params both serve a request as usual.
  for (auto* e : {&p, &d}) {
    r = e->sim.client().Post("/v1/completions", completion_body("an ordinary request", 4),
                             "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    doc = parser.parse(r->body);
    CHECK(usage_of(doc).completion == 4);
    CHECK(doc["kv_transfer_params"].error() == simdjson::NO_SUCH_FIELD);
  }
  CHECK(simtest::sum(d.exp.samples(), "vllm:nixl_bytes_transferred_count") == 2);
  CHECK(simtest::sum(p.exp.samples(), "vllm:nixl_num_kv_expired_reqs_total") == 2);
}

TEST_CASE("OffloadingConnector: CPU-tier usage gauges, lookup delays, no allocation failure",
          "[engine_sim][kv_offload]") {
  sim_env env(offload_sim_args());
  std::string ids;  // 64 token ids: 16 blocks of 4
  for (int i = 0; i < 64; ++i)
    ids += (i ? "," : "") + std::to_string(2000 + i);
  const std::string body = R"({"model":"sim","prompt":[)" + ids + R"(],"max_tokens":1})";
  auto s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:kv_offload_cpu_cache_usage_perc") == 0);
  bool failure_series = false;  // registered at start, at 0
  for (auto& [k, v] : s)
    failure_series = failure_series || k.starts_with("vllm:kv_offload_allocation_failure_total{");
  CHECK(failure_series);
  // One step: its 16 new blocks go to the tier, pinned by the store while it runs.
  auto r = env.sim.client().Post("/v1/completions", body, "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:kv_offload_cpu_cache_write_usage_perc") == Approx(0.016));
  CHECK(simtest::sum(s, "vllm:kv_offload_cpu_cache_read_usage_perc") == 0);
  CHECK(simtest::sum(s, "vllm:kv_offload_cpu_cache_usage_perc") == Approx(0.016));
  // The GPU pool forgets it; back, its 15 blocks below the last token load from the tier.
  fill_pool(env.sim, 1);
  r = env.sim.client().Post("/v1/completions", body, "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:kv_offload_cpu_cache_write_usage_perc") == 0);
  CHECK(simtest::sum(s, "vllm:kv_offload_cpu_cache_read_usage_perc") == Approx(0.015));
  CHECK(simtest::sum(s, "vllm:kv_offload_cpu_cache_usage_perc") == Approx(0.015));
  for (const char* g :
       {"vllm:kv_offload_cpu_cache_usage_perc", "vllm:kv_offload_cpu_cache_write_usage_perc",
        "vllm:kv_offload_cpu_cache_read_usage_perc"}) {
    CHECK(simtest::sum(s, g) >= 0);
    CHECK(simtest::sum(s, g) <= 1);
  }
  // One lookup call per admitted request (26), each 10 us + 1 us per block probed.
  CHECK(simtest::sum(s, "vllm:kv_offload_lookup_sync_delay_seconds_count") == 26);
  CHECK(simtest::sum(s, "vllm:kv_offload_lookup_sync_delay_seconds_bucket", "le=\"5e-05\"") == 26);
  CHECK(simtest::sum(s, "vllm:kv_offload_lookup_sync_delay_seconds_bucket", "le=\"1e-05\"") == 0);
  // The LRU tier always evicts for a store and never defers a lookup.
  CHECK(simtest::sum(s, "vllm:kv_offload_allocation_failure_total") == 0);
  CHECK(simtest::sum(s, "vllm:kv_offload_lookup_async_delay_seconds_count") == 0);
}

TEST_CASE("--enable-sleep-mode: /sleep, /wake_up, /is_sleeping as vLLM's dev-mode endpoints",
          "[engine_sim][sleep]") {
  sim_env env({"--pipeline", "llm", "--served-model-name", "sim", "--enable-sleep-mode"});
  dom::parser parser;
  auto get = [&](const std::string& path) {
    auto r = env.sim.client().Get(path);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return r->body;
  };
  auto post = [&](const std::string& path) {
    auto r = env.sim.client().Post(path, "", "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return r->body;
  };
  auto state = [&](const char* s) {
    return simtest::sum(env.exp.samples(), "vllm:engine_sleep_state",
                        std::string("sleep_state=\"") + s + "\"");
  };
  auto ops = [&](const char* op) {
    return simtest::sum(env.exp.samples(), "vllm:sleep_mode_operation_duration_seconds_count",
                        std::string("operation=\"") + op + "\"");
  };
  CHECK(get("/is_sleeping") == R"({"is_sleeping":false})");
  CHECK(state("awake") == 1);
  CHECK(ops("sleep") == 0);

  // A long request in flight is aborted by the sleep (mode=abort, the default).
  int longer_status = 0;  // checked after join (Catch2 asserts on one thread)
  std::thread longer([&] {
    auto r =
        env.sim.client().Post("/v1/completions", completion_body("long", 3000), "application/json");
    longer_status = r ? r->status : -1;
  });
  for (int i = 0; i < 200 && simtest::sum(env.exp.samples(), "vllm:num_requests_running") == 0; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(post("/sleep?level=1") == R"({"status":"sleeping","level":1})");
  longer.join();
  CHECK(longer_status > 0);
  auto s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:request_success_total", "finished_reason=\"abort\"") == 1);
  CHECK(get("/is_sleeping") == R"({"is_sleeping":true})");
  CHECK(state("awake") == 0);
  CHECK(state("weights_offloaded") == 1);
  CHECK(state("discard_all") == 0);
  CHECK(ops("sleep") == 1);
  CHECK(simtest::sum(s, "vllm:sleep_mode_operations_in_flight") == 0);

  // Asleep, a request is accepted and held in the queue until wake_up.
  std::atomic<bool> answered{false};
  int held_status = 0;
  std::string held_body;
  std::thread held([&] {
    auto r =
        env.sim.client().Post("/v1/completions", completion_body("held", 5), "application/json");
    held_status = r ? r->status : -1;
    if (r) held_body = r->body;
    answered = true;
  });
  std::this_thread::sleep_for(400ms);
  CHECK_FALSE(answered.load());
  CHECK(post("/wake_up") == R"({"status":"awake","tags_woken":null})");
  held.join();
  REQUIRE(held_status == 200);
  CHECK(usage_of(parser.parse(held_body)).completion == 5);
  CHECK(get("/is_sleeping") == R"({"is_sleeping":false})");
  CHECK(state("awake") == 1);
  CHECK(state("weights_offloaded") == 0);
  CHECK(ops("wake") == 1);

  // Level 2, woken one tag at a time.
  CHECK(post("/sleep?level=2") == R"({"status":"sleeping","level":2})");
  CHECK(state("discard_all") == 1);
  CHECK(post("/wake_up?tags=weights") == R"({"status":"sleeping","tags_woken":["weights"]})");
  CHECK(get("/is_sleeping") == R"({"is_sleeping":true})");
  CHECK(state("awake") == 0);
  CHECK(post("/wake_up?tags=kv_cache") == R"({"status":"awake","tags_woken":["kv_cache"]})");
  CHECK(state("awake") == 1);
  CHECK(state("discard_all") == 0);
  s = env.exp.samples();
  CHECK(ops("sleep") == 2);
  CHECK(ops("wake") == 3);
  CHECK(simtest::sum(s, "vllm:sleep_mode_operation_duration_seconds_sum") > 0);
  CHECK(simtest::sum(s, "vllm:sleep_mode_operation_duration_seconds_bucket",
                     "operation=\"release_kv_cache_memory\"") == 0);
  auto bad = env.sim.client().Post("/sleep?level=3", "", "application/json");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(complete(env.sim, "awake again", 3).completion == 3);
}

TEST_CASE("a client that goes away aborts its request; the gauges return to 0",
          "[engine_sim][abort]") {
  sim_env env({"--pipeline", "llm", "--served-model-name", "sim", "--time-scale", "0.2"});
  std::string url = "http://127.0.0.1:" + std::to_string(env.sim.port) + "/v1/completions";
  auto aborts = [&] {
    return simtest::sum(env.exp.samples(), "vllm:request_success_total",
                        "finished_reason=\"abort\"");
  };
  auto wait_idle = [&] {
    std::map<std::string, double> s;
    for (int i = 0; i < 10; ++i) {  // within a second
      s = env.exp.samples();
      if (simtest::sum(s, "vllm:num_requests_running") == 0 &&
          simtest::sum(s, "vllm:kv_cache_usage_perc") == 0)
        break;
      std::this_thread::sleep_for(100ms);
    }
    CHECK(simtest::sum(s, "vllm:num_requests_running") == 0);
    CHECK(simtest::sum(s, "vllm:num_requests_waiting") == 0);
    CHECK(simtest::sum(s, "vllm:kv_cache_usage_perc") == 0);
  };

  SECTION("streaming client killed after its first tokens") {
    test::child curl({"/usr/bin/curl", "-sN", url, "-H", "Content-Type: application/json", "-d",
                      completion_body("talk for a long time", 3000, true)});
    std::string first = curl.line();
    REQUIRE(first.starts_with("data: {"));
    auto running = simtest::sum(env.exp.samples(), "vllm:num_requests_running");
    CHECK(running == 1);
    curl.kill();
    curl.wait();
    for (int i = 0; i < 20 && aborts() < 1; ++i)
      std::this_thread::sleep_for(50ms);
    CHECK(aborts() == 1);
    wait_idle();
  }
  SECTION("non-streaming client killed while it waits") {
    test::child curl({"/usr/bin/curl", "-s", url, "-H", "Content-Type: application/json", "-d",
                      completion_body("talk for a long time", 3000)});
    for (int i = 0; i < 40 && simtest::sum(env.exp.samples(), "vllm:num_requests_running") < 1; ++i)
      std::this_thread::sleep_for(50ms);
    curl.kill();
    curl.wait();
    for (int i = 0; i < 20 && aborts() < 1; ++i)
      std::this_thread::sleep_for(50ms);
    CHECK(aborts() == 1);
    wait_idle();
  }
  // The server is fine afterwards.
  auto c = env.sim.client();
  auto r = c.Post("/v1/completions", completion_body("after", 2), "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("the omni pipeline records stages, transfers and audio", "[engine_sim][omni]") {
  sim_env env(
      {"--pipeline", "omni", "--log-stats", "--replicas=1,2,1", "--served-model-name", "omni"});
  auto c = env.sim.client();
  dom::parser parser;
  for (int i = 0; i < 3; ++i) {
    auto r = c.Post("/v1/chat/completions",
                    R"({"messages":[{"role":"user","content":"say something"}],"max_tokens":12,)"
                    R"("ignore_eos":true,"modalities":["text","audio"]})",
                    "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    dom::element doc = parser.parse(r->body);
    dom::element audio = doc["choices"].at(0)["message"]["audio"];
    CHECK(audio["sample_rate"].get_double().value() == 24000);
    CHECK(audio["frames"].get_double().value() == 12 * 4 * 1920);
  }
  auto text = c.Post("/v1/chat/completions",
                     R"({"messages":[{"role":"user","content":"text only"}],"max_tokens":4})",
                     "application/json");
  REQUIRE(text);
  CHECK(text->status == 200);
  auto s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:omni_requests_success_total") == 4);
  CHECK(simtest::sum(s, "vllm:omni_e2e_request_latency_s_count") == 4);
  CHECK(simtest::sum(s, "vllm:omni_audio_frames_total") == 3 * 12 * 4 * 1920);
  CHECK(simtest::sum(s, "vllm:omni_audio_ttfp_s_count") >= 3);
  CHECK(simtest::sum(s, "vllm:omni_transfer_size_bytes_count", "from_stage=\"0\"") == 3);
  CHECK(simtest::sum(s, "vllm:omni_transfer_size_bytes_count", "from_stage=\"1\"") == 3);
  // vLLM's families, reshaped to stage + replica: thinker tokens and talker tokens.
  CHECK(simtest::sum(s, "vllm:request_success_total", "stage=\"0\"") == 4);
  CHECK(simtest::sum(s, "vllm:request_success_total", "stage=\"1\"") == 3);
  CHECK(simtest::sum(s, "vllm:generation_tokens_total", "stage=\"1\"") == 3 * 12 * 4);

  SECTION("without --log-stats the families are there, without series") {
    test::unique_prefix up2;
    simtest::server sim2(simtest::sim_args(up2, {"--pipeline", "omni"}));
    simtest::exporter exp2(up2);
    auto r = sim2.client().Post(
        "/v1/chat/completions",
        R"({"messages":[{"role":"user","content":"x"}],"max_tokens":3,"modalities":["audio"]})",
        "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    auto s2 = exp2.samples();
    CHECK(simtest::sum(s2, "vllm:omni_requests_success_total") == 0);
    CHECK(simtest::sum(s2, "vllm:generation_tokens_total") == 0);
    auto m = exp2.client().Get("/metrics");
    REQUIRE(m);
    CHECK(m->body.find("# TYPE vllm:omni_audio_rtf histogram") != std::string::npos);
  }
}

TEST_CASE("data-parallel engines write their own segments, merged by the exporter",
          "[engine_sim][dp]") {
  sim_env env({"--pipeline", "llm", "--served-model-name", "sim", "--data-parallel-size", "2"});
  std::vector<std::thread> clients;
  for (int k = 0; k < 4; ++k)
    clients.emplace_back([&, k] {
      auto r = env.sim.client().Post(
          "/v1/completions", completion_body("dp " + std::to_string(k), 5), "application/json");
      CHECK((r && r->status == 200));
    });
  for (auto& t : clients)
    t.join();
  auto s = env.exp.samples();
  CHECK(s["shmetrics_exporter_segments{state=\"alive\"}"] == 3);  // 2 engines, the API layer
  CHECK(simtest::sum(s, "vllm:generation_tokens_total") == 20);
  CHECK(simtest::sum(s, "vllm:request_success_total", "engine=\"0\"") > 0);
  CHECK(simtest::sum(s, "vllm:request_success_total", "engine=\"1\"") > 0);
}

TEST_CASE("engine-sim refuses bad flags with one line naming the flag", "[engine_sim][flags]") {
  auto check = [](const std::string& args, const std::string& needle) {
    auto [rc, out] = test::run(std::string(ENGINE_SIM_BIN) + " " + args + " 2>&1");
    INFO(args << " -> " << out);
    CHECK(rc == 2);
    CHECK(out.find(needle) != std::string::npos);
    CHECK(std::count(out.begin(), out.end(), '\n') == 1);
  };
  check("--no-such-flag", "--no-such-flag");
  check("--port=http", "--port");
  check("--max-num-seqs 0", "--max-num-seqs");
  check("--pipeline video", "--pipeline");
  check("--pipeline diffusion --replicas 1,1,1", "--replicas");
  check("--replicas 1,2", "--replicas");
  check("--time-scale", "--time-scale");
  check("--speculative-config ngram", "--speculative-config");
  check("--pipeline llm --speculative-config '{\"num_speculative_tokens\": 0}'",
        "num_speculative_tokens");
  check("--pipeline omni --speculative-config '{\"num_speculative_tokens\": 2}'", "--pipeline llm");
  check("--pipeline omni --kv-cache-metrics", "--pipeline llm");
  check("--kv-cache-metrics-sample 2", "--kv-cache-metrics-sample");
  check("--pipeline llm --lora-modules a=/x", "--enable-lora");
  check("--pipeline llm --enable-lora --lora-modules a", "--lora-modules");
  check("--pipeline omni --enable-lora", "--pipeline llm");
  check("--pipeline llm --kv-transfer-config '{\"kv_connector\": \"NixlConnector\"}'", "kv_role");
  check(
      "--pipeline llm --kv-transfer-config "
      "'{\"kv_connector\": \"MultiConnector\", \"kv_role\": \"kv_both\"}'",
      "one connector");
  check(
      "--pipeline llm --kv-transfer-config "
      "'{\"kv_connector\": \"NixlConnector\", \"kv_role\": \"both\"}'",
      "kv_role");
  check(
      "--pipeline llm --kv-transfer-config '{\"kv_connector\": \"NixlConnector\", "
      "\"kv_role\": \"kv_both\", \"kv_connector_extra_config\": {\"failure_rate\": 2}}'",
      "failure_rate");
  check(
      "--pipeline llm --kv-transfer-config '{\"kv_connector\": \"NixlConnector\", "
      "\"kv_role\": \"kv_consumer\", \"kv_connector_extra_config\": "
      "{\"abort_request_timeout\": \"soon\"}}'",
      "abort_request_timeout");
  check(
      "--pipeline omni --kv-transfer-config "
      "'{\"kv_connector\": \"NixlConnector\", \"kv_role\": \"kv_producer\"}'",
      "--pipeline llm");
  check("--pipeline llm --kv-transfer-config '{\"kv_connector\": \"OffloadingConnector\"}'",
        "num_cpu_blocks");
  auto [rc, out] = test::run(std::string(ENGINE_SIM_BIN) + " --help");
  CHECK(rc == 0);
  CHECK(out.find("--shm.prefix") != std::string::npos);
}

namespace {

std::size_t segments_of(const test::unique_prefix& up) {
  auto segs = shmetrics::list_segments(up.dir, up.prefix);
  return segs ? segs->size() : 0;
}

/// The rest of a child's stdout, lines without their newlines.
std::vector<std::string> rest_of(test::child& c) {
  std::vector<std::string> out;
  char buf[8192];
  while (c.out && std::fgets(buf, sizeof buf, c.out)) {
    std::string s(buf);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    out.push_back(s);
  }
  return out;
}

}  // namespace

TEST_CASE("SIGTERM and SIGINT with streams in flight: complete responses, exit 0 within 2 s",
          "[engine_sim][shutdown]") {
  for (int sig : {SIGTERM, SIGINT}) {
    INFO("signal " << sig);
    test::unique_prefix up;
    // Slow enough that 3000 tokens take minutes: nothing finishes on its own.
    simtest::server sim(simtest::sim_args(
        up, {"--pipeline", "llm", "--served-model-name", "sim", "--time-scale", "0.5"}));
    REQUIRE(sim.port > 0);
    REQUIRE(segments_of(up) == 2);  // the engine's and the API layer's (HTTP families)
    std::string url = "http://127.0.0.1:" + std::to_string(sim.port) + "/v1/completions";
    std::vector<std::unique_ptr<test::child>> streams;
    for (int i = 0; i < 4; ++i) {
      streams.push_back(std::make_unique<test::child>(std::vector<std::string>{
          "/usr/bin/curl", "-sN", url, "-H", "Content-Type: application/json", "-d",
          completion_body("stream " + std::to_string(i), 3000, true)}));
      REQUIRE(streams.back()->line().starts_with("data: {"));  // streaming now
    }
    test::child waiting({"/usr/bin/curl", "-s", url, "-H", "Content-Type: application/json", "-d",
                         completion_body("not streamed", 3000)});
    // An idle keep-alive connection: cpp-httplib would wait 5 s on it.
    int idle = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(sim.port));
    REQUIRE(::connect(idle, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    std::this_thread::sleep_for(300ms);

    auto t0 = std::chrono::steady_clock::now();
    sim.kill(sig);
    int rc = sim.wait();
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::close(idle);
    CHECK(rc == 0);
    CHECK(took < 2.0);
    CHECK(segments_of(up) == 0);  // unlinked on the way out
    // Every client got a complete HTTP response (curl exits 0) that says why it ended.
    for (auto& s : streams) {
      auto lines = rest_of(*s);
      CHECK(s->wait() == 0);
      std::vector<std::string> data;
      for (auto& l : lines)
        if (l.starts_with("data: ")) data.push_back(l);
      REQUIRE(data.size() >= 2);
      CHECK(data.back() == "data: [DONE]");
      CHECK(data[data.size() - 2].find("\"code\":503") != std::string::npos);
    }
    auto body = rest_of(waiting);
    CHECK(waiting.wait() == 0);
    REQUIRE(body.size() == 1);
    dom::parser parser;
    dom::element doc;
    REQUIRE(!parser.parse(body[0]).get(doc));  // leading spaces, then the error object
    CHECK(doc["error"]["code"].get_int64().value() == 503);
  }
}

TEST_CASE("one process (--api-server-count 1) records vLLM's HTTP families too",
          "[engine_sim][http_metrics]") {
  sim_env env;
  int ok = 0, bad = 0;
  auto c = env.sim.client();
  for (int i = 0; i < 3; ++i) {
    auto r = c.Post("/v1/completions", completion_body("h " + std::to_string(i), 3, i == 2),
                    "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    ++ok;
  }
  auto chat =
      c.Post("/v1/chat/completions",
             R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":2})", "application/json");
  REQUIRE(chat);
  CHECK(chat->status == 200);
  auto models = c.Get("/v1/models");
  REQUIRE(models);
  CHECK(models->status == 200);
  ok += 2;
  auto b = c.Post("/v1/completions", R"({"prompt":"x","max_tokens":0})", "application/json");
  REQUIRE(b);
  CHECK(b->status == 400);
  auto nf = c.Post("/v1/completions", R"({"model":"nope","prompt":"x"})", "application/json");
  REQUIRE(nf);
  CHECK(nf->status == 404);
  bad += 2;
  auto none = c.Get("/no/such/route");  // the instrumentator's "none" handler
  REQUIRE(none);
  CHECK(none->status == 404);
  for (const char* p : {"/health", "/version", "/metrics"}) {  // excluded, as upstream
    auto r = c.Get(p);
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  // Recorded once the last byte is written, so a client can be a moment ahead.
  std::map<std::string, double> s;
  auto until = std::chrono::steady_clock::now() + 2s;
  do {
    s = env.exp.samples();
  } while (simtest::sum(s, "http_request_duration_highr_seconds_count") < ok + bad + 1 &&
           std::chrono::steady_clock::now() < until);
  CHECK(s["http_requests_total{handler=\"/v1/completions\",method=\"POST\",status=\"2xx\"}"] == 3);
  CHECK(s["http_requests_total{handler=\"/v1/completions\",method=\"POST\",status=\"4xx\"}"] == 2);
  CHECK(s["http_requests_total{handler=\"/v1/chat/completions\",method=\"POST\",status=\"2xx\"}"] ==
        1);
  CHECK(s["http_requests_total{handler=\"/v1/models\",method=\"GET\",status=\"2xx\"}"] == 1);
  CHECK(s["http_requests_total{handler=\"none\",method=\"GET\",status=\"4xx\"}"] == 1);
  CHECK(simtest::sum(s, "http_requests_total") == ok + bad + 1);
  CHECK(simtest::sum(s, "http_request_duration_seconds_count") == ok + bad + 1);
  CHECK(simtest::sum(s, "http_request_duration_highr_seconds_count") == ok + bad + 1);
  CHECK(simtest::sum(s, "http_requests_total", "handler=\"/health\"") == 0);
  CHECK(simtest::sum(s, "http_requests_total", "handler=\"/metrics\"") == 0);
  CHECK(s["shmetrics_exporter_segments{state=\"alive\"}"] == 2);
}

TEST_CASE("one process serving the API records its process_*, as vLLM's /metrics has them",
          "[engine_sim][process]") {
  test::unique_prefix up;
  simtest::server sim(simtest::sim_args(up, {"--pipeline", "llm"}));
  REQUIRE(sim.port > 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // start times 10 ms apart at least
  simtest::exporter exp(up);
  REQUIRE(exp.port > 0);
  const double started = test::process_start_time_of(sim.pid);
  REQUIRE(started > 0);
  REQUIRE(test::process_start_time_of(exp.pid) > started);  // so the two can be told apart

  auto own = sim.client().Get("/metrics");  // engine-sim's own /metrics, as vLLM's
  REQUIRE(own);
  REQUIRE(own->status == 200);
  for (const auto& s : {test::parse_samples(own->body), exp.samples()}) {
    CHECK(s.at("process_start_time_seconds") == Approx(started).margin(0.02));
    CHECK(s.at("process_resident_memory_bytes") > 1e6);
    CHECK(s.at("process_open_fds") >= 3);
    CHECK(s.count("process_cpu_seconds_total") == 1);
  }
}

TEST_CASE("--api-server-count 2: one port, a segment per API server, merged by the exporter",
          "[engine_sim][api_servers]") {
  test::unique_prefix up;
  simtest::server sim(simtest::sim_args(
      up, {"--pipeline", "llm", "--served-model-name", "sim", "--api-server-count", "2"}));
  REQUIRE(sim.port > 0);
  std::vector<std::string> writing;
  for (int i = 0; i < 3; ++i)
    writing.push_back(sim.line());
  for (auto& w : writing)
    CHECK(w.starts_with("writing " + up.dir + "/" + up.prefix + "."));
  simtest::exporter exp(up);
  REQUIRE(exp.port > 0);

  // A new connection per request, so the kernel spreads them over both API servers.
  int ok = 0, bad = 0;
  std::uint64_t tokens = 0;
  dom::parser parser;
  for (int i = 0; i < 12; ++i) {
    auto r = sim.client().Post("/v1/completions", completion_body("api " + std::to_string(i), 3),
                               "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    tokens += usage_of(parser.parse(r->body)).completion;
    ++ok;
  }
  auto st = sim.client().Post("/v1/completions", completion_body("streamed", 4, true),
                              "application/json");
  REQUIRE(st);
  REQUIRE(st->status == 200);
  auto ev = sse_events(st->body);
  CHECK(ev.back() == "[DONE]");
  tokens += usage_of(parser.parse(ev[ev.size() - 2])).completion;
  ++ok;
  for (int i = 0; i < 3; ++i) {
    auto r = sim.client().Post("/v1/completions", R"({"prompt":"x","max_tokens":0})",
                               "application/json");
    REQUIRE(r);
    CHECK(r->status == 400);
    ++bad;
  }
  auto nf =
      sim.client().Post("/v1/completions", R"({"model":"nope","prompt":"x"})", "application/json");
  REQUIRE(nf);
  CHECK(nf->status == 404);
  ++bad;
  auto none = sim.client().Get("/no/such/route");  // the instrumentator's "none" handler
  REQUIRE(none);
  CHECK(none->status == 404);
  ++bad;

  auto s = exp.samples();
  CHECK(s["shmetrics_exporter_segments{state=\"alive\"}"] == 3);
  // vLLM's multiprocess mode has no process_* of its own: the exporter's stay.
  CHECK(s["process_start_time_seconds"] ==
        Approx(test::process_start_time_of(exp.pid)).margin(0.02));
  CHECK(s["http_requests_total{handler=\"none\",method=\"GET\",status=\"4xx\"}"] == 1);
  CHECK(simtest::sum(s, "http_requests_total", "status=\"2xx\"") == ok);
  CHECK(simtest::sum(s, "http_requests_total", "status=\"4xx\"") == bad);
  CHECK(simtest::sum(s, "http_request_duration_seconds_count") == ok + bad);
  CHECK(simtest::sum(s, "http_request_duration_highr_seconds_count") == ok + bad);
  CHECK(simtest::sum(s, "vllm:request_success_total") == ok);
  CHECK(simtest::sum(s, "vllm:generation_tokens_total") == tokens);

  // shmetrics-inspect lists the engine segment and both API-server segments.
  auto [rc, list] = test::run(std::string(INSPECT_BIN) + " --shm.dir " + up.dir + " --shm.prefix " +
                              up.prefix + " list");
  CHECK(rc == 0);
  for (auto& w : writing)
    CHECK(list.find(w.substr(8)) != std::string::npos);

  sim.kill(SIGTERM);
  CHECK(sim.wait() == 0);
  CHECK(segments_of(up) == 0);
}
