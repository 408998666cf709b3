// The server side of TLS for one listener: one OpenSSL context per certificate, picked by SNI,
// with ALPN, a shared session cache, rotating ticket keys and OCSP stapling.
#pragma once
#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tls/tls_options.h"

namespace edge::tls {

// Immutable after create() and shared by all worker threads (SSL_new from several threads is
// fine); the one mutable part, the ticket keys, sits behind its own mutex and is touched once
// per full handshake or resumption, never per record.
//
// SNI is resolved in the ClientHello callback, before OpenSSL looks at sessions: each cert has
// its own session id context, so a session or ticket issued under one certificate is never
// resumed under another (that resumption would skip the authentication of the second name).
// Sessions live in the default context's cache, which OpenSSL keeps for the whole connection
// (the session context does not follow SSL_set_SSL_CTX), so all names share one cache.
class TlsContext {
  struct Key {};  // create() is the only way in

 public:
  // Loads and checks everything; throws TlsError naming the file or list entry at fault. With
  // previous (the context a reload replaces), its ticket keys carry over so that tickets issued
  // before a SIGHUP still resume afterwards.
  static std::shared_ptr<const TlsContext> create(const TlsOptions& opts,
                                                  const TlsContext* previous = nullptr);

  explicit TlsContext(Key);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // One line per cert: file, names, key type, not-after, OCSP yes/no, and warnings (expired,
  // not yet valid, OCSP file ignored or stale) that do not stop the server.
  std::string describe() const;
  // The context new connections start from (the first cert; SNI may switch to another).
  SSL_CTX* default_ctx() const;
  // Index into opts.certs of the cert that answers host_name (exact, then a one-label wildcard,
  // then 0, the default). Case-insensitive; a trailing dot is ignored.
  std::size_t cert_for(std::string_view host_name) const;

  struct Cert;
  struct TicketKeys;

 private:
  static int on_client_hello(SSL* ssl, int* alert, void* arg);
  static int on_server_name(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* out_len,
                     const unsigned char* in, unsigned int in_len, void* arg);
  static int on_ticket_key(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                           EVP_MAC_CTX* mac, int enc);
  static int on_ocsp_status(SSL* ssl, void* arg);

  void load_cert(const CertConfig& conf, std::size_t index, const TlsOptions& opts);
  void configure(SSL_CTX* ctx, std::size_t index, const TlsOptions& opts) const;

  std::vector<std::unique_ptr<Cert>> certs_;
  std::unordered_map<std::string, std::size_t> exact_names_;
  std::unordered_map<std::string, std::size_t> wildcard_names_;  // "*.a.b" stored as "a.b"
  std::vector<std::string> alpn_;
  std::shared_ptr<TicketKeys> ticket_keys_;
};

}  // namespace edge::tls
