// Config loading with toml++: every key is checked against the options its table knows, every
// value against its type, every file against the disk, each error with its line.
#include "server/config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include "routes/cache_purge.h"
#include "routes/health.h"
#include "routes/proxy.h"
#include "routes/redirect.h"
#include "routes/static_files.h"
#include "server/admin.h"
#include "server/http/content_coding.h"
#include "server/http/token.h"
#include "server/metrics.h"
#include "tls/client_context.h"
#include "tls/self_signed.h"

namespace edge {
namespace {

namespace fs = std::filesystem;

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const toml::node& n, const std::string& what) const {
    fail(line_of(n), what);
  }
  [[noreturn]] void fail(int line, const std::string& what) const {
    throw ConfigError(file_ + ":" + std::to_string(line) + ": " + what);
  }
  static int line_of(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

  void check_keys(const toml::table& t, const std::string& where,
                  std::initializer_list<std::string_view> allowed) const {
    for (auto&& [k, v] : t) {
      bool ok = false;
      for (auto a : allowed) ok = ok || k.str() == a;
      if (!ok) {
        std::string list;
        for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        fail(static_cast<int>(k.source().begin.line),
             "unknown key \"" + std::string(k.str()) + "\" in " + where + " (known: " + list + ")");
      }
    }
  }

  std::string str(const toml::node& n, std::string_view key) const {
    if (!n.is_string()) fail(n, std::string(key) + " must be a string");
    try {
      return expand_env(*n.value<std::string>());
    } catch (const std::runtime_error& e) {
      fail(n, std::string(key) + ": " + e.what());
    }
  }
  bool boolean(const toml::node& n, std::string_view key) const {
    if (!n.is_boolean()) fail(n, std::string(key) + " must be true or false");
    return *n.value<bool>();
  }
  std::chrono::milliseconds duration(const toml::node& n, std::string_view key) const {
    std::chrono::milliseconds d{};
    if (n.is_integer()) {
      long long v = *n.value<long long>();
      if (v < 0) fail(n, std::string(key) + " must not be negative");
      return std::chrono::seconds(v);
    }
    if (n.is_string() && parse_duration(str(n, key), d)) return d;
    fail(n, std::string(key) + " must be a duration such as \"10s\", \"500ms\", \"15m\" or \"2h\"");
  }
  std::uint64_t size(const toml::node& n, std::string_view key) const {
    std::uint64_t v = 0;
    if (n.is_integer()) {
      long long i = *n.value<long long>();
      if (i < 0) fail(n, std::string(key) + " must not be negative");
      return static_cast<std::uint64_t>(i);
    }
    if (n.is_string() && parse_size(str(n, key), v)) return v;
    fail(n, std::string(key) + " must be a size such as 8192, \"8k\" or \"1m\"");
  }
  std::vector<std::string> strings(const toml::node& n, std::string_view key) const {
    std::vector<std::string> out;
    if (n.is_string()) {
      out.push_back(str(n, key));
      return out;
    }
    if (!n.is_array()) fail(n, std::string(key) + " must be a string or an array of strings");
    for (auto&& el : *n.as_array()) out.push_back(str(el, key));
    return out;
  }
  std::string path(const toml::node& n, std::string_view key) const {
    std::string p = str(n, key);
    if (p.empty()) fail(n, std::string(key) + " must not be empty");
    fs::path fp(p);
    if (fp.is_relative()) fp = fs::path(file_).parent_path() / fp;
    std::error_code ec;
    fs::path abs = fs::weakly_canonical(fs::absolute(fp, ec), ec);
    return abs.empty() ? fp.string() : abs.string();
  }

  void load_server(const toml::table& t, ServerConfig& s) const {
    check_keys(t, "[server]",
               {"workers", "grace_period", "header_timeout", "keepalive_timeout", "send_timeout",
                "max_request_line", "max_header_bytes", "max_headers", "server_header",
                "trusted_proxies", "pid_file", "max_connections"});
    if (auto* n = t.get("pid_file")) s.pid_file = path(*n, "pid_file");
    if (auto* n = t.get("max_connections")) {  // (0 stands for "auto", computed in load_config)
      bool is_auto = n->is_string() && str(*n, "max_connections") == "auto";
      long long m = n->is_integer() ? *n->value<long long>() : 0;
      if (!is_auto && (m < 1 || m > 10'000'000))
        fail(*n, "max_connections must be \"auto\" or a number between 1 and 10000000");
      s.max_connections = is_auto ? 0 : static_cast<std::uint64_t>(m);
    }
    if (auto* n = t.get("workers")) {
      long long w = 0;
      if (n->is_integer()) {
        w = *n->value<long long>();
      } else if (n->is_string()) {
        std::string v = str(*n, "workers");
        if (v == "auto") {
          long c = sysconf(_SC_NPROCESSORS_ONLN);
          w = c > 0 ? c : 1;
        } else {
          char* end = nullptr;
          w = std::strtoll(v.c_str(), &end, 10);
          if (v.empty() || *end)
            fail(*n, "workers must be \"auto\" or a number, not \"" + v + "\"");
        }
      } else {
        fail(*n, "workers must be \"auto\" or a number");
      }
      if (w < 1 || w > 256) fail(*n, "workers must be between 1 and 256");
      s.workers = static_cast<unsigned>(w);
    }
    if (auto* n = t.get("grace_period")) s.grace_period = duration(*n, "grace_period");
    if (auto* n = t.get("header_timeout")) s.header_timeout = duration(*n, "header_timeout");
    if (auto* n = t.get("keepalive_timeout"))
      s.keepalive_timeout = duration(*n, "keepalive_timeout");
    if (auto* n = t.get("send_timeout")) s.send_timeout = duration(*n, "send_timeout");
    if (auto* n = t.get("max_request_line")) s.max_request_line = size(*n, "max_request_line");
    if (auto* n = t.get("max_header_bytes")) s.max_header_bytes = size(*n, "max_header_bytes");
    if (auto* n = t.get("max_headers")) s.max_headers = size(*n, "max_headers");
    if (auto* n = t.get("server_header")) s.server_header = str(*n, "server_header");
    if (auto* n = t.get("trusted_proxies")) {
      for (const std::string& r : strings(*n, "trusted_proxies")) {
        auto range = http::IpRange::parse(r);
        if (!range)
          fail(*n, "trusted_proxies: \"" + r +
                       "\" is not an address or a CIDR range such as 10.0.0.0/8 or 2400:cb00::/32");
        s.trusted_proxies.add(*range);
      }
    }
    if (s.header_timeout.count() <= 0)
      fail(*t.get("header_timeout"), "header_timeout must be positive");
    if (s.max_request_line < 64)
      fail(*t.get("max_request_line"), "max_request_line must be at least 64");
    if (s.max_header_bytes < s.max_request_line)
      fail(t.get("max_header_bytes") ? line_of(*t.get("max_header_bytes")) : line_of(t),
           "max_header_bytes must be at least max_request_line");
    for (char c : s.server_header)
      if (c == '\r' || c == '\n')
        fail(*t.get("server_header"), "server_header must not contain line breaks");
  }

  void load_log(const toml::table& t, LogConfig& l) const {
    check_keys(t, "[log]", {"access", "error", "level"});
    auto target = [&](const char* key, std::string& out, bool allow_off) {
      auto* n = t.get(key);
      if (!n) return;
      std::string v = str(*n, key);
      if (v == "stdout" || v == "stderr" || (allow_off && v == "off")) {
        out = v;
      } else {
        out = path(*n, key);
        std::error_code ec;
        fs::path dir = fs::path(out).parent_path();
        if (!fs::is_directory(dir, ec))
          fail(*n, std::string(key) + ": folder " + dir.string() + " does not exist");
      }
    };
    target("access", l.access, true);
    target("error", l.error, false);
    if (auto* n = t.get("level")) {
      l.level = str(*n, "level");
      static const std::set<std::string> kLevels = {"trace", "debug", "info",
                                                    "warn",  "error", "off"};
      if (!kLevels.count(l.level))
        fail(*n, "level must be one of trace, debug, info, warn, error, off");
    }
  }

  // [listen.tls]: certificates (one, or several for SNI), versions, lists, resumption.
  void load_tls(const toml::node& n, ListenConfig& l) const {
    if (!n.is_table())
      fail(n, "tls must be a table such as { cert = \"site.crt\", key = \"site.key\" }");
    const toml::table& t = *n.as_table();
    check_keys(
        t, "tls",
        {"cert", "key", "names", "ocsp", "certs", "self_signed", "min_version", "ciphers",
         "ciphersuites", "groups", "session_timeout", "ticket_key_lifetime", "session_cache_size"});
    tls::TlsOptions& o = l.tls_options;
    l.tls_line = line_of(n);
    o.alpn =
        l.http2 ? std::vector<std::string>{"h2", "http/1.1"} : std::vector<std::string>{"http/1.1"};
    std::vector<std::pair<std::string, int>> file_lines;  // to point a file's error at its line
    auto cert_from = [&](const toml::table& c, int line) {
      tls::CertConfig cc;
      auto* cf = c.get("cert");
      auto* kf = c.get("key");
      if (!cf || !kf) fail(line, "a certificate needs both cert and key");
      cc.cert_file = path(*cf, "cert");
      cc.key_file = path(*kf, "key");
      file_lines.emplace_back(cc.cert_file, line_of(*cf));
      file_lines.emplace_back(cc.key_file, line_of(*kf));
      if (auto* nm = c.get("names")) cc.names = strings(*nm, "names");
      if (auto* oc = c.get("ocsp")) cc.ocsp_file = path(*oc, "ocsp");
      return cc;
    };
    bool self_signed = false;
    if (auto* s = t.get("self_signed")) self_signed = boolean(*s, "self_signed");
    if (t.contains("cert") || t.contains("key") || self_signed) {
      if (self_signed && !t.contains("cert") && !t.contains("key")) {
        tls::CertConfig cc;
        fs::path dir = fs::path(file_).parent_path();
        cc.cert_file = fs::weakly_canonical(fs::absolute(dir / "certs" / "localhost.crt")).string();
        cc.key_file = fs::weakly_canonical(fs::absolute(dir / "certs" / "localhost.key")).string();
        o.certs.push_back(cc);
      } else {
        o.certs.push_back(cert_from(t, line_of(t)));
      }
      if (self_signed) {
        try {
          std::error_code ec;
          fs::create_directories(fs::path(o.certs.back().cert_file).parent_path(), ec);
          fs::create_directories(fs::path(o.certs.back().key_file).parent_path(), ec);
          tls::ensure_self_signed(o.certs.back().cert_file, o.certs.back().key_file);
        } catch (const std::exception& e) {
          fail(*t.get("self_signed"), e.what());
        }
      }
    }
    if (auto* cs = t.get("certs")) {
      if (!cs->is_array_of_tables())
        fail(*cs, "certs must be an array of { cert = ..., key = ..., names = [...] }");
      for (auto&& el : *cs->as_array()) {
        check_keys(*el.as_table(), "tls.certs", {"cert", "key", "names", "ocsp"});
        o.certs.push_back(cert_from(*el.as_table(), line_of(el)));
      }
    }
    if (o.certs.empty())
      fail(n, "tls needs a certificate: cert and key, certs = [...], or self_signed = true");
    auto listed = [&](const char* key, std::string& out, void (*check)(const std::string&)) {
      auto* v = t.get(key);
      if (!v) return;
      out = str(*v, key);
      try {
        check(out);
      } catch (const tls::TlsError& e) {
        fail(*v, std::string(key) + ": " + e.what());
      }
    };
    listed("ciphers", o.ciphers, tls::validate_cipher_list);
    listed("ciphersuites", o.ciphersuites, tls::validate_ciphersuites);
    listed("groups", o.groups, tls::validate_groups);
    if (auto* v = t.get("min_version")) {
      o.min_version = str(*v, "min_version");
      if (o.min_version != "TLSv1.2" && o.min_version != "TLSv1.3")
        fail(*v, "min_version must be \"TLSv1.2\" or \"TLSv1.3\", not \"" + o.min_version +
                     "\" (older versions are never offered)");
    }
    if (auto* v = t.get("session_timeout"))
      o.session_timeout =
          std::chrono::duration_cast<std::chrono::seconds>(duration(*v, "session_timeout"));
    if (auto* v = t.get("ticket_key_lifetime"))
      o.ticket_key_lifetime =
          std::chrono::duration_cast<std::chrono::seconds>(duration(*v, "ticket_key_lifetime"));
    if (auto* v = t.get("session_cache_size"))
      o.session_cache_size = size(*v, "session_cache_size");
    try {
      l.tls = std::make_shared<ListenConfig::TlsSlot>();
      std::shared_ptr<const tls::TlsContext> old;  // a reload: session tickets stay valid
      if (previous)
        for (const auto& p : previous->listeners)
          if (p.address == l.address && p.tls) old = p.tls->ctx.load();
      l.tls->ctx.store(tls::TlsContext::create(o, old.get()));
    } catch (const tls::TlsError& e) {
      std::string what = e.what();
      // The file the message names first is the one at fault ("key K does not match cert C").
      std::size_t best = std::string::npos;
      int best_line = line_of(n);
      for (const auto& [file, line] : file_lines) {
        std::size_t at = what.find(file);
        if (at < best) {
          best = at;
          best_line = line;
        }
      }
      fail(best_line, what);
    }
  }

  ListenConfig load_listen(const toml::table& t) const {
    check_keys(
        t, "[[listen]]",
        {"address", "https_redirect", "https_port", "tls", "max_conns_per_ip", "http2", "h2c"});
    ListenConfig l;
    l.line = line_of(t);
    if (auto* h = t.get("http2")) l.http2 = boolean(*h, "http2");
    if (auto* h = t.get("h2c")) {
      l.h2c = boolean(*h, "h2c");
      if (l.h2c && t.contains("tls"))
        fail(*h, "h2c is HTTP/2 without TLS; a TLS listener offers HTTP/2 by ALPN (http2)");
    }
    if (auto* r = t.get("https_redirect")) l.https_redirect = boolean(*r, "https_redirect");
    if (auto* m = t.get("max_conns_per_ip")) {
      if (!m->is_integer() || *m->value<long long>() < 0 || *m->value<long long>() > 1000000)
        fail(*m, "max_conns_per_ip must be an integer between 0 (no limit) and 1000000");
      l.max_conns_per_ip = static_cast<unsigned>(*m->value<long long>());
    }
    if (auto* p = t.get("https_port")) {
      if (!p->is_integer() || *p->value<long long>() < 1 || *p->value<long long>() > 65535)
        fail(*p, "https_port must be a port number");
      l.https_port = static_cast<int>(*p->value<long long>());
    }
    auto* n = t.get("address");
    if (!n) fail(t, "[[listen]] needs an address such as \"127.0.0.1:8080\" or \"[::1]:8080\"");
    l.line = line_of(*n);
    l.address = str(*n, "address");
    parse_address(*n, l);
    if (auto* tn = t.get("tls")) load_tls(*tn, l);
    return l;
  }

  // A bearer token ([admin] token, cache_purge token): sent in an Authorization field, so no
  // spaces or control characters. `what` names it in the error.
  std::string bearer_token(const toml::node& n, const std::string& what) const {
    std::string token = str(n, "token");
    for (char c : token)
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
        fail(n, what + " must not contain spaces or control characters");
    return token;
  }

  // l.address ("host:port", "[v6]:port") into l.host, l.port, l.ipv6.
  void parse_address(const toml::node& n, ListenConfig& l) const {
    std::string_view a = l.address;
    std::string host, port;
    if (a.starts_with("[")) {
      auto close = a.find(']');
      if (close == std::string_view::npos || close + 1 >= a.size() || a[close + 1] != ':')
        fail(n, "address \"" + l.address + "\": expected [IPv6]:port");
      host = std::string(a.substr(1, close - 1));
      port = std::string(a.substr(close + 2));
      l.ipv6 = true;
    } else {
      auto colon = a.rfind(':');
      if (colon == std::string_view::npos)
        fail(n, "address \"" + l.address + "\": expected host:port");
      host = std::string(a.substr(0, colon));
      port = std::string(a.substr(colon + 1));
      if (host.empty() || host == "*") host = "0.0.0.0";
      if (host == "localhost") host = "127.0.0.1";
    }
    unsigned char buf[16];
    if (inet_pton(l.ipv6 ? AF_INET6 : AF_INET, host.c_str(), buf) != 1)
      fail(n, "address \"" + l.address + "\": \"" + host + "\" is not a numeric IP address");
    char* end = nullptr;
    long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end || p < 0 || p > 65535)
      fail(n, "address \"" + l.address + "\": bad port");
    l.host = host;
    l.port = static_cast<int>(p);
  }

