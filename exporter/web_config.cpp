#include "web_config.hpp"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>      // file errors
#include <cstring>     // strerror
#include <filesystem>  // paths relative to the config file
#include <fstream>     // readable?
#include <stdexcept>   // config_error

namespace shmetrics::exporter {

namespace {

// Thrown while reading the file; caught in load_web_config and turned into one line.
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return s;
}

std::string scalar(const YAML::Node& n, const std::string& key) {
  if (!n || n.IsNull()) return {};  // absent keys read as empty
  if (!n.IsScalar()) throw config_error(key + ": must be a string");
  return n.Scalar();
}

bool boolean(const YAML::Node& n, const std::string& key) {
  bool b = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, b))
    throw config_error(key + ": must be true or false");
  return b;
}

// Keys of a mapping, refusing anything the format does not define: a typo in a security
// setting must not silently turn it off (the exporter-toolkit parses strictly too).
void check_keys(const YAML::Node& map, const std::string& where,
                std::initializer_list<const char*> known) {
  if (!map.IsMap()) throw config_error(where + ": must be a mapping");
  for (const auto& kv : map) {
    std::string k = kv.first.Scalar();
    bool ok = false;
    for (const char* n : known)
      ok = ok || k == n;
    if (!ok) throw config_error((where.empty() ? "" : where + ".") + k + ": unknown key");
  }
}

int tls_version(const std::string& v, const std::string& key) {
  if (v == "TLS10") return TLS1_VERSION;
  if (v == "TLS11") return TLS1_1_VERSION;
  if (v == "TLS12") return TLS1_2_VERSION;
  if (v == "TLS13") return TLS1_3_VERSION;
  throw config_error(key + ": \"" + v + "\" is not TLS10, TLS11, TLS12 or TLS13");
}

std::string resolve(const std::string& file, const std::filesystem::path& dir) {
  if (file.empty() || file[0] == '/') return file;
  return (dir / file).string();  // as the toolkit: relative to the config file
}

