// Config loading: every error names the file and line; env expansion; durations and sizes.
#include "server/config.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("edge-config-" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "site");
    std::ofstream(dir_ / "site" / "index.html") << "x";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Loads `text` and returns the error message ("" when it loads).
  std::string load(const std::string& text) {
    std::string path = (dir_ / "edge.toml").string();
    std::ofstream(path) << text;
    try {
      cfg_ = edge::load_config(path, std::chrono::steady_clock::now());
      return "";
    } catch (const edge::ConfigError& e) {
      return e.what();
    }
  }
  std::string where(int line) {
    return (dir_ / "edge.toml").string() + ":" + std::to_string(line) + ": ";
  }

  fs::path dir_;
  std::shared_ptr<const edge::Config> cfg_;
};

constexpr const char* kGood = R"(
[server]
workers = 2
keepalive_timeout = "30s"
max_header_bytes = "16k"

[[listen]]
address = "127.0.0.1:0"

[[route]]
path = "/health"
health = true

[[route]]
prefix = "/"
root = "site"
spa_fallback = "/index.html"
headers = { "X-Frame-Options" = "DENY" }
)";

}  // namespace

TEST_F(ConfigTest, GoodConfigLoads) {
  ASSERT_EQ(load(kGood), "");
  EXPECT_EQ(cfg_->server.workers, 2u);
  EXPECT_EQ(cfg_->server.keepalive_timeout, std::chrono::seconds(30));
  EXPECT_EQ(cfg_->server.max_header_bytes, 16u * 1024);
  ASSERT_EQ(cfg_->routes.routes().size(), 2u);
  EXPECT_EQ(cfg_->routes.routes()[1].security.headers[0].first, "X-Frame-Options");
  EXPECT_NE(cfg_->describe().find("listen http://127.0.0.1:0"), std::string::npos);
}

TEST_F(ConfigTest, UnknownKeyNamesItsLine) {
  std::string err = load("[server]\nworkers = 1\nworkerz = 2\n");
  EXPECT_EQ(err.rfind(where(3) + "unknown key \"workerz\"", 0), 0u) << err;
}

TEST_F(ConfigTest, WrongTypeNamesItsLine) {
  std::string err =
      load("[server]\n\nkeepalive_timeout = true\n[[listen]]\naddress=\"127.0.0.1:1\"\n");
  EXPECT_EQ(err.rfind(where(3) + "keepalive_timeout must be a duration", 0), 0u) << err;
}

TEST_F(ConfigTest, MissingRootNamesItsLine) {
  std::string err =
      load("[[listen]]\naddress = \"127.0.0.1:0\"\n[[route]]\nprefix = \"/\"\nroot = \"nope\"\n");
  EXPECT_EQ(err.rfind(where(5) + "root", 0), 0u) << err;
  EXPECT_NE(err.find("is not a directory"), std::string::npos);
}

TEST_F(ConfigTest, SyntaxErrorNamesItsLine) {
  std::string err = load("[server]\nworkers = = 1\n");
  EXPECT_EQ(err.rfind(where(2), 0), 0u) << err;
}

TEST_F(ConfigTest, BadValuesAreRefused) {
  EXPECT_NE(load("[[listen]]\naddress = \"localhost\"\n"), "");
  EXPECT_NE(load("[[listen]]\naddress = \"127.0.0.1:99999\"\n"), "");
  EXPECT_NE(load("[[listen]]\naddress = \"example.com:80\"\n"), "");
  EXPECT_NE(
      load("[[listen]]\naddress = \"127.0.0.1:0\"\n[[route]]\nregex = \"(\"\nhealth = true\n"), "");
  EXPECT_NE(load("[[listen]]\naddress = \"127.0.0.1:0\"\n[[route]]\nprefix = \"/\"\n"), "");
  EXPECT_NE(
      load("[[listen]]\naddress = \"127.0.0.1:0\"\n[[route]]\nhealth = true\nroot = \"site\"\n"),
      "");
  EXPECT_NE(load("[[listen]]\naddress = \"127.0.0.1:0\"\n[[route]]\nhealth = true\nspa_fallback = "
                 "\"/x\"\n"),
            "");
  EXPECT_NE(load("[server]\nworkers = 0\n"), "");
}

