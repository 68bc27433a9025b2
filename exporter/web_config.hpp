// shmetrics-exporter: --web.config.file in the Prometheus exporter-toolkit format (TLS,
// basic auth with bcrypt hashes, extra response headers), the basic-auth check, and
// install_web_config, which applies them to the server (server.hpp).
#pragma once

#include <openssl/ssl.h>

#include <cstddef>   // cache bound
#include <map>       // users
#include <memory>    // SSL_CTX owner
#include <atomic>    // bcrypt waiters
#include <mutex>     // cache, one bcrypt at a time
#include <optional>  // load result
#include <set>       // cache
#include <string>    // keys
#include <utility>   // header pairs
#include <vector>    // headers

#include "log.hpp"
#include "server.hpp"  // ssl_ctx_ptr, httplib

namespace shmetrics::exporter {

// The exporter's names for the shared server's types (its code predates the split).
using http_server::connection_limits;
using http_server::elastic_pool;
using http_server::guarded_server;
using http_server::port_sharing;
using http_server::ssl_ctx_free;
using http_server::ssl_ctx_ptr;

struct tls_settings {
  std::string cert_file, key_file;
  std::string cert, key;  // inline PEM (`cert`, `key`); the key is a secret: never logged
  std::string client_auth_type = "NoClientCert";
  std::string client_ca_file;
  int min_version = TLS1_2_VERSION;
  int max_version = 0;  // 0: the newest OpenSSL has (TLS 1.3)
  bool prefer_server_cipher_suites = true;
};

struct web_config {
  std::optional<tls_settings> tls;                           // set when a certificate is configured
  std::map<std::string, std::string> users;                  // user -> bcrypt hash
  std::vector<std::pair<std::string, std::string>> headers;  // added to every response
};

/// Reads and checks `path`. On error returns nullopt and sets `err` to one line that
/// names the file and the key at fault (never a secret's value).
std::optional<web_config> load_web_config(const std::string& path, std::string& err);

/// A server SSL_CTX with the certificate, key, client-auth policy and versions of `tls`;
/// null with `err` naming the file and key on failure (a missing file, a key that does not
/// match the certificate).
ssl_ctx_ptr make_ssl_ctx(const tls_settings& tls, const std::string& path, std::string& err);

/// HTTP basic auth against bcrypt hashes (libxcrypt's crypt_rn). bcrypt is slow on
/// purpose (~50 ms at cost 10), so a verified (user, password) is remembered, as the
/// exporter-toolkit does: by an HMAC-SHA-256 under a per-process random key, never the
/// password itself. Unremembered checks run one at a time so that a flood of wrong
/// passwords costs one core at most, and at most `max_waiting` wait: the rest are turned
/// away at once instead of each holding a connection's thread in the queue.
class basic_auth {
 public:
  explicit basic_auth(std::map<std::string, std::string> users);
  bool enabled() const { return !users_.empty(); }
  enum class result { ok, denied, busy };
  /// `ok` when `authorization` ("Basic base64(user:password)") names a configured user
  /// with the right password; `busy` when it would have to wait behind `max_waiting`
  /// bcrypt checks already waiting or running (a verified password never waits).
  result check(const std::string& authorization);
  static constexpr int max_waiting = 4;

 private:
  std::string cache_key(const std::string& user, const std::string& hash,
                        const std::string& password) const;
  std::map<std::string, std::string> users_;
  unsigned char hmac_key_[32];
  std::mutex cache_mu_;
  std::set<std::string> verified_;
  std::mutex bcrypt_mu_;
  std::atomic<int> waiting_{0};  // checks waiting for or holding bcrypt_mu_
  static constexpr std::size_t max_cached = 256;
};

/// Basic auth on every path (401 with `WWW-Authenticate: Basic` otherwise) and the
/// configured headers on every response. `auth` must outlive the server.
void install_web_config(httplib::Server& server, const web_config& cfg, basic_auth& auth,
                        logger& log);

}  // namespace shmetrics::exporter
