// --pipeline diffusion end to end: real engine-sim and exporter processes, real HTTP.
// The PNGs decode (zlib) to the requested size, and the diffusion / image families move
// by exactly what the responses hold.
#include <catch2/catch.hpp>

#include <simdjson.h>
#include <zlib.h>

#include <chrono>
#include <thread>

#include "sim_support.hpp"

using namespace std::chrono_literals;
namespace dom = simdjson::dom;

namespace {

std::string unbase64(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = val(c);
    REQUIRE(v >= 0);
    acc = acc << 6 | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::uint32_t be32(const std::string& s, std::size_t at) {
  return std::uint32_t(static_cast<unsigned char>(s[at])) << 24 |
         std::uint32_t(static_cast<unsigned char>(s[at + 1])) << 16 |
         std::uint32_t(static_cast<unsigned char>(s[at + 2])) << 8 |
         std::uint32_t(static_cast<unsigned char>(s[at + 3]));
}

/// Decodes a PNG far enough to trust it: signature, every chunk's CRC, IHDR (8-bit RGB),
/// the IDAT stream inflated to exactly height scanlines of 1 + 3 * width bytes.
std::pair<std::uint32_t, std::uint32_t> png_size(const std::string& png) {
  REQUIRE(png.size() > 33);
  REQUIRE(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  std::uint32_t w = 0, h = 0;
  std::string idat;
  bool end = false;
  for (std::size_t i = 8; i < png.size();) {
    REQUIRE(i + 12 <= png.size());
    std::uint32_t n = be32(png, i);
    REQUIRE(i + 12 + n <= png.size());
    std::string type = png.substr(i + 4, 4), data = png.substr(i + 8, n);
    std::string body = type + data;
    CHECK(be32(png, i + 8 + n) ==
          crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size())));
    if (type == "IHDR") {
      w = be32(data, 0);
      h = be32(data, 4);
      CHECK(data[8] == 8);  // bit depth
      CHECK(data[9] == 2);  // RGB
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      end = true;
    }
    i += 12 + n;
  }
  CHECK(end);
  std::string raw(std::size_t{h} * (1 + 3 * std::size_t{w}) + 1, '\0');
  uLongf len = raw.size();
  REQUIRE(uncompress(reinterpret_cast<Bytef*>(raw.data()), &len,
                     reinterpret_cast<const Bytef*>(idat.data()), uLong(idat.size())) == Z_OK);
  CHECK(len == std::size_t{h} * (1 + 3 * std::size_t{w}));
  return {w, h};
}

std::string image_body(const std::string& prompt, int n, const std::string& size, int steps) {
  return R"({"model":"zimg","prompt":")" + prompt + R"(","n":)" + std::to_string(n) +
         R"(,"size":")" + size + R"(","num_inference_steps":)" + std::to_string(steps) +
         R"(,"response_format":"b64_json"})";
}

struct diffusion_env {
  test::unique_prefix up;
  simtest::server sim;
  simtest::exporter exp;
  explicit diffusion_env(std::vector<std::string> extra = {})
      : sim(simtest::sim_args(up,
                              [&] {
                                std::vector<std::string> a = {"--pipeline", "diffusion",
                                                              "--log-stats", "--served-model-name",
                                                              "zimg"};
                                a.insert(a.end(), extra.begin(), extra.end());
                                return a;
                              }())),
        exp(up) {
    REQUIRE(sim.port > 0);
    REQUIRE(exp.port > 0);
  }
};

}  // namespace