TEST_F(ConfigTest, EnvironmentExpansion) {
  ::setenv("EDGE_TEST_PORT", "0", 1);
  ::unsetenv("EDGE_TEST_UNSET");
  EXPECT_EQ(
      load("[[listen]]\naddress = \"127.0.0.1:${EDGE_TEST_PORT}\"\n[[route]]\nhealth = true\n"),
      "");
  EXPECT_EQ(
      load("[[listen]]\naddress = \"${EDGE_TEST_UNSET:-127.0.0.1:0}\"\n[[route]]\nhealth = true\n"),
      "");
  std::string err =
      load("[[listen]]\naddress = \"${EDGE_TEST_UNSET}\"\n[[route]]\nhealth = true\n");
  EXPECT_EQ(err.rfind(where(2), 0), 0u) << err;
  EXPECT_NE(err.find("EDGE_TEST_UNSET is not set"), std::string::npos) << err;
}

TEST(ConfigValues, DurationsAndSizes) {
  std::chrono::milliseconds d{};
  EXPECT_TRUE(edge::parse_duration("10s", d));
  EXPECT_EQ(d.count(), 10000);
  EXPECT_TRUE(edge::parse_duration("15m", d));
  EXPECT_EQ(d.count(), 900000);
  EXPECT_TRUE(edge::parse_duration("2h", d));
  EXPECT_EQ(d.count(), 7200000);
  EXPECT_TRUE(edge::parse_duration("250ms", d));
  EXPECT_EQ(d.count(), 250);
  EXPECT_FALSE(edge::parse_duration("10 s", d));
  EXPECT_FALSE(edge::parse_duration("s", d));
  EXPECT_FALSE(edge::parse_duration("10y", d));
  std::uint64_t v = 0;
  EXPECT_TRUE(edge::parse_size("8k", v));
  EXPECT_EQ(v, 8192u);
  EXPECT_TRUE(edge::parse_size("1m", v));
  EXPECT_EQ(v, 1048576u);
  EXPECT_FALSE(edge::parse_size("1x", v));
  // Too large is an error, not a number that wrapped around.
  EXPECT_FALSE(edge::parse_duration("1000000000000d", d));
  EXPECT_FALSE(edge::parse_size("1000000000g", v));
  EXPECT_TRUE(edge::parse_size("1024g", v));
  EXPECT_EQ(v, 1ULL << 40);
}

TEST_F(ConfigTest, SecurityHeaderErrorsNameTheirLine) {
  std::string err = load(
      "[security_headers]\nhsts = { max_age = \"xy\" }\n[[listen]]\naddress = \"127.0.0.1:0\"\n");
  EXPECT_EQ(err.rfind(where(2) + "max_age", 0), 0u) << err;
  EXPECT_EQ(
      load(
          "[security_headers]\nhsts = { max_age = \"2y\" }\n[[listen]]\naddress = \"127.0.0.1:0\"\n"
          "[[route]]\nhealth = true\n"),
      "");
  EXPECT_EQ(cfg_->security.hsts_max_age, 63072000u);
}

TEST_F(ConfigTest, UpstreamsAndProxyRoutes) {
  const std::string head =
      "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n"
      "[[listen]]\naddress = \"127.0.0.1:0\"\n";
  std::string ok = head +
                   "[[upstream]]\nname = \"api\"\nservers = [\"127.0.0.1:5000\", { address = "
                   "\"[::1]:5001\", weight = 3 }]\nbalance = \"least_conn\"\nkeepalive = 8\n"
                   "tries = 2\n[upstream.health]\npath = \"/health\"\ninterval = \"2s\"\nrise = 1\n"
                   "[upstream.passive]\nmax_fails = 5\n"
                   "[[route]]\nprefix = \"/api/\"\nproxy = \"api\"\nstrip_prefix = \"/api\"\n"
                   "[[route]]\npath = \"/health\"\nhealth = true\n";
  ASSERT_EQ(load(ok), "");
  ASSERT_EQ(cfg_->upstreams.size(), 1u);
  const auto& pool = *cfg_->upstreams[0];
  EXPECT_EQ(pool.servers.size(), 2u);
  EXPECT_EQ(pool.servers[1]->weight, 3u);
  EXPECT_EQ(pool.servers[1]->port, 5001);
  EXPECT_EQ(pool.balance, edge::http::UpstreamPool::Balance::kLeastConn);
  EXPECT_EQ(pool.keepalive, 8u);
  EXPECT_EQ(pool.tries, 2u);
  EXPECT_EQ(pool.health_interval.count(), 2000);
  EXPECT_EQ(pool.max_fails, 5u);
  EXPECT_EQ(cfg_->routes.routes()[0].max_body, 1u << 20);  // proxy routes take 1 MiB by default
  EXPECT_TRUE(cfg_->server.trusted_proxies.contains(*edge::http::IpAddress::parse("10.2.3.4")));

  // errors name their line
  auto err = load(head + "[[upstream]]\nname = \"api\"\nservers = [\"127.0.0.1\"]\n");
  EXPECT_EQ(err.rfind(where(7) + "server \"127.0.0.1\" must be host:port", 0), 0u) << err;
  err = load(head + "[[upstream]]\nname = \"api\"\nservers = [\"127.0.0.1:70000\"]\n");
  EXPECT_NE(err.find("port must be between 1 and 65535"), std::string::npos) << err;
  err = load(head + "[[upstream]]\nname = \"api\"\nservers = [\"127.0.0.1:1\"]\nbalance = \"x\"\n");
  EXPECT_EQ(err.rfind(where(8) + "balance must be", 0), 0u) << err;
  err = load(head + "[[route]]\nprefix = \"/api/\"\nproxy = \"nope\"\n");
  EXPECT_EQ(err.rfind(where(7) + "proxy = \"nope\" names no [[upstream]]", 0), 0u) << err;
  err = load(head +
             "[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n[[upstream]]\nname = "
             "\"a\"\nservers = [\"127.0.0.1:2\"]\n");
  EXPECT_NE(err.find("defined twice"), std::string::npos) << err;
  err = load(head + "[[route]]\nprefix = \"/\"\nhealth = true\nstrip_prefix = \"/x\"\n");
  EXPECT_EQ(err.rfind(where(8) + "strip_prefix only applies to a route with proxy", 0), 0u) << err;
  err = load(
      "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n[[listen]]\naddress = "
      "\"127.0.0.1:0\"\n[[route]]\nhealth = true\n");
  EXPECT_EQ(err.rfind(where(2) + "trusted_proxies", 0), 0u) << err;
  err = load(head +
             "[[upstream]]\nname = \"api\"\nservers = [\"127.0.0.1:1\"]\n[upstream.health]\n"
             "rise = 0\n");
  EXPECT_EQ(err.rfind(where(9) + "rise must be", 0), 0u) << err;
}

