// --web.config.file: TLS (self-signed certificates made by `openssl` at test time), basic
// auth with bcrypt hashes, client certificates, response headers, bad files, and a real
// Prometheus scraping over TLS with basic auth. Real exporter processes, real curl.
#include <crypt.h>
#include <httplib.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../support.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct tmpdir {
  std::string path;
  tmpdir() {
    char t[] = "/tmp/shmetrics-webcfg-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~tmpdir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& f) const { return path + "/" + f; }
};

void write(const std::string& file, const std::string& text) {
  std::ofstream(file) << text;
}

std::string slurp(const std::string& file) {
  std::ifstream f(file);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string bcrypt(const std::string& password, const char* prefix, int cost) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn(prefix, cost, nullptr, 0, setting, sizeof setting)) return {};
  auto d = std::make_unique<crypt_data>();
  const char* h = crypt_rn(password.c_str(), setting, d.get(), sizeof *d);
  return h ? h : "";
}

// Runs `cmd` quietly; true on success.
bool sh(const std::string& cmd) {
  return test::run(cmd + " >/dev/null 2>&1").first == 0;
}

// A self-signed server certificate for localhost and 127.0.0.1, and a CA that signs one
// client certificate.
struct certs {
  tmpdir& d;
  explicit certs(tmpdir& dir) : d(dir) {
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    const std::string ec = key + "-days 2 ";
    REQUIRE(sh("cd " + d.path + " && openssl req -x509 " + ec +
               "-keyout server.key -out server.crt -subj /CN=localhost "
               "-addext subjectAltName=DNS:localhost,IP:127.0.0.1"));
    REQUIRE(sh("cd " + d.path + " && openssl req -x509 " + ec +
               "-keyout ca.key -out ca.crt -subj /CN=shmetrics-test-ca"));
    REQUIRE(sh("cd " + d.path + " && openssl req " + key +
               "-keyout client.key -out client.csr -subj /CN=client && openssl x509 -req -in "
               "client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2"));
    REQUIRE(sh("cd " + d.path + " && openssl req -x509 " + ec +
               "-keyout other.key -out other.crt -subj /CN=other"));
  }
};

// The exporter with --web.config.file, its stderr in `log`.
struct exporter {
  std::unique_ptr<test::child> proc;
  int port = -1;
  std::string first_line;
  exporter(const test::unique_prefix& up, const std::string& config, const std::string& log) {
    std::string cmd = std::string("exec ") + EXPORTER_BIN +
                      " --web.listen-address 127.0.0.1:0 --shm.dir " + up.dir + " --shm.prefix " +
                      up.prefix + " --log.level debug --web.config.file " + config + " 2>" + log;
    proc = std::make_unique<test::child>(std::vector<std::string>{"/bin/sh", "-c", cmd});
    first_line = proc->line();  // "listening on https://127.0.0.1:PORT/metrics"
    auto colon = first_line.rfind(':');
    if (colon != std::string::npos) port = std::atoi(first_line.c_str() + colon + 1);
  }
  std::string url(const std::string& path, const std::string& host = "localhost") const {
    return "https://" + host + ":" + std::to_string(port) + path;
  }
};

// curl's HTTP status ("000" when no HTTP answer came back) and exit code.
std::pair<int, std::string> curl(const std::string& args) {
  auto [rc, out] = test::run("curl -s -m 10 -o /dev/null -w '%{http_code}' " + args);
  return {rc, out};
}

const std::string alice_pw = "correct-horse-Xq7";
const std::string bob_pw = "battery-staple-Zk9";

}  // namespace