  // [admin]: a listener of its own (not TLS), served by the admin routes.
  ListenConfig load_admin(const toml::table& t, std::string& token) const {
    check_keys(t, "[admin]", {"listen", "token"});
    ListenConfig l;
    l.admin = true;
    l.line = line_of(t);
    l.address = "127.0.0.1:9901";
    const toml::node* at = &t;
    if (auto* n = t.get("listen")) {
      l.address = str(*n, "listen");
      l.line = line_of(*n);
      at = n;
    }
    parse_address(*at, l);
    if (auto* n = t.get("token")) token = bearer_token(*n, "token");
    return l;
  }

  routes::HeaderPairs header_table(const toml::node& n, std::string_view key) const {
    if (!n.is_table()) fail(n, std::string(key) + " must be a table of \"Name\" = \"value\"");
    routes::HeaderPairs out;
    for (auto&& [k, v] : *n.as_table()) {
      std::string name(k.str());
      if (!http::is_token(name))
        fail(static_cast<int>(k.source().begin.line),
             "header name \"" + name + "\" is not a valid token");
      std::string value = str(v, name);
      for (char c : value)
        if (c == '\r' || c == '\n' || c == '\0')
          fail(v, "header value of " + name + " must not contain line breaks");
      out.emplace_back(name, value);
    }
    return out;
  }
  std::vector<std::string> header_names(const toml::node& n, std::string_view key) const {
    std::vector<std::string> out = strings(n, key);
    for (const auto& h : out)
      if (!http::is_token(h)) fail(n, std::string(key) + ": \"" + h + "\" is not a header name");
    return out;
  }
  // CSP as a table of directives: `script-src = ["'self'"]`, a string of space-separated sources,
  // or false / [] to drop the directive.
  routes::CspDirectives csp_table(const toml::node& n) const {
    if (!n.is_table())
      fail(n, "csp must be a table of directives such as { script-src = [\"'self'\"] }");
    routes::CspDirectives out;
    for (auto&& [k, v] : *n.as_table()) {
      std::string name(k.str());
      int line = static_cast<int>(k.source().begin.line);
      for (char c : name)
        if (!((c >= 'a' && c <= 'z') || c == '-'))
          fail(line, "csp: \"" + name + "\" is not a directive name");
      std::vector<std::string> sources;
      if (v.is_boolean()) {
        if (*v.value<bool>())
          fail(v, "csp." + name + " = true means nothing: give the sources, or false to drop it");
      } else if (v.is_string()) {
        std::string all = str(v, name), cur;
        for (char c : all + " ") {
          if (c == ' ') {
            if (!cur.empty()) sources.push_back(cur);
            cur.clear();
          } else {
            cur.push_back(c);
          }
        }
      } else {
        sources = strings(v, name);
      }
      for (const auto& src : sources)
        for (char c : src)
          if (c == ';' || c == ',' || c == ' ' || c == '\r' || c == '\n' ||
              static_cast<unsigned char>(c) < 0x20)
            fail(v, "csp." + name + ": source \"" + src +
                        "\" may not contain ';', ',', spaces or control characters");
      out.emplace_back(name, std::move(sources));
    }
    return out;
  }

