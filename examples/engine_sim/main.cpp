// shmetrics-engine-sim: an OpenAI-compatible simulated inference server.
//
//   shmetrics-engine-sim --pipeline llm --port 8000 --shm.prefix demo
//   shmetrics-exporter --shm.prefix demo     # serves vllm:* to Prometheus
//
// The first stdout line is `listening on http://HOST:PORT`. See docs/engine-sim.md.
#include <atomic>   // request ids
#include <chrono>   // created, waits
#include <csignal>  // SIGINT / SIGTERM
#include <cstdio>   // printf
#include <memory>   // backend
#include <string>   // bodies
#include <thread>   // signal watcher

#include <httplib.h>

#include "backend.hpp"
#include "openai.hpp"
#include "tokenizer.hpp"

namespace {

using namespace engine_sim;

httplib::Server* g_server = nullptr;
std::atomic<bool> g_stop{false};

std::string finish_name(shmetrics::finish_reason r) {
  return std::string(shmetrics::finish_reason_names[static_cast<std::size_t>(r)]);
}

// A streamed or buffered reply, fed from one request's outputs. The content provider
// waits on the request, writes what is new, and gives up (aborting the request) when a
// write fails: that is how a client that went away is noticed.
struct reply {
  backend* be;
  api_kind kind;
  api_request in;
  std::shared_ptr<request> r;
  api_result res;
  std::vector<std::size_t> sent;  // per choice: tokens already streamed
  bool role_sent = false;
  bool aborted = false;

  // Called by httplib until it returns false or the sink is done.
  bool pump(httplib::DataSink& sink) {
    if (g_stop) {  // shutting down: end the connection, so the worker pool can join
      cancel();
      return false;
    }
    std::vector<std::pair<std::size_t, std::string>> deltas;
    bool complete = false;
    {
      std::unique_lock lk(r->m);
      auto fresh = [&] {
        if (r->complete) return true;
        if (!in.stream) return false;
        for (std::size_t i = 0; i < r->outputs.size(); ++i)
          if (r->outputs[i].size() > sent[i]) return true;
        return false;
      };
      r->cv.wait_for(lk, std::chrono::milliseconds(100), fresh);
      complete = r->complete;
      if (in.stream)
        for (std::size_t i = 0; i < r->outputs.size(); ++i)
          for (; sent[i] < r->outputs[i].size(); ++sent[i])
            deltas.emplace_back(i, std::string(tokenizer::decode(r->outputs[i][sent[i]])));
      if (complete) fill(res);
    }
    if (in.stream) {
      for (auto& [choice, text] : deltas) {
        bool role = kind == api_kind::chat && !role_sent;
        role_sent = true;
        if (!send(sink, "data: " + chunk_json(kind, res, choice, text, {}, role) + "\n\n"))
          return false;
      }
      if (!complete) {
        // Nothing new for 100 ms: an SSE comment, which also detects a closed socket.
        return deltas.empty() ? send(sink, ": keep-alive\n\n") : true;
      }
      for (std::size_t i = 0; i < res.finish_reasons.size(); ++i)
        if (!send(sink,
                  "data: " + chunk_json(kind, res, i, "", res.finish_reasons[i], false) + "\n\n"))
          return false;
      if (in.include_usage && !send(sink, "data: " + usage_chunk_json(kind, res) + "\n\n"))
        return false;
      if (!send(sink, "data: [DONE]\n\n")) return false;
      sink.done();
      return true;
    }
    if (!complete) {
      // JSON allows leading whitespace: a byte every 100 ms notices a vanished client.
      return send(sink, " ");
    }
    if (!send(sink, response_json(kind, res))) return false;
    sink.done();
    return true;
  }

  bool send(httplib::DataSink& sink, const std::string& s) {
    if (sink.write(s.data(), s.size())) return true;
    cancel();
    return false;
  }
  void cancel() {
    if (!aborted) be->abort(r);
    aborted = true;
  }

