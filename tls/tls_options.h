// TLS settings of a listener (certificates, versions, cipher lists, ALPN, resumption) and the
// checks that turn OpenSSL's silent skipping of unknown list entries into errors.
#pragma once
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace edge::tls {

// A configuration problem; the message names the bad entry or file, for the config loader to
// prefix with file:line.
struct TlsError : std::runtime_error {
  using runtime_error::runtime_error;
};

struct CertConfig {
  std::string cert_file, key_file;  // PEM; the chain may follow the leaf in cert_file
  // SNI names this cert answers ("*.example.com" allowed); empty = its DNS SANs, else its CN.
  std::vector<std::string> names;
  // Optional DER OCSP response to staple; used only if the cert names an OCSP responder.
  std::string ocsp_file;
};

struct TlsOptions {
  std::vector<CertConfig> certs;        // the first is the default (no SNI / unknown name)
  std::string min_version = "TLSv1.2";  // "TLSv1.2" or "TLSv1.3"; TLS 1.0/1.1 never
  std::string ciphers =                 // TLS 1.2, server preference order
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
      "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  std::string ciphersuites =  // TLS 1.3
      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
  std::string groups = "X25519:P-256";
  std::vector<std::string> alpn = {"http/1.1"};  // server preference; "h2" comes later
  // Ticket keys rotate after this long; the previous key still decrypts, so a ticket stays usable
  // for between one and two lifetimes (sessions themselves expire after session_timeout).
  std::chrono::seconds ticket_key_lifetime{12 * 3600};
  std::chrono::seconds session_timeout{3600};
  std::size_t session_cache_size = 20480;
};

// Each throws TlsError naming every entry of the list that OpenSSL does not know, e.g.
// "ECDHE-RSA-AES256-GCM-SHA512", where OpenSSL would skip it silently (or reject the whole list
// without saying which entry). Entries are separated by ':' (',' and ' ' also accepted, as
// OpenSSL does).
void validate_cipher_list(const std::string& list);   // TLS 1.2 names, aliases, !/-/+ prefixes
void validate_ciphersuites(const std::string& list);  // TLS 1.3 names
void validate_groups(const std::string& list);

// Checks every field of opts that can be checked without reading files (versions, lists, ALPN
// names, sizes); TlsContext::create calls it first.
void validate_options(const TlsOptions& opts);

}  // namespace edge::tls
