// The client side of TLS, for HTTPS upstreams: one OpenSSL context per upstream pool with the
// trust store (the system's, or a given CA file), TLS 1.2+, and an optional client certificate.
#pragma once
#include <openssl/types.h>

#include <memory>
#include <string>

namespace edge::tls {

struct ClientOptions {
  bool verify = true;     // check the chain and the server's name
  std::string ca_file;    // empty: the system store
  std::string cert_file;  // client certificate (PEM chain), optional
  std::string key_file;   // its key
};

class ClientContext {
  struct Key {};

 public:
  // Throws TlsError naming the file at fault.
  static std::shared_ptr<const ClientContext> create(const ClientOptions& o);
  explicit ClientContext(Key) {}
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;
  SSL_CTX* ctx() const { return ctx_; }
  bool verify() const { return verify_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  bool verify_ = true;
};

}  // namespace edge::tls