  void load_security(const toml::table& t, routes::SecurityPolicy& p) const {
    check_keys(t, "[security_headers]",
               {"enabled", "hsts", "csp", "csp_report_only", "headers", "remove"});
    if (auto* n = t.get("enabled")) p.enabled = boolean(*n, "enabled");
    if (auto* n = t.get("hsts")) {
      if (n->is_boolean()) {
        p.hsts = *n->value<bool>();
      } else {
        if (!n->is_table())
          fail(*n,
               "hsts must be true, false or { max_age = \"2y\", include_subdomains = true, preload "
               "= false }");
        const toml::table& h = *n->as_table();
        check_keys(h, "hsts", {"enabled", "max_age", "include_subdomains", "preload"});
        if (auto* e = h.get("enabled")) p.hsts = boolean(*e, "enabled");
        if (auto* e = h.get("max_age")) {
          if (e->is_string() && str(*e, "max_age").ends_with("y")) {
            std::string y = str(*e, "max_age");
            std::uint64_t years = 0;
            if (y.size() < 2 || y.size() > 4 || !parse_size(y.substr(0, y.size() - 1), years))
              fail(*e,
                   "max_age must be a duration such as \"2y\", \"365d\" or a number of seconds");
            p.hsts_max_age = years * 31536000ULL;
          } else {
            p.hsts_max_age = static_cast<std::uint64_t>(duration(*e, "max_age").count() / 1000);
          }
        }
        if (auto* e = h.get("include_subdomains"))
          p.hsts_include_subdomains = boolean(*e, "include_subdomains");
        if (auto* e = h.get("preload")) p.hsts_preload = boolean(*e, "preload");
        if (p.hsts_preload && (p.hsts_max_age < 31536000 || !p.hsts_include_subdomains))
          fail(*n,
               "hsts preload needs max_age of at least a year and include_subdomains "
               "(hstspreload.org rules)");
      }
    }
    if (auto* n = t.get("csp")) {
      // The preset's directives are kept unless named here.
      routes::merge_csp(p.csp, csp_table(*n));
      std::erase_if(p.csp, [](const auto& d) { return d.second.empty(); });
    }
    if (auto* n = t.get("csp_report_only")) p.csp_report_only = boolean(*n, "csp_report_only");
    if (auto* n = t.get("headers")) {
      for (auto& [name, value] : header_table(*n, "headers"))
        routes::set_header(p.headers, name, value);
    }
    if (auto* n = t.get("remove")) {
      for (const auto& name : header_names(*n, "remove"))
        std::erase_if(p.headers, [&](const auto& h) { return http::iequals(h.first, name); });
    }
  }

  void load_compress(const toml::node& n, routes::CompressOptions& c) const {
    if (n.is_boolean()) {
      c.enabled = *n.value<bool>();
      return;
    }
    if (!n.is_table())
      fail(n, "compress must be true, false or a table { encodings = [...], ... }");
    const toml::table& t = *n.as_table();
    check_keys(t, "compress",
               {"enabled", "encodings", "types", "min_size", "levels", "static_levels",
                "precompressed", "store_size"});
    if (auto* e = t.get("enabled")) c.enabled = boolean(*e, "enabled");
    if (auto* e = t.get("encodings")) {
      c.codings.clear();
      for (const std::string& name : strings(*e, "encodings")) {
        auto coding = http::coding_from_name(name);
        if (!coding || *coding == http::Coding::kIdentity)
          fail(*e, "encodings: \"" + name + "\" is not one of br, zstd, gzip");
        c.codings.push_back(*coding);
      }
    }
    if (auto* e = t.get("types")) {
      c.types = strings(*e, "types");
      for (const auto& ty : c.types)
        if (ty.find('/') == std::string::npos)
          fail(*e, "types: \"" + ty + "\" is not a media type such as text/css or text/*");
    }
    if (auto* e = t.get("min_size")) c.min_size = size(*e, "min_size");
    if (auto* e = t.get("precompressed")) c.precompressed = boolean(*e, "precompressed");
    if (auto* e = t.get("store_size")) c.store_bytes = size(*e, "store_size");
    auto levels = [&](const char* key, int* out) {
      auto* e = t.get(key);
      if (!e) return;
      if (!e->is_table())
        fail(*e, std::string(key) + " must be a table such as { br = 5, zstd = 3, gzip = 6 }");
      for (auto&& [k, v] : *e->as_table()) {
        auto coding = http::coding_from_name(k.str());
        if (!coding || *coding == http::Coding::kIdentity)
          fail(static_cast<int>(k.source().begin.line),
               std::string(key) + ": unknown encoding \"" + std::string(k.str()) + "\"");
        if (!v.is_integer())
          fail(v, std::string(key) + "." + std::string(k.str()) + " must be an integer");
        long long lv = *v.value<long long>();
        long long lo = *coding == http::Coding::kBr ? 0 : 1;
        // Streamed zstd above 19 needs hundreds of MB per response: refused for dynamic levels.
        long long hi = *coding == http::Coding::kBr        ? 11
                       : *coding == http::Coding::kGzip    ? 9
                       : std::string_view(key) == "levels" ? 19
                                                           : 22;
        if (lv < lo || lv > hi)
          fail(v, std::string(key) + "." + std::string(k.str()) + " must be between " +
                      std::to_string(lo) + " and " + std::to_string(hi));
        out[static_cast<std::size_t>(*coding)] = static_cast<int>(lv);
      }
    };
    levels("levels", c.dynamic_levels);
    levels("static_levels", c.static_levels);
  }

