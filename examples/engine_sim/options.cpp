#include "options.hpp"

#include <cstdio>  // usage
#include <random>  // NIXL engine id

#include <simdjson.h>  // --speculative-config

#include <shmetrics/config.hpp>  // --version

#include "flags.hpp"

namespace engine_sim {
namespace {

constexpr const char* usage = R"(usage: shmetrics-engine-sim [flags]
An OpenAI-compatible simulated inference server that records vLLM / vLLM-Omni metrics
into shared memory (serve them with shmetrics-exporter).

  --host ADDR                      listen address (127.0.0.1)
  --port N                         listen port, 0 = any free port (8000)
  --model NAME                     model name (llm: Qwen/Qwen2.5-7B-Instruct, omni: Qwen/Qwen3-Omni-30B-A3B-Instruct,
                                   diffusion: Tongyi-MAI/Z-Image-Turbo)
  --served-model-name NAME         name in the API and the model_name label (--model)
  --pipeline omni|llm|diffusion    Qwen3-Omni-like 3-stage pipeline, a plain vLLM engine, or a
                                   Z-Image-like text-to-image model (omni)
  --replicas A,B,C | N             omni: replicas of thinker, talker, code2wav (1,1,1);
                                   diffusion: replicas of the diffusion stage (1)
  --num-inference-steps N          diffusion: steps when a request gives none (8)
  --data-parallel-size N           llm: engines, each with its own segment (1)
  --api-server-count N             API-server processes sharing --port, each with its own segment (1)
  --log-stats / --disable-log-stats  metrics on / off (llm: on, omni: off, as upstream)
  --max-num-seqs N                 (256)
  --max-num-batched-tokens N       (2048)
  --block-size N                   (16)
  --num-gpu-blocks N               KV blocks, alias --num-gpu-blocks-override (8192)
  --max-model-len N                (4096)
  --enable-prefix-caching / --no-enable-prefix-caching  (on)
  --seed N                         output-length distribution seed (0)
  --time-scale X                   multiplies every simulated step time; 0.05 = 20x faster (1)
  --shm.dir DIR                    segment directory (/dev/shm)
  --shm.prefix NAME                segment name prefix (shmetrics)
  --catalog FILE                   the vLLM metric catalog (installed or source-tree copy)
  --max-request-bytes N            largest request body; a larger one gets 413 (33554432 = 32 MiB)
  --speculative-config JSON        llm: speculative decoding, as vLLM's flag: {"method": "ngram",
                                   "num_speculative_tokens": K} (K 1-16; off)
  --spec-acceptance-rate X         acceptance of each draft position, given the ones before (0.7)
  --kv-cache-metrics               llm: KV block residency histograms (vllm:kv_block_*_seconds)
  --kv-cache-metrics-sample X      share of the cached blocks followed (0.01)
  --kv-transfer-config JSON        llm: one KV connector, as vLLM's flag (off): KV offloading,
                                   {"kv_connector": "OffloadingConnector", "kv_role": "kv_both",
                                   "kv_connector_extra_config": {"num_cpu_blocks": N}}; or P/D
                                   disaggregation, {"kv_connector": "NixlConnector", "kv_role":
                                   "kv_both", "kv_connector_extra_config": {"abort_request_timeout":
                                   S (480), "failure_rate": X (0)}}
  --enable-lora                    llm: LoRA adapters (vllm:lora_requests_info)
  --enable-sleep-mode              llm: the dev-mode endpoints POST /sleep?level=0|1|2&mode=,
                                   POST /wake_up[?tags=], GET /is_sleeping (vllm:sleep_mode_*)
  --max-loras N                    adapters in one batch (1)
  --lora-modules NAME=PATH ...     the adapters; a request names one as its model
  --scheduling-policy fcfs|priority  llm: the queue's order; priority: a request's "priority",
                                   lower first, ties by arrival (fcfs)
  --max-num-queued-reqs N          llm: refuse (503) a request that would take the sequences
                                   in flight over N (no limit)
  --max-num-queued-tokens N        llm: refuse (503) a request that would take the prompt tokens
                                   waiting for prefill over N (no limit)
  --mm-processor-cache-gb X        the multimodal processor cache, GiB; 0 = none (4)
)";