tls_settings parse_tls(const YAML::Node& t, const std::filesystem::path& dir) {
  const std::string w = "tls_server_config";
  check_keys(t, w,
             {"cert", "cert_file", "key", "key_file", "client_auth_type", "client_ca_file",
              "client_allowed_sans", "min_version", "max_version", "cipher_suites",
              "prefer_server_cipher_suites", "curve_preferences"});
  tls_settings s;
  s.cert_file = resolve(scalar(t["cert_file"], w + ".cert_file"), dir);
  s.key_file = resolve(scalar(t["key_file"], w + ".key_file"), dir);
  s.cert = scalar(t["cert"], w + ".cert");
  s.key = scalar(t["key"], w + ".key");
  if (!s.cert.empty() && !s.cert_file.empty())
    throw config_error(w + ": cert and cert_file are both set; set one");
  if (!s.key.empty() && !s.key_file.empty())
    throw config_error(w + ": key and key_file are both set; set one");
  if (s.cert.empty() && s.cert_file.empty())
    throw config_error(w + ".cert_file: missing (or cert)");
  if (s.key.empty() && s.key_file.empty()) throw config_error(w + ".key_file: missing (or key)");
  if (t["client_auth_type"]) {
    s.client_auth_type = scalar(t["client_auth_type"], w + ".client_auth_type");
    static const char* const types[] = {"NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                                        "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"};
    bool ok = false;
    for (const char* n : types)
      ok = ok || s.client_auth_type == n;
    if (!ok)
      throw config_error(w + ".client_auth_type: \"" + s.client_auth_type +
                         "\" is not NoClientCert, RequestClientCert, RequireAnyClientCert, "
                         "VerifyClientCertIfGiven or RequireAndVerifyClientCert");
  }
  s.client_ca_file = resolve(scalar(t["client_ca_file"], w + ".client_ca_file"), dir);
  bool verifies = s.client_auth_type == "VerifyClientCertIfGiven" ||
                  s.client_auth_type == "RequireAndVerifyClientCert";
  if (verifies && s.client_ca_file.empty())
    throw config_error(w + ".client_ca_file: missing, and client_auth_type " + s.client_auth_type +
                       " needs it");
  if (!s.client_ca_file.empty() && s.client_auth_type == "NoClientCert")
    throw config_error(w +
                       ".client_auth_type: client_ca_file is set but client_auth_type is "
                       "NoClientCert");
  if (t["min_version"])
    s.min_version = tls_version(scalar(t["min_version"], w + ".min_version"), w + ".min_version");
  if (t["max_version"])
    s.max_version = tls_version(scalar(t["max_version"], w + ".max_version"), w + ".max_version");
  if (s.max_version != 0 && s.max_version < s.min_version)
    throw config_error(w + ".max_version: below min_version");
  if (t["prefer_server_cipher_suites"])
    s.prefer_server_cipher_suites =
        boolean(t["prefer_server_cipher_suites"], w + ".prefer_server_cipher_suites");
  // Go cipher-suite and curve names, and SAN pinning, have no OpenSSL equivalent here:
  // refuse them rather than serve with weaker settings than the file asks for.
  for (const char* k : {"cipher_suites", "curve_preferences", "client_allowed_sans"}) {
    const YAML::Node n = t[k];
    if (n && !n.IsNull() && !(n.IsSequence() && n.size() == 0))
      throw config_error(w + "." + k + ": not supported by shmetrics-exporter");
  }
  return s;
}

void parse_http(const YAML::Node& h, web_config& c) {
  const std::string w = "http_server_config";
  check_keys(h, w, {"http2", "headers"});
  if (h["http2"]) boolean(h["http2"], w + ".http2");  // HTTP/1.1 only: nothing to turn off
  const YAML::Node hs = h["headers"];
  if (!hs || hs.IsNull()) return;
  if (!hs.IsMap()) throw config_error(w + ".headers: must be a mapping");
  // The headers the exporter-toolkit allows, with its value checks.
  static const char* const allowed[] = {"Strict-Transport-Security", "X-Content-Type-Options",
                                        "X-Frame-Options", "X-XSS-Protection",
                                        "Content-Security-Policy"};
  for (const auto& kv : hs) {
    std::string name = kv.first.Scalar(), key = w + ".headers." + name;
    std::string canonical;
    for (const char* a : allowed)
      if (lower(name) == lower(a)) canonical = a;
    if (canonical.empty()) throw config_error(key + ": not a header that may be set");
    std::string value = scalar(kv.second, key);
    if (value.find_first_of("\r\n") != std::string::npos)
      throw config_error(key + ": line breaks in a header value");
    if (canonical == "X-Content-Type-Options" && lower(value) != "nosniff")
      throw config_error(key + ": must be nosniff");
    if (canonical == "X-Frame-Options" && lower(value) != "deny" && lower(value) != "sameorigin")
      throw config_error(key + ": must be deny or sameorigin");
    c.headers.emplace_back(canonical, value);
  }
}

void parse_users(const YAML::Node& u, web_config& c) {
  const std::string w = "basic_auth_users";
  if (u.IsNull()) return;
  if (!u.IsMap()) throw config_error(w + ": must be a mapping of user to bcrypt hash");
  for (const auto& kv : u) {
    std::string user = kv.first.Scalar(), key = w + "." + user;
    if (user.empty() || user.find(':') != std::string::npos)
      throw config_error(key + ": a user name must be non-empty and without ':'");
    std::string hash = scalar(kv.second, key);
    // The hash names no secret, but it is still not echoed: messages say what is wrong.
    bool bcrypt = hash.size() == 60 && (hash.starts_with("$2a$") || hash.starts_with("$2b$") ||
                                        hash.starts_with("$2y$"));
    if (!bcrypt) throw config_error(key + ": not a bcrypt hash ($2a$/$2b$/$2y$, 60 characters)");
    int st = crypt_checksalt(hash.c_str());
    if (st == CRYPT_SALT_INVALID || st == CRYPT_SALT_METHOD_DISABLED)
      throw config_error(key + ": bcrypt hash not accepted by libcrypt");
    c.users[user] = hash;
  }
}

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  const char* r = e ? ERR_reason_error_string(e) : nullptr;
  return r ? r : "unknown OpenSSL error";
}

// PEM passphrases are not supported: without this OpenSSL would prompt on the terminal.
int no_passphrase(char*, int, int, void*) {
  return 0;
}

// RequestClientCert and RequireAnyClientCert ask for a certificate without checking it.
int accept_any_cert(int, X509_STORE_CTX*) {
  return 1;
}

std::string readable(const std::string& file) {
  std::ifstream f(file);
  return f ? std::string() : std::strerror(errno);
}

}  // namespace