TEST_CASE("TLS and basic auth from --web.config.file", "[web][tls][auth]") {
  tmpdir d;
  certs c(d);
  test::unique_prefix up;
  std::string alice = bcrypt(alice_pw, "$2b$", 10), bob = bcrypt(bob_pw, "$2y$", 5);
  REQUIRE(alice.size() == 60);
  REQUIRE(bob.rfind("$2y$", 0) == 0);
  // Relative file names are resolved against the config file's directory, as in the toolkit.
  write(d / "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  min_version: TLS12\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "basic_auth_users:\n  alice: " +
            alice + "\n  bob: '" + bob + "'\n");
  exporter e(up, d / "web.yml", d / "exporter.log");
  REQUIRE(e.port > 0);
  CHECK(e.first_line.rfind("listening on https://", 0) == 0);
  const std::string ca = " --cacert " + d / "server.crt" + " ";

  SECTION("the right user and password get the metrics, with the configured headers") {
    auto [rc, out] =
        test::run("curl -s -m 10 -D - " + ca + "-u alice:" + alice_pw + " " + e.url("/metrics"));
    CHECK(rc == 0);
    CHECK(out.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(out.find("shmetrics_exporter_build_info") != std::string::npos);
    CHECK(out.find("X-Content-Type-Options: nosniff") != std::string::npos);
    CHECK(out.find("Strict-Transport-Security: max-age=31536000") != std::string::npos);
    CHECK(curl(ca + "-u bob:" + bob_pw + " " + e.url("/metrics")).second == "200");
    CHECK(curl(ca + "-u bob:" + bob_pw + " " + e.url("/segments", "127.0.0.1")).second == "200");
  }

  SECTION("no, wrong or someone else's credentials get 401 with WWW-Authenticate: Basic") {
    auto [rc, out] = test::run("curl -s -m 10 -D - " + ca + e.url("/metrics"));
    CHECK(out.rfind("HTTP/1.1 401", 0) == 0);
    CHECK(out.find("WWW-Authenticate: Basic") != std::string::npos);
    CHECK(out.find("shmetrics_exporter_build_info") == std::string::npos);
    for (const std::string& u :
         {std::string("alice:wrong"), "alice:" + bob_pw, "bob:" + alice_pw, "carol:" + alice_pw,
          std::string("alice:"), "alice:" + alice_pw + "x"})
      CHECK(curl(ca + "-u '" + u + "' " + e.url("/metrics")).second == "401");
    for (const char* h : {"Basic", "Basic !!!!", "Bearer abc", "Basic YWxpY2U="})
      CHECK(curl(ca + "-H 'Authorization: " + std::string(h) + "' " + e.url("/healthz")).second ==
            "401");
  }

  SECTION("a client that does not trust the certificate, or speaks plain HTTP, gets nothing") {
    CHECK(curl("-u alice:" + alice_pw + " " + e.url("/metrics")).first != 0);  // unknown CA
    auto [rc, out] =
        test::run("curl -s -m 10 -D - http://127.0.0.1:" + std::to_string(e.port) + "/metrics");
    CHECK(out.rfind("HTTP/1.0 400", 0) == 0);
    CHECK(out.find("shmetrics_exporter") == std::string::npos);
    // ... and the exporter goes on serving.
    CHECK(curl(ca + "-u alice:" + alice_pw + " " + e.url("/metrics")).second == "200");
  }

  SECTION("stalled TLS handshakes do not starve the handshakes of good clients") {
    // 64 connections that send the first bytes of a TLS record and stop: each holds a
    // connection until the 10 s request deadline, none holds up the others.
    std::vector<int> fds;
    for (int i = 0; i < 64; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(e.port));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
      REQUIRE(::send(fd, "\x16\x03\x01", 3, MSG_NOSIGNAL) == 3);
      fds.push_back(fd);
    }
    for (int i = 0; i < 5; ++i)
      CHECK(curl(ca + "-m 2 -u alice:" + alice_pw + " " + e.url("/metrics")).second == "200");
    for (int fd : fds)
      ::close(fd);
  }

  SECTION("a verified password is remembered: bcrypt runs once, not per scrape") {
    auto d0 = clock_type::now();
    CHECK(bcrypt(alice_pw, "$2b$", 10).size() == 60);
    double one_bcrypt = std::chrono::duration<double>(clock_type::now() - d0).count();
    httplib::SSLClient cl("localhost", e.port);
    cl.set_ca_cert_path((d / "server.crt").c_str());
    cl.enable_server_certificate_verification(true);
    cl.set_basic_auth("alice", alice_pw.c_str());
    cl.set_keep_alive(true);
    auto first = cl.Get("/healthz");
    REQUIRE(first);
    CHECK(first->status == 200);
    auto t0 = clock_type::now();
    int ok = 0;
    for (int i = 0; i < 20; ++i) {
      auto r = cl.Get("/healthz");
      ok += r && r->status == 200;
    }
    double twenty = std::chrono::duration<double>(clock_type::now() - t0).count();
    INFO("one bcrypt " << one_bcrypt << " s, 20 authenticated requests " << twenty << " s");
    CHECK(ok == 20);
    CHECK(twenty < 5 * one_bcrypt);
  }

  // Whatever happened above, the log holds no password, in clear or base64.
  e.proc->kill(SIGTERM);
  e.proc->wait();
  std::string log = slurp(d / "exporter.log");
  INFO(log);
  CHECK(log.find("level=info msg=\"listening\"") != std::string::npos);
  for (const std::string& secret : {alice_pw, bob_pw, std::string("Y29ycmVjdC1ob3JzZS1YcTc"),
                                    std::string("YWxpY2U6Y29ycmVjdC1ob3JzZS1YcTc"), alice, bob})
    CHECK(log.find(secret) == std::string::npos);
}

