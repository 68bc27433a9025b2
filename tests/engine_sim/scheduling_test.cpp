// engine-sim's multimodal requests, admission control, priority scheduling and waiting by
// reason: a real engine-sim process, real HTTP, the metrics read back from its /metrics
// (the exporter's samples, merged from the same segments).
#include <catch2/catch.hpp>

#include <simdjson.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "sim_support.hpp"

using namespace std::chrono_literals;
namespace dom = simdjson::dom;

namespace {

std::string base64(const std::string& in) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    std::uint32_t v = static_cast<unsigned char>(in[i]) << 16 |
                      static_cast<unsigned char>(in[i + 1]) << 8 |
                      static_cast<unsigned char>(in[i + 2]);
    for (int k = 18; k >= 0; k -= 6)
      out += abc[v >> k & 63];
  }
  if (i < in.size()) {
    std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += abc[v >> 18 & 63];
    out += abc[v >> 12 & 63];
    out += i + 1 < in.size() ? abc[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

// A real RGB PNG of w x h (rows of a pattern from `seed`, deflated), so images of the same
// size differ by content.
std::string png(std::uint32_t w, std::uint32_t h, int seed) {
  auto be32 = [](std::uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 8), static_cast<char>(v)};
  };
  auto chunk = [&](const std::string& type, const std::string& data) {
    std::string td = type + data;
    auto crc = crc32(0, reinterpret_cast<const Bytef*>(td.data()), static_cast<uInt>(td.size()));
    return be32(static_cast<std::uint32_t>(data.size())) + td +
           be32(static_cast<std::uint32_t>(crc));
  };
  std::string raw;
  for (std::uint32_t y = 0; y < h; ++y) {
    raw += '\0';
    for (std::uint32_t x = 0; x < w * 3; ++x)
      raw += static_cast<char>((x * 7 + y * 3 + static_cast<std::uint32_t>(seed) * 31) & 255);
  }
  uLongf n = compressBound(static_cast<uLong>(raw.size()));
  std::string z(n, '\0');
  REQUIRE(compress(reinterpret_cast<Bytef*>(z.data()), &n,
                   reinterpret_cast<const Bytef*>(raw.data()),
                   static_cast<uLong>(raw.size())) == Z_OK);
  z.resize(n);
  std::string ihdr = be32(w) + be32(h) + std::string("\x08\x02\x00\x00\x00", 5);
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", z) +
         chunk("IEND", "");
}

std::string image_chat(const std::string& url, const std::string& text = "What is in it?") {
  return R"({"model":"sim","max_tokens":4,"messages":[{"role":"user","content":[)"
         R"({"type":"image_url","image_url":{"url":")" +
         url + R"("}},{"type":"text","text":")" + text + R"("}]}]})";
}

std::string data_url(const std::string& png_bytes) {
  return "data:image/png;base64," + base64(png_bytes);
}

struct answer {
  int status = 0;
  std::string body;
};

answer post(const simtest::server& sim, const std::string& path, const std::string& body) {
  auto r = sim.client().Post(path, body, "application/json");
  REQUIRE(r);
  return {r->status, r->body};
}

std::uint64_t prompt_tokens(const answer& a) {
  dom::parser p;
  return p.parse(a.body)["usage"]["prompt_tokens"].get_uint64().value();
}

std::uint64_t cached_tokens(const answer& a) {
  dom::parser p;
  return p.parse(a.body)["usage"]["prompt_tokens_details"]["cached_tokens"].get_uint64().value();
}

std::string error_message(const answer& a) {
  dom::parser p;
  return std::string(p.parse(a.body)["error"]["message"].get_string().value());
}

std::map<std::string, double> sim_samples(const simtest::server& sim) {
  auto r = sim.client().Get("/metrics");
  return r && r->status == 200 ? test::parse_samples(r->body) : std::map<std::string, double>{};
}

struct sim_only {
  test::unique_prefix up;
  simtest::server sim;
  explicit sim_only(std::vector<std::string> extra) : sim(simtest::sim_args(up, extra)) {
    REQUIRE(sim.port > 0);
  }
};

