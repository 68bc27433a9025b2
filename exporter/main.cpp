// shmetrics-exporter: the sidecar that discovers, merges and serves every writer's
// segments to Prometheus. Flags follow node_exporter's conventions.
#include <httplib.h>

#include <atomic>   // shutdown flag
#include <csignal>  // SIGTERM
#include <cstdio>   // usage
#include <cstdlib>  // strtod
#include <cstring>  // strerror
#include <string>   // flags
#include <thread>   // signal watcher

#include <shmetrics/config.hpp>
#include <shmetrics/reader/collector.hpp>
#include <shmetrics/reader/text_format.hpp>

#include "http.hpp"
#include "server.hpp"
#include "web_config.hpp"

using namespace shmetrics::exporter;
using shmetrics::collector;
using shmetrics::collector_options;

namespace {

const char* usage_text =
    "usage: shmetrics-exporter [flags]\n"
    "\n"
    "Serves the metrics that shmetrics writers put in shared memory, for Prometheus.\n"
    "\n"
    "flags (--flag value or --flag=value):\n"
    "  --web.listen-address ADDR   address to listen on (default \":9400\"; \"127.0.0.1:0\" picks "
    "a port)\n"
    "  --web.telemetry-path PATH   path of the metrics endpoint (default \"/metrics\")\n"
    "  --web.config.file FILE      TLS, basic auth and headers (Prometheus exporter-toolkit "
    "format)\n"
    "  --shm.dir DIR               directory of the segments (default \"/dev/shm\")\n"
    "  --shm.prefix NAME           segment name prefix (default \"shmetrics\"); repeat it to "
    "serve several prefixes' segments, merged as one set of writers\n"
    "  --shm.gc-dead-after DUR     remove dead writers' segments after DUR, their counters kept "
    "(e.g. 30s, 5m; default 1m; 0: never)\n"
    "  --[no-]shm.allow-other-users  serve segments owned by other users too (default: refused, "
    "counted as foreign_owner)\n"
    "  --log.level LEVEL           debug, info, warn or error (default info)\n"
    "  --version                   print the version and exit\n"
    "  --help                      print this and exit\n"
    "\n"
    "endpoints: /metrics (text 0.0.4, or OpenMetrics 1.0 when Accept prefers it; gzip),\n"
    "           /healthz, /segments (JSON), / (links)\n";

bool parse_duration(const std::string& s, std::chrono::milliseconds& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit(end);
  double ms;
  if (unit == "ms")
    ms = v;
  else if (unit == "s" || unit.empty())
    ms = v * 1000;
  else if (unit == "m")
    ms = v * 60000;
  else if (unit == "h")
    ms = v * 3600000;
  else
    return false;
  if (!(ms >= 0) || end == s.c_str()) return false;
  out = std::chrono::milliseconds(static_cast<long long>(ms));
  return true;
}

int bad_flag(const std::string& msg) {
  std::fprintf(stderr, "shmetrics-exporter: %s (see --help)\n", msg.c_str());
  return 2;
}

std::atomic<bool> stop_requested{false};

}  // namespace

