// OpenSSL's per-thread error queue as one readable string, for TlsError messages and
// TlsTransport::error_string() (internal to tls/).
#pragma once
#include <string>

namespace edge::tls {

// Drains this thread's OpenSSL error queue; returns its reasons joined by "; " ("" if empty).
std::string drain_openssl_errors();

}  // namespace edge::tls