  // "127.0.0.1:5000", "[::1]:5000", "api.internal:8080" (resolved now, first address).
  void resolve(const toml::node& n, http::UpstreamServer& s) const {
    std::string a = s.address;
    std::string host, port;
    if (a.starts_with("[")) {
      std::size_t close = a.find(']');
      if (close == std::string::npos || close + 1 >= a.size() || a[close + 1] != ':')
        fail(n, "server \"" + a + "\" must be host:port, e.g. \"[::1]:5000\"");
      host = a.substr(1, close - 1);
      port = a.substr(close + 2);
    } else {
      std::size_t colon = a.rfind(':');
      if (colon == std::string::npos || colon == 0)
        fail(n, "server \"" + a + "\" must be host:port, e.g. \"127.0.0.1:5000\"");
      host = a.substr(0, colon);
      port = a.substr(colon + 1);
    }
    char* end = nullptr;
    long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end || p < 1 || p > 65535)
      fail(n, "server \"" + a + "\": port must be between 1 and 65535");
    s.host = host;
    s.port = static_cast<int>(p);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || !res)
      fail(n, "server \"" + a + "\": cannot resolve " + host + ": " + gai_strerror(rc));
    std::memcpy(&s.addr, res->ai_addr, res->ai_addrlen);
    s.addr_len = static_cast<socklen_t>(res->ai_addrlen);
    freeaddrinfo(res);
  }

  void load_rate_limit_settings(const toml::table& t, routes::RateLimitSettings& r) const {
    check_keys(
        t, "[rate_limit]",
        {"store", "on_store_error", "max_keys", "ipv6_prefix", "allowlist", "headers", "message"});
    if (auto* n = t.get("store")) {
      std::string v = str(*n, "store");
      if (v == "memory") {
        r.store = routes::RateLimitSettings::Store::kMemory;
      } else if (v.starts_with("redis://")) {
        r.store = routes::RateLimitSettings::Store::kRedis;
        std::string rest = v.substr(8);
        std::size_t slash = rest.find('/');
        if (slash != std::string::npos) {
          std::string db = rest.substr(slash + 1);
          char* end = nullptr;
          long d = std::strtol(db.c_str(), &end, 10);
          if (db.empty() || *end || d < 0 || d > 15)
            fail(*n, "store: the database after the / must be 0 to 15");
          r.redis_db = static_cast<int>(d);
          rest = rest.substr(0, slash);
        }
        std::size_t colon = rest.rfind(':');
        if (rest.starts_with("[")) {  // [::1]:6379
          std::size_t close = rest.find(']');
          colon = close != std::string::npos && close + 1 < rest.size() && rest[close + 1] == ':'
                      ? close + 1
                      : std::string::npos;
          r.redis_host = rest.substr(1, close == std::string::npos ? 0 : close - 1);
        } else {
          r.redis_host = rest.substr(0, colon);
        }
        if (colon != std::string::npos) {
          std::string port = rest.substr(colon + 1);
          char* end = nullptr;
          long p = std::strtol(port.c_str(), &end, 10);
          if (port.empty() || *end || p < 1 || p > 65535)
            fail(*n, "store: the port must be between 1 and 65535");
          r.redis_port = static_cast<int>(p);
        }
        if (r.redis_host.empty() || r.redis_host.find('@') != std::string::npos)
          fail(*n, "store must be \"memory\" or \"redis://host:port\" (no password support)");
        // Resolved now: hiredis would call getaddrinfo on the worker's loop at each reconnect.
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        int rc = getaddrinfo(r.redis_host.c_str(), nullptr, &hints, &res);
        if (rc != 0 || !res)
          fail(*n, "store: cannot resolve " + r.redis_host + ": " + gai_strerror(rc));
        char text[INET6_ADDRSTRLEN] = {};
        if (res->ai_family == AF_INET6)
          inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr, text,
                    sizeof text);
        else
          inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, text,
                    sizeof text);
        freeaddrinfo(res);
        r.redis_host = text;
      } else {
        fail(*n, "store must be \"memory\" or \"redis://host:port\"");
      }
    }
    if (auto* n = t.get("on_store_error")) {
      std::string v = str(*n, "on_store_error");
      if (v == "local")
        r.on_store_error = routes::RateLimitSettings::OnError::kLocal;
      else if (v == "allow")
        r.on_store_error = routes::RateLimitSettings::OnError::kAllow;
      else if (v == "deny")
        r.on_store_error = routes::RateLimitSettings::OnError::kDeny;
      else
        fail(*n, "on_store_error must be \"local\", \"allow\" or \"deny\"");
    }
    if (auto* n = t.get("max_keys")) {
      if (!n->is_integer() || *n->value<long long>() < 1000 || *n->value<long long>() > 100000000)
        fail(*n, "max_keys must be an integer between 1000 and 100000000");
      r.max_keys = static_cast<std::size_t>(*n->value<long long>());
    }
    if (auto* n = t.get("ipv6_prefix")) {
      if (!n->is_integer() || *n->value<long long>() < 1 || *n->value<long long>() > 128)
        fail(*n, "ipv6_prefix must be an integer between 1 and 128");
      r.ipv6_prefix = static_cast<unsigned>(*n->value<long long>());
    }
    if (auto* n = t.get("allowlist")) {
      for (const std::string& a : strings(*n, "allowlist")) {
        auto range = http::IpRange::parse(a);
        if (!range) fail(*n, "allowlist: \"" + a + "\" is not an address or a CIDR range");
        r.allowlist.add(*range);
      }
    }
    if (auto* n = t.get("headers")) r.headers = boolean(*n, "headers");
    if (auto* n = t.get("message")) {
      r.message = str(*n, "message");
      for (char c : r.message)
        if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\')
          fail(*n, "message must not contain quotes, backslashes or control characters");
    }
  }

  // `scope` names the route in store keys: its hosts and pattern (not its line, so that edges with
  // differently laid-out files still share counters).
  std::vector<routes::RateLimit> load_limits(const toml::node& n, const std::string& scope) const {
    std::vector<routes::RateLimit> out;
    auto one = [&](const toml::node& el) {
      if (!el.is_table())
        fail(el, "rate_limit must be { requests = 100, window = \"15m\" } or an array of them");
      const toml::table& t = *el.as_table();
      check_keys(t, "rate_limit", {"requests", "window", "key", "name"});
      routes::RateLimit l;
      auto* req = t.get("requests");
      if (!req || !req->is_integer() || *req->value<long long>() < 1 ||
          *req->value<long long>() > 1000000000)
        fail(req ? *req : el, "rate_limit: requests must be an integer of at least 1");
      l.requests = static_cast<std::uint64_t>(*req->value<long long>());
      auto* win = t.get("window");
      if (!win) fail(el, "rate_limit: window is needed, e.g. window = \"15m\"");
      l.window = duration(*win, "window");
      if (l.window.count() < 1000) fail(*win, "rate_limit: window must be at least 1s");
      if (l.window.count() > 366LL * 86400000)
        fail(*win, "rate_limit: window must be at most 366d");
      // Counted in whole microseconds per request: at 100 µs or more the rounding is under 1 %.
      if (l.window.count() * 1000 / static_cast<long long>(l.requests) < 100)
        fail(*win, "rate_limit: at most one request per 100 µs (10,000 per second) per key");
      if (auto* k = t.get("key")) {
        std::string v = str(*k, "key");
        if (v == "ip") {
          l.key = routes::RateLimit::Key::kIp;
        } else if (v.starts_with("header:") && http::is_token(v.substr(7))) {
          l.key = routes::RateLimit::Key::kHeader;
          l.key_name = v.substr(7);
        } else if (v.starts_with("cookie:") && http::is_token(v.substr(7))) {
          l.key = routes::RateLimit::Key::kCookie;
          l.key_name = v.substr(7);
        } else {
          fail(*k, "rate_limit: key must be \"ip\", \"header:Name\" or \"cookie:name\"");
        }
      }
      if (auto* nm = t.get("name")) {
        l.name = str(*nm, "name");
        if (l.name.empty() || !http::is_token(l.name))
          fail(*nm, "rate_limit: name must be a token such as \"burst\"");
      } else {
        long long ms = l.window.count();
        std::string w = ms % 86400000 == 0  ? std::to_string(ms / 86400000) + "day"
                        : ms % 3600000 == 0 ? std::to_string(ms / 3600000) + "h"
                        : ms % 60000 == 0   ? std::to_string(ms / 60000) + "min"
                        : ms % 1000 == 0    ? std::to_string(ms / 1000) + "s"
                                            : std::to_string(ms) + "ms";
        l.name = std::to_string(l.requests) + "-in-" + w;
      }
      l.id = scope + ":" + l.name;
      for (const auto& o : out)
        if (o.name == l.name) fail(el, "rate_limit: two limits named \"" + l.name + "\"");
      out.push_back(std::move(l));
    };
    if (n.is_array()) {
      for (auto&& el : *n.as_array()) one(el);
      if (out.empty()) fail(n, "rate_limit: the array is empty");
      if (out.size() > 8) fail(n, "rate_limit: at most 8 limits per route");
    } else {
      one(n);
    }
    return out;
  }

  // A proxy route's `cache`: true, or { ttl, override, max_object, share_cookies }.
  void load_route_cache(const toml::node& n, routes::ProxyOptions& o) const {
    if (n.is_boolean()) {
      if (!*n.value<bool>()) return;
    } else {
      if (!n.is_table()) fail(n, "cache must be true, false or a table such as { ttl = \"2h\" }");
      const toml::table& t = *n.as_table();
      check_keys(t, "cache",
                 {"ttl", "override", "max_object", "share_cookies", "enabled", "grace",
                  "sort_query", "ignore_params", "credentials"});
      if (auto* e = t.get("credentials")) {
        std::string v = str(*e, "credentials");
        if (v != "public" && v != "never")
          fail(*e, "cache: credentials must be \"public\" (default) or \"never\"");
        o.cache_credentials_never = v == "never";
      }
      if (auto* e = t.get("sort_query")) o.cache_sort_query = boolean(*e, "sort_query");
      if (auto* e = t.get("ignore_params")) o.cache_ignore_params = strings(*e, "ignore_params");
      if (auto* e = t.get("enabled"); e && !boolean(*e, "enabled")) return;
      if (auto* e = t.get("ttl"))
        o.cache_policy.ttl = static_cast<std::int64_t>(duration(*e, "ttl").count() / 1000);
      if (auto* e = t.get("override")) o.cache_policy.override = boolean(*e, "override");
      if (auto* e = t.get("share_cookies"))
        o.cache_policy.share_cookies = boolean(*e, "share_cookies");
      if (auto* e = t.get("max_object")) o.cache_max_object = size(*e, "max_object");
      if (auto* e = t.get("grace"))
        o.cache_grace = static_cast<std::int64_t>(duration(*e, "grace").count() / 1000);
      if (o.cache_policy.override && o.cache_policy.ttl <= 0)
        fail(t, "cache: override needs a ttl");
    }
    o.cache = cache_store;
  }

  std::shared_ptr<cache::Store> cache_store;  // [cache]: the one store every cached route uses
  const Config* previous = nullptr;           // a reload: the config now serving

  void load_cache_settings(const toml::table& t, std::size_t& size_out) const {
    check_keys(t, "[cache]", {"size"});
    if (auto* n = t.get("size")) {
      size_out = size(*n, "size");
      if (size_out < (1u << 20)) fail(*n, "cache size must be at least 1m");
    }
  }

  void load_http2(const toml::table& t, Http2Config& h) const {
    check_keys(t, "[http2]",
               {"max_concurrent_streams", "initial_window_size", "connection_window", "reset_burst",
                "reset_rate"});
    auto count = [&](const char* key, std::uint32_t& out, std::uint64_t lo, std::uint64_t hi) {
      auto* n = t.get(key);
      if (!n) return;
      if (!n->is_integer() || *n->value<long long>() < static_cast<long long>(lo) ||
          *n->value<long long>() > static_cast<long long>(hi))
        fail(*n, std::string(key) + " must be an integer between " + std::to_string(lo) + " and " +
                     std::to_string(hi));
      out = static_cast<std::uint32_t>(*n->value<long long>());
    };
    auto window = [&](const char* key, std::uint32_t& out) {
      auto* n = t.get(key);
      if (!n) return;
      std::uint64_t v = size(*n, key);
      if (v < 65535 || v > 0x7fffffff) fail(*n, std::string(key) + " must be 65535 bytes to 2g");
      out = static_cast<std::uint32_t>(v);
    };
    count("max_concurrent_streams", h.max_concurrent_streams, 1, 10000);
    window("initial_window_size", h.initial_window_size);
    window("connection_window", h.connection_window);
    count("reset_burst", h.reset_burst, 1, 100000);
    count("reset_rate", h.reset_rate, 1, 100000);
  }

  std::shared_ptr<http::UpstreamPool> load_upstream(const toml::table& t) const {
    check_keys(t, "[[upstream]]",
               {"name", "servers", "balance", "keepalive", "keepalive_timeout", "connect_timeout",
                "header_timeout", "read_timeout", "write_timeout", "tries", "health", "passive",
                "tls", "server_name", "verify", "ca", "client_cert", "client_key"});
    auto pool = std::make_shared<http::UpstreamPool>();
    pool->line = line_of(t);
    auto* name = t.get("name");
    if (!name) fail(t, "an [[upstream]] needs a name");
    pool->name = str(*name, "name");
    if (pool->name.empty()) fail(*name, "name must not be empty");
    auto* servers = t.get("servers");
    if (!servers || !servers->is_array() || servers->as_array()->empty())
      fail(servers ? *servers : static_cast<const toml::node&>(t),
           "servers must be a non-empty array such as [\"127.0.0.1:5000\"]");
    for (auto&& el : *servers->as_array()) {
      auto s = std::make_unique<http::UpstreamServer>();
      if (el.is_table()) {
        const toml::table& st = *el.as_table();
        check_keys(st, "a server", {"address", "weight"});
        auto* addr = st.get("address");
        if (!addr) fail(el, "a server table needs an address");
        s->address = str(*addr, "address");
        if (auto* w = st.get("weight")) {
          if (!w->is_integer() || *w->value<long long>() < 1 || *w->value<long long>() > 1000)
            fail(*w, "weight must be an integer between 1 and 1000");
          s->weight = static_cast<unsigned>(*w->value<long long>());
        }
      } else {
        s->address = str(el, "servers");
      }
      for (const auto& other : pool->servers)
        if (other->address == s->address)
          fail(el, "server " + s->address + " is listed twice (give it a weight instead)");
      resolve(el, *s);
      pool->servers.push_back(std::move(s));
    }
    if (pool->servers.size() > 64) fail(*servers, "an upstream has at most 64 servers");
    if (auto* n = t.get("balance")) {
      std::string b = str(*n, "balance");
      if (b == "round_robin")
        pool->balance = http::UpstreamPool::Balance::kRoundRobin;
      else if (b == "least_conn")
        pool->balance = http::UpstreamPool::Balance::kLeastConn;
      else if (b == "ip_hash")
        pool->balance = http::UpstreamPool::Balance::kIpHash;
      else
        fail(*n, "balance must be \"round_robin\", \"least_conn\" or \"ip_hash\"");
    }
    auto count = [&](const char* key, long long lo, long long hi) -> unsigned {
      const toml::node* n = t.get(key);
      if (!n->is_integer() || *n->value<long long>() < lo || *n->value<long long>() > hi)
        fail(*n, std::string(key) + " must be an integer between " + std::to_string(lo) + " and " +
                     std::to_string(hi));
      return static_cast<unsigned>(*n->value<long long>());
    };
    auto positive = [&](const toml::node& n, const char* key) {
      auto d = duration(n, key);
      if (d.count() <= 0) fail(n, std::string(key) + " must be positive");
      return d;
    };
    if (t.contains("keepalive")) pool->keepalive = count("keepalive", 0, 100000);
    if (t.contains("tries")) pool->tries = count("tries", 1, 64);
    if (auto* n = t.get("keepalive_timeout"))
      pool->keepalive_timeout = positive(*n, "keepalive_timeout");
    if (auto* n = t.get("connect_timeout")) pool->connect_timeout = positive(*n, "connect_timeout");
    if (auto* n = t.get("header_timeout")) pool->header_timeout = positive(*n, "header_timeout");
    if (auto* n = t.get("read_timeout")) pool->read_timeout = positive(*n, "read_timeout");
    if (auto* n = t.get("write_timeout")) pool->write_timeout = positive(*n, "write_timeout");
    if (auto* n = t.get("health")) {
      if (!n->is_table())
        fail(*n, "health must be a table: [upstream.health] path = \"/health\" interval = \"5s\"");
      const toml::table& h = *n->as_table();
      check_keys(h, "[upstream.health]", {"path", "interval", "timeout", "rise", "fall"});
      pool->health_path = "/health";
      pool->health_interval = std::chrono::seconds(5);
      if (auto* e = h.get("path")) {
        pool->health_path = str(*e, "path");
        if (!pool->health_path.starts_with("/")) fail(*e, "path must start with \"/\"");
        for (char c : pool->health_path)
          if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
            fail(*e, "path must not contain spaces or control characters");
      }
      if (auto* e = h.get("interval")) pool->health_interval = positive(*e, "interval");
      if (auto* e = h.get("timeout")) pool->health_timeout = positive(*e, "timeout");
      auto small = [&](const char* key, int& out) {
        if (auto* e = h.get(key)) {
          if (!e->is_integer() || *e->value<long long>() < 1 || *e->value<long long>() > 100)
            fail(*e, std::string(key) + " must be an integer between 1 and 100");
          out = static_cast<int>(*e->value<long long>());
        }
      };
      small("rise", pool->rise);
      small("fall", pool->fall);
    }
    bool tls = false;
    if (auto* n = t.get("tls")) tls = boolean(*n, "tls");
    if (!tls) {
      for (auto k : {"server_name", "verify", "ca", "client_cert", "client_key"})
        if (auto* n = t.get(k)) fail(*n, std::string(k) + " only applies with tls = true");
    } else {
      tls::ClientOptions o;
      if (auto* n = t.get("verify")) o.verify = boolean(*n, "verify");
      auto file = [&](const char* key, std::string& out) {
        auto* n = t.get(key);
        if (!n) return;
        out = path(*n, key);
        if (access(out.c_str(), R_OK) != 0)
          fail(*n, std::string(key) + " " + out + " is not readable");
      };
      file("ca", o.ca_file);
      file("client_cert", o.cert_file);
      file("client_key", o.key_file);
      if (o.cert_file.empty() != o.key_file.empty())
        fail(t, "client_cert and client_key go together");
      if (auto* n = t.get("server_name")) pool->tls_server_name = str(*n, "server_name");
      try {
        pool->tls = tls::ClientContext::create(o);
      } catch (const std::exception& e) {
        fail(*t.get("tls"), e.what());
      }
    }
    if (auto* n = t.get("passive")) {
      if (!n->is_table()) fail(*n, "passive must be a table: [upstream.passive] max_fails = 3");
      const toml::table& h = *n->as_table();
      check_keys(h, "[upstream.passive]", {"max_fails", "fail_window", "fail_timeout"});
      if (auto* e = h.get("max_fails")) {
        if (!e->is_integer() || *e->value<long long>() < 0 || *e->value<long long>() > 1000)
          fail(*e, "max_fails must be an integer between 0 (off) and 1000");
        pool->max_fails = static_cast<unsigned>(*e->value<long long>());
      }
      if (auto* e = h.get("fail_window")) pool->fail_window = positive(*e, "fail_window");
      if (auto* e = h.get("fail_timeout")) pool->fail_timeout = positive(*e, "fail_timeout");
    }
    return pool;
  }

  routes::Route load_route(const toml::table& t, unsigned workers,
                           std::chrono::steady_clock::time_point started,
                           const std::vector<std::shared_ptr<http::UpstreamPool>>& pools) const {
    check_keys(
        t, "[[route]]",
        {"host",         "path",           "prefix",        "regex",         "rewrite",
         "health",       "root",           "redirect",      "status",        "index",
         "spa_fallback", "immutable",      "hashed_assets", "cache_control", "dotfiles",
         "symlinks",     "max_body",       "headers",       "compress",      "security_headers",
         "csp",          "remove_headers", "proxy",         "strip_prefix",  "proxy_host",
         "websocket",    "rate_limit",     "cache",         "cache_purge",   "name"});
    routes::Route r;
    r.line = line_of(t);
    if (auto* n = t.get("name")) {
      r.label = str(*n, "name");
      if (r.label.empty() || r.label.size() > 100)
        fail(*n, "name must be 1 to 100 characters (it labels the route's metrics)");
    }
    if (auto* n = t.get("host")) {
      for (std::string h : strings(*n, "host")) {
        for (char& c : h) c = http::ascii_lower(c);
        if (h.empty()) fail(*n, "host must not be empty");
        r.hosts.push_back(h);
      }
    }
    int matchers = 0;
    if (auto* n = t.get("path")) {
      r.match = routes::Route::Match::kExact;
      r.pattern = str(*n, "path");
      ++matchers;
    }
    if (auto* n = t.get("prefix")) {
      r.match = routes::Route::Match::kPrefix;
      r.pattern = str(*n, "prefix");
      ++matchers;
    }
    if (auto* n = t.get("regex")) {
      r.match = routes::Route::Match::kRegex;
      r.pattern = str(*n, "regex");
      try {
        r.regex.emplace(r.pattern, std::regex::ECMAScript | std::regex::optimize);
      } catch (const std::regex_error& e) {
        fail(*n, "regex \"" + r.pattern + "\" is not a valid regular expression: " + e.what());
      }
      ++matchers;
    }
    if (matchers > 1) fail(t, "a route matches by one of path, prefix or regex, not several");
    if (matchers == 1 && r.match != routes::Route::Match::kRegex && !r.pattern.starts_with("/"))
      fail(t, "a route's path or prefix must start with \"/\"");
    if (auto* n = t.get("rewrite")) {
      r.rewrite = str(*n, "rewrite");
      if (!r.rewrite->starts_with("/")) fail(*n, "rewrite must produce a path starting with \"/\"");
    }
    if (auto* n = t.get("max_body")) r.max_body = size(*n, "max_body");
    if (auto* n = t.get("rate_limit")) {
      std::string scope;
      for (const auto& h : r.hosts) scope += h + ",";
      scope += r.pattern.empty() ? "*" : r.pattern;
      r.limits = load_limits(*n, scope);
    }
    if (auto* n = t.get("headers")) r.security.headers = header_table(*n, "headers");
    if (auto* n = t.get("remove_headers")) r.security.remove = header_names(*n, "remove_headers");
    if (auto* n = t.get("security_headers")) r.security.enabled = boolean(*n, "security_headers");
    if (auto* n = t.get("csp")) r.security.csp = csp_table(*n);
    int handlers = (t.contains("health") ? 1 : 0) + (t.contains("root") ? 1 : 0) +
                   (t.contains("redirect") ? 1 : 0) + (t.contains("proxy") ? 1 : 0) +
                   (t.contains("cache_purge") ? 1 : 0);
    if (handlers != 1)
      fail(t, "a route needs exactly one handler: root, proxy, health, redirect or cache_purge");
    if (!t.contains("proxy")) {
      for (auto k : {"strip_prefix", "proxy_host", "websocket", "cache"})
        if (auto* n = t.get(k)) fail(*n, std::string(k) + " only applies to a route with proxy");
    }
    auto static_only = {"index",         "spa_fallback", "immutable", "hashed_assets",
                        "cache_control", "dotfiles",     "symlinks"};
    if (!t.contains("root")) {
      for (auto k : static_only)
        if (auto* n = t.get(k)) fail(*n, std::string(k) + " only applies to a route with root");
    }
    if (!t.contains("redirect")) {
      if (auto* n = t.get("status")) fail(*n, "status only applies to a route with redirect");
    }
    if (!t.contains("root") && !t.contains("proxy")) {
      if (auto* n = t.get("compress"))
        fail(*n, "compress only applies to a route with root or proxy");
    }
    const toml::node* health_node = t.get("health");
    const toml::node* redirect_node = t.get("redirect");
    if (auto* purge = t.get("cache_purge")) {
      std::string token;
      if (purge->is_table()) {
        check_keys(*purge->as_table(), "cache_purge", {"token"});
        if (auto* tk = purge->as_table()->get("token"))
          token = bearer_token(*tk, "cache_purge: the token");
      } else if (!boolean(*purge, "cache_purge")) {
        fail(*purge, "cache_purge = false makes no route; remove it");
      }
      r.handler = std::make_unique<routes::CachePurgeHandler>(cache_store, token);
    } else if (auto* proxy = t.get("proxy")) {
      routes::ProxyOptions o;
      std::string name = str(*proxy, "proxy");
      for (const auto& p : pools)
        if (p->name == name) o.pool = p;
      if (!o.pool) {
        std::string known;
        for (const auto& p : pools) known += (known.empty() ? "" : ", ") + p->name;
        fail(*proxy,
             "proxy = \"" + name + "\" names no [[upstream]]" +
                 (known.empty() ? std::string(" (none is defined)") : " (defined: " + known + ")"));
      }
      if (auto* n = t.get("strip_prefix")) {
        o.strip_prefix = str(*n, "strip_prefix");
        if (!o.strip_prefix.starts_with("/")) fail(*n, "strip_prefix must start with \"/\"");
      }
      if (auto* n = t.get("proxy_host")) {
        std::string v = str(*n, "proxy_host");
        if (v == "pass") {
          o.host_mode = routes::ProxyOptions::HostMode::kPass;
        } else if (v == "upstream") {
          o.host_mode = routes::ProxyOptions::HostMode::kUpstream;
        } else {
          for (char c : v)
            if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f || c == '/' || c == '@')
              fail(*n, "proxy_host must be \"pass\", \"upstream\" or a host name");
          if (v.empty()) fail(*n, "proxy_host must not be empty");
          o.host_mode = routes::ProxyOptions::HostMode::kFixed;
          o.host = v;
        }
      }
      if (auto* n = t.get("websocket")) o.websocket = boolean(*n, "websocket");
      if (auto* n = t.get("cache")) load_route_cache(*n, o);
      if (auto* n = t.get("compress")) load_compress(*n, o.compress);
      if (!t.contains("max_body")) r.max_body = 1 << 20;
      r.handler = std::make_unique<routes::ProxyHandler>(std::move(o));
    } else if (health_node) {
      if (!boolean(*health_node, "health"))
        fail(*health_node, "health = false makes no route; remove it");
      r.handler = std::make_unique<routes::HealthHandler>(EDGE_VERSION, started, pools);
    } else if (redirect_node) {
      const toml::node* n2 = redirect_node;
      int status = 301;
      if (auto* s = t.get("status")) {
        if (!s->is_integer()) fail(*s, "status must be 301, 302, 303, 307 or 308");
        status = static_cast<int>(*s->value<long long>());
        if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
          fail(*s, "status must be 301, 302, 303, 307 or 308");
      }
      std::string loc = str(*n2, "redirect");
      for (char c : loc)
        if (c == '\r' || c == '\n' || c == ' ')
          fail(*n2, "redirect must be a URL without spaces or line breaks");
      r.handler = std::make_unique<routes::RedirectHandler>(loc, status);
    } else {
      auto* root = t.get("root");
      routes::StaticOptions o;
      o.root = path(*root, "root");
      std::error_code ec;
      if (!fs::is_directory(o.root, ec)) fail(*root, "root \"" + o.root + "\" is not a directory");
      if (access(o.root.c_str(), R_OK | X_OK) != 0)
        fail(*root, "root \"" + o.root + "\" is not readable");
      if (auto* n = t.get("index")) {
        o.index = str(*n, "index");
        if (o.index.empty() || o.index.find('/') != std::string::npos)
          fail(*n, "index must be a file name");
      }
      if (auto* n = t.get("spa_fallback")) {
        if (n->is_boolean()) {
          if (*n->value<bool>())
            fail(*n, "spa_fallback is a path such as \"/index.html\", or false");
          o.spa_fallback.clear();
        } else {
          o.spa_fallback = str(*n, "spa_fallback");
          if (!o.spa_fallback.starts_with("/"))
            fail(*n, "spa_fallback must be a path starting with \"/\"");
          std::string file = o.root + o.spa_fallback;
          if (!fs::is_regular_file(file, ec))
            fail(*n, "spa_fallback file " + file + " does not exist");
        }
      }
      if (auto* n = t.get("immutable")) {
        o.immutable = strings(*n, "immutable");
        for (const auto& p : o.immutable)
          if (!p.starts_with("/"))
            fail(*n, "immutable entries are path prefixes starting with \"/\"");
      }
      if (auto* n = t.get("hashed_assets")) o.hashed_assets = boolean(*n, "hashed_assets");
      if (auto* n = t.get("cache_control")) o.cache_control = str(*n, "cache_control");
      if (auto* n = t.get("dotfiles")) {
        std::string v = str(*n, "dotfiles");
        if (v != "deny" && v != "allow") fail(*n, "dotfiles must be \"deny\" or \"allow\"");
        o.allow_dotfiles = v == "allow";
      }
      if (auto* n = t.get("symlinks")) {
        std::string v = str(*n, "symlinks");
        if (v == "inside")
          o.symlinks = routes::StaticOptions::Symlinks::kInside;
        else if (v == "never")
          o.symlinks = routes::StaticOptions::Symlinks::kNever;
        else if (v == "follow")
          o.symlinks = routes::StaticOptions::Symlinks::kFollow;
        else
          fail(*n, "symlinks must be \"inside\", \"never\" or \"follow\"");
      }
      if (auto* n = t.get("compress")) load_compress(*n, o.compress);
      try {
        r.handler = std::make_unique<routes::StaticHandler>(std::move(o), workers);
      } catch (const std::runtime_error& e) {
        fail(*root, e.what());
      }
    }
    return r;
  }

 private:
  std::string file_;
};

}  // namespace