int main(int argc, char** argv) {
  server_options opt;
  collector_options copt;
  std::string web_config_file;
  logger log;
  bool prefix_given = false;  // --shm.prefix seen
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos && a.starts_with("--")) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    if (a == "--help" || a == "-h") {
      std::fputs(usage_text, stdout);
      return 0;
    }
    if (a == "--version") {
      std::printf("shmetrics-exporter %s (segment format %d.%d)\n", SHMETRICS_VERSION_STRING,
                  SHMETRICS_FORMAT_MAJOR, SHMETRICS_FORMAT_MINOR);
      return 0;
    }
    if (a == "--shm.allow-other-users" || a == "--no-shm.allow-other-users") {
      // A boolean, as kingpin takes them: --flag, --no-flag, --flag=true|false.
      bool on = a == "--shm.allow-other-users";
      if (has_value) {
        if (!on || (v != "true" && v != "false"))
          return bad_flag(a + ": \"" + v + "\" is not true or false");
        on = v == "true";
      }
      copt.allow_other_users = on;
      continue;
    }
    static const char* const valued[] = {
        "--web.listen-address", "--web.telemetry-path", "--web.config.file", "--shm.dir",
        "--shm.prefix",         "--shm.gc-dead-after",  "--log.level"};
    bool known = false;
    for (const char* k : valued)
      known = known || a == k;
    if (!known) return bad_flag("unknown flag " + a);
    if (!has_value) {
      if (i + 1 >= argc) return bad_flag("flag " + a + " needs a value");
      v = argv[++i];
    }
    if (a == "--web.listen-address") {
      if (!parse_listen_address(v, opt.host, opt.port))
        return bad_flag("--web.listen-address: cannot parse \"" + v +
                        "\" (want HOST:PORT, :PORT or [IPv6]:PORT)");
    } else if (a == "--web.telemetry-path") {
      if (v.empty() || v[0] != '/' || v == "/" || v == "/healthz" || v == "/segments")
        return bad_flag("--web.telemetry-path: \"" + v +
                        "\" must start with / and not be /, /healthz or /segments");
      opt.telemetry_path = v;
    } else if (a == "--web.config.file") {
      web_config_file = v;
    } else if (a == "--shm.dir") {
      if (v.empty()) return bad_flag("--shm.dir: empty");
      copt.dir = v;
    } else if (a == "--shm.prefix") {
      if (v.empty() || v.find('/') != std::string::npos)
        return bad_flag("--shm.prefix: \"" + v + "\" is not a file name prefix");
      // Repeated, as Prometheus exporters take lists: the first replaces the default.
      if (!prefix_given) copt.prefixes.clear();
      prefix_given = true;
      copt.prefixes.push_back(v);
    } else if (a == "--shm.gc-dead-after") {
      if (!parse_duration(v, copt.gc_dead_after))
        return bad_flag("--shm.gc-dead-after: cannot parse \"" + v + "\" (want e.g. 30s, 5m, 0)");
    } else if (a == "--log.level") {
      log_level l;
      if (!parse_log_level(v, l))
        return bad_flag("--log.level: \"" + v + "\" is not debug, info, warn or error");
      log.set_level(l);
    }
  }

  // A bad web config is a bad flag value: one line naming the file and the key, exit 2.
  web_config wcfg;
  ssl_ctx_ptr tls;
  if (!web_config_file.empty()) {
    std::string err;
    auto c = load_web_config(web_config_file, err);
    if (c && c->tls) tls = make_ssl_ctx(*c->tls, web_config_file, err);
    if (!c || (c->tls && !tls)) return bad_flag("--web.config.file " + err);
    wcfg = std::move(*c);
  }
  basic_auth auth(wcfg.users);

  copt.log = log.callback();
  collector coll(copt);
  connection_limits limits;
  // A client that reads its response a byte at a time is cut off 20 s after the first
  // byte (Prometheus's scrapes time out after 10 s by default).
  limits.response_timeout = std::chrono::seconds(20);
  // 256 KiB of kernel send buffer per connection (the kernel doubles it): 200 clients that
  // stopped reading held 4 MiB each with autotuning, a copy of each one's body.
  limits.send_buffer_bytes = 256 * 1024;
  // 512 connections served at once, 512 more waiting for a thread; past that a 503.
  limits.max_queued = 512;
  guarded_server server(limits, std::move(tls));
  install_routes(server, coll, opt, log);
  install_web_config(server, wcfg, auth, log);
  // A port another process listens on is refused (EADDRINUSE), never shared.
  int port = server.bind_listener(opt.host, opt.port);
  if (port >= 0) server.widen_backlog();
  if (port < 0) {
    log.log(log_level::error, "cannot listen",
            "address=" + logger::quote(opt.host + ":" + std::to_string(opt.port)) +
                " err=" + logger::quote(std::strerror(errno)));
    return 1;
  }
  // Tests and scripts read this line to learn the port when it was 0.
  std::printf(
      "listening on %s://%s:%d%s\n", wcfg.tls ? "https" : "http",
      opt.host.find(':') != std::string::npos ? ("[" + opt.host + "]").c_str() : opt.host.c_str(),
      port, opt.telemetry_path.c_str());
  std::fflush(stdout);
  std::string prefix_list;  // comma-separated
  for (const std::string& p : copt.prefixes)
    prefix_list += (prefix_list.empty() ? "" : ",") + p;
  log.log(log_level::info, "listening",
          "address=" + logger::quote(opt.host + ":" + std::to_string(port)) +
              " tls=" + (wcfg.tls ? "true" : "false") + " basic_auth_users=" +
              std::to_string(wcfg.users.size()) + " shm_dir=" + logger::quote(copt.dir) +
              " shm_prefix=" + logger::quote(prefix_list) + " version=" + SHMETRICS_VERSION_STRING);

  // Stop cleanly on SIGTERM/SIGINT: a thread waits for the signal, then stops the server.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&set, &sig);
    log.log(log_level::info, "shutting down", "signal=" + std::to_string(sig));
    server.stop();
  });
  waiter.detach();
  if (!server.listen_after_bind()) {  // accept() failed: not serving any more
    log.log(log_level::error, "listener failed", "err=" + logger::quote(std::strerror(errno)));
    return 1;
  }
  return 0;
}