std::optional<web_config> load_web_config(const std::string& path, std::string& err) {
  const std::string prefix = path + ": ";
  if (std::string e = readable(path); !e.empty()) {
    err = prefix + "cannot read: " + e;
    return std::nullopt;
  }
  try {
    YAML::Node root = YAML::LoadFile(path);
    web_config c;
    if (root.IsNull()) return c;  // an empty file configures nothing, as the toolkit's
    check_keys(root, "",
               {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"});
    if (root["rate_limit"]) throw config_error("rate_limit: not supported by shmetrics-exporter");
    auto dir = std::filesystem::path(path).parent_path();
    if (const YAML::Node t = root["tls_server_config"]; t && !t.IsNull()) {
      // An empty section leaves TLS off, as in the toolkit; any setting asks for TLS, so a
      // missing certificate is an error rather than a silent fall back to plain HTTP.
      if (!(t.IsMap() && t.size() == 0)) c.tls = parse_tls(t, dir);
    }
    if (const YAML::Node h = root["http_server_config"]; h && !h.IsNull()) parse_http(h, c);
    if (const YAML::Node u = root["basic_auth_users"]) parse_users(u, c);
    return c;
  } catch (const config_error& e) {
    err = prefix + e.what();
  } catch (const YAML::Exception& e) {
    // yaml-cpp's message says what and where (line, column), not the value.
    err = prefix + "not valid YAML: " + e.msg + " at line " + std::to_string(e.mark.line + 1) +
          ", column " + std::to_string(e.mark.column + 1);
  }
  return std::nullopt;
}

ssl_ctx_ptr make_ssl_ctx(const tls_settings& t, const std::string& path, std::string& err) {
  const std::string w = path + ": tls_server_config.";
  ERR_clear_error();
  ssl_ctx_ptr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    err = path + ": cannot create a TLS context: " + openssl_error();
    return nullptr;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_default_passwd_cb(c, no_passphrase);
  SSL_CTX_set_min_proto_version(c, t.min_version);
  if (t.max_version) SSL_CTX_set_max_proto_version(c, t.max_version);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             (t.prefer_server_cipher_suites ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  if (!t.cert_file.empty()) {
    if (std::string e = readable(t.cert_file); !e.empty()) {
      err = w + "cert_file: cannot read " + t.cert_file + ": " + e;
      return nullptr;
    }
    if (SSL_CTX_use_certificate_chain_file(c, t.cert_file.c_str()) != 1) {
      err = w + "cert_file: " + t.cert_file + ": " + openssl_error();
      return nullptr;
    }
  } else {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(t.cert.data(), static_cast<int>(t.cert.size())), BIO_free);
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr);
    bool ok = x && SSL_CTX_use_certificate(c, x) == 1;
    X509_free(x);
    while (ok) {  // the rest of the chain, if any
      X509* extra = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr);
      if (!extra) break;
      ok = SSL_CTX_add0_chain_cert(c, extra) == 1;
    }
    if (!ok) {
      err = w + "cert: not a PEM certificate: " + openssl_error();
      return nullptr;
    }
    ERR_clear_error();  // the end of the chain reads as "no start line"
  }
  if (!t.key_file.empty()) {
    if (std::string e = readable(t.key_file); !e.empty()) {
      err = w + "key_file: cannot read " + t.key_file + ": " + e;
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(c, t.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      err = w + "key_file: " + t.key_file + ": " + openssl_error();
      return nullptr;
    }
  } else {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(t.key.data(), static_cast<int>(t.key.size())), BIO_free);
    EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr);
    bool ok = k && SSL_CTX_use_PrivateKey(c, k) == 1;
    EVP_PKEY_free(k);
    if (!ok) {
      err = w + "key: not a PEM private key (or one with a passphrase): " + openssl_error();
      return nullptr;
    }
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    err = w + (t.key_file.empty() ? "key" : "key_file") +
          ": the key does not match the certificate: " + openssl_error();
    return nullptr;
  }
  if (!t.client_ca_file.empty()) {
    if (std::string e = readable(t.client_ca_file); !e.empty()) {
      err = w + "client_ca_file: cannot read " + t.client_ca_file + ": " + e;
      return nullptr;
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(t.client_ca_file.c_str());
    if (!names || SSL_CTX_load_verify_locations(c, t.client_ca_file.c_str(), nullptr) != 1) {
      if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
      err = w + "client_ca_file: " + t.client_ca_file + ": no PEM certificate: " + openssl_error();
      return nullptr;
    }
    SSL_CTX_set_client_CA_list(c, names);
  }
  const std::string& a = t.client_auth_type;
  if (a == "RequestClientCert")
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, accept_any_cert);
  else if (a == "RequireAnyClientCert")
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any_cert);
  else if (a == "VerifyClientCertIfGiven")
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  else if (a == "RequireAndVerifyClientCert")
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  else
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
  return ctx;
}

basic_auth::basic_auth(std::map<std::string, std::string> users) : users_(std::move(users)) {
  if (RAND_bytes(hmac_key_, sizeof hmac_key_) != 1)
    throw std::runtime_error("basic auth: no random bytes for the cache key");
}

std::string basic_auth::cache_key(const std::string& user, const std::string& hash,
                                  const std::string& password) const {
  std::string msg = user;
  msg += '\0';
  msg += hash;
  msg += '\0';
  msg += password;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), hmac_key_, sizeof hmac_key_,
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md, &len);
  OPENSSL_cleanse(msg.data(), msg.size());
  return std::string(reinterpret_cast<const char*>(md), len);
}

