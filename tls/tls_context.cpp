// Per-certificate OpenSSL contexts, SNI selection, ALPN, session cache, ticket-key rotation and
// OCSP stapling for one TLS listener.
#include "tls/tls_context.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>

#include "tls/openssl_error.h"

namespace edge::tls {
namespace {

constexpr std::size_t kMaxCertFileSize = 1 << 20;

struct Free {
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
  void operator()(OCSP_RESPONSE* p) const { OCSP_RESPONSE_free(p); }
  void operator()(OCSP_BASICRESP* p) const { OCSP_BASICRESP_free(p); }
  void operator()(OCSP_CERTID* p) const { OCSP_CERTID_free(p); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
  void operator()(STACK_OF(OPENSSL_STRING) * p) const { X509_email_free(p); }
};
template <class T>
using Ptr = std::unique_ptr<T, Free>;

// Reads a whole (small) file, with the system's reason on failure: OpenSSL's own file errors
// do not say "permission denied" or "is a directory".
std::string read_file(const std::string& path, const char* what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw TlsError(std::string(what) + " " + path + ": " + std::strerror(errno));
  std::string data;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw TlsError(std::string(what) + " " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > kMaxCertFileSize) {
      ::close(fd);
      throw TlsError(std::string(what) + " " + path + ": larger than 1 MiB");
    }
  }
  ::close(fd);
  return data;
}

Ptr<BIO> memory_bio(const std::string& data) {
  Ptr<BIO> bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) throw TlsError("OpenSSL: out of memory");
  return bio;
}

// Keys protected by a passphrase cannot be unlocked unattended; refuse instead of prompting.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

std::string asn1_string(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<std::size_t>(ASN1_STRING_length(s)));
}

// DNS names of the SANs, else the CN (what clients match SNI against).
std::vector<std::string> names_from_cert(X509* cert) {
  std::vector<std::string> names;
  Ptr<GENERAL_NAMES> sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
    if (gn->type == GEN_DNS) names.push_back(lower(asn1_string(gn->d.dNSName)));
  }
  if (names.empty()) {
    X509_NAME* subject = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (idx >= 0)
      names.push_back(
          lower(asn1_string(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)))));
  }
  return names;
}

std::string key_type(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t len = 0;
      if (!EVP_PKEY_get_group_name(key, group, sizeof group, &len)) return "ECDSA";
      const char* nist = EC_curve_nid2nist(OBJ_sn2nid(group));
      return std::string("ECDSA ") + (nist ? nist : group);
    }
    case EVP_PKEY_RSA:
      return "RSA " + std::to_string(EVP_PKEY_get_bits(key));
    case EVP_PKEY_ED25519:
      return "Ed25519";
    default: {
      const char* name = EVP_PKEY_get0_type_name(key);
      return name ? name : "unknown key type";
    }
  }
}

std::string format_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || !ASN1_TIME_to_tm(t, &tm)) return "?";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

}  // namespace

struct TlsContext::Cert {
  Ptr<SSL_CTX> ctx;
  std::string cert_file;
  std::vector<std::string> names;
  std::string ocsp;  // DER response stapled when the client asks; "" = none
  std::string line;  // describe()
};

// Ticket keys: the current key seals new tickets; the previous one still opens tickets sealed
// before the last rotation (and those are then renewed under the current key). Rotation is lazy,
// on the first use after the lifetime, so no timer is needed.
struct TlsContext::TicketKeys {
  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
  };
  explicit TicketKeys(std::chrono::seconds life) : lifetime(life) {
    fresh(current);
    born = std::chrono::steady_clock::now();
  }
  static void fresh(Key& k) {
    if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_priv_bytes(k.aes, sizeof k.aes) != 1 ||
        RAND_priv_bytes(k.hmac, sizeof k.hmac) != 1)
      throw TlsError("OpenSSL: no randomness for session ticket keys");
  }
  // Copies the key to use out under the lock; false if no key of that name (decrypting) exists.
  // renew is set when the key found is the previous one.
  bool pick(const unsigned char* name, Key& out, bool& renew) {
    std::lock_guard lock(mu);
    auto now = std::chrono::steady_clock::now();
    if (now - born >= lifetime) {
      Key next;
      try {
        fresh(next);
      } catch (const TlsError&) {
        return false;
      }
      previous = current;
      // Idle for two lifetimes or more: the old current key is too old to honour.
      has_previous = now - born < 2 * lifetime;
      current = next;
      born = now;
    }
    renew = false;
    if (!name) {
      out = current;
      return true;
    }
    if (std::memcmp(name, current.name, sizeof current.name) == 0) {
      out = current;
      return true;
    }
    if (has_previous && std::memcmp(name, previous.name, sizeof previous.name) == 0) {
      out = previous;
      renew = true;
      return true;
    }
    return false;
  }

  const std::chrono::seconds lifetime;
  std::mutex mu;
  Key current{}, previous{};
  bool has_previous = false;
  std::chrono::steady_clock::time_point born;
};