std::string expand_env(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') {
      std::size_t close = s.find('}', i + 2);
      if (close == std::string_view::npos)
        throw std::runtime_error("unterminated ${ in \"" + std::string(s) + "\"");
      std::string_view inner = s.substr(i + 2, close - i - 2);
      std::size_t def = inner.find(":-");
      std::string name(inner.substr(0, def));
      if (name.empty())
        throw std::runtime_error("empty variable name in \"" + std::string(s) + "\"");
      for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
          throw std::runtime_error("bad variable name \"" + name + "\"");
      const char* v = std::getenv(name.c_str());
      if (def != std::string_view::npos) {
        out += (v && *v) ? std::string_view(v) : inner.substr(def + 2);
      } else {
        if (!v)
          throw std::runtime_error("environment variable " + name + " is not set (write ${" + name +
                                   ":-default} for a default)");
        out += v;
      }
      i = close;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool parse_duration(std::string_view s, std::chrono::milliseconds& out) {
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
    if (v > (1ULL << 40)) return false;
    ++i;
  }
  if (i == 0) return false;
  std::string_view unit = s.substr(i);
  std::uint64_t mult;
  if (unit == "ms")
    mult = 1;
  else if (unit == "s" || unit.empty())
    mult = 1000;
  else if (unit == "m")
    mult = 60000;
  else if (unit == "h")
    mult = 3600000;
  else if (unit == "d")
    mult = 86400000;
  else
    return false;
  std::uint64_t ms;
  if (__builtin_mul_overflow(v, mult, &ms) || ms > (1ULL << 50)) return false;  // (35,000 years)
  out = std::chrono::milliseconds(static_cast<std::int64_t>(ms));
  return true;
}

