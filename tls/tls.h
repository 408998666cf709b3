// The tls/ library in one include for the server: options and list checks, the self-signed
// local certificate, the per-listener context (SNI, ALPN, resumption, OCSP) and the transport.
#pragma once
#include "tls/self_signed.h"
#include "tls/tls_context.h"
#include "tls/tls_options.h"
#include "tls/tls_transport.h"
