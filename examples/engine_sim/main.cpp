// shmetrics-engine-sim: an OpenAI-compatible simulated inference server.
//
//   shmetrics-engine-sim --pipeline llm --port 8000 --shm.prefix demo
//   shmetrics-exporter --shm.prefix demo     # serves vllm:* to Prometheus
//
// The first stdout line is `listening on http://HOST:PORT`. See docs/engine-sim.md.
#include <atomic>   // request ids
#include <chrono>   // created, waits
#include <cerrno>   // errno
#include <cstdio>   // printf
#include <cstring>  // strerror
#include <memory>   // backend
#include <random>   // request ids
#include <string>   // bodies
#include <thread>   // listener
#include <vector>   // API-server processes

#include <pthread.h>   // pthread_sigmask
#include <signal.h>    // sigwait
#include <spawn.h>     // API-server processes
#include <sys/wait.h>  // waitpid
#include <unistd.h>    // pipe

#include <httplib.h>

#include "api_server.hpp"
#include "backend.hpp"
#include "http_limits.hpp"
#include "http_metrics.hpp"
#include "lifecycle.hpp"
#include "no_compression.hpp"
#include "metrics_route.hpp"
#include "openai.hpp"
#include "tokenizer.hpp"

extern char** environ;

namespace {

using namespace engine_sim;

// "<prefix>-<16 hex digits>" from `counter`'s next value, spread by a golden-ratio multiply.
std::string numbered_id(const char* prefix, std::atomic<std::uint64_t>& counter) {
  char id[48];
  std::snprintf(id, sizeof id, "%s-%016llx", prefix,
                static_cast<unsigned long long>(counter.fetch_add(1) * 0x9E3779B97F4A7C15ull));
  return id;
}

// Now, in whole seconds since the epoch (OpenAI's `created`).
long unix_seconds() {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count());
}

std::string finish_name(shmetrics::finish_reason r) {
  return std::string(shmetrics::finish_reason_names[static_cast<std::size_t>(r)]);
}

// What the text and image replies share: a write that fails means the client went away,
// and then the job is aborted, once.
struct cancellable_reply {
  bool aborted = false;

  virtual ~cancellable_reply() = default;
  virtual void abort_job() = 0;  // the request or image job, in its engine

  bool send(httplib::DataSink& sink, const std::string& s) {
    if (sink.write(s.data(), s.size())) return true;
    cancel();
    return false;
  }
  void cancel() {
    lifecycle::use u;
    if (!aborted && u.ok()) abort_job();  // after stopping, the engines abort it
    aborted = true;
  }
};

// A streamed or buffered reply, fed from one request's outputs. The content provider
// waits on the request, writes what is new, and gives up (aborting the request) when a
// write fails: that is how a client that went away is noticed.
struct reply : cancellable_reply {
  backend* be;
  api_kind kind;
  api_request in;
  std::shared_ptr<request> r;
  api_result res;
  std::vector<std::size_t> sent;  // per choice: tokens already streamed
  std::vector<bool> role_sent;    // per choice: chat's role delta sent (in its first chunk)
  lifecycle::reply_token token;   // main() waits for every reply before it stops