TEST_CASE("client certificates: RequireAndVerifyClientCert", "[web][tls][mtls]") {
  tmpdir d;
  certs c(d);
  test::unique_prefix up;
  write(d / "web.yml", "tls_server_config:\n  cert_file: " + d / "server.crt" +
                           "\n  key_file: " + d / "server.key" +
                           "\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: " +
                           d / "ca.crt" + "\n");
  exporter e(up, d / "web.yml", d / "exporter.log");
  REQUIRE(e.port > 0);
  const std::string ca = " --cacert " + d / "server.crt" + " ";
  CHECK(curl(ca + e.url("/metrics")).first != 0);  // no client certificate
  CHECK(
      curl(ca + "--cert " + d / "other.crt" + " --key " + d / "other.key" + " " + e.url("/metrics"))
          .first != 0);  // one the CA did not sign
  CHECK(curl(ca + "--cert " + d / "client.crt" + " --key " + d / "client.key" + " " +
             e.url("/metrics"))
            .second == "200");
}

// Hidden ([.prometheus]): its own meson test, which skips (77) without prometheus on PATH.
TEST_CASE("a real Prometheus scrapes over TLS with basic auth", "[web][.prometheus]") {
  auto [found, where] = test::run("command -v prometheus");
  if (found != 0 || where.empty()) test::skip("prometheus is not on PATH");
  const std::string prometheus = where.substr(0, where.find('\n'));
  tmpdir d;
  certs c(d);
  test::unique_prefix up;
  write(d / "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "basic_auth_users:\n  prom: " +
            bcrypt(alice_pw, "$2b$", 8) + "\n");
  exporter e(up, d / "web.yml", d / "exporter.log");
  REQUIRE(e.port > 0);
  int prom_port = test::free_port();
  write(d / "prometheus.yml",
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tls\n    scheme: https\n"
        "    tls_config:\n      ca_file: " +
            d / "server.crt" +
            "\n    basic_auth:\n      username: prom\n      password: " + alice_pw +
            "\n    static_configs:\n      - targets: ['localhost:" + std::to_string(e.port) +
            "']\n");
  test::child prom(
      {prometheus, "--config.file=" + d / "prometheus.yml", "--storage.tsdb.path=" + d / "data",
       "--web.listen-address=127.0.0.1:" + std::to_string(prom_port), "--log.level=warn"});
  httplib::Client q("127.0.0.1", prom_port);
  std::string body;
  bool up_one = false;
  for (int i = 0; i < 60 && !up_one; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto r = q.Get("/api/v1/query?query=shmetrics_exporter_build_info%7Bjob%3D%22tls%22%7D");
    if (r && r->status == 200) {
      body = r->body;
      up_one = body.find("\"1\"]") != std::string::npos;
    }
  }
  INFO(body);
  CHECK(up_one);
  e.proc->kill(SIGTERM);
  e.proc->wait();
  CHECK(slurp(d / "exporter.log").find(alice_pw) == std::string::npos);
}

