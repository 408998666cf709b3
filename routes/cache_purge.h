// The cache's purge endpoint: a route with `cache_purge` drops stored responses by URL, URL
// prefix or Cache-Tag — for clients with the route's bearer token, or, without a token, for
// loopback clients only.
#pragma once
#include <memory>
#include <string>

#include "cache/store.h"
#include "server/http/exchange.h"

namespace edge::routes {

class CachePurgeHandler : public http::Handler {
 public:
  CachePurgeHandler(std::shared_ptr<cache::Store> store, std::string token)
      : store_(std::move(store)), token_(std::move(token)) {}
  void handle(http::Exchange& ex) const override;
  const char* kind() const override { return "cache_purge"; }

 private:
  std::shared_ptr<cache::Store> store_;
  std::string token_;
};

}  // namespace edge::routes