  // Called by httplib until it returns false or the sink is done.
  bool pump(httplib::DataSink& sink) {
    if (lifecycle::stopping) {
      // Shutting down: end the response properly; the engines abort the request when
      // they stop.
      auto tail = lifecycle::shutdown_tail(in.stream ? "text/event-stream" : "application/json");
      if (!sink.write(tail.data(), tail.size())) return false;
      sink.done();
      return true;
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
      // Everything new of a choice goes in one chunk, as vLLM's output collector merges
      // the outputs that a slower client has not taken yet: a step that emits several
      // tokens (speculative decoding) is one chunk, not one per token.
      if (in.stream)
        for (std::size_t i = 0; i < r->outputs.size(); ++i) {
          if (sent[i] == r->outputs[i].size()) continue;
          std::string text;
          for (; sent[i] < r->outputs[i].size(); ++sent[i])
            text += tokenizer::decode(r->outputs[i][sent[i]]);
          deltas.emplace_back(i, std::move(text));
        }
      if (complete) fill(res);
    }
    if (in.stream) {
      for (auto& [choice, text] : deltas) {
        // Every choice's first chunk says the role (vLLM sends one role chunk per choice).
        bool role = kind == api_kind::chat && !role_sent[choice];
        role_sent[choice] = true;
        if (!send(sink, "data: " + chunk_json(kind, res, choice, text, {}, role) + "\n\n"))
          return false;
      }
      if (!complete) {
        // Nothing new for 100 ms: an SSE comment, which also detects a closed socket.
        return deltas.empty() ? send(sink, ": keep-alive\n\n") : true;
      }
      for (std::size_t i = 0; i < res.finish_reasons.size(); ++i) {
        bool role = kind == api_kind::chat && !role_sent[i];  // a choice with no token
        if (!send(sink,
                  "data: " + chunk_json(kind, res, i, "", res.finish_reasons[i], role) + "\n\n"))
          return false;
      }
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

  void abort_job() override { be->abort(r); }

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
    out.kv_transfer_params = be->kv_transfer_params_of(*r);
  }
};

void send_error(httplib::Response& res, const api_error& e) {
  res.status = e.status;
  res.set_content(error_body(e), "application/json");
}

// A 503 when `u` could not be taken: the server is shutting down and the handler returns.
bool shutting_down(const lifecycle::use& u, httplib::Response& res) {
  if (u.ok()) return false;
  send_error(res, {503, "the server is shutting down", {}});
  return true;
}

void handle_generate(backend& be, api_kind kind, const httplib::Request& req,
                     httplib::Response& res) {
  static std::atomic<std::uint64_t> next_id{std::random_device{}()};  // ids differ per run
  lifecycle::use u;
  if (shutting_down(u, res)) return;
  double arrival = engine::now();
  const auto& o = be.opts();
  if (be.diffusion())
    return send_error(res, {400,
                            "The model `" + o.served_model_name +
                                "` generates images: use POST /v1/images/generations",
                            "model"});
  auto rep = std::make_shared<reply>();
  rep->be = &be;
  rep->kind = kind;
  api_error err;
  if (!parse_request(kind, req.body, rep->in, err)) return send_error(res, err);
  auto& in = rep->in;
  if (!in.model.empty() && in.model != o.served_model_name && !o.is_lora_module(in.model))
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

  std::string id = numbered_id(kind == api_kind::chat ? "chatcmpl" : "cmpl", next_id);
  rep->res.id = id;
  rep->res.model = in.model.empty() ? o.served_model_name : in.model;  // vLLM echoes a LoRA
  rep->res.created = unix_seconds();
  rep->sent.assign(in.n, 0);
  rep->role_sent.assign(in.n, false);
  if (in.priority != 0 && !o.engine.priority_policy)  // vLLM's check, word for word
    return send_error(res, {400,
                            "Got priority " + std::to_string(in.priority) +
                                " but Priority scheduling is not enabled.",
                            "priority"});
  rep->r = be.submit(in, id, arrival, err);
  if (!rep->r) return send_error(res, err);
  res.set_chunked_content_provider(
      in.stream ? "text/event-stream" : "application/json",
      [rep](std::size_t, httplib::DataSink& sink) { return rep->pump(sink); },
      [rep](bool success) {
        if (!success) rep->cancel();
      });
}

// An images response: whitespace every 100 ms while the job runs (JSON allows it, and a
// write is how a client that went away is noticed), then the JSON.
struct image_reply : cancellable_reply {
  diffusion_pipeline* dp = nullptr;
  std::shared_ptr<image_job> j;
  long created = 0;
  lifecycle::reply_token token;

  bool pump(httplib::DataSink& sink) {
    if (lifecycle::stopping) {
      std::string tail = lifecycle::shutdown_error;
      if (!sink.write(tail.data(), tail.size())) return false;
      sink.done();
      return true;
    }
    bool complete = false;
    shmetrics::finish_reason why = shmetrics::finish_reason::stop;
    std::vector<std::string> images;
    {
      std::unique_lock lk(j->m);
      j->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return j->complete; });
      complete = j->complete;
      if (complete) {
        why = j->reason;
        images.swap(j->b64_pngs);
      }
    }
    if (!complete) return send(sink, " ");
    // Only a shutdown ends a job that this client still waits for without images.
    std::string body = why == shmetrics::finish_reason::stop
                           ? images_response_json(created, images)
                           : std::string(lifecycle::shutdown_error);
    if (!send(sink, body)) return false;
    sink.done();
    return true;
  }
  void abort_job() override { dp->abort(j); }
};

