// OpenSSL's per-thread error queue as one readable string.
#include "tls/openssl_error.h"

#include <openssl/err.h>

namespace edge::tls {

std::string drain_openssl_errors() {
  std::string out;
  const char* data = nullptr;
  int flags = 0;
  while (unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    if (!out.empty()) out += "; ";
    const char* reason = ERR_reason_error_string(e);
    out += reason ? reason : "error " + std::to_string(ERR_GET_REASON(e));
    // The extra data often names the culprit (a file, a group), which is what users need.
    if ((flags & ERR_TXT_STRING) && data && *data) {
      out += " (";
      out += data;
      out += ')';
    }
  }
  return out;
}

}  // namespace edge::tls
