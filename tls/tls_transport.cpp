// The TLS byte pump: a custom BIO hands OpenSSL the caller's ciphertext in place and collects
// OpenSSL's output in blocks that never move, so nothing is copied more than once each way.
#include "tls/tls_transport.h"

#include <arpa/inet.h>
#include <openssl/x509v3.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <new>

#include "tls/openssl_error.h"

namespace edge::tls {
namespace {

// The first block holds a whole handshake flight or one full record (16 KiB + header, IV, tag);
// later blocks are larger to cut allocations on big bodies, yet stay under glibc's mmap
// threshold so they come from (and go back to) the heap.
constexpr std::size_t kFirstBlock = 16 * 1024 + 1024;
constexpr std::size_t kLargeBlock = 64 * 1024;
// Room offered to each SSL_read: one full record's plaintext, so a record decrypts in one call.
constexpr std::size_t kReadRoom = 16 * 1024;

const char* ssl_error_name(int e) {
  switch (e) {
    case SSL_ERROR_SSL:
      return "protocol error";
    case SSL_ERROR_SYSCALL:
      return "unexpected end of data";
    case SSL_ERROR_ZERO_RETURN:
      return "closed by peer";
    case SSL_ERROR_WANT_WRITE:
      return "want write";
    case SSL_ERROR_WANT_X509_LOOKUP:
      return "want certificate lookup";
    case SSL_ERROR_WANT_CLIENT_HELLO_CB:
      return "want client hello callback";
    default:
      return "error";
  }
}

}  // namespace

// OpenSSL's side of the BIO: reads come from the span being fed, writes go to the output blocks.
struct TransportBio {
  static TlsTransport* self(BIO* b) { return static_cast<TlsTransport*>(BIO_get_data(b)); }

  static int write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
    BIO_clear_retry_flags(b);
    self(b)->append_out(data, len);
    *written = len;
    return 1;
  }
  static int read(BIO* b, char* out, std::size_t len, std::size_t* got) {
    BIO_clear_retry_flags(b);
    int n = self(b)->read_in(out, len);
    if (n == 0) {
      BIO_set_retry_read(b);  // "would block": wait for the next feed()
      *got = 0;
      return 0;
    }
    *got = static_cast<std::size_t>(n);
    return 1;
  }
  static long ctrl(BIO* b, int cmd, long, void*) {
    switch (cmd) {
      case BIO_CTRL_FLUSH:  // output is "sent" the moment it is queued in our blocks
      case BIO_CTRL_DUP:
        return 1;
      case BIO_CTRL_PENDING:
        return static_cast<long>(self(b)->in_len_);
      default:
        return 0;
    }
  }
  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }
  static int destroy(BIO*) { return 1; }

  static const BIO_METHOD* method() {
    // Made once, thread-safe by the static's initialisation; lives as long as the process.
    static BIO_METHOD* const kMethod = [] {
      BIO_METHOD* m =
          BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "edge tls transport");
      if (!m || !BIO_meth_set_write_ex(m, write) || !BIO_meth_set_read_ex(m, read) ||
          !BIO_meth_set_ctrl(m, ctrl) || !BIO_meth_set_create(m, create) ||
          !BIO_meth_set_destroy(m, destroy))
        throw std::bad_alloc();
      return m;
    }();
    return kMethod;
  }
};

void TlsTransport::attach(SSL_CTX* ctx) {
  ssl_ = SSL_new(ctx);
  BIO* bio = ssl_ ? BIO_new(TransportBio::method()) : nullptr;
  if (!bio) {
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference, used both ways
}

TlsTransport::TlsTransport(std::shared_ptr<const TlsContext> ctx) : ctx_(ctx) {
  attach(ctx->default_ctx());
  SSL_set_accept_state(ssl_);
}

TlsTransport::TlsTransport(std::shared_ptr<const ClientContext> ctx, const std::string& server_name)
    : ctx_(ctx) {
  first_bytes_ = false;
  attach(ctx->ctx());
  SSL_set_connect_state(ssl_);
  unsigned char ip[16];
  bool is_ip = inet_pton(AF_INET, server_name.c_str(), ip) == 1 ||
               inet_pton(AF_INET6, server_name.c_str(), ip) == 1;
  if (!is_ip && !server_name.empty()) SSL_set_tlsext_host_name(ssl_, server_name.c_str());
  if (ctx->verify() && !server_name.empty()) {
    if (is_ip)
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), server_name.c_str());
    else
      SSL_set1_host(ssl_, server_name.c_str());
  }
}