TlsContext::TlsContext(Key) {}
TlsContext::~TlsContext() = default;

std::shared_ptr<const TlsContext> TlsContext::create(const TlsOptions& opts,
                                                     const TlsContext* previous) {
  validate_options(opts);
  auto self = std::make_shared<TlsContext>(Key{});
  self->alpn_ = opts.alpn;
  if (previous && previous->ticket_keys_ &&
      previous->ticket_keys_->lifetime == opts.ticket_key_lifetime)
    self->ticket_keys_ = previous->ticket_keys_;
  else
    self->ticket_keys_ = std::make_shared<TicketKeys>(opts.ticket_key_lifetime);
  for (std::size_t i = 0; i < opts.certs.size(); ++i) self->load_cert(opts.certs[i], i, opts);
  // Only the context a connection starts with runs the ClientHello callback.
  SSL_CTX_set_client_hello_cb(self->default_ctx(), on_client_hello, self.get());
  return self;
}

void TlsContext::configure(SSL_CTX* ctx, std::size_t index, const TlsOptions& opts) const {
  // Lists were validated; a failure here would be a bug, still reported rather than ignored.
  auto check = [](bool ok, const char* what) {
    if (!ok) throw TlsError(std::string(what) + ": " + drain_openssl_errors());
  };
  check(SSL_CTX_set_min_proto_version(
            ctx, opts.min_version == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION),
        "min_version");
  check(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION), "max version");
  check(SSL_CTX_set_cipher_list(ctx, opts.ciphers.c_str()) == 1, "ciphers");
  check(SSL_CTX_set_ciphersuites(ctx, opts.ciphersuites.c_str()) == 1, "ciphersuites");
  check(SSL_CTX_set1_groups_list(ctx, opts.groups.c_str()) == 1, "groups");
  // Server order wins (the list is ordered by preference), except that a client that prefers
  // ChaCha20 (no AES hardware, e.g. older phones) gets it. Renegotiation is a DoS lever we do
  // not need.
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
                               SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
  // Idle connections keep no 16 KiB+ OpenSSL read/write buffers (many idle keep-alives).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_dh_auto(ctx, 1);  // only matters if someone lists DHE ciphers

  // A distinct id context per cert: see the class comment.
  std::string sid = "edge/" + std::to_string(index);
  check(SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(sid.data()),
                                       static_cast<unsigned>(sid.size())) == 1,
        "session id context");
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, static_cast<long>(opts.session_cache_size));
  SSL_CTX_set_timeout(ctx, static_cast<long>(opts.session_timeout.count()));
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);

  SSL_CTX_set_app_data(ctx, const_cast<TlsContext*>(this));
  SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, const_cast<TlsContext*>(this));
}