TEST_F(ConfigTest, RateLimits) {
  const std::string head = "[[listen]]\naddress = \"127.0.0.1:0\"\nmax_conns_per_ip = 5\n";
  ASSERT_EQ(
      load("[rate_limit]\nstore = \"redis://10.0.0.5:6380/2\"\nallowlist = [\"10.0.0.0/8\"]\n" +
           head +
           "[[route]]\nprefix = \"/\"\nhealth = true\nrate_limit = [ { requests = 10, window "
           "= \"1s\", name = \"burst\" }, { requests = 100, window = \"15m\", key = "
           "\"header:X-Api-Key\" } ]\n"),
      "");
  EXPECT_EQ(cfg_->rate_limit.redis_host, "10.0.0.5");
  EXPECT_EQ(cfg_->rate_limit.redis_port, 6380);
  EXPECT_EQ(cfg_->rate_limit.redis_db, 2);
  EXPECT_EQ(cfg_->listeners[0].max_conns_per_ip, 5u);
  const auto& limits = cfg_->routes.routes()[0].limits;
  ASSERT_EQ(limits.size(), 2u);
  EXPECT_EQ(limits[0].name, "burst");
  EXPECT_EQ(limits[1].name, "100-in-15min");
  EXPECT_EQ(limits[1].key_name, "X-Api-Key");

  auto err =
      load(head + "[[route]]\nhealth = true\nrate_limit = { requests = 0, window = \"1s\" }\n");
  EXPECT_EQ(err.rfind(where(6) + "rate_limit: requests", 0), 0u) << err;
  err = load(head +
             "[[route]]\nhealth = true\nrate_limit = { requests = 5, window = \"1s\", key = "
             "\"body\" }\n");
  EXPECT_EQ(err.rfind(where(6) + "rate_limit: key", 0), 0u) << err;
  err = load("[rate_limit]\nstore = \"mysql://x\"\n" + head + "[[route]]\nhealth = true\n");
  EXPECT_EQ(err.rfind(where(2) + "store must be", 0), 0u) << err;
  err = load("[rate_limit]\nipv6_prefix = 200\n" + head + "[[route]]\nhealth = true\n");
  EXPECT_EQ(err.rfind(where(2) + "ipv6_prefix", 0), 0u) << err;
  err =
      load(head + "[[route]]\nhealth = true\nrate_limit = { requests = 5, window = \"500ms\" }\n");
  EXPECT_NE(err.find("window must be at least 1s"), std::string::npos) << err;
}