std::vector<std::string> llm(std::vector<std::string> extra) {
  std::vector<std::string> a = {"--pipeline", "llm", "--served-model-name", "sim"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

}  // namespace

TEST_CASE("image_url chat parts: data URLs sized and cached, http URLs and bad data refused",
          "[engine_sim][mm]") {
  // 0.01 GiB of processor cache: two 448x448 images (256 tiles x 18,816 bytes each) and a
  // 224x224 one (64 tiles) do not fit together.
  sim_only env(llm({"--mm-processor-cache-gb", "0.01"}));
  const std::string a = data_url(png(448, 448, 1)), b = data_url(png(448, 448, 2)),
                    c = data_url(png(224, 224, 3));
  auto mm = [&] {
    auto s = sim_samples(env.sim);
    return std::pair(simtest::sum(s, "vllm:mm_cache_queries_total"),
                     simtest::sum(s, "vllm:mm_cache_hits_total"));
  };
  CHECK(mm() == std::pair(0.0, 0.0));

  auto first = post(env.sim, "/v1/chat/completions", image_chat(a));
  REQUIRE(first.status == 200);
  CHECK(mm() == std::pair(1.0, 0.0));
  // The same image again: a processor-cache hit, and its placeholders hit the prefix cache.
  auto again = post(env.sim, "/v1/chat/completions", image_chat(a));
  REQUIRE(again.status == 200);
  CHECK(mm() == std::pair(2.0, 1.0));
  CHECK(prompt_tokens(again) == prompt_tokens(first));
  CHECK(cached_tokens(again) >= 256);
  // Another image of the same size: a miss, and no prefix-cache hit past the text before it.
  auto other = post(env.sim, "/v1/chat/completions", image_chat(b));
  REQUIRE(other.status == 200);
  CHECK(mm() == std::pair(3.0, 1.0));
  CHECK(prompt_tokens(other) == prompt_tokens(first));
  CHECK(cached_tokens(other) < 256);
  // A quarter of the area: 64 placeholder tokens instead of 256. It evicts A, the least
  // recently used, so A misses next time.
  auto small = post(env.sim, "/v1/chat/completions", image_chat(c));
  REQUIRE(small.status == 200);
  CHECK(prompt_tokens(first) - prompt_tokens(small) == 256 - 64);
  CHECK(mm() == std::pair(4.0, 1.0));
  REQUIRE(post(env.sim, "/v1/chat/completions", image_chat(a)).status == 200);
  CHECK(mm() == std::pair(5.0, 1.0));

  // Refused with a 400 and a message saying why; nothing counted; the server goes on.
  auto http = post(env.sim, "/v1/chat/completions", image_chat("https://example.com/cat.png"));
  CHECK(http.status == 400);
  CHECK_THAT(error_message(http),
             Catch::Contains("http(s) URLs are not fetched") && Catch::Contains("data URL"));
  auto bad64 = post(env.sim, "/v1/chat/completions", image_chat("data:image/png;base64,iVBO*w=="));
  CHECK(bad64.status == 400);
  CHECK_THAT(error_message(bad64), Catch::Contains("base64 payload is invalid"));
  auto unpadded = post(env.sim, "/v1/chat/completions", image_chat("data:image/png;base64,iVBOR"));
  CHECK(unpadded.status == 400);
  CHECK_THAT(error_message(unpadded), Catch::Contains("base64 payload is invalid"));
  auto text = post(env.sim, "/v1/chat/completions",
                   image_chat("data:image/png;base64," + base64("not an image at all")));
  CHECK(text.status == 400);
  CHECK_THAT(error_message(text), Catch::Contains("cannot identify the image"));
  auto plain = post(env.sim, "/v1/chat/completions", image_chat("data:image/png,raw"));
  CHECK(plain.status == 400);
  CHECK_THAT(error_message(plain), Catch::Contains("Only base64 data URLs"));
  CHECK(mm() == std::pair(5.0, 1.0));
  // A came back by evicting B (the least recently used then); C is still cached.
  CHECK(post(env.sim, "/v1/chat/completions", image_chat(c)).status == 200);
  CHECK(mm() == std::pair(6.0, 2.0));
  CHECK(post(env.sim, "/v1/chat/completions", image_chat(b)).status == 200);
  CHECK(mm() == std::pair(7.0, 2.0));
  // No admission family without its flags (the default exposition is unchanged).
  CHECK(simtest::sum(sim_samples(env.sim), "vllm:admission_rejections_total") == 0);
  for (auto& [k, v] : sim_samples(env.sim))
    CHECK(!k.starts_with("vllm:admission_rejections_total"));
}

TEST_CASE("--max-num-queued-reqs / --max-num-queued-tokens: 503s counted by reason",
          "[engine_sim][admission]") {
  // Steps of 4 ms: a 150-token request runs ~0.6 s, so a burst finds the first two in flight.
  sim_only env(llm(
      {"--time-scale", "0.2", "--max-num-queued-reqs", "2", "--max-num-queued-tokens", "1000"}));
  auto rejections = [&](const char* reason) {
    return simtest::sum(sim_samples(env.sim), "vllm:admission_rejections_total",
                        std::string("reason=\"") + reason + "\"");
  };
  CHECK(rejections("max_num_queued_reqs") == 0);
  CHECK(rejections("max_num_queued_tokens") == 0);

  std::mutex m;
  std::vector<answer> answers;
  std::vector<std::thread> burst;
  for (int k = 0; k < 8; ++k)
    burst.emplace_back([&, k] {
      auto r = env.sim.client().Post("/v1/completions",
                                     R"({"model":"sim","prompt":"burst )" + std::to_string(k) +
                                         R"(","max_tokens":150,"ignore_eos":true})",
                                     "application/json");
      std::lock_guard lk(m);
      answers.push_back(r ? answer{r->status, r->body} : answer{});
    });
  for (auto& t : burst)
    t.join();
  int ok = 0, refused = 0;
  for (auto& a : answers) {
    if (a.status == 200) {
      ++ok;
    } else {
      CHECK(a.status == 503);
      dom::parser p;
      dom::element e = p.parse(a.body)["error"];
      CHECK(std::string_view(e["type"].get_string().value()) == "ServiceUnavailableError");
      CHECK(e["code"].get_int64().value() == 503);
      CHECK_THAT(std::string(e["message"].get_string().value()),
                 Catch::Contains("--max-num-queued-reqs 2"));
      ++refused;
    }
  }
  CHECK(ok + refused == 8);
  CHECK(ok >= 2);
  CHECK(refused >= 1);
  CHECK(rejections("max_num_queued_reqs") == refused);
  CHECK(rejections("max_num_queued_tokens") == 0);

  // n counts as n sequences: n=3 never fits 2. A prompt over 1000 tokens never fits the
  // token limit. Each is one rejection, whatever its n.
  auto n3 = post(env.sim, "/v1/completions", R"({"prompt":"three","n":3,"max_tokens":2})");
  CHECK(n3.status == 503);
  CHECK(rejections("max_num_queued_reqs") == refused + 1);
  std::string ids;
  for (int i = 0; i < 1200; ++i)
    ids += (ids.empty() ? "" : ",") + std::to_string(100 + i);
  auto longp = post(env.sim, "/v1/completions", R"({"prompt":[)" + ids + R"(],"max_tokens":2})");
  CHECK(longp.status == 503);
  CHECK_THAT(error_message(longp), Catch::Contains("--max-num-queued-tokens 1000"));
  CHECK(rejections("max_num_queued_tokens") == 1);
  // Within the limits, requests are served.
  CHECK(post(env.sim, "/v1/completions", R"({"prompt":"fits","max_tokens":2})").status == 200);
  CHECK(rejections("max_num_queued_reqs") == refused + 1);
}

