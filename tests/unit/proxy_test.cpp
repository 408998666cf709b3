// The proxy's request phase (routes/proxy.cpp): target, Host, hop-by-hop removal, the
// X-Forwarded-* family and trust; and the client-IP rules of server/http/ip.cpp.
#include "routes/proxy.h"

#include <gtest/gtest.h>

#include "server/http/ip.h"

using namespace edge;

namespace {

struct Fixture {
  http::Exchange ex;
  std::shared_ptr<http::UpstreamPool> pool = std::make_shared<http::UpstreamPool>();

  Fixture() {
    ex.req.method = http::Method::kGet;
    ex.req.method_name = "GET";
    ex.req.path = "/api/readings/7";
    ex.req.client_ip = "203.0.113.9";
    ex.req.peer_ip = "203.0.113.9";
    ex.req.request_id = "abc123";
    ex.req.headers.add("Host", "samia.example:8080");
  }
  void run(routes::ProxyOptions o = {}) {
    o.pool = pool;
    routes::ProxyHandler(std::move(o)).handle(ex);
  }
  bool has(std::string_view line) const {
    return ex.forward.headers.find(std::string(line) + "\r\n") != std::string::npos;
  }
  bool names(std::string_view name) const {
    std::string h = "\r\n" + ex.forward.headers;
    std::string needle = "\r\n" + std::string(name) + ":";
    return h.find(needle) != std::string::npos;
  }
};

}  // namespace

TEST(Proxy, TargetAndHost) {
  Fixture f;
  f.ex.req.query = "a=1&b=%20";
  f.run();
  EXPECT_EQ(f.ex.forward.pool, f.pool.get());
  EXPECT_EQ(f.ex.forward.target, "/api/readings/7?a=1&b=%20");
  EXPECT_EQ(f.ex.forward.host, "samia.example:8080");
  EXPECT_TRUE(f.ex.forward.idempotent);
  EXPECT_FALSE(f.ex.forward.upgrade);
}

TEST(Proxy, StripPrefixAndEncoding) {
  Fixture f;
  f.ex.req.path = "/api/a b/\xc3\xa9\"<x>";
  routes::ProxyOptions o;
  o.strip_prefix = "/api";
  f.run(o);
  EXPECT_EQ(f.ex.forward.target, "/a%20b/%C3%A9%22%3Cx%3E");

  Fixture g;
  g.ex.req.path = "/api";
  g.run(o);
  EXPECT_EQ(g.ex.forward.target, "/");

  Fixture h;  // "/apiary" is not under "/api"
  h.ex.req.path = "/apiary";
  h.run(o);
  EXPECT_EQ(h.ex.forward.target, "/apiary");
}

TEST(Proxy, HostModes) {
  Fixture f;
  routes::ProxyOptions o;
  o.host_mode = routes::ProxyOptions::HostMode::kUpstream;
  f.run(o);
  EXPECT_EQ(f.ex.forward.host, "");  // the runtime writes the server's address
  Fixture g;
  o.host_mode = routes::ProxyOptions::HostMode::kFixed;
  o.host = "api.internal";
  g.run(o);
  EXPECT_EQ(g.ex.forward.host, "api.internal");
}

TEST(Proxy, HopByHopAndFramingRemoved) {
  Fixture f;
  auto& h = f.ex.req.headers;
  h.add("Connection", "keep-alive, X-Secret-Hop");
  h.add("X-Secret-Hop", "1");
  h.add("Keep-Alive", "timeout=5");
  h.add("TE", "trailers");
  h.add("Trailer", "X");
  h.add("Transfer-Encoding", "chunked");
  h.add("Content-Length", "5");
  h.add("Upgrade", "h2c");
  h.add("Proxy-Authorization", "Basic x");
  h.add("Proxy-Connection", "keep-alive");
  h.add("Expect", "100-continue");
  h.add("Accept", "application/json");
  h.add("Cookie", "sid=1");
  f.run();
  for (auto n :
       {"Connection", "X-Secret-Hop", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding",
        "Content-Length", "Upgrade", "Proxy-Authorization", "Proxy-Connection", "Expect", "Host"})
    EXPECT_FALSE(f.names(n)) << n << " was forwarded:\n" << f.ex.forward.headers;
  EXPECT_TRUE(f.has("Accept: application/json"));
  EXPECT_TRUE(f.has("Cookie: sid=1"));
}

TEST(Proxy, ForwardedHeadersFromAnUntrustedPeer) {
  Fixture f;
  auto& h = f.ex.req.headers;
  h.add("X-Forwarded-For", "1.1.1.1");
  h.add("X-Forwarded-Proto", "https");
  h.add("X-Real-IP", "1.1.1.1");
  h.add("X-Forwarded-Host", "evil.example");
  h.add("CF-Connecting-IP", "1.1.1.1");
  h.add("X-Request-Id", "client-chosen");
  f.run();
  EXPECT_TRUE(f.has("X-Forwarded-For: 203.0.113.9"));
  EXPECT_TRUE(f.has("X-Forwarded-Proto: http"));
  EXPECT_TRUE(f.has("X-Forwarded-Host: samia.example:8080"));
  EXPECT_TRUE(f.has("X-Real-IP: 203.0.113.9"));
  EXPECT_TRUE(f.has("X-Request-Id: abc123"));
  EXPECT_FALSE(f.names("CF-Connecting-IP"));
  EXPECT_EQ(f.ex.forward.headers.find("1.1.1.1"), std::string::npos) << f.ex.forward.headers;
  EXPECT_EQ(f.ex.forward.headers.find("evil"), std::string::npos);
}

