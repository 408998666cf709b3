// Redirect routes: a Location template with regex captures ($1..$9) and a 3xx status.
#pragma once
#include <string>

#include "server/http/exchange.h"

namespace edge::routes {

class RedirectHandler : public http::Handler {
 public:
  RedirectHandler(std::string location, int status)
      : location_(std::move(location)), status_(status) {}
  void handle(http::Exchange& ex) const override;
  const char* kind() const override { return "redirect"; }

 private:
  std::string location_;
  int status_;
};

}  // namespace edge::routes
