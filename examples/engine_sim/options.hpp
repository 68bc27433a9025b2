// shmetrics-engine-sim's flags, named as vLLM (and vLLM-Omni) name them.
#pragma once

#include <cstdint>  // counts
#include <string>   // names
#include <utility>  // LoRA modules
#include <vector>   // replicas

#include "engine.hpp"

namespace engine_sim {

enum class pipeline_kind : std::uint8_t { llm, omni, diffusion };

struct options {
  std::string host = "127.0.0.1";
  int port = 8000;                ///< 0: a free port (the first stdout line says which)
  std::string model;              ///< --model; default per pipeline
  std::string served_model_name;  ///< --served-model-name; default: model
  pipeline_kind pipeline = pipeline_kind::omni;
  std::vector<std::uint32_t> replicas = {1, 1,
                                         1};  ///< omni: thinker, talker, code2wav; diffusion: {N}
  std::uint32_t data_parallel_size = 1;
  std::uint32_t api_server_count = 1;  ///< > 1: API-server processes in front of the engine
  int api_server_rank = -1;            ///< set (internally) in an API-server process: its rank
  int engine_port = 0;                 ///< in an API-server process: the engine process's port
  int log_stats = -1;                  ///< -1: the pipeline's default (llm on, omni off)
  engine_config engine;
  std::string shm_dir = "/dev/shm";
  std::string shm_prefix = "shmetrics";
  std::string catalog;  ///< --catalog; default: $SHMETRICS_CATALOG, installed, source tree
  double audio_sample_rate = 24000;
  std::uint32_t num_inference_steps = 8;  ///< diffusion: the default when a request gives none
  std::uint64_t max_request_bytes = 32u << 20;  ///< largest request body; more: 413
  std::uint32_t request_timeout_s = 60;  ///< to receive one request (--internal.*, for tests)
  /// Admission control (vLLM's --max-num-queued-reqs / --max-num-queued-tokens): a request
  /// that would take the sequences in flight, or the prompt tokens waiting for prefill,
  /// over the limit gets a 503. 0: no limit.
  std::uint64_t max_num_queued_reqs = 0, max_num_queued_tokens = 0;
  /// --lora-modules name=path ...: the adapters a request may name as its model.
  std::vector<std::pair<std::string, std::string>> lora_modules;

  bool is_lora_module(const std::string& name) const {
    for (auto& [n, path] : lora_modules)
      if (n == name) return true;
    return false;
  }

  bool stats() const { return log_stats < 0 ? pipeline == pipeline_kind::llm : log_stats > 0; }
};

/// Parses argv; prints usage and exits 0 on --help, one line and exit 2 on a bad flag.
options parse_options(int argc, char** argv);

}  // namespace engine_sim