std::vector<std::uint32_t> parse_replicas(flag_parser& p) {
  std::string v = p.string();
  std::vector<std::uint32_t> out;
  std::size_t pos = 0;
  while (pos <= v.size()) {
    auto comma = v.find(',', pos);
    std::string part = v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    char* end = nullptr;
    unsigned long x = std::strtoul(part.c_str(), &end, 10);
    if (part.empty() || *end || x < 1 || x > 16) p.fail("invalid value for --replicas: " + v);
    out.push_back(static_cast<std::uint32_t>(x));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (out.size() != 3 && out.size() != 1)
    p.fail("invalid value for --replicas: " + v + " (want A,B,C, or N for diffusion)");
  return out;
}

// The value of a flag that takes a JSON object, as vLLM's config flags do; `parser` holds
// the document. A value that is not one fails with one line naming the flag.
simdjson::dom::object json_object_flag(flag_parser& p, simdjson::dom::parser& parser) {
  std::string v = p.string();
  simdjson::dom::object obj;
  if (auto e = parser.parse(v).get(obj); e)
    p.fail("invalid value for " + p.name() + ": want a JSON object, as vLLM's (" +
           std::string(simdjson::error_message(e)) + ")");
  return obj;
}

// vLLM's --speculative-config JSON: what the simulation uses is num_speculative_tokens;
// method (and vLLM's other keys) are accepted and do not change the simulation.
std::uint32_t parse_speculative_config(flag_parser& p) {
  simdjson::dom::parser parser;
  simdjson::dom::object cfg = json_object_flag(p, parser);
  std::int64_t k = 0;
  if (auto e = cfg["num_speculative_tokens"].get(k); e || k < 1 || k > 16)
    p.fail(
        "invalid value for --speculative-config: num_speculative_tokens must be an "
        "integer from 1 to 16");
  std::string_view method;
  if (auto e = cfg["method"].get(method); e && e != simdjson::NO_SUCH_FIELD)
    p.fail("invalid value for --speculative-config: method must be a string");
  return static_cast<std::uint32_t>(k);
}

// A number of the NixlConnector's kv_connector_extra_config in [min, max] (`range` says
// it to the user); absent: `dflt`.
double nixl_extra(flag_parser& p, simdjson::dom::object cfg, const char* key, double min,
                  double max, const char* range, double dflt) {
  simdjson::dom::element v;
  if (cfg.at_pointer(std::string("/kv_connector_extra_config/") + key).get(v)) return dflt;
  double x = 0;
  if (v.get_double().get(x) || !(x >= min && x <= max))
    p.fail("invalid value for --kv-transfer-config: kv_connector_extra_config." + std::string(key) +
           " must be " + range);
  return x;
}

// A random engine id, as vLLM's KVTransferConfig draws a UUID when none is given.
std::string random_engine_id() {
  std::random_device rd;
  char id[40];
  std::snprintf(id, sizeof id, "%08x-%04x-4%03x-%04x-%08x%04x", rd(), rd() & 0xffff, rd() & 0xfff,
                (rd() & 0x3fff) | 0x8000, rd(), rd() & 0xffff);
  return id;
}

// vLLM's --kv-transfer-config JSON, one connector: the OffloadingConnector (its CPU
// tier's size) or the NixlConnector (P/D disaggregation; kv_connector_extra_config's
// abort_request_timeout stands for VLLM_NIXL_ABORT_REQUEST_TIMEOUT, failure_rate is
// ours). kv_role is required and checked as vLLM does; it changes nothing here, as in
// vLLM's NixlConnector, where each request's kv_transfer_params decide.
void parse_kv_transfer_config(flag_parser& p, engine_config& e) {
  auto bad = [&](const std::string& why) {
    p.fail("invalid value for --kv-transfer-config: " + why);
  };
  simdjson::dom::parser parser;
  simdjson::dom::object cfg = json_object_flag(p, parser);
  std::string_view connector;
  if (cfg["kv_connector"].get(connector) ||
      (connector != "OffloadingConnector" && connector != "NixlConnector"))
    bad("kv_connector must be \"OffloadingConnector\" or \"NixlConnector\" (one connector at "
        "a time, the ones simulated)");
  if (connector == "OffloadingConnector") {
    std::int64_t blocks = 0;
    if (cfg.at_pointer("/kv_connector_extra_config/num_cpu_blocks").get(blocks) || blocks < 1 ||
        blocks > (1 << 24))
      bad("kv_connector_extra_config.num_cpu_blocks must be an integer from 1 to 16777216");
    e.offload_cpu_blocks = static_cast<std::uint32_t>(blocks);
  } else {
    e.nixl = true;
    e.nixl_abort_timeout_s = nixl_extra(p, cfg, "abort_request_timeout", 0.001, 86400,
                                        "a number of seconds from 0.001 to 86400", 480);
    e.nixl_failure_rate = nixl_extra(p, cfg, "failure_rate", 0, 1, "a number from 0 to 1", 0);
    std::string_view id;
    if (auto err = cfg["engine_id"].get(id); err == simdjson::NO_SUCH_FIELD)
      e.nixl_engine_id = random_engine_id();
    else if (err || id.empty())
      bad("engine_id must be a non-empty string");
    else
      e.nixl_engine_id = id;
  }
  std::string_view role;
  if (cfg["kv_role"].get(role) ||
      (role != "kv_producer" && role != "kv_consumer" && role != "kv_both"))
    bad("kv_role must be \"kv_producer\", \"kv_consumer\" or \"kv_both\", as vLLM requires "
        "with a kv_connector");
}

}  // namespace