void handle_images(backend& be, const httplib::Request& req, httplib::Response& res) {
  static std::atomic<std::uint64_t> next_id{std::random_device{}()};  // ids differ per run
  lifecycle::use u;
  if (shutting_down(u, res)) return;
  double arrival = engine::now();
  image_request in;
  api_error err;
  if (!parse_image_request(req.body, in, err)) return send_error(res, err);
  if (!in.model.empty() && in.model != be.opts().served_model_name)
    return send_error(res, {404, "The model `" + in.model + "` does not exist.", "model"});
  std::string id = numbered_id("img", next_id);
  auto rep = std::make_shared<image_reply>();
  rep->dp = be.diffusion();
  rep->created = unix_seconds();
  rep->j = rep->dp->submit(std::move(in), id, arrival);
  res.set_chunked_content_provider(
      "application/json", [rep](std::size_t, httplib::DataSink& sink) { return rep->pump(sink); },
      [rep](bool success) {
        if (!success) rep->cancel();
      });
}

// vLLM's instrumentator on this process's routes: cpp-httplib calls the logger once the
// whole response (a stream's last chunk too) is written, on the connection's thread.
void instrument(httplib::Server& svr, http_metrics& hm) {
  svr.set_logger([&hm](const httplib::Request& req, const httplib::Response& res) {
    hm.record_answered(req, res.status);
  });
}