TEST_CASE("--scheduling-policy priority: one running slot serves the queue by priority",
          "[engine_sim][priority]") {
  // Steps of 4 ms; one sequence at a time.
  sim_only env(
      llm({"--time-scale", "0.2", "--max-num-seqs", "1", "--scheduling-policy", "priority"}));
  std::mutex m;
  std::vector<std::string> done;
  auto run = [&](std::string name, int priority, int tokens) {
    return std::thread([&, name, priority, tokens] {
      auto r = post(env.sim, "/v1/completions",
                    R"({"model":"sim","prompt":")" + name + R"(","max_tokens":)" +
                        std::to_string(tokens) + R"(,"ignore_eos":true,"priority":)" +
                        std::to_string(priority) + "}");
      std::lock_guard lk(m);
      done.push_back(r.status == 200 ? name : name + " failed");
    });
  };
  std::vector<std::thread> ts;
  ts.push_back(run("first", 0, 250));  // holds the slot ~1 s
  std::this_thread::sleep_for(100ms);
  // Queued behind it, in this arrival order; lower priority values run first, ties by arrival.
  for (auto [name, prio] : {std::pair("low", 5), std::pair("urgent", -1), std::pair("mid-a", 3),
                            std::pair("mid-b", 3)}) {
    ts.push_back(run(name, prio, 5));
    std::this_thread::sleep_for(20ms);
  }
  for (auto& t : ts)
    t.join();
  CHECK(done == std::vector<std::string>{"first", "urgent", "mid-a", "mid-b", "low"});
}