TEST_CASE("bad web config files: exit 2 and one line naming the file and the key",
          "[web][config]") {
  tmpdir d;
  certs c(d);
  const std::string srv = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
  struct bad {
    std::string yaml, expect;
  } cases[] = {
      {"tls_server_config: [\n", "not valid YAML"},
      {"tls_config:\n  cert_file: x\n", "tls_config: unknown key"},
      {"tls_server_config:\n  cert_flie: server.crt\n  key_file: server.key\n",
       "tls_server_config.cert_flie: unknown key"},
      {"tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n",
       "tls_server_config.cert_file: cannot read"},
      {"tls_server_config:\n  key_file: server.key\n", "tls_server_config.cert_file: missing"},
      {"tls_server_config:\n  cert_file: server.crt\n", "tls_server_config.key_file: missing"},
      {"tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
       "tls_server_config.key_file: " + d / "other.key" + ": key values mismatch"},
      {"tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
       "tls_server_config.cert_file"},
      {"tls_server_config:\n  cert_file: server.crt\n  key: |\n    " +
           std::string("-----BEGIN PRIVATE KEY-----\n    AAAA\n    -----END PRIVATE KEY-----\n"),
       "tls_server_config.key: not a PEM private key"},
      {srv + "  min_version: TLS14\n", "tls_server_config.min_version"},
      {srv + "  client_auth_type: Sometimes\n", "tls_server_config.client_auth_type"},
      {srv + "  client_auth_type: RequireAndVerifyClientCert\n",
       "tls_server_config.client_ca_file: missing"},
      {srv + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
       "tls_server_config.cipher_suites: not supported"},
      {"basic_auth_users:\n  alice: hunter2-plain\n", "basic_auth_users.alice: not a bcrypt hash"},
      {"basic_auth_users:\n  'a:b': " + bcrypt("x", "$2b$", 4) + "\n", "basic_auth_users.a:b"},
      {"basic_auth_users: [alice]\n", "basic_auth_users: must be a mapping"},
      {"http_server_config:\n  headers:\n    Server: evil\n",
       "http_server_config.headers.Server: not a header that may be set"},
      {"http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
       "http_server_config.headers.X-Frame-Options: must be deny or sameorigin"},
      {"rate_limit:\n  interval: 1s\n", "rate_limit: not supported"},
  };
  int i = 0;
  for (const bad& b : cases) {
    std::string file = d / ("bad" + std::to_string(i++) + ".yml");
    write(file, b.yaml);
    auto [rc, out] =
        test::run(std::string(EXPORTER_BIN) +
                  " --web.listen-address 127.0.0.1:0 --web.config.file " + file + " 2>&1");
    INFO(b.yaml << "->\n" << out);
    CHECK(rc == 2);
    CHECK(out.find(file + ": ") != std::string::npos);
    CHECK(out.find(b.expect) != std::string::npos);
    CHECK(std::count(out.begin(), out.end(), '\n') == 1);
    CHECK(out.find("hunter2-plain") == std::string::npos);  // a would-be secret is not echoed
    CHECK(out.find("AAAA") == std::string::npos);
  }
  auto [rc, out] =
      test::run(std::string(EXPORTER_BIN) + " --web.config.file " + d / "missing.yml" + " 2>&1");
  CHECK(rc == 2);
  CHECK(out.find(d / "missing.yml: cannot read: No such file or directory") != std::string::npos);
}