  // Under r->m.
  void fill(api_result& out) {
    out.texts.clear();
    out.finish_reasons.clear();
    out.completion_tokens = 0;
    for (std::size_t i = 0; i < r->outputs.size(); ++i) {
      std::string t;
      for (auto id : r->outputs[i])
        t += tokenizer::decode(id);
      out.texts.push_back(std::move(t));
      out.finish_reasons.push_back(finish_name(r->output_reasons[i]));
      out.completion_tokens += static_cast<std::uint32_t>(r->outputs[i].size());
    }
    out.prompt_tokens = static_cast<std::uint32_t>(r->prompt.size());
    out.cached_tokens = r->num_cached_tokens;
    out.audio_json = r->audio_json;
  }
};

void send_error(httplib::Response& res, const api_error& e) {
  res.status = e.status;
  res.set_content(error_body(e), "application/json");
}

void handle_generate(backend& be, api_kind kind, const httplib::Request& req,
                     httplib::Response& res) {
  static std::atomic<std::uint64_t> next_id{0};
  double arrival = engine::now();
  const auto& o = be.opts();
  auto rep = std::make_shared<reply>();
  rep->be = &be;
  rep->kind = kind;
  api_error err;
  if (!parse_request(kind, req.body, rep->in, err)) return send_error(res, err);
  auto& in = rep->in;
  if (!in.model.empty() && in.model != o.served_model_name)
    return send_error(res, {404, "The model `" + in.model + "` does not exist.", "model"});
  auto prompt_len = static_cast<std::uint32_t>(in.prompt.size());
  std::uint32_t max_len = o.engine.max_model_len;
  if (!in.max_tokens_set)  // vLLM: 16 for completions, the rest of the context for chat
    in.max_tokens =
        kind == api_kind::completion ? 16 : (max_len > prompt_len ? max_len - prompt_len : 0);
  if (prompt_len + std::uint64_t{in.max_tokens} > max_len || in.max_tokens == 0)
    return send_error(
        res,
        {400,
         "This model's maximum context length is " + std::to_string(max_len) +
             " tokens. However, you requested " +
             std::to_string(prompt_len + std::uint64_t{in.max_tokens}) + " tokens (" +
             std::to_string(prompt_len) + " in the messages, " + std::to_string(in.max_tokens) +
             " in the completion). Please reduce the length of the messages or completion.",
         "max_tokens"});
  if (prompt_len > std::uint64_t{o.engine.num_gpu_blocks} * o.engine.block_size)
    return send_error(res, {400, "the prompt does not fit the KV cache", "prompt"});

  char id[40];
  std::snprintf(id, sizeof id, "%s-%016llx", kind == api_kind::chat ? "chatcmpl" : "cmpl",
                static_cast<unsigned long long>(next_id.fetch_add(1) * 0x9E3779B97F4A7C15ull));
  rep->res.id = id;
  rep->res.model = o.served_model_name;
  rep->res.created = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
  rep->sent.assign(in.n, 0);
  rep->r = be.submit(in, id, arrival);
  res.set_chunked_content_provider(
      in.stream ? "text/event-stream" : "application/json",
      [rep](std::size_t, httplib::DataSink& sink) { return rep->pump(sink); },
      [rep](bool success) {
        if (!success) rep->cancel();
      });
}

void on_signal(int) {
  g_stop = true;
}

}  // namespace

int main(int argc, char** argv) {
  options opt = parse_options(argc, argv);
  std::string err;
  auto be = backend::create(opt, err);
  if (!be) {
    std::fprintf(stderr, "shmetrics-engine-sim: %s\n", err.c_str());
    return 1;
  }

  httplib::Server svr;
  g_server = &svr;
  // Streaming requests hold a worker each, as long as they stream.
  svr.new_task_queue = [] { return new httplib::ThreadPool(512); };
  svr.set_tcp_nodelay(true);
  svr.set_keep_alive_max_count(1000);
  const std::string model = opt.served_model_name;
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
  svr.Get("/version", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"version\":" + json_string(be->vllm_version() + ".0+shmetrics.sim") + "}",
                    "application/json");
  });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"object\":\"list\",\"data\":[{\"id\":" + json_string(model) +
                        ",\"object\":\"model\",\"created\":0,\"owned_by\":\"vllm\",\"root\":" +
                        json_string(opt.model) + ",\"parent\":null,\"max_model_len\":" +
                        std::to_string(opt.engine.max_model_len) + "}]}",
                    "application/json");
  });
  svr.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    handle_generate(*be, api_kind::completion, req, res);
  });
  svr.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    handle_generate(*be, api_kind::chat, req, res);
  });
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404 && res.body.empty())
      res.set_content(error_body({404, "Not Found", {}}), "application/json");
  });

  int port = opt.port == 0 ? svr.bind_to_any_port(opt.host) : opt.port;
  if (opt.port != 0 && !svr.bind_to_port(opt.host, opt.port)) port = -1;
  if (port <= 0) {
    std::fprintf(stderr, "shmetrics-engine-sim: cannot listen on %s:%d\n", opt.host.c_str(),
                 opt.port);
    return 1;
  }
  std::printf("listening on http://%s:%d\n", opt.host.c_str(), port);
  for (auto& p : be->segment_paths())
    std::printf("writing %s\n", p.c_str());
  std::fflush(stdout);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::thread watcher([&] {
    while (!g_stop)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    svr.stop();
  });
  svr.listen_after_bind();
  g_stop = true;
  watcher.join();
  return 0;
}
