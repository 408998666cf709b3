// Listening sockets: one per worker per [[listen]], bound with SO_REUSEPORT so the kernel spreads
// connections over the workers' loops.
#pragma once
#include <vector>

#include "server/config.h"

namespace edge {

// Opens `count` sockets for each listener (the first one resolves port 0, the others reuse its
// port). Returns fds[listener][worker]; throws std::runtime_error naming the address on failure.
std::vector<std::vector<int>> open_listeners(const std::vector<ListenConfig>& listeners,
                                             unsigned count, std::vector<int>& bound_ports);

}  // namespace edge