TEST_CASE("a logged request path has every control character escaped", "[web][auth][log]") {
  // The path is logged with each unauthorized request: cpp-httplib percent-decodes it, so
  // %0D, %1B and the like arrive as raw bytes. Written raw, CR rewrote the terminal's line
  // and ESC started escape sequences.
  tmpdir d;
  test::unique_prefix up;
  write(d / "web.yml", "basic_auth_users:\n  alice: " + bcrypt(alice_pw, "$2b$", 5) + "\n");
  exporter e(up, d / "web.yml", d / "exporter.log");
  REQUIRE(e.port > 0);
  int fd = test::connect_to(e.port);
  REQUIRE(fd >= 0);
  const std::string req =
      "GET /a%0D%0Aforged%09x%1B[31m%07%7F%C2%9B%C3%28%C3%A9 HTTP/1.1\r\nHost: x\r\n"
      "Connection: close\r\n\r\n";
  REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  CHECK(test::status_of(test::read_reply(fd, std::chrono::milliseconds(5000))) == 401);
  ::close(fd);
  e.proc->kill(SIGTERM);
  e.proc->wait();
  std::string log = slurp(d / "exporter.log");
  INFO(log);
  // CR, LF and TAB by name, ESC, BEL, DEL and C1's CSI as \u00XX, a byte that is not
  // UTF-8 as \ufffd; valid UTF-8 (é) as it is.
  CHECK(log.find("path=\"/a\\r\\nforged\\tx\\u001b[31m\\u0007\\u007f\\u009b\\ufffd(\xC3\xA9\"") !=
        std::string::npos);
  for (char c : log)
    CHECK((c == '\n' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f)));
  std::istringstream lines(log);
  for (std::string l; std::getline(lines, l);)
    CHECK(l.rfind("ts=", 0) == 0);
}

TEST_CASE("a flood of wrong passwords: a few wait for bcrypt, the rest get 429 at once",
          "[web][auth][flood]") {
  // Every unverified check waited for the one before it (bcrypt, ~50 ms at cost 10) with
  // no bound: 48 clients sending wrong passwords each waited seconds, holding a thread
  // each. A verified password never waits for bcrypt.
  tmpdir d;
  test::unique_prefix up;
  write(d / "web.yml", "basic_auth_users:\n  alice: " + bcrypt(alice_pw, "$2b$", 10) + "\n");
  exporter e(up, d / "web.yml", d / "exporter.log");
  REQUIRE(e.port > 0);
  httplib::Client good("127.0.0.1", e.port);
  good.set_basic_auth("alice", alice_pw.c_str());
  good.set_keep_alive(true);
  good.set_read_timeout(5, 0);
  auto first = good.Get("/metrics");  // verified once: remembered
  REQUIRE(first);
  REQUIRE(first->status == 200);

  std::atomic<bool> stop{false};
  std::atomic<int> denied{0}, busy{0}, other{0};
  std::atomic<long> worst_flood_us{0};
  std::vector<std::thread> flood;
  for (int t = 0; t < 48; ++t)
    flood.emplace_back([&, t] {
      while (!stop) {
        httplib::Client c("127.0.0.1", e.port);
        c.set_basic_auth("alice", ("wrong-" + std::to_string(t)).c_str());
        c.set_read_timeout(20, 0);
        auto t0 = clock_type::now();
        auto r = c.Get("/metrics");
        long us = static_cast<long>(
            std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
        int st = r ? r->status : -1;
        (st == 401 ? denied : st == 429 ? busy : other)++;
        if (st == 401) {  // it waited for bcrypt: how long?
          long w = worst_flood_us.load();
          while (us > w && !worst_flood_us.compare_exchange_weak(w, us)) {
          }
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));  // spare the test's CPU
        }
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int scrapes = 0, ok = 0;
  double worst_good = 0;
  auto until = clock_type::now() + std::chrono::seconds(5);
  while (clock_type::now() < until) {
    auto t0 = clock_type::now();
    auto r = good.Get("/metrics");
    worst_good =
        std::max(worst_good, std::chrono::duration<double>(clock_type::now() - t0).count());
    ++scrapes;
    ok += r && r->status == 200;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop = true;
  for (auto& t : flood)
    t.join();
  std::printf(
      "48 clients sending wrong passwords: %d answered 401, %d 429, %d other, slowest 401 "
      "%.2f s; "
      "%d/%d good scrapes, slowest %.3f s\n",
      denied.load(), busy.load(), other.load(), worst_flood_us.load() / 1e6, ok, scrapes,
      worst_good);
  CHECK(scrapes >= 20);
  CHECK(ok == scrapes);
  CHECK(worst_good < 1.0);
  CHECK(other == 0);
  CHECK(denied > 0);
  CHECK(busy > denied);
  // At most 4 checks ahead of a 401: ~0.25 s of bcrypt, not 48 x 50 ms.
  CHECK(worst_flood_us.load() < 2000000);
}
