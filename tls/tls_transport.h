// One server-side TLS connection as a byte pump, with no socket and no event loop: ciphertext in
// from the socket, plaintext out to the HTTP codec, plaintext in from the codec, ciphertext out
// to the socket. The connection code owns the socket and drives this.
#pragma once
#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tls/client_context.h"
#include "tls/tls_context.h"

namespace edge::tls {

// Buffers and copies: OpenSSL reads ciphertext straight from the caller's buffer during feed()
// (a BIO over that span, not a memory BIO that would copy it first) and writes ciphertext into
// our own output blocks. Bytes in an output block never move, so a view from pending_out() stays
// valid while the socket write is in flight, even if feed() or write_plain() queue more output,
// until consume_out() passes it. Decrypted bytes wait in one reused buffer.
class TlsTransport {
 public:
  explicit TlsTransport(std::shared_ptr<const TlsContext> ctx);
  // The client side (HTTPS upstreams): SNI and, when the context verifies, the name checked
  // against the certificate (a host name or an IP address). start() queues the ClientHello.
  TlsTransport(std::shared_ptr<const ClientContext> ctx, const std::string& server_name);
  ~TlsTransport();
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  enum class Result { kOk, kWantMore, kClosed, kError, kPlainHttp };

  // Feeds ciphertext read from the socket; all of it is consumed. kWantMore: the handshake needs
  // more bytes. kOk: handshake done (maybe just now); decrypted bytes, if any, are ready.
  // kClosed: the peer sent close_notify (the bytes before it are still readable). kPlainHttp:
  // the connection opened with plaintext HTTP (an ASCII letter where a TLS record type belongs),
  // so the caller can answer a short 400 in clear and close. kError: handshake or record failure
  // (error_string() says why); pending_out() may hold an alert worth sending before closing.
  // After kClosed/kError/kPlainHttp further feeds return the same result and consume nothing.
  // In every case send pending_out(): the handshake, tickets and alerts are queued there.
  Result feed(const char* data, std::size_t len);
  Result start();  // client only: begins the handshake (send pending_out())

  // Decrypted bytes available now; returns the number copied (0 = none). They accumulate until
  // read, so a caller that cannot take more stops reading the socket (backpressure).
  std::size_t read_plain(char* out, std::size_t cap);
  // The same without the copy: look at the decrypted bytes, then consume what was parsed. The
  // view is valid until the next feed() or consume_plain().
  std::string_view pending_plain() const;
  void consume_plain(std::size_t n);

  // Encrypts len bytes into the pending output, in full-size records (16 KiB of plaintext each;
  // OpenSSL 3 has no smaller-records-first logic). Only after handshake_done(): kError before.
  Result write_plain(const char* data, std::size_t len);

  // Ciphertext waiting for the socket, oldest first. pending_out() is the first contiguous
  // block; out_chunks() lists up to max blocks for a vectored write (returns how many).
  std::string_view pending_out() const;
  std::size_t out_chunks(std::string_view* chunks, std::size_t max) const;
  std::size_t pending_out_size() const { return out_size_; }
  // Drops n bytes sent from the front (n may span blocks).
  void consume_out(std::size_t n);

  bool handshake_done() const { return handshake_done_; }
  bool session_reused() const;  // the handshake resumed a session (ticket or cache)
  bool resumed() const;
  std::string_view alpn() const { return alpn_; }                // "" if none was negotiated
  std::string_view server_name() const { return server_name_; }  // "" if no SNI
  std::string_view version() const { return version_; }          // e.g. "TLSv1.3"
  std::string_view cipher() const { return cipher_; }            // e.g. "TLS_AES_128_GCM_SHA256"
  // Queues close_notify (send pending_out() then close; we do not wait for the peer's reply).
  void shutdown();
  std::string error_string() const { return error_; }

  // For idle connections: frees our empty output and plaintext buffers. OpenSSL's own buffers
  // are already released whenever they are empty (SSL_MODE_RELEASE_BUFFERS on the context).
  void release_buffers();

 private:
  struct Block {
    std::unique_ptr<char[]> data;
    std::size_t cap = 0, begin = 0, end = 0;
  };
  friend struct TransportBio;

  void attach(SSL_CTX* ctx);  // the SSL and our BIO
  Result drive();
  Result fail(const char* what, int ssl_error);
  void append_out(const char* data, std::size_t len);
  int read_in(char* out, std::size_t len);

  std::shared_ptr<const void> ctx_;  // the TlsContext or ClientContext the SSL came from
  SSL* ssl_ = nullptr;
  Result sticky_ = Result::kOk;  // kClosed / kError / kPlainHttp once reached
  bool first_bytes_ = true;
  bool handshake_done_ = false;
  // The span feed() is handing to OpenSSL.
  const char* in_ = nullptr;
  std::size_t in_len_ = 0;
  // Decrypted bytes: [plain_begin_, plain_end_) of plain_.
  std::unique_ptr<char[]> plain_;
  std::size_t plain_cap_ = 0, plain_begin_ = 0, plain_end_ = 0;
  // Oldest first. A vector, not a deque: an empty std::deque still holds a 512-byte node and its
  // map, which an idle connection would keep (release_buffers() frees the vector's storage).
  std::vector<Block> out_;
  std::size_t out_size_ = 0;
  std::string alpn_, server_name_, error_;
  std::string_view version_, cipher_;  // OpenSSL's static names
};

}  // namespace edge::tls
