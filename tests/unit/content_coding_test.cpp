// Accept-Encoding negotiation (RFC 9110 12.5.3): q-values, '*', identity;q=0, garbage.
#include "server/http/content_coding.h"
#include "server/http/headers.h"

#include <gtest/gtest.h>

using namespace edge::http;

namespace {

constexpr Coding kPref[] = {Coding::kBr, Coding::kZstd, Coding::kGzip};
constexpr CodingSet kAll =
    coding_bit(Coding::kBr) | coding_bit(Coding::kZstd) | coding_bit(Coding::kGzip);

std::string_view pick(std::string_view header, CodingSet available = kAll) {
  return coding_name(negotiate_coding(header, kPref, 3, available));
}

}  // namespace

TEST(Negotiation, Table) {
  struct Case {
    const char* header;
    CodingSet available;
    const char* want;
  } cases[] = {
      {"", kAll, "identity"},
      {"gzip", kAll, "gzip"},
      {"gzip, deflate, br", kAll, "br"},
      {"gzip, deflate, br, zstd", kAll, "br"},
      {"gzip;q=1.0, br;q=0.5", kAll, "gzip"},
      {"br;q=0.5, zstd;q=0.5, gzip;q=0.5", kAll, "br"},
      {"zstd, gzip", kAll, "zstd"},
      {"br", coding_bit(Coding::kGzip), "identity"},
      {"*", kAll, "br"},
      {"*;q=0.5, br;q=0", kAll, "zstd"},
      {"br;q=0, zstd;q=0, gzip;q=0", kAll, "identity"},
      {"identity;q=0, gzip", kAll, "gzip"},
      {"identity, gzip;q=0.5", kAll, "identity"},
      {"x-gzip", kAll, "gzip"},
      {"GZIP", kAll, "gzip"},
      {"compress, deflate", kAll, "identity"},
      {"gzip;q=2", kAll, "identity"},
      {"gzip;q=abc", kAll, "identity"},
      {"gz ip", kAll, "identity"},
      {"br;q=0.001", kAll, "br"},
      {"gzip;level=5;q=0.8, br;q=0.7", kAll, "gzip"},
      {" , gzip ,, ", kAll, "gzip"},
      {"gzip", 0, "identity"},
  };
  for (const auto& c : cases)
    EXPECT_EQ(pick(c.header, c.available), c.want) << "\"" << c.header << "\"";
}

TEST(Negotiation, ServerOrderBreaksTies) {
  constexpr Coding gzip_first[] = {Coding::kGzip, Coding::kBr};
  EXPECT_EQ(negotiate_coding("br, gzip", gzip_first, 2, kAll), Coding::kGzip);
  EXPECT_EQ(negotiate_coding("br, gzip;q=0.9", gzip_first, 2, kAll), Coding::kBr);
}

TEST(Negotiation, Names) {
  EXPECT_EQ(coding_from_name("br"), Coding::kBr);
  EXPECT_EQ(coding_from_name("Zstd"), Coding::kZstd);
  EXPECT_FALSE(coding_from_name("deflate").has_value());
}

TEST(HeaderList, ListFieldsJoinTheirLines) {
  HeaderList h;
  h.add("Accept-Encoding", "br;q=0.5");
  h.add("Host", "x");
  h.add("accept-encoding", "zstd");
  std::string scratch;
  EXPECT_EQ(h.list("Accept-Encoding", scratch), "br;q=0.5, zstd");
  EXPECT_EQ(h.list("Host", scratch), "x");
  EXPECT_EQ(h.list("Missing", scratch), "");
}
