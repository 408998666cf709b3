// The shared HTTP cache (RFC 9111) lands with its issue; this folder is its home.
#pragma once
