// TLS context: list validation that names bad entries, certificate loading errors that name the
// files, describe(), SNI name lookup, and the self-signed local certificate.
#include "tls/tls.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

using namespace edge::tls;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Message of the TlsError thrown by f, or "" if none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const TlsError& e) {
    return e.what();
  }
  return "";
}

TlsOptions with_certs(std::vector<CertConfig> certs) {
  TlsOptions o;
  o.certs = std::move(certs);
  return o;
}

class TlsContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/edge_tls_ctx_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    local_crt_ = (dir_ / "local.crt").string();
    local_key_ = (dir_ / "local.key").string();
    ensure_self_signed(local_crt_, local_key_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // An RSA cert for api.example.test and *.apps.example.test, made by the openssl tool.
  void make_rsa_cert() {
    rsa_crt_ = (dir_ / "api.crt").string();
    rsa_key_ = (dir_ / "api.key").string();
    std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=api.example.test"
        " -addext subjectAltName=DNS:api.example.test,DNS:*.apps.example.test"
        " -keyout " +
        rsa_key_ + " -out " + rsa_crt_ + " 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  fs::path dir_;
  std::string local_crt_, local_key_, rsa_crt_, rsa_key_;
};

TEST(TlsValidate, CipherListNamesOnlyTheUnknownEntry) {
  std::string msg = error_of(
      [] { validate_cipher_list("ECDHE-RSA-AES256-GCM-SHA512:ECDHE-RSA-AES128-GCM-SHA256"); });
  EXPECT_NE(msg.find("ECDHE-RSA-AES256-GCM-SHA512"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("AES128"), std::string::npos) << msg;
}

TEST(TlsValidate, CipherListNamesEveryUnknownEntry) {
  std::string msg = error_of([] { validate_cipher_list("FOO:ECDHE-RSA-AES128-GCM-SHA256:!BAR"); });
  EXPECT_NE(msg.find("\"FOO\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"!BAR\""), std::string::npos) << msg;
}

TEST(TlsValidate, CipherListAcceptsAliasesAndRetiredExclusions) {
  EXPECT_NO_THROW(validate_cipher_list(TlsOptions{}.ciphers));
  EXPECT_NO_THROW(validate_cipher_list("HIGH:!aNULL:!MD5:!RC4:!3DES:ECDHE+AESGCM:@STRENGTH"));
  // RC4 is gone from OpenSSL 3: asking for it is an error, excluding it is not.
  EXPECT_NE(error_of([] { validate_cipher_list("RC4:HIGH"); }).find("RC4"), std::string::npos);
  EXPECT_THROW(validate_cipher_list(""), TlsError);
  EXPECT_THROW(validate_cipher_list("@SECLEVEL=9"), TlsError);
}

TEST(TlsValidate, CiphersuitesAndGroups) {
  EXPECT_NO_THROW(validate_ciphersuites(TlsOptions{}.ciphersuites));
  std::string msg =
      error_of([] { validate_ciphersuites("TLS_AES_128_GCM_SHA256:TLS_AES_512_GCM"); });
  EXPECT_NE(msg.find("TLS_AES_512_GCM"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("TLS_AES_128_GCM_SHA256"), std::string::npos) << msg;
  // A TLS 1.2 name is not a TLS 1.3 suite.
  EXPECT_THROW(validate_ciphersuites("ECDHE-RSA-AES128-GCM-SHA256"), TlsError);

  EXPECT_NO_THROW(validate_groups(TlsOptions{}.groups));
  msg = error_of([] { validate_groups("X25519:P-999:secp384r1:brainpool"); });
  EXPECT_NE(msg.find("P-999"), std::string::npos) << msg;
  EXPECT_NE(msg.find("brainpool"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("X25519"), std::string::npos) << msg;
}

TEST_F(TlsContextTest, OptionsRefuseOldVersionsAndBadLists) {
  TlsOptions o;
  o.certs = {{local_crt_, local_key_, {}, ""}};
  o.min_version = "TLSv1.1";
  EXPECT_NE(error_of([&] { TlsContext::create(o); }).find("TLSv1.1"), std::string::npos);
  o.min_version = "TLSv1.3";
  EXPECT_NO_THROW(TlsContext::create(o));
  o.ciphers = "ECDHE-RSA-AES256-GCM-SHA512";
  EXPECT_NE(error_of([&] { TlsContext::create(o); }).find("SHA512"), std::string::npos);
  o = TlsOptions{};
  EXPECT_THROW(TlsContext::create(o), TlsError);  // no certificate
}

TEST_F(TlsContextTest, SelfSignedFiles) {
  struct stat st {};
  ASSERT_EQ(stat(local_key_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(local_crt_.c_str(), &st), 0);

  FILE* f = std::fopen(local_crt_.c_str(), "r");
  ASSERT_NE(f, nullptr);
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_check_host(cert, "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert, "::1", 0), 1);
  EXPECT_NE(X509_check_host(cert, "example.com", 0, 0, nullptr), 1);
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  EXPECT_EQ(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
  // Valid now and for about a year.
  EXPECT_LT(X509_cmp_current_time(X509_get0_notBefore(cert)), 0);
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(cert)), 1);
  EXPECT_GE(days, 364);
  EXPECT_LE(days, 366);
  X509_free(cert);
  EXPECT_NE(TlsContext::create(with_certs({{local_crt_, local_key_, {}, ""}}))
                ->describe()
                .find("ECDSA P-256"),
            std::string::npos);
}

TEST_F(TlsContextTest, SelfSignedLeavesExistingFilesAlone) {
  std::string crt = slurp(local_crt_), key = slurp(local_key_);
  struct stat before {};
  ASSERT_EQ(stat(local_key_.c_str(), &before), 0);
  ensure_self_signed(local_crt_, local_key_);
  EXPECT_EQ(slurp(local_crt_), crt);
  EXPECT_EQ(slurp(local_key_), key);
  // Even files that are not certificates at all are not ours to overwrite.
  std::string other_crt = (dir_ / "other.crt").string(), other_key = (dir_ / "other.key").string();
  std::ofstream(other_crt) << "not a cert";
  std::ofstream(other_key) << "not a key";
  ensure_self_signed(other_crt, other_key);
  EXPECT_EQ(slurp(other_crt), "not a cert");
  // Half a pair is completed into a new pair (the lone file cannot serve).
  fs::remove(other_crt);
  ensure_self_signed(other_crt, other_key);
  EXPECT_NO_THROW(TlsContext::create(with_certs({{other_crt, other_key, {}, ""}})));
  // No temporary files are left behind.
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(TlsContextTest, SelfSignedInMissingDirectoryNamesTheFile) {
  std::string crt = (dir_ / "nope" / "a.crt").string(), key = (dir_ / "nope" / "a.key").string();
  std::string msg = error_of([&] { ensure_self_signed(crt, key); });
  EXPECT_NE(msg.find("nope/a."), std::string::npos) << msg;
}

TEST_F(TlsContextTest, MismatchedKeyNamesBothFiles) {
  make_rsa_cert();
  std::string msg = error_of([&] {
    TlsContext::create(with_certs({{local_crt_, rsa_key_, {}, ""}}));
  });
  EXPECT_NE(msg.find(local_crt_), std::string::npos) << msg;
  EXPECT_NE(msg.find(rsa_key_), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not match"), std::string::npos) << msg;
  // The second cert of a list is checked as strictly as the first.
  msg = error_of([&] {
    TlsContext::create(
        with_certs({{local_crt_, local_key_, {}, ""}, {rsa_crt_, local_key_, {}, ""}}));
  });
  EXPECT_NE(msg.find(rsa_crt_), std::string::npos) << msg;
}

TEST_F(TlsContextTest, UnreadableOrBadFilesNameTheFile) {
  std::string missing = (dir_ / "missing.crt").string();
  std::string msg = error_of([&] {
    TlsContext::create(with_certs({{missing, local_key_, {}, ""}}));
  });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;

  // A directory cannot be read even by root (the tests may run as root, where mode 000 is no
  // obstacle).
  std::string dir = dir_.string();
  msg = error_of([&] { TlsContext::create(with_certs({{local_crt_, dir, {}, ""}})); });
  EXPECT_NE(msg.find(dir), std::string::npos) << msg;

  std::string garbage = (dir_ / "garbage.pem").string();
  std::ofstream(garbage) << "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
  msg = error_of([&] { TlsContext::create(with_certs({{garbage, local_key_, {}, ""}})); });
  EXPECT_NE(msg.find(garbage), std::string::npos) << msg;
  msg = error_of([&] { TlsContext::create(with_certs({{local_crt_, garbage, {}, ""}})); });
  EXPECT_NE(msg.find(garbage), std::string::npos) << msg;
}

TEST_F(TlsContextTest, DescribeAndNames) {
  make_rsa_cert();
  TlsOptions o;
  o.certs = {{local_crt_, local_key_, {}, ""},
             {rsa_crt_, rsa_key_, {}, ""},
             {local_crt_, local_key_, {"Static.Example.Test", "*.cdn.example.test"}, ""}};
  auto ctx = TlsContext::create(o);
  std::string d = ctx->describe();
  std::istringstream lines(d);
  std::string l0, l1, l2;
  std::getline(lines, l0);
  std::getline(lines, l1);
  std::getline(lines, l2);
  EXPECT_NE(l0.find("names localhost"), std::string::npos) << d;
  EXPECT_NE(l0.find("ECDSA P-256"), std::string::npos) << d;
  EXPECT_NE(l0.find("OCSP no"), std::string::npos) << d;
  EXPECT_NE(l0.find("default"), std::string::npos) << d;
  EXPECT_NE(l0.find("not after 20"), std::string::npos) << d;
  EXPECT_EQ(d.find("WARNING"), std::string::npos) << d;
  EXPECT_NE(l1.find("api.example.test, *.apps.example.test"), std::string::npos) << d;
  EXPECT_NE(l1.find("RSA 2048"), std::string::npos) << d;
  EXPECT_NE(l2.find("static.example.test"), std::string::npos) << d;

  EXPECT_EQ(ctx->cert_for("localhost"), 0u);
  EXPECT_EQ(ctx->cert_for("api.example.test"), 1u);
  EXPECT_EQ(ctx->cert_for("API.Example.Test."), 1u);
  EXPECT_EQ(ctx->cert_for("x.apps.example.test"), 1u);
  EXPECT_EQ(ctx->cert_for("a.b.apps.example.test"), 0u);  // a wildcard covers one label
  EXPECT_EQ(ctx->cert_for("apps.example.test"), 0u);
  EXPECT_EQ(ctx->cert_for("static.example.test"), 2u);
  EXPECT_EQ(ctx->cert_for("img.cdn.example.test"), 2u);
  EXPECT_EQ(ctx->cert_for("unknown.test"), 0u);
  EXPECT_EQ(ctx->cert_for(""), 0u);
  EXPECT_NE(ctx->default_ctx(), nullptr);

  o.certs[2].names = {"bad*.example.test"};
  EXPECT_NE(error_of([&] { TlsContext::create(o); }).find("bad*.example.test"), std::string::npos);
}

TEST_F(TlsContextTest, OcspFileIgnoredWithoutResponder) {
  std::string resp = (dir_ / "resp.der").string();
  std::ofstream(resp) << "x";
  auto ctx = TlsContext::create(with_certs({{local_crt_, local_key_, {}, resp}}));
  EXPECT_NE(ctx->describe().find("WARNING ocsp_file ignored"), std::string::npos)
      << ctx->describe();
  EXPECT_NE(ctx->describe().find("OCSP no"), std::string::npos);
}

TEST_F(TlsContextTest, ExpiredCertIsAWarningNotAnError) {
  // Built here with OpenSSL: the openssl tool of Debian 12 cannot date a cert in the past.
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 7);
  X509_gmtime_adj(X509_getm_notBefore(cert), -30L * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert), -86400);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("old.example.test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  std::string crt = (dir_ / "old.crt").string(), kf = (dir_ / "old.key").string();
  FILE* f = std::fopen(crt.c_str(), "w");
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(kf.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);

  auto ctx = TlsContext::create(with_certs({{crt, kf, {}, ""}}));
  EXPECT_NE(ctx->describe().find("WARNING EXPIRED"), std::string::npos) << ctx->describe();
  EXPECT_NE(ctx->describe().find("names old.example.test"), std::string::npos);  // from the CN
}

}  // namespace