options parse_options(int argc, char** argv) {
  options o;
  bool replicas_set = false;
  bool enable_lora = false;
  std::uint32_t max_loras = 1;  // vLLM's default
  flag_parser p("shmetrics-engine-sim", argc, argv);
  auto& e = o.engine;
  while (p.next()) {
    if (p.is("--help") || p.is("-h")) {
      std::fputs(usage, stdout);
      std::exit(0);
    } else if (p.is("--version")) {
      std::printf("shmetrics-engine-sim %s (segment format %d.%d)\n", SHMETRICS_VERSION_STRING,
                  SHMETRICS_FORMAT_MAJOR, SHMETRICS_FORMAT_MINOR);
      std::exit(0);
    } else if (p.is("--host")) {
      o.host = p.string();
    } else if (p.is("--port")) {
      o.port = static_cast<int>(p.uint(0, 65535));
    } else if (p.is("--model")) {
      o.model = p.string();
    } else if (p.is("--served-model-name")) {
      o.served_model_name = p.string();
    } else if (p.is("--pipeline")) {
      std::string v = p.string();
      if (v == "llm")
        o.pipeline = pipeline_kind::llm;
      else if (v == "omni")
        o.pipeline = pipeline_kind::omni;
      else if (v == "diffusion")
        o.pipeline = pipeline_kind::diffusion;
      else
        p.fail("invalid value for --pipeline: " + v + " (llm, omni or diffusion)");
    } else if (p.is("--replicas")) {
      o.replicas = parse_replicas(p);
      replicas_set = true;
    } else if (p.is("--num-inference-steps")) {
      o.num_inference_steps = static_cast<std::uint32_t>(p.uint(1, 1000));
    } else if (p.is("--data-parallel-size") || p.is("-dp")) {
      o.data_parallel_size = static_cast<std::uint32_t>(p.uint(1, 64));
    } else if (p.is("--api-server-count")) {
      o.api_server_count = static_cast<std::uint32_t>(p.uint(1, 64));
    } else if (p.is("--internal.api-server-rank")) {  // set by the engine process
      o.api_server_rank = static_cast<int>(p.uint(0, 63));
    } else if (p.is("--internal.engine-port")) {
      o.engine_port = static_cast<int>(p.uint(1, 65535));
    } else if (p.is("--log-stats")) {
      o.log_stats = p.boolean();
    } else if (p.is("--disable-log-stats")) {
      o.log_stats = !p.boolean();
    } else if (p.is("--max-num-seqs")) {
      e.max_num_seqs = static_cast<std::uint32_t>(p.uint(1, 1u << 20));
    } else if (p.is("--max-num-batched-tokens")) {
      e.max_num_batched_tokens = static_cast<std::uint32_t>(p.uint(1, 1u << 24));
    } else if (p.is("--block-size")) {
      e.block_size = static_cast<std::uint32_t>(p.uint(1, 1024));
    } else if (p.is("--num-gpu-blocks") || p.is("--num-gpu-blocks-override")) {
      e.num_gpu_blocks = static_cast<std::uint32_t>(p.uint(1, 1u << 24));
    } else if (p.is("--max-model-len")) {
      e.max_model_len = static_cast<std::uint32_t>(p.uint(16, 1u << 24));
    } else if (p.is("--enable-prefix-caching")) {
      e.enable_prefix_caching = p.boolean();
    } else if (p.is("--no-enable-prefix-caching")) {
      e.enable_prefix_caching = !p.boolean();
    } else if (p.is("--seed")) {
      e.seed = p.uint();
    } else if (p.is("--time-scale")) {
      e.time_scale = p.number(0, 1000);
    } else if (p.is("--shm.dir")) {
      o.shm_dir = p.string();
    } else if (p.is("--shm.prefix")) {
      o.shm_prefix = p.string();
    } else if (p.is("--catalog")) {
      o.catalog = p.string();
    } else if (p.is("--max-request-bytes")) {
      o.max_request_bytes = p.uint(1024, std::uint64_t{1} << 32);
    } else if (p.is("--speculative-config")) {
      e.num_speculative_tokens = parse_speculative_config(p);
    } else if (p.is("--spec-acceptance-rate")) {
      e.spec_acceptance_rate = p.number(0, 1);
    } else if (p.is("--kv-transfer-config")) {
      e.offload_cpu_blocks = 0;  // a later flag replaces an earlier one
      e.nixl = false;
      parse_kv_transfer_config(p, e);
    } else if (p.is("--enable-sleep-mode")) {
      e.enable_sleep_mode = p.boolean();
    } else if (p.is("--enable-lora")) {
      enable_lora = p.boolean();
    } else if (p.is("--max-loras")) {
      max_loras = static_cast<std::uint32_t>(p.uint(1, 256));
    } else if (p.is("--lora-modules")) {
      for (auto& m : p.strings()) {
        auto eq = m.find('=');
        if (eq == 0 || eq == std::string::npos || eq + 1 == m.size())
          p.fail("invalid value for --lora-modules: " + m + " (want NAME=PATH)");
        o.lora_modules.emplace_back(m.substr(0, eq), m.substr(eq + 1));
      }
    } else if (p.is("--kv-cache-metrics")) {
      e.kv_cache_metrics = p.boolean();
    } else if (p.is("--kv-cache-metrics-sample")) {
      e.kv_cache_metrics_sample = p.number(0, 1);
    } else if (p.is("--scheduling-policy")) {
      std::string v = p.string();
      if (v != "fcfs" && v != "priority")
        p.fail("invalid value for --scheduling-policy: " + v + " (fcfs or priority)");
      e.priority_policy = v == "priority";
    } else if (p.is("--max-num-queued-reqs")) {
      o.max_num_queued_reqs = p.uint(1, std::uint64_t{1} << 32);
    } else if (p.is("--max-num-queued-tokens")) {
      o.max_num_queued_tokens = p.uint(1, std::uint64_t{1} << 40);
    } else if (p.is("--mm-processor-cache-gb")) {
      e.mm_cache_bytes = p.number(0, 1024) * (1u << 30);
    } else if (p.is("--internal.request-timeout")) {  // seconds; tests shorten it
      o.request_timeout_s = static_cast<std::uint32_t>(p.uint(1, 3600));
    } else {
      p.unknown();
    }
  }
  // --replicas depends on --pipeline, which may come later.
  const bool diffusion = o.pipeline == pipeline_kind::diffusion;
  if (!replicas_set)
    o.replicas = diffusion ? std::vector<std::uint32_t>{1} : std::vector<std::uint32_t>{1, 1, 1};
  else if (o.replicas.size() != (diffusion ? 1u : 3u))
    p.fail(std::string("invalid value for --replicas: ") +
           (diffusion ? "--pipeline diffusion wants one count" : "want A,B,C"));
  if (o.model.empty())
    o.model = o.pipeline == pipeline_kind::omni ? "Qwen/Qwen3-Omni-30B-A3B-Instruct"
              : diffusion                       ? "Tongyi-MAI/Z-Image-Turbo"
                                                : "Qwen/Qwen2.5-7B-Instruct";
  if (o.served_model_name.empty()) o.served_model_name = o.model;
  // vLLM's optional features are simulated in the llm engine only.
  const std::pair<const char*, bool> llm_features[] = {
      {"--speculative-config", e.num_speculative_tokens > 0},
      {"--kv-cache-metrics", e.kv_cache_metrics},
      {"--kv-transfer-config", e.offload_cpu_blocks > 0 || e.nixl},
      {"--enable-lora", enable_lora},
      {"--enable-sleep-mode", e.enable_sleep_mode},
      {"--scheduling-policy priority", e.priority_policy},
      {"--max-num-queued-reqs", o.max_num_queued_reqs > 0},
      {"--max-num-queued-tokens", o.max_num_queued_tokens > 0}};
  for (auto [flag, on] : llm_features)
    if (on && o.pipeline != pipeline_kind::llm)
      p.fail(std::string(flag) + " is simulated for --pipeline llm only");
  if (e.offload_cpu_blocks > 0 && !e.enable_prefix_caching)
    p.fail("--kv-transfer-config: the OffloadingConnector needs --enable-prefix-caching");
  if (!o.lora_modules.empty() && !enable_lora) p.fail("--lora-modules needs --enable-lora");
  for (auto& [name, path] : o.lora_modules)
    if (name == o.served_model_name)
      p.fail("invalid value for --lora-modules: " + name + " is the served model's name");
  if (enable_lora) {
    e.max_loras = max_loras;
    for (auto& [name, path] : o.lora_modules)
      e.lora_names.push_back(name);
  }
  return o;
}

}  // namespace engine_sim