bool parse_size(std::string_view s, std::uint64_t& out) {
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
    if (v > (1ULL << 40)) return false;
    ++i;
  }
  if (i == 0) return false;
  std::string_view unit = s.substr(i);
  unsigned shift;
  if (unit.empty() || unit == "b")
    shift = 0;
  else if (unit == "k" || unit == "K" || unit == "kb" || unit == "KB")
    shift = 10;
  else if (unit == "m" || unit == "M" || unit == "mb" || unit == "MB")
    shift = 20;
  else if (unit == "g" || unit == "G" || unit == "gb" || unit == "GB")
    shift = 30;
  else
    return false;
  if (v > ((1ULL << 50) >> shift)) return false;  // (a petabyte: past any sane size)
  out = v << shift;
  return true;
}

namespace {

// A route's metrics label when it has no name: host-qualified pattern.
std::string route_label(const routes::Route& r) {
  std::string s;
  for (const auto& h : r.hosts) s += (s.empty() ? "" : ",") + h;
  switch (r.match) {
    case routes::Route::Match::kAll:
      s += s.empty() ? "*" : "/*";
      break;
    case routes::Route::Match::kRegex:
      s += (s.empty() ? "~" : "/~") + r.pattern;
      break;
    default:
      s += r.pattern;  // (starts with "/")
  }
  return s;
}

// A reload: the settings that need a restart keep their running values (with a warning). Before
// the routes, whose handlers size their per-worker state by the worker count.
void keep_restart_only(const Config& prev, Config& cfg, std::vector<std::string>& warnings) {
  if (cfg.server.workers != prev.server.workers) {
    warnings.push_back("[server] workers = " + std::to_string(cfg.server.workers) +
                       " needs a restart; " + std::to_string(prev.server.workers) +
                       " keep running");
    cfg.server.workers = prev.server.workers;
  }
  if (cfg.server.pid_file != prev.server.pid_file) {
    warnings.push_back("[server] pid_file needs a restart; " +
                       (prev.server.pid_file.empty() ? std::string("none") : prev.server.pid_file) +
                       " stays");
    cfg.server.pid_file = prev.server.pid_file;
  }
  if (cfg.log.access != prev.log.access || cfg.log.error != prev.log.error) {
    warnings.push_back("[log] access/error destinations need a restart; the running ones stay");
    cfg.log.access = prev.log.access;
    cfg.log.error = prev.log.error;
  }
  auto& a = cfg.rate_limit;
  const auto& b = prev.rate_limit;
  if (a.store != b.store || a.redis_host != b.redis_host || a.redis_port != b.redis_port ||
      a.redis_db != b.redis_db) {
    warnings.push_back("[rate_limit] store needs a restart; the running store stays");
    a.store = b.store;
    a.redis_host = b.redis_host;
    a.redis_port = b.redis_port;
    a.redis_db = b.redis_db;
  }
}

// A reload: what outlives it (see load_config).
void carry_over(const Config& prev, Config& cfg) {
  cfg.generation = prev.generation + 1;
  cfg.conns_per_ip = prev.conns_per_ip;
  cfg.conns_total = prev.conns_total;
  if (prev.limiter && prev.rate_limit.max_keys == cfg.rate_limit.max_keys)
    cfg.limiter = prev.limiter;
  // Health: a server that stays (same pool, same address) keeps its verdicts and failure counts.
  for (const auto& pool : cfg.upstreams)
    for (const auto& old : prev.upstreams)
      if (old->name == pool->name)
        for (auto& s : pool->servers)
          for (const auto& o : old->servers)
            if (o->address == s->address) {
              s->checked_up.store(o->checked_up.load());
              s->check_streak.store(o->check_streak.load());
              s->fails.store(o->fails.load());
              s->window_start_ms.store(o->window_start_ms.load());
              s->down_until_ms.store(o->down_until_ms.load());
            }
}

}  // namespace

