// The shared HTTP cache (RFC 9111), growing with issue 6. Here now: the freshness arithmetic
// (freshness.h) and the memory store (store.h). Wiring into the proxy, coalescing, revalidation,
// stale-while-revalidate / stale-if-error and the purge endpoint come with the rest of the issue.
#pragma once
#include "cache/freshness.h"
#include "cache/store.h"
