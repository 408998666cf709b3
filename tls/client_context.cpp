// Client TLS contexts (see client_context.h).
#include "tls/client_context.h"

#include <openssl/ssl.h>

#include "tls/openssl_error.h"
#include "tls/tls_options.h"

namespace edge::tls {

ClientContext::~ClientContext() {
  SSL_CTX_free(ctx_);
}

std::shared_ptr<const ClientContext> ClientContext::create(const ClientOptions& o) {
  auto c = std::make_shared<ClientContext>(Key{});
  c->ctx_ = SSL_CTX_new(TLS_client_method());
  if (!c->ctx_) throw TlsError("cannot create a TLS client context: " + drain_openssl_errors());
  c->verify_ = o.verify;
  SSL_CTX_set_min_proto_version(c->ctx_, TLS1_2_VERSION);
  SSL_CTX_set_mode(c->ctx_, SSL_MODE_RELEASE_BUFFERS);
  if (o.verify) {
    SSL_CTX_set_verify(c->ctx_, SSL_VERIFY_PEER, nullptr);
    int ok = o.ca_file.empty() ? SSL_CTX_set_default_verify_paths(c->ctx_)
                               : SSL_CTX_load_verify_locations(c->ctx_, o.ca_file.c_str(), nullptr);
    if (ok != 1)
      throw TlsError(o.ca_file.empty()
                         ? "cannot load the system trust store: " + drain_openssl_errors()
                         : "ca " + o.ca_file + ": " + drain_openssl_errors());
  }
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(c->ctx_, o.cert_file.c_str()) != 1)
      throw TlsError("client_cert " + o.cert_file + ": " + drain_openssl_errors());
    if (SSL_CTX_use_PrivateKey_file(c->ctx_, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      throw TlsError("client_key " + o.key_file + ": " + drain_openssl_errors());
    if (SSL_CTX_check_private_key(c->ctx_) != 1)
      throw TlsError("client_key " + o.key_file + " does not match client_cert " + o.cert_file);
  }
  return c;
}

}  // namespace edge::tls