std::shared_ptr<const Config> load_config(const std::string& path,
                                          std::chrono::steady_clock::time_point started,
                                          const Config* previous,
                                          std::vector<std::string>* warnings) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    if (src.begin.line == 0)
      throw ConfigError(path + ":0: cannot read the file: " + std::string(e.description()));
    throw ConfigError(path + ":" + std::to_string(src.begin.line) + ": " +
                      std::string(e.description()));
  }
  auto cfg = std::make_shared<Config>();
  cfg->path = path;
  cfg->started = started;
  Loader L(path);
  L.previous = previous;
  L.check_keys(root, "the top level",
               {"server", "log", "listen", "route", "security_headers", "upstream", "rate_limit",
                "cache", "admin", "http2"});
  if (auto* n = root.get("http2")) {
    if (!n->is_table()) L.fail(*n, "http2 must be a table: [http2]");
    L.load_http2(*n->as_table(), cfg->http2);
  }
  {
    std::size_t cache_size = 64u << 20;
    if (auto* n = root.get("cache")) {
      if (!n->is_table()) L.fail(*n, "cache must be a table: [cache]");
      L.load_cache_settings(*n->as_table(), cache_size);
    }
    if (previous && previous->cache_store && previous->cache_store->stats().capacity == cache_size)
      L.cache_store = previous->cache_store;  // a reload keeps what is stored
    else
      L.cache_store = std::make_shared<cache::Store>(cache_size, cache_size);
    cfg->cache_store = L.cache_store;
  }
  if (auto* n = root.get("rate_limit")) {
    if (!n->is_table()) L.fail(*n, "rate_limit must be a table: [rate_limit]");
    L.load_rate_limit_settings(*n->as_table(), cfg->rate_limit);
  }
  if (auto* n = root.get("security_headers")) {
    if (!n->is_table()) L.fail(*n, "security_headers must be a table: [security_headers]");
    L.load_security(*n->as_table(), cfg->security);
  }
  if (auto* n = root.get("server")) {
    if (!n->is_table()) L.fail(*n, "server must be a table: [server]");
    L.load_server(*n->as_table(), cfg->server);
  }
  if (cfg->server.max_connections == 0) {
    // "auto" (also without a [server] table): 3/4 of the descriptors (main raised the soft limit)
    rlimit rl{};
    std::uint64_t fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                            ? static_cast<std::uint64_t>(rl.rlim_cur)
                            : 1'048'576;
    cfg->server.max_connections = std::max<std::uint64_t>(16, fds / 4 * 3);
  }
  if (auto* n = root.get("log")) {
    if (!n->is_table()) L.fail(*n, "log must be a table: [log]");
    L.load_log(*n->as_table(), cfg->log);
  }
  if (previous) {
    std::vector<std::string> ignored;
    keep_restart_only(*previous, *cfg, warnings ? *warnings : ignored);
  }
  auto* listens = root.get("listen");
  if (!listens || !listens->is_array_of_tables())
    L.fail(listens ? Loader::line_of(*listens) : 1, "at least one [[listen]] is needed");
  for (auto&& el : *listens->as_array()) cfg->listeners.push_back(L.load_listen(*el.as_table()));
  if (auto* n = root.get("admin")) {
    if (!n->is_table()) L.fail(*n, "admin must be a table: [admin]");
    cfg->listeners.push_back(L.load_admin(*n->as_table(), cfg->admin_token));
  }
  std::set<std::pair<std::string, int>> seen;
  for (const auto& l : cfg->listeners)
    if (l.port != 0 && !seen.insert({l.host, l.port}).second)
      L.fail(l.line, "address " + l.address + " is listed twice");
  if (auto* ups = root.get("upstream")) {
    if (!ups->is_array_of_tables())
      L.fail(*ups, "upstream must be an array of tables: [[upstream]]");
    for (auto&& el : *ups->as_array()) {
      auto pool = L.load_upstream(*el.as_table());
      for (const auto& p : cfg->upstreams)
        if (p->name == pool->name)
          L.fail(pool->line, "upstream \"" + pool->name + "\" is defined twice (first on line " +
                                 std::to_string(p->line) + ")");
      pool->index = static_cast<unsigned>(cfg->upstreams.size());
      cfg->upstreams.push_back(std::move(pool));
    }
  }
  auto* routes = root.get("route");
  if (!routes || !routes->is_array_of_tables())
    L.fail(routes ? Loader::line_of(*routes) : 1, "at least one [[route]] is needed");
  for (auto&& el : *routes->as_array()) {
    routes::Route r = L.load_route(*el.as_table(), cfg->server.workers, started, cfg->upstreams);
    r.headers_plain = routes::route_headers(cfg->security, r.security, false);
    r.headers_tls = routes::route_headers(cfg->security, r.security, true);
    for (auto [from, to] :
         {std::pair{&r.headers_plain, &r.h2_plain}, {&r.headers_tls, &r.h2_tls}}) {
      *to = *from;
      for (auto& [name, value] : *to)
        for (char& c : name) c = http::ascii_lower(c);
    }
    cfg->has_limits = cfg->has_limits || !r.limits.empty();
    cfg->routes.routes().push_back(std::move(r));
  }
  if (previous) carry_over(*previous, *cfg);
  if (!cfg->limiter)
    cfg->limiter = std::make_shared<routes::LocalLimiter>(cfg->rate_limit.max_keys);
  admin::add_routes(*cfg);
  // Metrics: every route, listener and upstream server gets its block of counters.
  auto& reg = metrics::registry();
  reg.set_workers(cfg->server.workers);
  for (auto& r : cfg->routes.routes()) {
    if (r.label.empty()) r.label = route_label(r);
    r.stats = reg.route(r.label);
    if (auto* p = dynamic_cast<const routes::ProxyHandler*>(r.handler.get()))
      r.cached = p->options().cache != nullptr;
    if (r.cached) r.stats->cached.store(true);
  }
  // Listeners by address (and which of those with that address): a reload keeps their counters.
  // The label becomes the bound address once bound (main.cpp).
  for (std::size_t i = 0; i < cfg->listeners.size(); ++i) {
    auto& l = cfg->listeners[i];
    int nth = 0;
    for (std::size_t j = 0; j < i; ++j)
      nth += cfg->listeners[j].address == l.address && cfg->listeners[j].admin == l.admin;
    l.stats = reg.listener((l.admin ? "admin " : "") + l.address + "#" + std::to_string(nth));
  }
  for (auto& pool : cfg->upstreams)
    for (auto& s : pool->servers) s->stats = reg.upstream(pool->name, s->address);
  return cfg;
}

