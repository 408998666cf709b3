// Self-signed ECDSA P-256 certificate for localhost, written only when the files are absent.
#include "tls/self_signed.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "tls/openssl_error.h"
#include "tls/tls_options.h"

namespace edge::tls {
namespace {

constexpr long kValidSeconds = 365L * 24 * 3600;
// Clocks of clients on the same machine can lag a little; a cert "not yet valid" is a bad start.
constexpr long kBackdateSeconds = 3600;

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(FILE* f) const { std::fclose(f); }
};
template <class T>
using Ptr = std::unique_ptr<T, Free>;

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

[[noreturn]] void fail(const std::string& what) {
  std::string why = drain_openssl_errors();
  throw TlsError(what + (why.empty() ? "" : ": " + why));
}

void add_ext(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  Ptr<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || !X509_add_ext(cert, ext.get(), -1)) fail(std::string("self-signed cert: ") + value);
}

Ptr<X509> make_cert(EVP_PKEY* key) {
  Ptr<X509> cert(X509_new());
  if (!cert || !X509_set_version(cert.get(), X509_VERSION_3)) fail("self-signed cert");
  // A random 127-bit serial: browsers reject two certs with the same issuer and serial.
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) fail("self-signed cert: random serial");
  serial[0] &= 0x7f;
  Ptr<BIGNUM> bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())))
    fail("self-signed cert: serial");
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), kValidSeconds))
    fail("self-signed cert: validity");
  X509_NAME* name = X509_get_subject_name(cert.get());
  auto add_name = [&](const char* field, const char* value) {
    if (!X509_NAME_add_entry_by_txt(name, field, MBSTRING_ASC,
                                    reinterpret_cast<const unsigned char*>(value), -1, -1, 0))
      fail("self-signed cert: subject");
  };
  add_name("O", "Samia Edge local");
  add_name("CN", "localhost");
  if (!X509_set_issuer_name(cert.get(), name) || !X509_set_pubkey(cert.get(), key))
    fail("self-signed cert");
  add_ext(cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), NID_key_usage, "critical,digitalSignature");
  add_ext(cert.get(), NID_ext_key_usage, "serverAuth");
  add_ext(cert.get(), NID_subject_key_identifier, "hash");
  add_ext(cert.get(), NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
  if (X509_sign(cert.get(), key, EVP_sha256()) <= 0) fail("self-signed cert: signing");
  return cert;
}

// Opens path for writing with the given mode regardless of umask (the key must be 0600 even
// under umask 0).
Ptr<FILE> create_file(const std::string& path, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0 || ::fchmod(fd, mode) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    throw TlsError("cannot write " + path + ": " + std::strerror(err));
  }
  Ptr<FILE> f(::fdopen(fd, "w"));
  if (!f) {
    ::close(fd);
    throw TlsError("cannot write " + path);
  }
  return f;
}

void finish_file(Ptr<FILE> f, const std::string& path) {
  bool ok = std::fflush(f.get()) == 0 && ::fsync(::fileno(f.get())) == 0;
  if (std::fclose(f.release()) != 0) ok = false;
  if (!ok) throw TlsError("cannot write " + path + ": " + std::strerror(errno));
}

}  // namespace

void ensure_self_signed(const std::string& cert_file, const std::string& key_file) {
  if (exists(cert_file) && exists(key_file)) return;
  Ptr<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) fail("self-signed cert: P-256 key generation");
  Ptr<X509> cert = make_cert(key.get());

  const std::string suffix = ".tmp" + std::to_string(::getpid());
  const std::string key_tmp = key_file + suffix, cert_tmp = cert_file + suffix;
  try {
    Ptr<FILE> kf = create_file(key_tmp, 0600);
    if (!PEM_write_PrivateKey(kf.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr))
      fail("cannot write " + key_file);
    finish_file(std::move(kf), key_file);
    Ptr<FILE> cf = create_file(cert_tmp, 0644);
    if (!PEM_write_X509(cf.get(), cert.get())) fail("cannot write " + cert_file);
    finish_file(std::move(cf), cert_file);
    // Key first: a cert whose key is missing is the worse half to leave behind.
    if (::rename(key_tmp.c_str(), key_file.c_str()) != 0)
      throw TlsError("cannot write " + key_file + ": " + std::strerror(errno));
    if (::rename(cert_tmp.c_str(), cert_file.c_str()) != 0)
      throw TlsError("cannot write " + cert_file + ": " + std::strerror(errno));
  } catch (...) {
    ::unlink(key_tmp.c_str());
    ::unlink(cert_tmp.c_str());
    throw;
  }
}

}  // namespace edge::tls