basic_auth::result basic_auth::check(const std::string& authorization) {
  if (users_.empty()) return result::ok;
  if (authorization.size() < 6 || lower(authorization.substr(0, 6)) != "basic ")
    return result::denied;
  std::string b64 = authorization.substr(6);
  while (!b64.empty() && (b64.back() == ' ' || b64.back() == '\t'))
    b64.pop_back();
  while (!b64.empty() && (b64.front() == ' ' || b64.front() == '\t'))
    b64.erase(0, 1);
  if (b64.empty() || b64.size() % 4 != 0 || b64.size() > 4096) return result::denied;
  std::string plain(b64.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(plain.data()),
                          reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  if (n < 0) return result::denied;
  std::size_t pad = b64.ends_with("==") ? 2 : b64.ends_with("=") ? 1 : 0;
  plain.resize(static_cast<std::size_t>(n) - pad);
  auto colon = plain.find(':');
  // A NUL would cut the password short in crypt_rn: refuse it.
  if (colon == std::string::npos || plain.find('\0') != std::string::npos) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return result::denied;
  }
  std::string user = plain.substr(0, colon), password = plain.substr(colon + 1);
  OPENSSL_cleanse(plain.data(), plain.size());

  auto it = users_.find(user);
  // An unknown user costs a bcrypt too, so response times do not tell which users exist.
  const std::string& hash = it != users_.end() ? it->second : users_.begin()->second;
  std::string key = cache_key(user, hash, password);
  auto remembered = [&] {
    std::lock_guard<std::mutex> lk(cache_mu_);
    return verified_.count(key) != 0;
  };
  bool ok = it != users_.end() && remembered();
  if (!ok && waiting_.fetch_add(1) >= max_waiting) {
    // A flood of unverified credentials: each would wait behind every check before it,
    // holding its connection's thread, ~50 ms of bcrypt per check ahead.
    waiting_.fetch_sub(1);
    OPENSSL_cleanse(password.data(), password.size());
    return result::busy;
  }
  if (!ok) {
    struct leave {
      std::atomic<int>& n;
      ~leave() { n.fetch_sub(1); }
    } counted{waiting_};
    std::lock_guard<std::mutex> one_at_a_time(bcrypt_mu_);
    ok = it != users_.end() && remembered();  // another request may have verified it meanwhile
    if (!ok) {
      auto data = std::make_unique<crypt_data>();  // ~32 KiB: not on a worker's stack
      const char* out = crypt_rn(password.c_str(), hash.c_str(), data.get(), sizeof *data);
      ok = out && std::strlen(out) == hash.size() &&
           CRYPTO_memcmp(out, hash.data(), hash.size()) == 0 && it != users_.end();
      OPENSSL_cleanse(data.get(), sizeof *data);
      if (ok) {
        std::lock_guard<std::mutex> lk(cache_mu_);
        if (verified_.size() >= max_cached) verified_.clear();
        verified_.insert(key);
      }
    }
  }
  OPENSSL_cleanse(password.data(), password.size());
  return ok ? result::ok : result::denied;
}

void install_web_config(httplib::Server& server, const web_config& cfg, basic_auth& auth,
                        logger& log) {
  httplib::Headers headers;
  for (const auto& [k, v] : cfg.headers)
    headers.emplace(k, v);
  server.set_default_headers(std::move(headers));
  if (!auth.enabled()) return;
  server.set_pre_routing_handler([&auth, &log](const httplib::Request& req,
                                               httplib::Response& res) {
    auto r = auth.check(req.get_header_value("Authorization"));
    if (r == basic_auth::result::ok) return httplib::Server::HandlerResponse::Unhandled;
    if (r == basic_auth::result::busy) {
      log.log_limited(log_level::warn, "auth busy", "too many password checks waiting",
                      "remote=" + logger::quote(req.remote_addr) +
                          " path=" + logger::quote(req.path) +
                          " waiting=" + std::to_string(basic_auth::max_waiting));
      res.status = 429;
      res.set_header("Retry-After", "1");
      res.set_content("Too many password checks waiting, try again\n", "text/plain; charset=utf-8");
      return httplib::Server::HandlerResponse::Handled;
    }
    // Who asked, never what they sent: the header holds the password.
    log.log_limited(
        log_level::info, "unauthorized", "unauthorized request",
        "remote=" + logger::quote(req.remote_addr) + " path=" + logger::quote(req.path));
    res.status = 401;
    res.set_header("WWW-Authenticate", "Basic");
    res.set_content("Unauthorized\n", "text/plain; charset=utf-8");
    return httplib::Server::HandlerResponse::Handled;
  });
}

}  // namespace shmetrics::exporter
