// A local-HTTPS certificate made at start (like Caddy's), so the default config serves TLS with
// no files committed: ECDSA P-256, self-signed, for localhost, 127.0.0.1 and ::1.
#pragma once
#include <string>

namespace edge::tls {

// When either file is absent, writes a new pair (valid one year; key mode 0600) through temporary
// files renamed into place, so a crash never leaves half a pair; the lone file of an incomplete
// pair is replaced, since it cannot serve alone. When both exist they are left untouched, valid
// or not (TlsContext::create reports their problems). Throws TlsError naming the file on failure.
void ensure_self_signed(const std::string& cert_file, const std::string& key_file);

}  // namespace edge::tls