TEST(Proxy, ForwardedHeadersFromATrustedPeer) {
  Fixture f;
  f.ex.req.peer_trusted = true;
  f.ex.req.peer_ip = "10.0.0.2";
  f.ex.req.client_ip = "198.51.100.7";  // what the connection resolved
  f.ex.req.tls = true;
  auto& h = f.ex.req.headers;
  h.add("X-Forwarded-For", "198.51.100.7");
  h.add("X-Forwarded-For", "10.0.0.1");
  h.add("X-Forwarded-Proto", "https");
  h.add("CF-Connecting-IP", "198.51.100.7");
  f.run();
  EXPECT_TRUE(f.has("X-Forwarded-For: 198.51.100.7, 10.0.0.1, 10.0.0.2"));
  EXPECT_TRUE(f.has("X-Forwarded-Proto: https"));
  EXPECT_TRUE(f.has("X-Real-IP: 198.51.100.7"));
  EXPECT_TRUE(f.has("CF-Connecting-IP: 198.51.100.7"));
}

TEST(Proxy, WebSocketUpgradeOnlyWhenAllowed) {
  Fixture f;
  f.ex.req.headers.add("Connection", "Upgrade");
  f.ex.req.headers.add("Upgrade", "websocket");
  f.ex.req.headers.add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
  f.run();
  EXPECT_TRUE(f.ex.forward.upgrade);
  EXPECT_TRUE(f.has("Upgrade: websocket"));
  EXPECT_TRUE(f.has("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="));

  Fixture g;
  g.ex.req.headers.add("Connection", "Upgrade");
  g.ex.req.headers.add("Upgrade", "websocket");
  routes::ProxyOptions o;
  o.websocket = false;
  g.run(o);
  EXPECT_FALSE(g.ex.forward.upgrade);
  EXPECT_FALSE(g.names("Upgrade"));
}

TEST(Proxy, IdempotenceAndConnect) {
  for (auto [m, name, idem] : {std::tuple{http::Method::kPost, "POST", false},
                               std::tuple{http::Method::kPatch, "PATCH", false},
                               std::tuple{http::Method::kPut, "PUT", true},
                               std::tuple{http::Method::kDelete, "DELETE", true},
                               std::tuple{http::Method::kOptions, "OPTIONS", true}}) {
    Fixture f;
    f.ex.req.method = m;
    f.ex.req.method_name = name;
    f.run();
    EXPECT_EQ(f.ex.forward.idempotent, idem) << name;
  }
  Fixture c;
  c.ex.req.method = http::Method::kConnect;
  c.run();
  EXPECT_EQ(c.ex.forward.pool, nullptr);
  EXPECT_EQ(c.ex.resp.status, 405);
}

TEST(Proxy, ErrorBodyIsJson) {
  Fixture f;
  routes::proxy_error(f.ex, 504);
  EXPECT_EQ(f.ex.resp.status, 504);
  EXPECT_EQ(f.ex.resp.content_type, "application/json");
  EXPECT_EQ(f.ex.resp.cache_control, "no-store");
  EXPECT_EQ(f.ex.resp.body.data, "{\"error\":\"Gateway Timeout\",\"request_id\":\"abc123\"}\n");
}

TEST(Ip, RangesAndAddresses) {
  auto r = http::IpRange::parse("173.245.48.0/20");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->contains(*http::IpAddress::parse("173.245.63.255")));
  EXPECT_FALSE(r->contains(*http::IpAddress::parse("173.245.64.0")));
  auto v6 = http::IpRange::parse("2400:cb00::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*http::IpAddress::parse("2400:cb00:1::5")));
  EXPECT_FALSE(v6->contains(*http::IpAddress::parse("2400:cb01::5")));
  EXPECT_FALSE(v6->contains(*http::IpAddress::parse("173.245.48.1")));
  // IPv4-mapped IPv6 is IPv4
  EXPECT_TRUE(r->contains(*http::IpAddress::parse("::ffff:173.245.48.1")));
  auto one = http::IpRange::parse("127.0.0.1");
  ASSERT_TRUE(one);
  EXPECT_TRUE(one->contains(*http::IpAddress::parse("127.0.0.1")));
  EXPECT_FALSE(one->contains(*http::IpAddress::parse("127.0.0.2")));
  for (auto bad : {"", "1.2.3", "1.2.3.4/33", "::1/129", "10.0.0.0/", "10.0.0.0/8x", "host"})
    EXPECT_FALSE(http::IpRange::parse(bad)) << bad;
}

TEST(Ip, ForwardedClient) {
  http::IpRanges trusted;
  trusted.add(*http::IpRange::parse("10.0.0.0/8"));
  std::string scratch;
  http::HeaderList h;
  h.add("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.0.0.1");
  // right-most untrusted: a client cannot choose its address by sending its own header
  EXPECT_EQ(http::forwarded_client(h, trusted, scratch), "198.51.100.7");
  h.add("CF-Connecting-IP", "192.0.2.1");
  EXPECT_EQ(http::forwarded_client(h, trusted, scratch), "192.0.2.1");
  http::HeaderList all_trusted;
  all_trusted.add("X-Forwarded-For", "10.1.1.1, 10.0.0.1");
  EXPECT_EQ(http::forwarded_client(all_trusted, trusted, scratch), "10.1.1.1");
  http::HeaderList garbage;
  garbage.add("X-Forwarded-For", "not-an-ip");
  EXPECT_EQ(http::forwarded_client(garbage, trusted, scratch), "");
  http::HeaderList bad_cf;
  bad_cf.add("CF-Connecting-IP", "nope");
  bad_cf.add("X-Forwarded-For", "198.51.100.8");
  EXPECT_EQ(http::forwarded_client(bad_cf, trusted, scratch), "198.51.100.8");
}