TEST_CASE("diffusion: PNGs of the requested size, and every family agrees with the responses",
          "[engine_sim][diffusion]") {
  diffusion_env env({"--replicas", "2"});
  struct ask {
    int n;
    std::string size;
    int steps;
  };
  const std::vector<ask> asks = {{1, "64x48", 4}, {2, "32x32", 8}, {1, "128x64", 3},
                                 {3, "16x48", 1}, {1, "64x64", 6}, {2, "48x32", 2}};
  std::uint64_t images = 0, pixels = 0, steps = 0;
  std::mutex mu;
  std::vector<std::thread> clients;
  for (std::size_t k = 0; k < asks.size(); ++k)
    clients.emplace_back([&, k] {
      auto& a = asks[k];
      auto r = env.sim.client().Post(
          "/v1/images/generations",
          image_body("a red fox " + std::to_string(k), a.n, a.size, a.steps), "application/json");
      REQUIRE(r);
      REQUIRE(r->status == 200);
      dom::parser p;
      dom::element doc = p.parse(r->body);
      CHECK(doc["created"].get_int64().value() > 0);
      dom::array data = doc["data"].get_array();
      std::lock_guard lk(mu);
      CHECK(data.size() == std::size_t(a.n));
      unsigned w = 0, h = 0;
      std::sscanf(a.size.c_str(), "%ux%u", &w, &h);
      for (dom::element d : data) {
        auto [pw, ph] = png_size(unbase64(std::string_view(d["b64_json"].get_string().value())));
        CHECK(pw == w);
        CHECK(ph == h);
        ++images;
        pixels += std::uint64_t{w} * h;
      }
      steps += std::uint64_t(a.steps);
    });
  for (auto& t : clients)
    t.join();
  const double requests = double(asks.size());

  auto m = env.exp.client().Get("/metrics");
  REQUIRE(m);
  auto s = test::parse_samples(m->body);
  using simtest::sum;
  CHECK(sum(s, "vllm:omni_image_count_total") == images);
  CHECK(sum(s, "vllm:omni_num_inference_steps_sum") == steps);
  CHECK(sum(s, "vllm:omni_num_inference_steps_count") == requests);
  CHECK(sum(s, "vllm:omni_image_pixels_count") == images);
  CHECK(sum(s, "vllm:omni_image_pixels_sum") == pixels);
  CHECK(sum(s, "vllm:omni_requests_success_total", "finished_reason=\"stop\"") == requests);
  CHECK(sum(s, "vllm:omni_requests_success_total") == requests);
  CHECK(sum(s, "vllm:omni_e2e_request_latency_s_count") == requests);
  CHECK(sum(s, "vllm:omni_request_queue_wait_s_count") == requests);
  CHECK(sum(s, "vllm:omni_stage_in_queue_s_count", "stage=\"0\"") == requests);
  CHECK(sum(s, "vllm:omni_stage_gen_time_s_count", "stage_type=\"diffusion\"") == requests);
  for (const char* f :
       {"vllm:omni_diffusion_preprocess_s_count", "vllm:omni_diffusion_exec_s_count",
        "vllm:omni_diffusion_exec_per_step_s_count", "vllm:omni_diffusion_postprocess_s_count",
        "vllm:omni_vae_decode_s_count", "vllm:omni_image_ttfp_s_count"}) {
    INFO(f);
    CHECK(sum(s, f) == requests);
  }
  CHECK(sum(s, "vllm:omni_denoise_step_latency_s_count") == steps);
  // Both replicas worked (6 concurrent requests, 2 workers), each under its own label.
  CHECK(sum(s, "vllm:omni_diffusion_exec_s_count", "replica=\"0\"") > 0);
  CHECK(sum(s, "vllm:omni_diffusion_exec_s_count", "replica=\"1\"") > 0);
  CHECK(sum(s, "vllm:omni_peak_memory_mb") > 12288);
  // Idle: nothing running or waiting.
  CHECK(sum(s, "vllm:omni_num_requests_running") == 0);
  CHECK(sum(s, "vllm:omni_num_requests_waiting") == 0);
  CHECK(sum(s, "vllm:omni_stage_waiting_requests") == 0);
  // No autoregressive engine: no upstream vllm:* family at all (seed 003's Z-Image test).
  std::istringstream lines(m->body);
  std::string l;
  int omni_types = 0;
  while (std::getline(lines, l)) {
    if (!l.starts_with("# TYPE vllm:")) continue;
    CHECK(l.starts_with("# TYPE vllm:omni_"));
    ++omni_types;
  }
  CHECK(omni_types > 20);
}