// An API-server process (--api-server-count > 1): spawned from this executable, its
// stdout on a pipe that brings back its "listening on" and "writing" lines.
struct api_process {
  pid_t pid = -1;
  FILE* out = nullptr;
  std::string line() {
    char buf[4096];
    if (!out || !std::fgets(buf, sizeof buf, out)) return {};
    std::string s(buf);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
};

bool spawn_api_server(int argc, char** argv, std::vector<std::string> extra, api_process& p) {
  int fds[2];
  if (::pipe(fds) != 0) return false;
  std::vector<std::string> args(argv, argv + argc);
  args.insert(args.end(), extra.begin(), extra.end());  // later flags win
  std::vector<char*> cargs;
  for (auto& a : args)
    cargs.push_back(a.data());
  cargs.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  int rc = posix_spawn(&p.pid, "/proc/self/exe", &fa, nullptr, cargs.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return false;
  }
  p.out = ::fdopen(fds[0], "r");
  return true;
}

/// Reaps the API servers (already sent SIGTERM); SIGKILL for any still there at `until`.
void reap(std::vector<api_process>& procs, std::chrono::steady_clock::time_point until) {
  for (auto& p : procs) {
    while (p.pid > 0) {
      int st = 0;
      if (::waitpid(p.pid, &st, WNOHANG) == p.pid) {
        p.pid = -1;
      } else if (std::chrono::steady_clock::now() >= until) {
        ::kill(p.pid, SIGKILL);
        ::waitpid(p.pid, &st, 0);
        p.pid = -1;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    if (p.out) std::fclose(p.out);
    p.out = nullptr;
  }
}

}  // namespace

int main(int argc, char** argv) {
  options opt = parse_options(argc, argv);
  // SIGINT / SIGTERM are taken by sigwait() below: blocked before any thread starts, so
  // every thread inherits the mask and none is interrupted.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  if (opt.api_server_rank >= 0) return run_api_server(opt, sigs);

  std::string err;
  auto be = backend::create(opt, err);
  if (!be) {
    std::fprintf(stderr, "shmetrics-engine-sim: %s\n", err.c_str());
    return 1;
  }
  backend* bp = be.get();  // the handlers check lifecycle::use before they touch it

  // With API-server processes in front, this process is the engine: it listens on a
  // private loopback port and the API servers share the public one; each records vLLM's
  // HTTP families. Without them this process serves the API and records them itself.
  const bool fronted = opt.api_server_count > 1;
  std::unique_ptr<http_metrics> hm;
  if (!fronted && (!(hm = http_metrics::open(opt, err)) || !hm->record_process(err))) {
    std::fprintf(stderr, "shmetrics-engine-sim: %s\n", err.c_str());
    return 1;
  }

  // A thread per connection (a stream holds one as long as it streams), deadlines and
  // byte budgets for receiving each request: docs/engine-sim.md, "Slow and hostile clients".
  guarded_server svr(http_limits(opt));
  svr.set_tcp_nodelay(true);  // on the listening socket: accepted ones inherit it
  serve_uncompressed(svr, http_metrics::stamp_request_start);
  const std::string model = opt.served_model_name;
  const std::string version = be->vllm_version() + ".0+shmetrics.sim";
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
  svr.Get("/version", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"version\":" + json_string(version) + "}", "application/json");
  });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    // vLLM's ModelCards: `created` is the time of the request, one default ModelPermission
    // each; a LoRA adapter's root is its path, its parent the served model.
    static std::atomic<std::uint64_t> next_perm{1};
    std::string now = std::to_string(unix_seconds());
    auto card = [&](const std::string& id, const std::string& root, const std::string& parent,
                    const std::string& max_len) {
      std::string perm = numbered_id("modelperm", next_perm);
      return "{\"id\":" + json_string(id) + ",\"object\":\"model\",\"created\":" + now +
             ",\"owned_by\":\"vllm\",\"root\":" + json_string(root) + ",\"parent\":" + parent +
             ",\"max_model_len\":" + max_len + ",\"permission\":[{\"id\":\"" + perm +
             "\",\"object\":\"model_permission\",\"created\":" + now +
             ",\"allow_create_engine\":false,\"allow_sampling\":true,\"allow_logprobs\":true,"
             "\"allow_search_indices\":false,\"allow_view\":true,\"allow_fine_tuning\":false,"
             "\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]}";
    };
    std::string body = "{\"object\":\"list\",\"data\":[" +
                       card(model, opt.model, "null", std::to_string(opt.engine.max_model_len));
    for (auto& [name, path] : opt.lora_modules)
      body += "," + card(name, path, json_string(model), "null");
    res.set_content(body + "]}", "application/json");
  });
  svr.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    handle_generate(*bp, api_kind::completion, req, res);
  });
  svr.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    handle_generate(*bp, api_kind::chat, req, res);
  });
  if (opt.engine.nixl)  // a decode instance read a request's KV (backend::notify_loop)
    svr.Post("/internal/nixl/notify", [&](const httplib::Request& req, httplib::Response& res) {
      lifecycle::use u;
      std::string engine_id, request_id;
      if (shutting_down(u, res)) return;
      if (!parse_nixl_notice(req.body, engine_id, request_id))
        return send_error(res, {400, "want {\"remote_engine_id\", \"remote_request_id\"}", {}});
      bp->nixl_read_done(engine_id, request_id);
      res.set_content("{}", "application/json");
    });
  if (opt.engine.enable_sleep_mode) {
    // vLLM's dev-mode sleep endpoints (vllm/entrypoints/serve/dev/sleep/api_router.py):
    // served with --enable-sleep-mode alone (vLLM also wants VLLM_SERVER_DEV_MODE=1).
    svr.Post("/sleep", [&](const httplib::Request& req, httplib::Response& res) {
      lifecycle::use u;
      if (shutting_down(u, res)) return;
      std::string level_s = req.has_param("level") ? req.get_param_value("level") : "1";
      std::string mode = req.has_param("mode") ? req.get_param_value("mode") : "abort";
      if (level_s != "0" && level_s != "1" && level_s != "2")
        return send_error(res, {400, "level: want 0, 1 or 2", "level"});
      if (!bp->sleep(level_s[0] - '0', mode))
        return send_error(res, {400, "mode: want abort, wait or keep", "mode"});
      res.set_content("{\"status\":\"sleeping\",\"level\":" + level_s + "}", "application/json");
    });
    svr.Post("/wake_up", [&](const httplib::Request& req, httplib::Response& res) {
      lifecycle::use u;
      if (shutting_down(u, res)) return;
      std::vector<std::string> tags;
      for (std::size_t i = 0, n = req.get_param_value_count("tags"); i < n; ++i)
        tags.push_back(req.get_param_value("tags", i));
      bool awake = bp->wake_up(tags);
      std::string woken = "null";
      if (!tags.empty()) {
        woken = "[";
        for (std::size_t i = 0; i < tags.size(); ++i)
          woken += (i ? "," : "") + json_string(tags[i]);
        woken += "]";
      }
      res.set_content(std::string("{\"status\":\"") + (awake ? "awake" : "sleeping") +
                          "\",\"tags_woken\":" + woken + "}",
                      "application/json");
    });
    svr.Get("/is_sleeping", [&](const httplib::Request&, httplib::Response& res) {
      res.set_content(
          std::string("{\"is_sleeping\":") + (bp->is_sleeping() ? "true" : "false") + "}",
          "application/json");
    });
  }
  // vLLM serves /metrics here too (not counted by its instrumentator, as here).
  add_metrics_route(svr, opt.shm_dir, opt.shm_prefix);
  if (be->diffusion())
    svr.Post("/v1/images/generations", [&](const httplib::Request& req, httplib::Response& res) {
      handle_images(*bp, req, res);
    });
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404 && res.body.empty())
      res.set_content(error_body({404, "Not Found", {}}), "application/json");
  });
  if (hm) instrument(svr, *hm);

  const std::string host = fronted ? "127.0.0.1" : opt.host;
  std::atomic<bool> listener_done{false};
  std::thread listener;
  int port = start_listening(svr, host, fronted ? 0 : opt.port, listener, listener_done);
  if (port <= 0) {
    std::fprintf(stderr, "shmetrics-engine-sim: cannot listen on %s:%d: %s\n", host.c_str(),
                 fronted ? 0 : opt.port, std::strerror(errno));
    return 1;
  }

  std::vector<api_process> procs;
  std::vector<std::string> segments = be->segment_paths();
  if (hm) segments.push_back(hm->segment_path());
  int public_port = port;
  bool started = true;
  for (std::uint32_t k = 0; fronted && k < opt.api_server_count && started; ++k) {
    // Rank 0 takes --port (0: a free one); the others join it (SO_REUSEPORT, which
    // cpp-httplib sets on every listening socket): the kernel spreads connections.
    api_process p;
    started = spawn_api_server(argc, argv,
                               {"--internal.api-server-rank=" + std::to_string(k),
                                "--internal.engine-port=" + std::to_string(port),
                                "--port=" + std::to_string(k == 0 ? opt.port : public_port)},
                               p);
    if (!started) break;
    procs.push_back(p);
    std::string first = p.line();
    auto colon = first.rfind(':');
    started = first.starts_with("listening on ") && colon != std::string::npos;
    if (!started) break;
    if (k == 0) public_port = std::atoi(first.c_str() + colon + 1);
    std::string seg = p.line();  // an API server prints exactly these two lines
    started = seg.starts_with("writing ");
    if (started) segments.push_back(seg.substr(8));
  }
  if (started) {
    be->set_side_channel(opt.host, public_port);
    std::printf("listening on http://%s:%d\n", opt.host.c_str(), public_port);
    for (auto& s : segments)
      std::printf("writing %s\n", s.c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
  } else {
    std::fprintf(stderr, "shmetrics-engine-sim: an API server process did not start\n");
  }

  // Shutdown, at most ~2 s: the API servers first (they end their clients' responses
  // and exit), then every response of this process ends at its next write, then the
  // listener stops, then the engines stop (aborting what they hold) and the segments
  // are unlinked.
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  for (auto& p : procs)
    ::kill(p.pid, SIGTERM);
  lifecycle::stopping = true;
  reap(procs, until);
  lifecycle::drain(lifecycle::active_replies, until);
  svr.stop();
  lifecycle::drain(lifecycle::backend_users, until + std::chrono::milliseconds(300));
  be.reset();
  // Idle keep-alive connections leave within 100 ms of stop(); a client still sending its
  // request holds its thread up to the request deadline. Everything that matters is
  // done, so leave then.
  for (int i = 0; i < 40 && !listener_done; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::fflush(stdout);
  std::fflush(stderr);
  if (!listener_done) {
    if (hm) hm->close();  // unlinks its segment: _Exit runs no destructor
    std::_Exit(started ? 0 : 1);
  }
  listener.join();
  return started ? 0 : 1;
}
