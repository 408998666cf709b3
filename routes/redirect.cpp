// Redirects keep the request's query unless the template sets one.
#include "routes/redirect.h"

#include "routes/route_table.h"

namespace edge::routes {

void RedirectHandler::handle(http::Exchange& ex) const {
  expand_captures(location_, ex.captures, ex.scratch);
  if (!ex.req.query.empty() && ex.scratch.find('?') == std::string::npos) {
    ex.scratch.push_back('?');
    ex.scratch.append(ex.req.query);
  }
  ex.set_static(status_, "text/plain; charset=utf-8", "Redirecting\n");
  ex.resp.location = ex.scratch;
}

}  // namespace edge::routes