TlsTransport::Result TlsTransport::start() {
  if (sticky_ != Result::kOk) return sticky_;
  return drive();
}

TlsTransport::~TlsTransport() {
  // Most peers just close the TCP connection. OpenSSL would take that as an unclean end and drop
  // the session from the cache (no resumption by session id); like nginx, call it clean unless
  // the connection failed, when OpenSSL has already dropped the session.
  if (handshake_done_ && sticky_ != Result::kError)
    SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(ssl_);
}

int TlsTransport::read_in(char* out, std::size_t len) {
  std::size_t n = std::min({len, in_len_, static_cast<std::size_t>(1) << 30});
  if (n == 0) return 0;
  std::memcpy(out, in_, n);
  in_ += n;
  in_len_ -= n;
  return static_cast<int>(n);
}

void TlsTransport::append_out(const char* data, std::size_t len) {
  while (len > 0) {
    if (out_.empty() || out_.back().end == out_.back().cap) {
      Block b;
      b.cap = std::max(len, out_.empty() ? kFirstBlock : kLargeBlock);
      b.data.reset(new char[b.cap]);
      out_.push_back(std::move(b));
    }
    Block& tail = out_.back();
    std::size_t n = std::min(len, tail.cap - tail.end);
    std::memcpy(tail.data.get() + tail.end, data, n);
    tail.end += n;
    out_size_ += n;
    data += n;
    len -= n;
  }
}

std::string_view TlsTransport::pending_out() const {
  if (out_.empty()) return {};
  const Block& b = out_.front();
  return {b.data.get() + b.begin, b.end - b.begin};
}

std::size_t TlsTransport::out_chunks(std::string_view* chunks, std::size_t max) const {
  std::size_t n = 0;
  for (const Block& b : out_) {
    if (n == max) break;
    if (b.end > b.begin) chunks[n++] = {b.data.get() + b.begin, b.end - b.begin};
  }
  return n;
}

void TlsTransport::consume_out(std::size_t n) {
  n = std::min(n, out_size_);
  out_size_ -= n;
  while (n > 0) {
    Block& b = out_.front();
    std::size_t take = std::min(n, b.end - b.begin);
    b.begin += take;
    n -= take;
    if (b.begin == b.end) {
      // The last block is kept for the next output; earlier ones are done with.
      if (out_.size() > 1)
        out_.erase(out_.begin());  // (a handful of blocks at most: the output is bounded)
      else
        b.begin = b.end = 0;
    }
  }
}

TlsTransport::Result TlsTransport::feed(const char* data, std::size_t len) {
  if (sticky_ != Result::kOk) return sticky_;
  if (len == 0) return handshake_done_ ? Result::kOk : Result::kWantMore;
  if (first_bytes_) {
    first_bytes_ = false;
    // A TLS record starts with its type (20..24) and SSLv2 hellos with a high bit; a letter
    // there is a plaintext request such as "GET / HTTP/1.1".
    if (std::isalpha(static_cast<unsigned char>(data[0]))) {
      error_ = "plaintext HTTP on a TLS port";
      return sticky_ = Result::kPlainHttp;
    }
  }
  in_ = data;
  in_len_ = len;
  Result r = drive();
  // Input after a close_notify or a fatal error is dropped, as the peer is done or untrusted.
  in_ = nullptr;
  in_len_ = 0;
  return r;
}