std::string Config::describe() const {
  std::ostringstream o;
  o << "config " << path << " is valid\n";
  o << "workers " << server.workers << "\n";
  for (const auto& l : listeners) {
    o << (l.admin ? "admin " : "listen ") << (l.tls ? "https" : "http") << "://"
      << (l.ipv6 ? "[" + l.host + "]" : l.host) << ":" << l.port;
    if (l.https_redirect) o << " (redirects to https, port " << l.https_port << ")";
    o << "\n";
    if (l.tls) o << l.tls->ctx.load()->describe();
  }
  for (const auto& u : upstreams) {
    static constexpr const char* kBalance[] = {"round_robin", "least_conn", "ip_hash"};
    o << "upstream " << u->name << " (" << kBalance[static_cast<int>(u->balance)] << ", keepalive "
      << u->keepalive << ", tries " << u->tries << "):";
    for (const auto& sv : u->servers) {
      o << " " << sv->address;
      if (sv->weight != 1) o << " weight " << sv->weight;
    }
    if (u->health_interval.count() > 0)
      o << "; health GET " << u->health_path << " every " << u->health_interval.count() << " ms";
    o << "\n";
  }
  for (const auto& r : routes.routes()) {
    o << "route (line " << r.line << ") " << r.describe();
    if (auto* p = dynamic_cast<const routes::ProxyHandler*>(r.handler.get())) {
      o << " " << p->options().pool->name;
      if (!p->options().strip_prefix.empty()) o << " strip_prefix " << p->options().strip_prefix;
    }
    for (const auto& l : r.limits) o << " rate_limit " << l.name;
    if (auto* s = dynamic_cast<const routes::StaticHandler*>(r.handler.get())) {
      o << " root " << s->options().root;
      if (!s->options().spa_fallback.empty()) o << " spa_fallback " << s->options().spa_fallback;
    }
    o << "\n";
  }
  if (has_limits)
    o << "rate limit store "
      << (rate_limit.store == routes::RateLimitSettings::Store::kRedis
              ? "redis://" + rate_limit.redis_host + ":" + std::to_string(rate_limit.redis_port)
              : std::string("memory"))
      << "\n";
  o << "access log " << log.access << ", error log " << log.error << " (" << log.level << ")\n";
  return o.str();
}

}  // namespace edge
