// Accept-Encoding negotiation without allocation: q-values of the codings we know, '*' for the
// rest.
#include "server/http/content_coding.h"

#include "server/http/token.h"

namespace edge::http {
namespace {

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), as thousandths; -1 when malformed.
int parse_qvalue(std::string_view v) {
  if (v.empty() || v.size() > 5 || (v[0] != '0' && v[0] != '1')) return -1;
  int q = (v[0] - '0') * 1000;
  if (v.size() == 1) return q;
  if (v[1] != '.') return -1;
  int scale = 100;
  for (std::size_t i = 2; i < v.size(); ++i) {
    if (v[i] < '0' || v[i] > '9') return -1;
    q += (v[i] - '0') * scale;
    scale /= 10;
  }
  return q > 1000 ? -1 : q;
}

}  // namespace

std::string_view coding_name(Coding c) {
  switch (c) {
    case Coding::kBr:
      return "br";
    case Coding::kZstd:
      return "zstd";
    case Coding::kGzip:
      return "gzip";
    case Coding::kIdentity:
      break;
  }
  return "identity";
}

std::optional<Coding> coding_from_name(std::string_view n) {
  if (iequals(n, "br")) return Coding::kBr;
  if (iequals(n, "zstd")) return Coding::kZstd;
  if (iequals(n, "gzip") || iequals(n, "x-gzip")) return Coding::kGzip;
  if (iequals(n, "identity")) return Coding::kIdentity;
  return std::nullopt;
}

Coding negotiate_coding(std::string_view header, const Coding* preference, std::size_t count,
                        CodingSet available) {
  int q[kCodingCount] = {-1, -1, -1, -1};  // thousandths; -1 = not listed
  int star = -1;
  bool malformed = false;
  for_each_list_element(header, [&](std::string_view el) {
    if (malformed) return;
    std::size_t semi = el.find(';');
    std::string_view name = trim_ows(el.substr(0, semi));
    int qv = 1000;
    while (semi != std::string_view::npos) {
      std::string_view rest = el.substr(semi + 1);
      std::size_t next = rest.find(';');
      std::string_view param = trim_ows(rest.substr(0, next));
      std::size_t eq = param.find('=');
      if (eq != std::string_view::npos && iequals(trim_ows(param.substr(0, eq)), "q")) {
        qv = parse_qvalue(trim_ows(param.substr(eq + 1)));
        if (qv < 0) malformed = true;
      }
      semi = next == std::string_view::npos ? next : semi + 1 + next;
    }
    if (!is_token(name)) malformed = true;
    if (malformed) return;
    if (name == "*") {
      star = qv;
    } else if (auto c = coding_from_name(name)) {
      q[static_cast<std::size_t>(*c)] = qv;
    }  // unknown codings are ignored
  });
  if (malformed) return Coding::kIdentity;
  Coding best = Coding::kIdentity;
  int best_q = 0;
  for (std::size_t i = 0; i < count; ++i) {
    Coding c = preference[i];
    if (c == Coding::kIdentity || !(available & coding_bit(c))) continue;
    int cq = q[static_cast<std::size_t>(c)];
    if (cq < 0) cq = star;  // not listed: '*' speaks for it, or it is not acceptable
    if (cq > best_q) {
      best = c;
      best_q = cq;
    }
  }
  if (best == Coding::kIdentity) return best;
  // A client that ranks identity above every coding offered ("identity, gzip;q=0.5") gets it;
  // identity left unlisted is acceptable but least preferred.
  int id_q = q[0] >= 0 ? q[0] : 1;
  return id_q > best_q ? Coding::kIdentity : best;
}

}  // namespace edge::http