void TlsContext::load_cert(const CertConfig& conf, std::size_t index, const TlsOptions& opts) {
  auto cert = std::make_unique<Cert>();
  cert->cert_file = conf.cert_file;
  const std::string where = "cert " + conf.cert_file;

  std::string pem = read_file(conf.cert_file, "cannot read cert_file");
  Ptr<BIO> bio = memory_bio(pem);
  Ptr<X509> leaf(PEM_read_bio_X509_AUX(bio.get(), nullptr, no_passphrase, nullptr));
  if (!leaf) throw TlsError(where + ": no PEM certificate (" + drain_openssl_errors() + ")");
  std::vector<Ptr<X509>> chain;
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr))
    chain.emplace_back(extra);
  // The loop ends at end of file, which OpenSSL records as "no start line": not an error.
  unsigned long last = ERR_peek_last_error();
  if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)
    ERR_clear_error();
  else if (last)
    throw TlsError(where + ": bad certificate in chain (" + drain_openssl_errors() + ")");

  std::string key_pem = read_file(conf.key_file, "cannot read key_file");
  Ptr<BIO> key_bio = memory_bio(key_pem);
  Ptr<EVP_PKEY> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr));
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  if (!key)
    throw TlsError("key " + conf.key_file + ": no usable PEM private key (" +
                   drain_openssl_errors() + "; encrypted keys are not supported)");
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    throw TlsError("key " + conf.key_file + " does not match cert " + conf.cert_file);
  }

  cert->ctx.reset(SSL_CTX_new(TLS_server_method()));
  if (!cert->ctx) throw TlsError("OpenSSL: cannot create an SSL_CTX");
  SSL_CTX* ctx = cert->ctx.get();
  configure(ctx, index, opts);
  if (SSL_CTX_use_certificate(ctx, leaf.get()) != 1 || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1)
    throw TlsError(where + ": " + drain_openssl_errors());
  for (auto& c : chain) {
    if (SSL_CTX_add0_chain_cert(ctx, c.get()) != 1)
      throw TlsError(where + ": chain: " + drain_openssl_errors());
    c.release();  // owned by the context now
  }

  // Names: configured ones win; "*" only as a whole leftmost label, as browsers match them.
  cert->names.clear();
  for (const auto& n : conf.names) cert->names.push_back(lower(n));
  if (cert->names.empty()) cert->names = names_from_cert(leaf.get());
  for (const auto& n : cert->names) {
    if (n.empty() ||
        (n.find('*') != std::string::npos &&
         (n.size() < 3 || n.compare(0, 2, "*.") != 0 || n.find('*', 1) != std::string::npos)))
      throw TlsError(where + ": bad server name \"" + n + "\"");
    // First cert listed wins a name claimed twice, as the first is the operator's intent.
    if (n[0] == '*')
      wildcard_names_.emplace(n.substr(2), index);
    else
      exact_names_.emplace(n, index);
  }

  std::vector<std::string> warnings;
  const ASN1_TIME* not_after = X509_get0_notAfter(leaf.get());
  if (X509_cmp_current_time(not_after) <= 0) warnings.push_back("EXPIRED");
  if (X509_cmp_current_time(X509_get0_notBefore(leaf.get())) >= 0)
    warnings.push_back("not yet valid");

  if (!conf.ocsp_file.empty()) {
    Ptr<STACK_OF(OPENSSL_STRING)> responders(X509_get1_ocsp(leaf.get()));
    if (!responders || sk_OPENSSL_STRING_num(responders.get()) == 0) {
      warnings.push_back("ocsp_file ignored: the cert names no OCSP responder");
    } else {
      std::string der = read_file(conf.ocsp_file, "cannot read ocsp_file");
      const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
      Ptr<OCSP_RESPONSE> resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
      if (!resp) {
        ERR_clear_error();
        throw TlsError("ocsp_file " + conf.ocsp_file + ": not a DER OCSP response");
      }
      if (OCSP_response_status(resp.get()) != OCSP_RESPONSE_STATUS_SUCCESSFUL)
        throw TlsError("ocsp_file " + conf.ocsp_file + ": response status is not successful");
      bool stale = false;
      // With the issuer at hand (the chain), check the response is about this very cert.
      X509* issuer = nullptr;
      STACK_OF(X509)* ctx_chain = nullptr;
      SSL_CTX_get0_chain_certs(ctx, &ctx_chain);
      for (int i = 0; !issuer && ctx_chain && i < sk_X509_num(ctx_chain); ++i)
        if (X509_check_issued(sk_X509_value(ctx_chain, i), leaf.get()) == X509_V_OK)
          issuer = sk_X509_value(ctx_chain, i);
      if (issuer) {
        Ptr<OCSP_BASICRESP> basic(OCSP_response_get1_basic(resp.get()));
        Ptr<OCSP_CERTID> id(OCSP_cert_to_id(nullptr, leaf.get(), issuer));
        int status = 0, reason = 0;
        ASN1_GENERALIZEDTIME *revoked = nullptr, *this_update = nullptr, *next_update = nullptr;
        if (!basic || !id ||
            OCSP_resp_find_status(basic.get(), id.get(), &status, &reason, &revoked, &this_update,
                                  &next_update) != 1) {
          ERR_clear_error();
          throw TlsError("ocsp_file " + conf.ocsp_file + " is not about cert " + conf.cert_file);
        }
        if (status == V_OCSP_CERTSTATUS_REVOKED) warnings.push_back("OCSP says REVOKED");
        if (next_update && X509_cmp_current_time(next_update) <= 0) stale = true;
      }
      ERR_clear_error();
      // A stale staple makes some browsers fail hard; better to staple nothing.
      if (stale)
        warnings.push_back("ocsp_file is stale (next update passed), not stapled");
      else
        cert->ocsp = std::move(der);
    }
  }
  if (!cert->ocsp.empty()) {
    SSL_CTX_set_tlsext_status_cb(ctx, on_ocsp_status);
    SSL_CTX_set_tlsext_status_arg(ctx, cert.get());
  }

  std::string line = "cert " + conf.cert_file + ": names ";
  for (std::size_t i = 0; i < cert->names.size(); ++i) line += (i ? ", " : "") + cert->names[i];
  if (cert->names.empty()) line += "(none)";
  line += "; " + key_type(key.get()) + "; not after " + format_time(not_after) + "; OCSP " +
          (cert->ocsp.empty() ? "no" : "yes");
  if (index == 0) line += "; default";
  for (const auto& w : warnings) line += "; WARNING " + w;
  cert->line = std::move(line);
  certs_.push_back(std::move(cert));
}