TlsTransport::Result TlsTransport::drive() {
  if (!handshake_done_) {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    if (rc != 1) {
      int e = SSL_get_error(ssl_, rc);
      if (e == SSL_ERROR_WANT_READ) return Result::kWantMore;
      return fail("handshake", e);
    }
    handshake_done_ = true;
    const unsigned char* proto = nullptr;
    unsigned proto_len = 0;
    SSL_get0_alpn_selected(ssl_, &proto, &proto_len);
    if (proto) alpn_.assign(reinterpret_cast<const char*>(proto), proto_len);
    if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) server_name_ = sni;
    version_ = SSL_get_version(ssl_);
    cipher_ = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_));
  }
  for (;;) {
    if (plain_begin_ == plain_end_) plain_begin_ = plain_end_ = 0;
    if (plain_cap_ - plain_end_ < kReadRoom) {
      if (plain_begin_ > 0) {
        std::memmove(plain_.get(), plain_.get() + plain_begin_, plain_end_ - plain_begin_);
        plain_end_ -= plain_begin_;
        plain_begin_ = 0;
      }
      if (plain_cap_ - plain_end_ < kReadRoom) {
        std::size_t cap = std::max(plain_cap_ * 2, plain_end_ + kReadRoom);
        std::unique_ptr<char[]> bigger(new char[cap]);
        if (plain_end_) std::memcpy(bigger.get(), plain_.get(), plain_end_);
        plain_ = std::move(bigger);
        plain_cap_ = cap;
      }
    }
    std::size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_, plain_.get() + plain_end_, plain_cap_ - plain_end_, &got) == 1) {
      plain_end_ += got;
      continue;
    }
    int e = SSL_get_error(ssl_, 0);
    if (e == SSL_ERROR_WANT_READ) return Result::kOk;
    if (e == SSL_ERROR_ZERO_RETURN) return sticky_ = Result::kClosed;
    return fail("read", e);
  }
}

TlsTransport::Result TlsTransport::fail(const char* what, int ssl_error) {
  std::string why = drain_openssl_errors();
  error_ = std::string("TLS ") + what + ": " + (why.empty() ? ssl_error_name(ssl_error) : why);
  return sticky_ = Result::kError;
}

std::size_t TlsTransport::read_plain(char* out, std::size_t cap) {
  std::string_view avail = pending_plain();
  std::size_t n = std::min(cap, avail.size());
  if (n) std::memcpy(out, avail.data(), n);
  consume_plain(n);
  return n;
}

std::string_view TlsTransport::pending_plain() const {
  if (plain_begin_ == plain_end_) return {};
  return {plain_.get() + plain_begin_, plain_end_ - plain_begin_};
}

void TlsTransport::consume_plain(std::size_t n) {
  plain_begin_ += std::min(n, plain_end_ - plain_begin_);
  if (plain_begin_ == plain_end_) plain_begin_ = plain_end_ = 0;
}

TlsTransport::Result TlsTransport::write_plain(const char* data, std::size_t len) {
  if (!handshake_done_ || sticky_ == Result::kError || sticky_ == Result::kPlainHttp) {
    if (error_.empty()) error_ = "TLS write before the handshake finished";
    return Result::kError;
  }
  if (len == 0) return Result::kOk;
  // Our BIO takes every byte, so SSL_write_ex encrypts all of it now, record by record, and
  // never needs SSL_MODE_ENABLE_PARTIAL_WRITE or ACCEPT_MOVING_WRITE_BUFFER (those are for
  // sockets that would block halfway).
  std::size_t written = 0;
  ERR_clear_error();
  if (SSL_write_ex(ssl_, data, len, &written) != 1) return fail("write", SSL_get_error(ssl_, 0));
  return Result::kOk;
}

bool TlsTransport::resumed() const {
  return handshake_done_ && SSL_session_reused(ssl_) == 1;
}

void TlsTransport::shutdown() {
  if (!handshake_done_ || sticky_ == Result::kError || sticky_ == Result::kPlainHttp) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // 0 = our close_notify is queued; the peer's is not awaited
  ERR_clear_error();
}

void TlsTransport::release_buffers() {
  if (plain_begin_ == plain_end_) {
    plain_.reset();
    plain_cap_ = plain_begin_ = plain_end_ = 0;
  }
  if (out_size_ == 0) std::vector<Block>().swap(out_);
}

bool TlsTransport::session_reused() const {
  return ssl_ && SSL_session_reused(ssl_) == 1;
}

}  // namespace edge::tls