TEST_CASE("diffusion: bad input is a 400 with an OpenAI error, and the server keeps serving",
          "[engine_sim][diffusion]") {
  diffusion_env env;
  auto c = env.sim.client();
  dom::parser parser;
  auto expect = [&](const std::string& body, int status, const char* param,
                    const char* needle = nullptr) {
    auto r = c.Post("/v1/images/generations", body, "application/json");
    INFO(body);
    REQUIRE(r);
    CHECK(r->status == status);
    dom::element doc;
    REQUIRE(!parser.parse(r->body).get(doc));
    dom::element e = doc["error"];
    std::string msg(e["message"].get_string().value());
    CHECK(!msg.empty());
    CHECK(e["code"].get_int64().value() == status);
    if (param) CHECK(std::string_view(e["param"].get_string().value()) == param);
    if (needle) CHECK(msg.find(needle) != std::string::npos);
  };
  expect("{\"prompt\": \"x\",", 400, nullptr, "invalid JSON");
  expect("[1]", 400, nullptr);
  expect("{}", 400, "prompt");
  expect(R"({"prompt":""})", 400, "prompt");
  expect(R"({"prompt":"x","n":0})", 400, "n");
  expect(R"({"prompt":"x","n":"two"})", 400, "n");
  expect(R"({"prompt":"x","num_inference_steps":0})", 400, "num_inference_steps");
  expect(R"({"prompt":"x","size":"1024"})", 400, "size");
  expect(R"({"prompt":"x","size":"100x100"})", 400, "size");
  expect(R"({"prompt":"x","size":"0x0"})", 400, "size");
  expect(R"({"prompt":"x","size":"4096x4096"})", 400, "size");
  expect(R"({"prompt":"x","response_format":"url"})", 400, "response_format", "b64_json");
  expect(R"({"prompt":"x","response_format":"webp"})", 400, "response_format");
  expect(R"({"model":"dall-e-3","prompt":"x"})", 404, "model");
  auto text = c.Post("/v1/completions", R"({"prompt":"x"})", "application/json");
  REQUIRE(text);
  CHECK(text->status == 400);
  auto ok =
      c.Post("/v1/images/generations", image_body("still here", 1, "32x32", 2), "application/json");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  auto s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:omni_requests_success_total") == 1);  // nothing bad got in
  CHECK(simtest::sum(s, "vllm:omni_image_count_total") == 1);
}

TEST_CASE("diffusion: a client that goes away aborts its request, running or queued",
          "[engine_sim][diffusion][abort]") {
  // Real time: a 1024x1024 request of 50 steps takes ~15 s; one replica, so a second
  // request waits in the queue.
  diffusion_env env({"--time-scale", "1"});
  std::string url = "http://127.0.0.1:" + std::to_string(env.sim.port) + "/v1/images/generations";
  auto curl = [&](const std::string& prompt) {
    return std::make_unique<test::child>(
        std::vector<std::string>{"/usr/bin/curl", "-s", url, "-H", "Content-Type: application/json",
                                 "-d", image_body(prompt, 1, "1024x1024", 50)});
  };
  auto gauge = [&](const char* name) { return simtest::sum(env.exp.samples(), name); };
  auto running = curl("first");
  for (int i = 0; i < 40 && gauge("vllm:omni_num_requests_running") < 1; ++i)
    std::this_thread::sleep_for(50ms);
  auto queued = curl("second");
  for (int i = 0; i < 40 && gauge("vllm:omni_stage_waiting_requests") < 1; ++i)
    std::this_thread::sleep_for(50ms);
  CHECK(gauge("vllm:omni_num_requests_running") == 1);
  CHECK(gauge("vllm:omni_num_requests_waiting") == 1);

  auto aborts = [&] {
    return simtest::sum(env.exp.samples(), "vllm:omni_requests_success_total",
                        "finished_reason=\"abort\"");
  };
  queued->kill();
  queued->wait();
  for (int i = 0; i < 20 && aborts() < 1; ++i)
    std::this_thread::sleep_for(50ms);
  CHECK(aborts() == 1);
  running->kill();
  running->wait();
  for (int i = 0; i < 40 && aborts() < 2; ++i)
    std::this_thread::sleep_for(50ms);
  auto s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:omni_requests_success_total", "finished_reason=\"abort\"") == 2);
  CHECK(simtest::sum(s, "vllm:omni_requests_failed_total", "reason=\"client_disconnect\"") == 2);
  CHECK(simtest::sum(s, "vllm:omni_image_count_total") == 0);
  CHECK(simtest::sum(s, "vllm:omni_num_requests_running") == 0);
  CHECK(simtest::sum(s, "vllm:omni_num_requests_waiting") == 0);
}

