// Checks of TLS settings: each entry of a cipher/suite/group list is tried alone against OpenSSL,
// because OpenSSL skips unknown entries of a list silently.
#include "tls/tls_options.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <memory>
#include <string_view>

namespace edge::tls {
namespace {

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

CtxPtr scratch_ctx() {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) throw TlsError("OpenSSL: cannot create an SSL_CTX");
  // Level 0 so that an entry is judged on whether OpenSSL knows it, not on today's policy.
  SSL_CTX_set_security_level(ctx.get(), 0);
  return ctx;
}

std::vector<std::string> split_list(std::string_view list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= list.size(); ++i) {
    if (i == list.size() || list[i] == ':' || list[i] == ',' || list[i] == ' ') {
      if (i > start) out.emplace_back(list.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// Legacy aliases OpenSSL 3 still parses but no longer builds ciphers for; excluding them
// ("!RC4") is common in old configs and harmless, so only their positive use is an error.
bool is_retired_alias(std::string_view name) {
  static constexpr std::string_view kRetired[] = {
      "RC4",      "RC2",      "DES", "3DES",   "SEED", "IDEA",  "EXP",   "EXPORT",
      "EXPORT40", "EXPORT56", "LOW", "MEDIUM", "GOST", "kGOST", "aGOST", "SSLv2"};
  for (std::string_view r : kRetired)
    if (name == r) return true;
  return false;
}

void throw_unknown(const char* what, const std::vector<std::string>& bad) {
  std::string msg = std::string("unknown ") + what + ": ";
  for (std::size_t i = 0; i < bad.size(); ++i) {
    if (i) msg += ", ";
    msg += '"' + bad[i] + '"';
  }
  throw TlsError(msg);
}

bool known_cipher_entry(SSL_CTX* ctx, const std::string& entry) {
  std::string_view name = entry;
  bool negated = false;
  if (name.front() == '@') {
    if (name == "@STRENGTH") return true;
    constexpr std::string_view kSec = "@SECLEVEL=";
    return name.size() == kSec.size() + 1 && name.substr(0, kSec.size()) == kSec &&
           name.back() >= '0' && name.back() <= '5';
  }
  if (name.front() == '!' || name.front() == '-') {
    negated = true;
    name.remove_prefix(1);
  } else if (name.front() == '+') {
    name.remove_prefix(1);
  }
  if (name.empty()) return false;
  std::string alone(name);
  bool ok = SSL_CTX_set_cipher_list(ctx, alone.c_str()) == 1;
  ERR_clear_error();
  return ok || (negated && is_retired_alias(name));
}

}  // namespace

void validate_cipher_list(const std::string& list) {
  auto entries = split_list(list);
  if (entries.empty()) throw TlsError("empty cipher list");
  CtxPtr ctx = scratch_ctx();
  std::vector<std::string> bad;
  for (const auto& e : entries)
    if (!known_cipher_entry(ctx.get(), e)) bad.push_back(e);
  if (!bad.empty()) throw_unknown("TLS 1.2 cipher", bad);
  // Every entry known can still select nothing usable in a server (e.g. "!ALL" alone).
  if (SSL_CTX_set_cipher_list(ctx.get(), list.c_str()) != 1) {
    ERR_clear_error();
    throw TlsError("cipher list \"" + list + "\" selects no cipher");
  }
}

void validate_ciphersuites(const std::string& list) {
  auto entries = split_list(list);
  if (entries.empty()) throw TlsError("empty TLS 1.3 ciphersuite list");
  CtxPtr ctx = scratch_ctx();
  std::vector<std::string> bad;
  for (const auto& e : entries) {
    // Judge by what was selected: some OpenSSL versions accept a list of unknown names.
    bool ok = SSL_CTX_set_ciphersuites(ctx.get(), e.c_str()) == 1;
    ERR_clear_error();
    int tls13 = 0;
    if (ok) {
      STACK_OF(SSL_CIPHER)* all = SSL_CTX_get_ciphers(ctx.get());
      for (int i = 0; i < sk_SSL_CIPHER_num(all); ++i)
        // TLS 1.3 suites are numbered 0x13xx (RFC 8446 B.4).
        if ((SSL_CIPHER_get_protocol_id(sk_SSL_CIPHER_value(all, i)) >> 8) == 0x13) ++tls13;
    }
    if (tls13 != 1) bad.push_back(e);
  }
  if (!bad.empty()) throw_unknown("TLS 1.3 ciphersuite", bad);
}

void validate_groups(const std::string& list) {
  auto entries = split_list(list);
  if (entries.empty()) throw TlsError("empty groups list");
  CtxPtr ctx = scratch_ctx();
  std::vector<std::string> bad;
  for (const auto& e : entries) {
    if (SSL_CTX_set1_groups_list(ctx.get(), e.c_str()) != 1) bad.push_back(e);
    ERR_clear_error();
  }
  if (!bad.empty()) throw_unknown("group", bad);
}

void validate_options(const TlsOptions& opts) {
  if (opts.certs.empty()) throw TlsError("no certificate configured");
  if (opts.min_version != "TLSv1.2" && opts.min_version != "TLSv1.3")
    throw TlsError("min_version \"" + opts.min_version + "\": use \"TLSv1.2\" or \"TLSv1.3\"");
  validate_cipher_list(opts.ciphers);
  validate_ciphersuites(opts.ciphersuites);
  validate_groups(opts.groups);
  for (const auto& p : opts.alpn)
    if (p.empty() || p.size() > 255) throw TlsError("ALPN protocol \"" + p + "\": length 1..255");
  for (const auto& c : opts.certs)
    if (c.cert_file.empty() || c.key_file.empty())
      throw TlsError("certificate entry needs both cert_file and key_file");
  if (opts.ticket_key_lifetime.count() <= 0) throw TlsError("ticket_key_lifetime must be > 0");
  if (opts.session_timeout.count() <= 0) throw TlsError("session_timeout must be > 0");
}

}  // namespace edge::tls
