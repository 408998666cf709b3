// The shared HTTP cache (RFC 9111), growing with issue 6. Here now: the freshness arithmetic
// (freshness.h). Storage, keys with Vary, coalescing, revalidation and purge come with the rest.
#pragma once
#include "cache/freshness.h"