TEST_CASE("--scheduling-policy priority: the pool preempts the lowest-priority request",
          "[engine_sim][priority][preempt]") {
  // 24 blocks of 4 tokens; two requests of ~68 tokens need 34: one is preempted. FCFS
  // would preempt the newest (the urgent one); priority preempts the low one.
  sim_only env(llm({"--time-scale", "0.2", "--block-size", "4", "--num-gpu-blocks", "24",
                    "--max-num-batched-tokens", "64", "--scheduling-policy", "priority"}));
  std::mutex m;
  std::vector<std::string> done;
  auto run = [&](std::string name, int priority) {
    return std::thread([&, name, priority] {
      auto r = post(env.sim, "/v1/completions",
                    R"({"model":"sim","prompt":"request )" + name +
                        R"(","max_tokens":60,"ignore_eos":true,"priority":)" +
                        std::to_string(priority) + "}");
      std::lock_guard lk(m);
      done.push_back(r.status == 200 ? name : name + " failed");
    });
  };
  auto low = run("low", 5);
  std::this_thread::sleep_for(40ms);
  auto urgent = run("urgent", 0);
  low.join();
  urgent.join();
  CHECK(done == std::vector<std::string>{"urgent", "low"});
  auto s = sim_samples(env.sim);
  double preemptions = simtest::sum(s, "vllm:num_preemptions_total");
  CHECK(preemptions > 0);
  // vllm:request_num_preemptions: one observation per request, summing to the total.
  CHECK(simtest::sum(s, "vllm:request_num_preemptions_count") == 2);
  CHECK(simtest::sum(s, "vllm:request_num_preemptions_sum") == preemptions);
  CHECK(simtest::sum(s, "vllm:request_success_total", "finished_reason=\"length\"") == 2);
}

TEST_CASE("a preemption that leaves the step nothing to run is counted", "[engine_sim][preempt]") {
  // 24 blocks of 4 tokens: one request growing past 96 tokens preempts itself, the only
  // one running, and is then refused (it can never fit). vllm:num_preemptions_total counts
  // it with the next step that has outputs, as vllm:request_num_preemptions does.
  sim_only env(llm({"--block-size", "4", "--num-gpu-blocks", "24"}));
  auto big = post(env.sim, "/v1/completions",
                  R"({"prompt":"grows past the pool","max_tokens":120,"ignore_eos":true})");
  CHECK(big.status == 200);
  CHECK(post(env.sim, "/v1/completions", R"({"prompt":"next","max_tokens":2})").status == 200);
  auto s = sim_samples(env.sim);
  CHECK(simtest::sum(s, "vllm:request_num_preemptions_sum") == 1);
  CHECK(simtest::sum(s, "vllm:num_preemptions_total") == 1);
  CHECK(simtest::sum(s, "vllm:request_success_total", "finished_reason=\"error\"") == 1);
}

TEST_CASE("priority needs --scheduling-policy priority, as vLLM checks it",
          "[engine_sim][priority]") {
  sim_only env(llm({}));
  auto r = post(env.sim, "/v1/completions", R"({"prompt":"x","max_tokens":2,"priority":3})");
  CHECK(r.status == 400);
  CHECK(error_message(r) == "Got priority 3 but Priority scheduling is not enabled.");
  CHECK(post(env.sim, "/v1/completions", R"({"prompt":"x","max_tokens":2,"priority":0})").status ==
        200);
}

TEST_CASE("a request pulling its KV from a prefill instance waits as 'deferred'",
          "[engine_sim][waiting_reason]") {
  // A decode instance told to pull 16,000 tokens of KV (917 MB at 40 GB/s, ~23 ms, x10 here):
  // meanwhile it waits, for its KV, not for scheduling capacity (vLLM: skipped_waiting).
  sim_only env(llm({"--time-scale", "10", "--max-model-len", "20000", "--kv-transfer-config",
                    R"({"kv_connector": "NixlConnector", "kv_role": "kv_consumer"})"}));
  std::string ids, blocks;
  for (int i = 0; i < 16000; ++i)
    ids += (ids.empty() ? "" : ",") + std::to_string(100 + i % 20000);
  for (int i = 0; i < 1000; ++i)
    blocks += (blocks.empty() ? "" : ",") + std::to_string(i);
  std::atomic<int> status{0};
  std::thread t([&] {
    auto r = env.sim.client().Post(
        "/v1/completions",
        R"({"model":"sim","prompt":[)" + ids +
            R"(],"max_tokens":1,"kv_transfer_params":{"do_remote_prefill":true,)"
            R"("do_remote_decode":false,"remote_block_ids":[)" +
            blocks +
            R"(],"remote_engine_id":"prefill-0","remote_request_id":"r1",)"
            R"("remote_host":"127.0.0.1","remote_port":9}})",
        "application/json");
    status = r ? r->status : -1;
  });
  double deferred = 0, capacity = 0;
  while (status == 0 && deferred == 0) {
    auto s = sim_samples(env.sim);
    deferred = simtest::sum(s, "vllm:num_requests_waiting_by_reason", "reason=\"deferred\"");
    capacity = simtest::sum(s, "vllm:num_requests_waiting_by_reason", "reason=\"capacity\"");
    std::this_thread::sleep_for(2ms);
  }
  t.join();
  CHECK(status == 200);
  CHECK(deferred == 1);
  CHECK(capacity == 0);
  auto s = sim_samples(env.sim);
  CHECK(simtest::sum(s, "vllm:num_requests_waiting_by_reason") == 0);
  CHECK(simtest::sum(s, "vllm:nixl_bytes_transferred_count") == 1);
}