TEST_CASE("diffusion without --log-stats: the families are there, without series",
          "[engine_sim][diffusion]") {
  test::unique_prefix up;
  simtest::server sim(
      simtest::sim_args(up, {"--pipeline", "diffusion", "--served-model-name", "zimg"}));
  simtest::exporter exp(up);
  auto r = sim.client().Post("/v1/images/generations", image_body("x", 1, "16x16", 1),
                             "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  auto m = exp.client().Get("/metrics");
  REQUIRE(m);
  CHECK(m->body.find("# TYPE vllm:omni_diffusion_exec_s histogram") != std::string::npos);
  CHECK(simtest::sum(test::parse_samples(m->body), "vllm:omni_image_count_total") == 0);
}

TEST_CASE("shmetrics-loadgen --images drives the diffusion pipeline", "[engine_sim][diffusion]") {
  diffusion_env env({"--replicas", "2"});
  auto [rc, out] = test::run(std::string(LOADGEN_BIN) +
                             " --url http://127.0.0.1:" + std::to_string(env.sim.port) +
                             " --images --size 64x64 --steps 3 --n 2 --rate 20 --duration 1 "
                             "--drain 10 --seed 7 2>/dev/null");
  INFO(out);
  CHECK(rc == 0);
  unsigned long long ok = 0, failed = 0, unfinished = 0;
  REQUIRE(std::sscanf(out.c_str(), "requests: %llu ok, %llu failed, %llu unfinished", &ok, &failed,
                      &unfinished) == 3);
  CHECK(ok > 0);
  CHECK(failed == 0);
  CHECK(unfinished == 0);
  CHECK(out.find("images/s") != std::string::npos);
  auto s = env.exp.samples();
  CHECK(simtest::sum(s, "vllm:omni_image_count_total") == 2 * ok);
  CHECK(simtest::sum(s, "vllm:omni_num_inference_steps_sum") == 3 * ok);
}

TEST_CASE("diffusion: SIGTERM during a long batch exits 0 within 2 s", "[engine_sim][diffusion]") {
  test::unique_prefix up;
  simtest::server sim(simtest::sim_args(up, {"--pipeline", "diffusion", "--log-stats",
                                             "--served-model-name", "zimg", "--time-scale", "1"}));
  REQUIRE(sim.port > 0);
  std::string url = "http://127.0.0.1:" + std::to_string(sim.port) + "/v1/images/generations";
  // 4 images of 2048x2048: 16 MPix, about 5 s per denoising step.
  test::child curl({"/usr/bin/curl", "-s", url, "-H", "Content-Type: application/json", "-d",
                    image_body("big", 4, "2048x2048", 8)});
  std::this_thread::sleep_for(500ms);
  auto t0 = std::chrono::steady_clock::now();
  sim.kill(SIGTERM);
  CHECK(sim.wait() == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  auto body = curl.line();
  CHECK(curl.wait() == 0);
  CHECK(body.find("\"code\":503") != std::string::npos);
  auto segs = shmetrics::list_segments(up.dir, up.prefix);
  CHECK((segs && segs->empty()));
}
