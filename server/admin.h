// The admin listener's routes ([admin]): /metrics (Prometheus text), /status (the status page),
// /status.json (its data), /health, /cache/purge; anything else 404. With an [admin] token, every
// path but /health and /status needs "Authorization: Bearer <token>".
#pragma once

namespace edge {
struct Config;
}

namespace edge::admin {

// Fills cfg.admin_routes (the handlers keep a pointer to cfg, which owns them).
void add_routes(Config& cfg);

}  // namespace edge::admin
