// The catalog's example (docs/catalog.md): vLLM's and vLLM-Omni's metric families from
// the catalog, one engine step and one finished request recorded. Built with -Wextra
// -Werror, so the options structs stay usable with designated initializers that name
// only some fields.
//
//   SHMETRICS_CATALOG=data/vllm_catalog.json shmetrics-catalog-example [--shm.prefix NAME]
//
// Without $SHMETRICS_CATALOG it loads the installed catalog; the error says which file
// it could not open and how to point at another.
#include <cstdio>  // errors
#include <string>  // flags

#include <shmetrics/catalog/omni_metrics.hpp>
#include <shmetrics/catalog/vllm_metrics.hpp>

int main(int argc, char** argv) {
  shmetrics::registry_options ro;
  ro.prefix = "shmetrics-catalog-example";
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--shm.prefix") ro.prefix = argv[i + 1];

  auto cat = shmetrics::catalog::load(shmetrics::catalog::default_path());
  if (!cat) {
    std::fprintf(stderr, "%s\n", cat.error().message().c_str());
    return 1;
  }
  auto reg = shmetrics::registry::create(ro);
  if (!reg) {
    std::fprintf(stderr, "%s\n", reg.error().message().c_str());
    return 1;
  }

  // vLLM: two data-parallel engines.
  auto vm = shmetrics::vllm_metrics::create(
      *reg, *cat,
      {.model_name = "m",
       .engines = 2,
       .max_model_len = 32768,
       .cache_config = {{"block_size", "16"}, {"num_gpu_blocks", "1024"}}});
  if (!vm) {
    std::fprintf(stderr, "%s\n", vm.error().message().c_str());
    return 1;
  }
  const double ttft[] = {0.12};
  vm->record_step(0, {.num_running_reqs = 1,
                      .kv_cache_usage = 0.25,
                      .num_prompt_tokens = 128,
                      .num_generation_tokens = 1,
                      .time_to_first_tokens = ttft});
  vm->record_finished_request(0, {.reason = shmetrics::finish_reason::stop,
                                  .arrival_time = 0,
                                  .queued_ts = 0.01,
                                  .scheduled_ts = 0.02,
                                  .first_token_ts = 0.12,
                                  .last_token_ts = 1.5,
                                  .finished_time = 1.5,
                                  .num_prompt_tokens = 128,
                                  .num_generation_tokens = 64});

  // vLLM-Omni: a thinker, a talker and code2wav, in a registry of its own prefix.
  ro.prefix += "-omni";
  auto oreg = shmetrics::registry::create(ro);
  if (!oreg) {
    std::fprintf(stderr, "%s\n", oreg.error().message().c_str());
    return 1;
  }
  using shmetrics::stage_kind;
  shmetrics::omni_options o{
      .model_name = "Qwen/Qwen3-Omni",
      .log_stats = true,
      .stages = {{1, stage_kind::llm}, {2, stage_kind::llm}, {1, stage_kind::audio}}};
  auto om = shmetrics::omni_metrics::create(*oreg, *cat, o);
  if (!om) {
    std::fprintf(stderr, "%s\n", om.error().message().c_str());
    return 1;
  }
  om->set_requests(1, 0);
  om->record_request({.request_id = "r1",
                      .arrival_ms = 0,
                      .finish_ms = 900,
                      .stages = {{.stage = 0, .num_tokens_in = 20, .num_tokens_out = 8},
                                 {.stage = 1, .num_tokens_out = 40},
                                 {.stage = 2, .audio_generated_frames = 24000}}});

  std::printf("%zu vLLM and %zu vLLM-Omni families registered in %s and %s\n", vm->names().size(),
              om->names().size(), reg->path().c_str(), oreg->path().c_str());
  return 0;
}