TEST_F(ConfigTest, AdminListenerPidFileAndRouteNames) {
  std::string text = std::string(kGood) + R"(
[admin]
listen = "127.0.0.1:0"
token = "t0ken"
)";
  text.replace(text.find("[server]\n"), 9, "[server]\npid_file = \"run/edge.pid\"\n");
  text.replace(text.find("path = \"/health\""), 16, "path = \"/health\"\nname = \"health check\"");
  ASSERT_EQ(load(text), "");
  ASSERT_EQ(cfg_->listeners.size(), 2u);
  EXPECT_TRUE(cfg_->listeners[1].admin);
  EXPECT_EQ(cfg_->admin_token, "t0ken");
  EXPECT_EQ(cfg_->server.pid_file, (dir_ / "run" / "edge.pid").string());
  EXPECT_EQ(cfg_->routes.routes()[0].label, "health check");
  EXPECT_EQ(cfg_->routes.routes()[1].label, "/");
  EXPECT_NE(cfg_->routes.routes()[0].stats, nullptr);
  EXPECT_GE(cfg_->admin_routes.routes().size(), 5u);

  EXPECT_EQ(load(std::string(kGood) + "\n[admin]\n"), "");  // the default address
  EXPECT_EQ(cfg_->listeners.back().address, "127.0.0.1:9901");
  EXPECT_EQ(load(std::string(kGood) + "\n[admin]\nlisten = \"nowhere\"\n"),
            where(21) + "address \"nowhere\": expected host:port");
  EXPECT_EQ(load(std::string(kGood) + "\n[admin]\ntoken = \"a b\"\n"),
            where(21) + "token must not contain spaces or control characters");
  EXPECT_EQ(load(std::string(kGood) + "\n[admin]\nport = 1\n"),
            where(21) + "unknown key \"port\" in [admin] (known: listen, token)");
}

TEST_F(ConfigTest, ReloadCarriesSharedStateOver) {
  std::string base = std::string(kGood) + R"(
[[upstream]]
name = "api"
servers = ["127.0.0.1:1", "127.0.0.1:2"]
)";
  ASSERT_EQ(load(base), "");
  auto first = cfg_;
  first->upstreams[0]->servers[1]->checked_up.store(false);
  std::string path = (dir_ / "edge.toml").string();
  std::vector<std::string> warnings;
  auto second = edge::load_config(path, std::chrono::steady_clock::now(), first.get(), &warnings);
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(second->generation, first->generation + 1);
  EXPECT_EQ(second->cache_store, first->cache_store);  // what is stored stays
  EXPECT_EQ(second->limiter, first->limiter);
  EXPECT_EQ(second->conns_per_ip, first->conns_per_ip);
  EXPECT_TRUE(second->upstreams[0]->servers[0]->checked_up.load());
  EXPECT_FALSE(second->upstreams[0]->servers[1]->checked_up.load());  // still down
  EXPECT_EQ(second->upstreams[0]->servers[1]->stats, first->upstreams[0]->servers[1]->stats);
  EXPECT_EQ(second->routes.routes()[1].stats, first->routes.routes()[1].stats);

  // A different cache size starts a new store; a different worker count needs a restart.
  std::string changed = base + "\n[cache]\nsize = \"1m\"\n";
  changed.replace(changed.find("workers = 2"), 11, "workers = 3");
  std::ofstream(path) << changed;
  warnings.clear();
  auto third = edge::load_config(path, std::chrono::steady_clock::now(), second.get(), &warnings);
  EXPECT_NE(third->cache_store, second->cache_store);
  EXPECT_EQ(third->server.workers, 2u);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("workers = 3 needs a restart"), std::string::npos) << warnings[0];
}

// [server] max_connections: "auto" is 3/4 of the open-file limit, also when the config has no
// [server] table at all (a regression: it was 0 then, and every connection was refused).
TEST_F(ConfigTest, MaxConnectionsAutoWithoutServerTable) {
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  std::uint64_t expect = std::max<std::uint64_t>(16, rl.rlim_cur / 4 * 3);
  ASSERT_EQ(
      load("[[listen]]\naddress = \"127.0.0.1:0\"\n[[route]]\nprefix = \"/\"\nroot = \"site\"\n"),
      "");
  EXPECT_EQ(cfg_->server.max_connections, expect);
  ASSERT_EQ(load("[server]\nmax_connections = \"auto\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n"
                 "[[route]]\nprefix = \"/\"\nroot = \"site\"\n"),
            "");
  EXPECT_EQ(cfg_->server.max_connections, expect);
  ASSERT_EQ(load("[server]\nmax_connections = 7\n[[listen]]\naddress = \"127.0.0.1:0\"\n"
                 "[[route]]\nprefix = \"/\"\nroot = \"site\"\n"),
            "");
  EXPECT_EQ(cfg_->server.max_connections, 7u);
  EXPECT_EQ(load("[server]\nmax_connections = 0\n"),
            where(2) + "max_connections must be \"auto\" or a number between 1 and 10000000");
}