std::string TlsContext::describe() const {
  std::string out;
  for (const auto& c : certs_) out += c->line + '\n';
  return out;
}

SSL_CTX* TlsContext::default_ctx() const {
  return certs_.front()->ctx.get();
}

std::size_t TlsContext::cert_for(std::string_view host_name) const {
  std::string name = lower(host_name);
  if (auto it = exact_names_.find(name); it != exact_names_.end()) return it->second;
  if (auto dot = name.find('.'); dot != std::string::npos && dot > 0) {
    if (auto it = wildcard_names_.find(name.substr(dot + 1)); it != wildcard_names_.end())
      return it->second;
  }
  return 0;
}

int TlsContext::on_client_hello(SSL* ssl, int* /*alert*/, void* arg) {
  const auto* self = static_cast<const TlsContext*>(arg);
  const unsigned char* p = nullptr;
  std::size_t len = 0;
  if (self->certs_.size() < 2 || !SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len))
    return SSL_CLIENT_HELLO_SUCCESS;
  // server_name_list: u16 length, then entries of (u8 type, u16 length, name); OpenSSL checks
  // the extension strictly later, so a malformed one just keeps the default here.
  if (len < 2 || static_cast<std::size_t>(p[0] << 8 | p[1]) != len - 2)
    return SSL_CLIENT_HELLO_SUCCESS;
  std::size_t i = 2;
  while (i + 3 <= len) {
    unsigned type = p[i];
    std::size_t n = static_cast<std::size_t>(p[i + 1] << 8 | p[i + 2]);
    if (i + 3 + n > len) break;
    if (type == TLSEXT_NAMETYPE_host_name) {
      std::size_t index =
          self->cert_for(std::string_view(reinterpret_cast<const char*>(p + i + 3), n));
      if (index != 0 && !SSL_set_SSL_CTX(ssl, self->certs_[index]->ctx.get()))
        return SSL_CLIENT_HELLO_ERROR;
      break;
    }
    i += 3 + n;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

// Acknowledging the name makes OpenSSL keep it in the session (TLS 1.2 resumption checks it) and
// report it through SSL_get_servername; an unknown name is still served with the default cert.
int TlsContext::on_server_name(SSL* ssl, int*, void*) {
  return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) ? SSL_TLSEXT_ERR_OK
                                                            : SSL_TLSEXT_ERR_NOACK;
}

// Server preference. A client offering only protocols we do not speak is not refused (RFC 7301
// would allow a no_application_protocol alert): we are lenient, negotiate no ALPN, and the
// connection speaks HTTP/1.1, which every such client we have seen then uses.
int TlsContext::on_alpn(SSL*, const unsigned char** out, unsigned char* out_len,
                        const unsigned char* in, unsigned int in_len, void* arg) {
  const auto* self = static_cast<const TlsContext*>(arg);
  for (const auto& proto : self->alpn_) {
    for (unsigned i = 0; i < in_len;) {
      unsigned n = in[i];
      if (i + 1 + n > in_len) break;
      if (n == proto.size() && std::memcmp(in + i + 1, proto.data(), n) == 0) {
        *out = in + i + 1;
        *out_len = static_cast<unsigned char>(n);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + n;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Tickets are AES-256-CBC + HMAC-SHA256 under our rotating keys (OpenSSL's ticket format). The
// return values are OpenSSL's: 1 ok, 2 ok but issue a fresh ticket, 0 unknown key (full
// handshake), -1 error.
int TlsContext::on_ticket_key(SSL* ssl, unsigned char* name, unsigned char* iv,
                              EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  const auto* self = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!self) return -1;
  TicketKeys::Key key;
  bool renew = false;
  if (!self->ticket_keys_->pick(enc ? nullptr : name, key, renew)) return enc ? -1 : 0;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, sizeof key.hmac),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  int rc = 1;
  if (enc) {
    std::memcpy(name, key.name, sizeof key.name);
    if (RAND_bytes(iv, 16) != 1 ||
        EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1 ||
        EVP_MAC_CTX_set_params(mac, params) != 1)
      rc = -1;
  } else {
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1 ||
        EVP_MAC_CTX_set_params(mac, params) != 1)
      rc = -1;
    else if (renew)
      rc = 2;
  }
  OPENSSL_cleanse(&key, sizeof key);
  return rc;
}

int TlsContext::on_ocsp_status(SSL* ssl, void* arg) {
  const auto* cert = static_cast<const Cert*>(arg);
  if (!cert || cert->ocsp.empty()) return SSL_TLSEXT_ERR_NOACK;
  // OpenSSL frees the response with the connection, so each connection gets its own copy.
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(cert->ocsp.size()));
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  std::memcpy(copy, cert->ocsp.data(), cert->ocsp.size());
  if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(cert->ocsp.size())) != 1) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace edge::tls
