// TLS transport: full handshakes between an OpenSSL client (memory BIOs) and TlsTransport with
// bytes shuttled in memory: versions, ALPN, SNI, resumption (tickets, cache, key rotation),
// OCSP stapling, data both ways in full-size records, plaintext HTTP, garbage, close_notify.
#include "tls/tls.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace edge::tls;
using Result = TlsTransport::Result;
namespace fs = std::filesystem;

namespace {

struct ClientOptions {
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  std::string sni{};
  std::vector<std::string> alpn{};
  SSL_SESSION* session = nullptr;
  bool no_ticket = false;  // TLS 1.2: resume through the server's session cache instead
  bool want_ocsp = false;
};

// An OpenSSL client over memory BIOs: `in` holds bytes from the server, `out` bytes for it.
class Client {
 public:
  explicit Client(const ClientOptions& o) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (o.max_version < TLS1_2_VERSION) {
      // TLS 1.0/1.1 need security level 0 in OpenSSL 3 (MD5-SHA1 signatures).
      SSL_CTX_set_security_level(ctx_, 0);
      SSL_CTX_set_cipher_list(ctx_, "DEFAULT:@SECLEVEL=0");
    }
    SSL_CTX_set_min_proto_version(ctx_, o.min_version);
    SSL_CTX_set_max_proto_version(ctx_, o.max_version);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);  // self-signed test certs
    if (o.no_ticket) SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
    ssl_ = SSL_new(ctx_);
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl_, in_, out_);
    SSL_set_connect_state(ssl_);
    if (!o.sni.empty()) SSL_set_tlsext_host_name(ssl_, o.sni.c_str());
    if (!o.alpn.empty()) {
      std::string wire;
      for (const auto& p : o.alpn) wire += static_cast<char>(p.size()) + p;
      SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                          static_cast<unsigned>(wire.size()));
    }
    if (o.session) SSL_set_session(ssl_, o.session);
    if (o.want_ocsp) SSL_set_tlsext_status_type(ssl_, TLSEXT_STATUSTYPE_ocsp);
  }
  ~Client() {
    // A client that hangs up without close_notify loses its session (OpenSSL marks it not
    // resumable); the tests resume, so hang up politely.
    if (SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  SSL* ssl() const { return ssl_; }
  BIO* in() const { return in_; }
  // Everything the client has written so far.
  std::string take_out() {
    std::string s;
    char buf[65536];
    int n;
    while ((n = BIO_read(out_, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
    return s;
  }
  void give(std::string_view bytes) {
    if (!bytes.empty()) BIO_write(in_, bytes.data(), static_cast<int>(bytes.size()));
  }
  // Plaintext readable now; closed is set on close_notify.
  std::string read_all(bool* closed = nullptr) {
    std::string s;
    char buf[65536];
    for (;;) {
      std::size_t got = 0;
      if (SSL_read_ex(ssl_, buf, sizeof buf, &got) == 1) {
        s.append(buf, got);
        continue;
      }
      if (closed) *closed = SSL_get_error(ssl_, 0) == SSL_ERROR_ZERO_RETURN;
      ERR_clear_error();
      return s;
    }
  }
  void write(std::string_view data) {
    std::size_t written = 0;
    ASSERT_EQ(SSL_write_ex(ssl_, data.data(), data.size(), &written), 1);
  }
  // Common name or first DNS SAN check of the server's certificate.
  bool peer_is(const char* host) const {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    return cert && X509_check_host(cert, host, 0, 0, nullptr) == 1;
  }
  std::string alpn() const {
    const unsigned char* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(ssl_, &p, &n);
    return p ? std::string(reinterpret_cast<const char*>(p), n) : "";
  }
  // The session to resume with (owned by the caller).
  SSL_SESSION* session() const { return SSL_get1_session(ssl_); }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;
  BIO* out_ = nullptr;
};

struct SessionFree {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using Session = std::unique_ptr<SSL_SESSION, SessionFree>;

std::string take_out(TlsTransport& t) {
  std::string s;
  while (!t.pending_out().empty()) {
    std::string_view v = t.pending_out();
    s.append(v);
    t.consume_out(v.size());
  }
  EXPECT_EQ(t.pending_out_size(), 0u);
  return s;
}

// Feeds bytes to the server in chunks of at most `chunk`; returns the last result.
Result feed(TlsTransport& t, std::string_view bytes, std::size_t chunk = 1 << 30) {
  Result r = t.handshake_done() ? Result::kOk : Result::kWantMore;
  for (std::size_t i = 0; i < bytes.size(); i += chunk)
    r = t.feed(bytes.data() + i, std::min(chunk, bytes.size() - i));
  return r;
}

struct Outcome {
  bool client_ok = false;
  Result server = Result::kWantMore;
};

// Runs the handshake to its end on both sides. Afterwards the client has also read what the
// server sent after its handshake (TLS 1.3 tickets), so its session can be resumed.
Outcome handshake(Client& c, TlsTransport& t, std::size_t chunk = 1 << 30) {
  Outcome o;
  for (int round = 0; round < 10; ++round) {
    ERR_clear_error();
    int rc = SSL_do_handshake(c.ssl());
    bool client_failed = rc != 1 && SSL_get_error(c.ssl(), rc) != SSL_ERROR_WANT_READ;
    o.client_ok = rc == 1;
    std::string to_server = c.take_out();
    if (!to_server.empty()) o.server = feed(t, to_server, chunk);
    c.give(take_out(t));
    if (o.server == Result::kError || o.server == Result::kPlainHttp || client_failed) break;
    if (o.client_ok && t.handshake_done()) {
      c.read_all();
      break;
    }
  }
  ERR_clear_error();
  return o;
}

// TLS record headers of a byte stream: (type, length).
std::vector<std::pair<int, std::size_t>> records(std::string_view s) {
  std::vector<std::pair<int, std::size_t>> out;
  std::size_t i = 0;
  while (i + 5 <= s.size()) {
    std::size_t len =
        static_cast<unsigned char>(s[i + 3]) << 8 | static_cast<unsigned char>(s[i + 4]);
    out.emplace_back(static_cast<unsigned char>(s[i]), len);
    i += 5 + len;
  }
  EXPECT_EQ(i, s.size());
  return out;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class TlsTransportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/edge_tls_tr_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ensure_self_signed(path("local.crt"), path("local.key"));
    std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=api.example.test"
        " -addext subjectAltName=DNS:api.example.test,DNS:*.apps.example.test"
        " -keyout " +
        path("api.key") + " -out " + path("api.crt") + " 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string path(const char* name) { return (dir_ / name).string(); }

  static TlsOptions two_certs() {
    TlsOptions o;
    o.certs = {{path("local.crt"), path("local.key"), {}, ""},
               {path("api.crt"), path("api.key"), {}, ""}};
    return o;
  }
  static std::shared_ptr<const TlsContext> make(const TlsOptions& o = two_certs()) {
    return TlsContext::create(o);
  }

  static fs::path dir_;
};
fs::path TlsTransportTest::dir_;

TEST_F(TlsTransportTest, Tls13HandshakeWithAlpn) {
  TlsTransport t(make());
  Client c({.sni = "localhost", .alpn = {"h2", "http/1.1"}});
  Outcome o = handshake(c, t);
  ASSERT_TRUE(o.client_ok) << t.error_string();
  EXPECT_EQ(o.server, Result::kOk);
  EXPECT_TRUE(t.handshake_done());
  EXPECT_FALSE(t.resumed());
  EXPECT_EQ(t.version(), "TLSv1.3");
  EXPECT_EQ(t.cipher(), "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(t.alpn(), "http/1.1");
  EXPECT_EQ(c.alpn(), "http/1.1");
  EXPECT_EQ(t.server_name(), "localhost");
  EXPECT_TRUE(c.peer_is("localhost"));
  EXPECT_EQ(SSL_get_negotiated_group(c.ssl()), NID_X25519);
}

TEST_F(TlsTransportTest, Tls12Handshake) {
  TlsTransport t(make());
  Client c({.max_version = TLS1_2_VERSION, .alpn = {"http/1.1"}});
  Outcome o = handshake(c, t);
  ASSERT_TRUE(o.client_ok) << t.error_string();
  EXPECT_EQ(t.version(), "TLSv1.2");
  EXPECT_EQ(t.cipher(), "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(t.alpn(), "http/1.1");
  EXPECT_EQ(t.server_name(), "");
}

TEST_F(TlsTransportTest, HandshakeFedOneByteAtATime) {
  TlsTransport t(make());
  Client c({.sni = "api.example.test"});
  Outcome o = handshake(c, t, 1);
  ASSERT_TRUE(o.client_ok) << t.error_string();
  EXPECT_TRUE(c.peer_is("api.example.test"));
}

TEST_F(TlsTransportTest, Tls11Refused) {
  TlsTransport t(make());
  Client c({.min_version = TLS1_VERSION, .max_version = TLS1_1_VERSION});
  Outcome o = handshake(c, t);
  EXPECT_FALSE(o.client_ok);
  EXPECT_EQ(o.server, Result::kError);
  EXPECT_NE(t.error_string().find("protocol"), std::string::npos) << t.error_string();
  EXPECT_FALSE(t.handshake_done());
  // Later input is ignored, the error sticks.
  EXPECT_EQ(t.feed("\x16\x03\x01", 3), Result::kError);
}

TEST_F(TlsTransportTest, MinVersion13RefusesTls12) {
  TlsOptions opts = two_certs();
  opts.min_version = "TLSv1.3";
  TlsTransport t(make(opts));
  Client c({.max_version = TLS1_2_VERSION});
  EXPECT_EQ(handshake(c, t).server, Result::kError);
}

TEST_F(TlsTransportTest, AlpnIsLenient) {
  {
    TlsTransport t(make());
    Client c({.alpn = {"spdy/3", "h3"}});
    ASSERT_TRUE(handshake(c, t).client_ok) << t.error_string();
    EXPECT_EQ(t.alpn(), "");  // no ALPN: the caller speaks HTTP/1.1
    EXPECT_EQ(c.alpn(), "");
  }
  {
    TlsTransport t(make());
    Client c({});
    ASSERT_TRUE(handshake(c, t).client_ok);
    EXPECT_EQ(t.alpn(), "");
  }
  {
    TlsOptions opts = two_certs();
    opts.alpn = {"h2", "http/1.1"};
    TlsTransport t(make(opts));
    Client c({.alpn = {"http/1.1", "h2"}});  // server preference wins
    ASSERT_TRUE(handshake(c, t).client_ok);
    EXPECT_EQ(t.alpn(), "h2");
  }
}

TEST_F(TlsTransportTest, SniPicksTheCertificate) {
  auto ctx = make();
  struct Case {
    const char* sni;
    const char* expect;
    int max_version;
  } cases[] = {{"api.example.test", "api.example.test", TLS1_3_VERSION},
               {"API.EXAMPLE.TEST", "api.example.test", TLS1_3_VERSION},
               {"x.apps.example.test", "x.apps.example.test", TLS1_3_VERSION},
               {"api.example.test", "api.example.test", TLS1_2_VERSION},
               {"localhost", "localhost", TLS1_3_VERSION},
               {"unknown.example.test", "localhost", TLS1_3_VERSION},
               {"", "localhost", TLS1_3_VERSION},
               {"unknown.example.test", "localhost", TLS1_2_VERSION}};
  for (const auto& k : cases) {
    TlsTransport t(ctx);
    Client c({.max_version = k.max_version, .sni = k.sni});
    ASSERT_TRUE(handshake(c, t).client_ok) << k.sni << ": " << t.error_string();
    EXPECT_TRUE(c.peer_is(k.expect)) << k.sni;
    EXPECT_EQ(t.server_name(), std::string(k.sni));
    if (std::string(k.expect) != "localhost" && k.max_version == TLS1_2_VERSION) {
      EXPECT_EQ(t.cipher(), "ECDHE-RSA-AES128-GCM-SHA256");  // the RSA cert's suite
    }
  }
}

// Resumes with a session from a first handshake; returns whether both sides say resumed.
bool resumes(const std::shared_ptr<const TlsContext>& first_ctx,
             const std::shared_ptr<const TlsContext>& second_ctx, ClientOptions opts,
             const std::string& second_sni = "") {
  Session s;
  {
    TlsTransport t(first_ctx);
    Client c(opts);
    if (!handshake(c, t).client_ok) return false;
    s.reset(c.session());
  }
  EXPECT_TRUE(SSL_SESSION_is_resumable(s.get()));
  opts.session = s.get();
  if (!second_sni.empty()) opts.sni = second_sni;
  TlsTransport t(second_ctx);
  Client c(opts);
  if (!handshake(c, t).client_ok) return false;
  EXPECT_EQ(t.resumed(), SSL_session_reused(c.ssl()) == 1);
  return t.resumed();
}

TEST_F(TlsTransportTest, ResumptionWithTicketsAndCache) {
  auto ctx = make();
  EXPECT_TRUE(resumes(ctx, ctx, {.sni = "localhost"}));             // TLS 1.3 ticket
  EXPECT_TRUE(resumes(ctx, ctx, {.max_version = TLS1_2_VERSION}));  // TLS 1.2 ticket
  EXPECT_TRUE(resumes(ctx, ctx, {.max_version = TLS1_2_VERSION, .no_ticket = true}));  // cache
  EXPECT_TRUE(resumes(ctx, ctx, {.sni = "api.example.test"}));  // under a non-default cert
  // Another listener (another context, other keys) cannot open our tickets.
  EXPECT_FALSE(resumes(ctx, make(), {.sni = "localhost"}));
  // A reload that passes the old context on keeps the ticket keys.
  auto reloaded = TlsContext::create(two_certs(), ctx.get());
  EXPECT_TRUE(resumes(ctx, reloaded, {.sni = "localhost"}));
}

TEST_F(TlsTransportTest, ResumptionDoesNotCrossCertificates) {
  auto ctx = make();
  EXPECT_FALSE(resumes(ctx, ctx, {.sni = "localhost"}, "api.example.test"));
  EXPECT_FALSE(
      resumes(ctx, ctx, {.max_version = TLS1_2_VERSION, .sni = "localhost"}, "api.example.test"));
}

TEST_F(TlsTransportTest, TicketKeysRotate) {
  TlsOptions opts = two_certs();
  opts.ticket_key_lifetime = std::chrono::seconds(1);
  auto ctx = make(opts);
  auto ticket = [&] {
    TlsTransport t(ctx);
    Client c({});
    EXPECT_TRUE(handshake(c, t).client_ok);
    return Session(c.session());
  };
  auto resume = [&](SSL_SESSION* s) {
    TlsTransport t(ctx);
    Client c({.session = s});
    EXPECT_TRUE(handshake(c, t).client_ok);
    return t.resumed();
  };
  Session s = ticket();
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_TRUE(resume(s.get()));  // sealed by the previous key, still honoured
  Session old = ticket();
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_FALSE(resume(old.get()));  // two lifetimes: its key is gone
}

TEST_F(TlsTransportTest, DataBothWaysInFullSizeRecords) {
  TlsTransport t(make());
  Client c({.alpn = {"http/1.1"}});
  ASSERT_TRUE(handshake(c, t).client_ok);

  c.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(feed(t, c.take_out()), Result::kOk);
  char buf[100];
  std::size_t n = t.read_plain(buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n), "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(t.read_plain(buf, sizeof buf), 0u);

  ASSERT_EQ(t.write_plain("HTTP/1.1 200 OK\r\n\r\n", 19), Result::kOk);
  c.give(take_out(t));
  EXPECT_EQ(c.read_all(), "HTTP/1.1 200 OK\r\n\r\n");

  // 1 MiB from the server: 64 records of 16 KiB of plaintext, no more output than that.
  const std::string body = random_bytes(1 << 20, 1);
  ASSERT_EQ(t.write_plain(body.data(), body.size()), Result::kOk);
  std::string_view chunks[64];
  std::size_t nchunks = t.out_chunks(chunks, 64);
  std::size_t chunked = 0;
  for (std::size_t i = 0; i < nchunks; ++i) chunked += chunks[i].size();
  EXPECT_GT(nchunks, 1u);
  EXPECT_EQ(chunked, t.pending_out_size());
  std::string wire = take_out(t);
  auto recs = records(wire);
  EXPECT_EQ(recs.size(), 64u);
  for (const auto& [type, len] : recs) {
    EXPECT_EQ(type, 23);              // application data
    EXPECT_EQ(len, 16384u + 1 + 16);  // 16 KiB + content type + GCM tag
  }
  c.give(wire);
  EXPECT_EQ(c.read_all(), body);

  // 1 MiB from the client, fed in odd pieces, read back through the zero-copy view.
  const std::string upload = random_bytes(1 << 20, 2);
  c.write(upload);
  std::string wire_in = c.take_out(), got;
  for (std::size_t i = 0; i < wire_in.size(); i += 7001) {
    ASSERT_EQ(t.feed(wire_in.data() + i, std::min<std::size_t>(7001, wire_in.size() - i)),
              Result::kOk);
    std::string_view v = t.pending_plain();
    got.append(v);
    t.consume_plain(v.size());
  }
  EXPECT_EQ(got, upload);

  // Idle: buffers go, and the connection still works after.
  t.release_buffers();
  c.write("ping");
  EXPECT_EQ(feed(t, c.take_out()), Result::kOk);
  n = t.read_plain(buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n), "ping");
}

TEST_F(TlsTransportTest, OutputViewSurvivesMoreOutput) {
  TlsTransport t(make());
  Client c({});
  ASSERT_TRUE(handshake(c, t).client_ok);
  ASSERT_EQ(t.write_plain("first", 5), Result::kOk);
  std::string_view in_flight = t.pending_out();
  std::string copy(in_flight);
  const std::string more = random_bytes(200000, 3);
  ASSERT_EQ(t.write_plain(more.data(), more.size()), Result::kOk);  // as if the write is pending
  EXPECT_EQ(std::string(in_flight), copy);
  EXPECT_EQ(t.pending_out().data(), in_flight.data());
  t.consume_out(in_flight.size());
  std::string wire = copy + take_out(t);
  c.give(wire);
  EXPECT_EQ(c.read_all(), "first" + more);
}

TEST_F(TlsTransportTest, PlaintextHttpIsRecognised) {
  TlsTransport t(make());
  const char req[] = "GET / HTTP/1.1\r\n";
  EXPECT_EQ(t.feed(req, sizeof req - 1), Result::kPlainHttp);
  EXPECT_EQ(t.feed(req, sizeof req - 1), Result::kPlainHttp);
  EXPECT_TRUE(t.pending_out().empty());  // nothing encrypted to send: the caller answers 400
  EXPECT_FALSE(t.handshake_done());
  EXPECT_EQ(t.write_plain("x", 1), Result::kError);
}

TEST_F(TlsTransportTest, GarbageIsAnError) {
  {
    TlsTransport t(make());
    const std::string junk = std::string("\x00\x01\x02\x03\x04\x05\x06\x07", 8) + "garbage!";
    EXPECT_EQ(t.feed(junk.data(), junk.size()), Result::kError);
    EXPECT_FALSE(t.error_string().empty());
  }
  {
    // A handshake record header around nonsense.
    TlsTransport t(make());
    const std::string junk = std::string("\x16\x03\x01\x00\x08", 5) + "nonsense";
    EXPECT_EQ(t.feed(junk.data(), junk.size()), Result::kError);
    EXPECT_FALSE(t.error_string().empty());
    EXPECT_FALSE(t.pending_out().empty());  // an alert for the peer
  }
  {
    // A valid handshake, then a corrupted record.
    TlsTransport t(make());
    Client c({});
    ASSERT_TRUE(handshake(c, t).client_ok);
    c.write("hello");
    std::string wire = c.take_out();
    wire[wire.size() - 3] ^= 0x55;
    EXPECT_EQ(feed(t, wire), Result::kError);
    EXPECT_EQ(t.read_plain(nullptr, 0), 0u);
  }
  {
    TlsTransport t(make());
    EXPECT_EQ(t.write_plain("x", 1), Result::kError);  // before any handshake
  }
}

TEST_F(TlsTransportTest, CloseNotifyBothWays) {
  TlsTransport t(make());
  Client c({});
  ASSERT_TRUE(handshake(c, t).client_ok);
  c.write("last words");
  SSL_shutdown(c.ssl());
  EXPECT_EQ(feed(t, c.take_out()), Result::kClosed);
  char buf[32];
  std::size_t n = t.read_plain(buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n), "last words");

  TlsTransport t2(make());
  Client c2({});
  ASSERT_TRUE(handshake(c2, t2).client_ok);
  t2.shutdown();
  c2.give(take_out(t2));
  bool closed = false;
  c2.read_all(&closed);
  EXPECT_TRUE(closed);
}

TEST_F(TlsTransportTest, OcspStapling) {
  const std::string d = dir_.string() + "/ocsp";
  std::string script =
      "set -e; mkdir -p " + d + "; cd " + d +
      "; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key"
      " -out ca.crt -days 30 -subj '/CN=Test CA'"
      "; printf 'subjectAltName=DNS:ocsp.example.test\\nauthorityInfoAccess=OCSP;URI:http://"
      "ocsp.example.test\\n' > ext.cnf"
      "; for n in leaf other; do openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
      " -keyout $n.key -out $n.csr -subj /CN=ocsp.example.test"
      "; openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 30"
      " -extfile ext.cnf; cat $n.crt ca.crt > $n-chain.crt; done"
      "; serial=$(openssl x509 -in leaf.crt -noout -serial | cut -d= -f2)"
      "; printf 'V\\t301231000000Z\\t\\t%s\\tunknown\\t/CN=ocsp.example.test\\n' \"$serial\" > "
      "index.txt"
      "; openssl ocsp -index index.txt -rsigner ca.crt -rkey ca.key -CA ca.crt -issuer ca.crt"
      " -cert leaf.crt -respout resp.der -ndays 1";
  ASSERT_EQ(std::system(("(" + script + ") >/dev/null 2>&1").c_str()), 0);

  TlsOptions opts;
  opts.certs = {{d + "/leaf-chain.crt", d + "/leaf.key", {}, d + "/resp.der"}};
  auto ctx = TlsContext::create(opts);
  EXPECT_NE(ctx->describe().find("OCSP yes"), std::string::npos) << ctx->describe();
  std::string der(4096, '\0');
  FILE* f = std::fopen((d + "/resp.der").c_str(), "rb");
  ASSERT_NE(f, nullptr);
  der.resize(std::fread(der.data(), 1, der.size(), f));
  std::fclose(f);

  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    TlsTransport t(ctx);
    Client c({.max_version = version, .want_ocsp = true});
    ASSERT_TRUE(handshake(c, t).client_ok) << t.error_string();
    const unsigned char* resp = nullptr;
    long len = SSL_get_tlsext_status_ocsp_resp(c.ssl(), &resp);
    ASSERT_GT(len, 0) << version;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(resp), static_cast<std::size_t>(len)), der);
  }
  {
    // A client that does not ask gets no staple.
    TlsTransport t(ctx);
    Client c({});
    ASSERT_TRUE(handshake(c, t).client_ok);
    const unsigned char* resp = nullptr;
    EXPECT_LE(SSL_get_tlsext_status_ocsp_resp(c.ssl(), &resp), 0);
  }
  // A response about another certificate is refused, naming both files.
  opts.certs = {{d + "/other-chain.crt", d + "/other.key", {}, d + "/resp.der"}};
  try {
    TlsContext::create(opts);
    ADD_FAILURE() << "accepted an OCSP response for another cert";
  } catch (const TlsError& e) {
    EXPECT_NE(std::string(e.what()).find("resp.der"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("other-chain.crt"), std::string::npos) << e.what();
  }
}

TEST_F(TlsTransportTest, SharedAcrossThreads) {
  auto ctx = make();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int j = 0; j < 10; ++j) {
        TlsTransport t(ctx);
        Client c({.sni = (i % 2) ? "api.example.test" : "localhost"});
        if (handshake(c, t).client_ok && c.peer_is(i % 2 ? "api.example.test" : "localhost")) ++ok;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 40);
}

}  // namespace
