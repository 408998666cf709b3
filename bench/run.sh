#!/usr/bin/env bash
# bench/run.sh — edge vs Debian's nginx (and, for the proxy cases, HAProxy; for the cache cases, Varnish), side by side, on the
# same generated site.
#
# Generates the deterministic site (../shared/anchors/make-site.sh), renders one config for
# each server from bench/conf/, starts them pinned to the server CPU (taskset), and runs
# ../shared/anchors/run.sh against each one (wrk pinned to the load CPU, srv_cpu from the
# server's own user+sys time), RUNS times, interleaved. Prints a markdown table at the end.
#
#   bench/run.sh                 full benchmark (RUNS=3: 3 × 14 cases × 2 servers × ~8–10 s)
#   CASES=tls bench/run.sh       the TLS cases only
#   SERVERS=nginx bench/run.sh   nginx half only (no edge binary needed)
#   PROBE_ONLY=1 bench/run.sh    start, probe every case (status/size/encoding/headers), stop
#                                (no build wait, no measurement)
#   CASES="api api_1k" SERVERS="edge nginx haproxy" bench/run.sh   the reverse-proxy cases (issue 5)
#   CASES=rl SERVERS=edge bench/run.sh   the rate-limit cases (issue 7): api, api_rl, api_rl_redis
#   CASES="cache_small cache_20k" SERVERS="edge nginx varnish" bench/run.sh   the cache-hit cases (issue 6)
#   CASES=h2 SERVERS="edge nginx h2o" bench/run.sh   the HTTP/2 cases (issue 9): h2_small h2_js_br
#
# Compression cases (the 150 KB JS):
#   js_br, js_gz          the site WITH .br/.gz/.zst siblings: edge (its default compression, serving
#                         the siblings) vs nginx brotli_static + gzip_static (port EDGE_PORT / NGINX_PORT)
#   js_br_mem, js_gz_mem  a copy of the site WITHOUT siblings (BENCH_VAR/site-nosib): a second edge
#                         (EDGE_NOSIB_PORT) serving the variants it compressed itself, kept in memory, vs
#                         a second nginx server block (NGINX_NOSIB_PORT, same nginx process) with on-the-fly
#                         gzip level 6. Debian's nginx cannot brotli on the fly: js_br_mem is edge only.
#
# TLS cases (CASES=tls is the whole set): a second listener on each server (EDGE_TLS_PORT /
# NGINX_TLS_PORT) with the SAME ECDSA P-256 certificate (BENCH_VAR/certs/ecdsa.{crt,key}, made once
# with openssl like ../shared/anchors/servers.sh), TLS 1.2 + 1.3, session cache + tickets, HTTP/1.1
# (edge has no h2 yet; nginx's TLS port has no http2 either):
#   tls_hs_new        h2load --h1 -t1 -c1000 -n1000 -m1 (run.sh's hs_new through bench/bin/h2load,
#                     which adds --h1): new TLS 1.3 connections, 1 request each; server CPU / connection
#   tls_hs_resumed    openssl s_time -reuse -www <1 KB asset> -time STIME_SECS: resumed connections
#   tls_hs_new_stime  openssl s_time -new (the same tool, full handshakes), to cross-check tls_hs_new
#   tls_small         wrk -c64 over https, kept-alive, the 1 KB asset
#   tls_img           wrk -c64 over https, kept-alive, the 1 MiB asset
#
# HTTP/2 cases (issue 9; CASES=h2 is both; not in the default CASES): h2load over TLS with h2 chosen by
# ALPN, the anchors' h2 measurement (`h2load -t1 -c64 -m10 -D… --warm-up-time=…`, run.sh's h2_small
# case through bench/bin/h2load), server CPU / requests as every other case:
#   h2_small          h2load -t1 -c H2_CONN -m H2_STREAMS on the 1 KB asset (tls_small's path)
#   h2_js_br          the same on the 150 KB JS with -H 'accept-encoding: br': each server's .br sibling
# Servers, each on a TLS port with the same ECDSA P-256 certificate and the same site:
#   edge     its TLS listener (EDGE_TLS_PORT, the tls_* cases' one: ALPN h2 then http/1.1)
#   nginx    a server block of its own (NGINX_H2_PORT) with `listen … ssl http2`; the tls_* server
#            (NGINX_TLS_PORT) keeps no http2, so the tls_* cases still compare HTTP/1.1 with HTTP/1.1
#   h2o      Debian's h2o 2.2 (SERVERS may include h2o, which runs only these cases), from
#            conf/h2o.conf.in = the anchors' h2o.conf shape (num-threads: 1, file.send-compressed: ON,
#            the 6 headers, mruby SPA fallback), TLS only on H2O_PORT, `h2o -m worker`, pinned
# The probe checks, per server: curl --http2 (status 200, HTTP/2, size, Content-Encoding, the body
# decodes to the file, Cache-Control, the 6 headers, TLS 1.3), openssl s_client -alpn h2,http/1.1
# (ALPN h2, the certificate) and a short unmeasured h2load (-n H2_PROBE_REQS with the case's options:
# h2 negotiated, every answer 2xx, DATA bytes per request = the expected body size).
#
# Reverse-proxy cases (issue 5; CASES=proxy is both; not in the default CASES): GET API_PATH through
# each proxy to a fast upstream = nginx `return 200` of a 291-byte JSON, rendered from
# ../shared/anchors/conf/nginx-upstream.conf into BENCH_VAR (1 worker, UPSTREAM_PORT, pinned to the
# LOAD CPU like the anchors' :9001, so the proxy under test owns SERVER_CPU), started once:
#   api               wrk -c CONN (64), kept-alive client connections
#   api_1k            wrk -c API_1K_CONN (1000); run.sh's wrk keeps --timeout 5s (mean latency at
#                     1000 connections is ~40 ms at 25k req/s, so 5 s only catches stalls)
# Proxies: edge (an [[upstream]] "api" + a /api/ proxy route in edge.toml), nginx (proxy_pass to an
# upstream block with `keepalive UPSTREAM_KEEPALIVE`, the anchors' nginx-api-proxy.inc) and HAProxy
# (SERVERS may include haproxy, which runs only these cases: the anchors' haproxy.cfg, nbthread 1,
# HAPROXY_PORT). All three send the anchors' 6 security headers on /api, as on the static routes.
# The script raises its open-files limit (ulimit -n, NOFILE) so wrk, edge and the proxies can hold
# 1000 client + 1000 upstream connections.
#
# Rate-limit cases (issue 7; CASES=rl is "api api_rl api_rl_redis"; edge only, not in the default CASES):
# the api case's request (GET API_PATH, wrk -c CONN, same fast upstream) through an edge whose /api/
# route carries `rate_limit = { requests = 100000000, window = "24h" }` (a limit that never refuses:
# the limiter's cost, every answer a 200 with the RateLimit headers). The store is process-wide, so
# each limiter is its own edge process, rendered from the same template as edge.toml with only the
# rate_limit lines added (and no TLS listener): same route, same headers, same upstream:
#   api_rl            edge_rl (EDGE_RL_PORT): [rate_limit] store = "memory"
#   api_rl_redis      edge_rl_redis (EDGE_RL_REDIS_PORT): store = "redis://127.0.0.1:REDIS_PORT" and
#                     on_store_error = "deny" (a Redis failure shows as 503s, never as a silent fallback
#                     to local counters); Debian's redis-server on REDIS_PORT, no persistence, started
#                     here pinned to the LOAD CPU (like the upstream), stopped by its PID at the end.
# `api` (limiter off) is the main edge's /api/ route, as in the proxy cases.
#
# Cache-hit cases (issue 6; CASES=cache is both; not in the default CASES): GET through a shared cache
# whose copy is fresh (one warm-up request in the probe stores it), same fast upstream as the api cases,
# wrk -c CONN (run.sh's api case with PATH_API = the case's path). Every server answers the SAME URL on
# a port of its own, and the upstream sees the same request it sees in the api cases:
#   cache_small       GET API_PATH (/api/readings, the anchors' 291-byte JSON)
#   cache_20k         GET CACHE_20K_PATH (/api/readings-20k): a fixed 20,480-byte JSON, written once to
#                     BENCH_VAR/upstream/readings-20k.json and served by an exact-match location added to
#                     the rendered upstream config (the anchors' /api/ location is left as it is)
# Caches (CACHE_TTL, default 2h, for all three: the sitting never sees an expiry):
#   edge     edge_cache (EDGE_CACHE_PORT): edge.toml's /api/ route + `cache = { ttl = CACHE_TTL,
#            override = true }` (the upstream sends no Cache-Control, so override makes it storable),
#            its own process like the rate-limit edges (same template, no TLS listener)
#   nginx    a third server block in the same nginx (NGINX_CACHE_PORT) with the anchors'
#            nginx-api-cache.inc (proxy_cache, proxy_cache_lock, X-Cache: $upstream_cache_status) and
#            proxy_cache_path line; proxy_cache_valid 200 CACHE_TTL (the anchors': 10s)
#   varnish  Debian's varnishd (SERVERS may include varnish, which runs only these cases) with the
#            anchors' varnish.vcl (backend -> UPSTREAM_PORT, beresp.ttl = CACHE_TTL instead of 10s),
#            -s malloc,256m -p thread_pools=1 -p thread_pool_min=16 -p thread_pool_max=1000 as in
#            ../shared/anchors/servers.sh, -T none, pinned to the server CPU (VARNISH_PORT)
# The probe checks status 200, the exact body (the upstream's own, byte for byte), application/json,
# the security headers and that the answer is a hit (edge `Cache-Status: edge; hit…`, nginx
# `X-Cache: HIT`, Varnish `X-Varnish` with two ids or `Age` > 0), then runs an unmeasured wrk burst
# (CACHE_BURST_SECS) and checks that the upstream's request count (its stub_status, a location added
# to the rendered upstream config) did not grow. Each cache RESULT line gets upstream_reqs= (requests
# the upstream received during warm-up + measurement: 0 when every request was a hit).
#
# Environment (all optional):
#   EDGE_BIN=build/edge   edge binary (relative to the repo root, or absolute)
#   SERVERS="edge nginx"  which servers to run
#   CASES="small index spa js_id img js_br js_gz js_br_mem js_gz_mem tls_hs_new tls_hs_resumed
#          tls_hs_new_stime tls_small tls_img"
#                         (any case of ../shared/anchors/run.sh without TLS/api, plus js_br_mem js_gz_mem,
#                         the tls_* cases and api api_1k; the word "tls" stands for every tls_* case,
#                         "proxy" for "api api_1k", "rl" for "api api_rl api_rl_redis" (api_rl* run on
#                         edge only: SKIP lines for nginx and haproxy), "cache" for "cache_small cache_20k",
#                         "h2" for "h2_small h2_js_br"
#   SERVERS="edge nginx haproxy"  haproxy runs only the api cases (skipped, with a SKIP line, for the rest)
#   EDGE_RL_PORT=8187  EDGE_RL_REDIS_PORT=8188  REDIS_PORT=6390   the rate-limit cases' edges / Redis
#   REDIS_BIN=/usr/bin/redis-server       Redis (Debian package redis-server; redis-cli from redis-tools)
#   SERVERS="edge nginx varnish"          varnish runs only the cache cases (skipped, with a SKIP line, for the rest);
#                                         haproxy gets SKIP lines for the cache cases
#   EDGE_CACHE_PORT=8189 NGINX_CACHE_PORT=8190 VARNISH_PORT=8191   the cache cases' listeners
#   CACHE_TTL=2h                          every cache's lifetime for the stored copies (edge ttl, nginx
#                                         proxy_cache_valid 200, Varnish beresp.ttl)
#   CACHE_20K_PATH=/api/readings-20k      cache_20k's path (on the upstream: a fixed 20,480-byte JSON)
#   CACHE_BURST_SECS=1                    cache probe: an unmeasured wrk -c CONN for this many s must not
#                                         reach the upstream (0 = skip the burst)
#   VARNISH_BIN=/usr/sbin/varnishd        Varnish (Debian package varnish)
#   SERVERS="edge nginx h2o"              h2o runs only the h2_* cases (skipped, with a SKIP line, for the rest)
#   NGINX_H2_PORT=8192 H2O_PORT=8193      the h2_* cases' TLS ports of nginx (http2) and h2o (edge: EDGE_TLS_PORT)
#   H2_CONN=64 H2_STREAMS=10              h2_* cases: h2load -c / -m (the anchors' -c64 -m10)
#   H2_PROBE_REQS=640                     h2_* probe: an unmeasured h2load -n of this many requests (0 = skip)
#   H2O_BIN=/usr/bin/h2o                  h2o (Debian package h2o, 2.2.5 on Debian 12)
#   RUNS=3  DUR=6  WARMUP=1  CONN=64      per-case wrk: WARMUP s unmeasured, then DUR s measured
#   API_1K_CONN=1000                      api_1k: wrk connections
#   API_PATH=/api/readings                the api cases' request path (PATH_API of ../shared/anchors/run.sh)
#   UPSTREAM_PORT=9101  HAPROXY_PORT=8186 the fast upstream (api cases) / HAProxy's listener
#   UPSTREAM_KEEPALIVE=64                 idle upstream connections kept: edge `keepalive`, nginx `keepalive`
#                                         (HAProxy keeps the anchors' `http-reuse safe`, no idle cap)
#   NOFILE=65536                          open-files limit the script raises itself to (at least
#                                         API_1K_CONN × 2 + 1000 is required when api_1k is asked for)
#   HAPROXY_BIN=/usr/sbin/haproxy         HAProxy binary (Debian package haproxy)
#   PROBE_CONC_SECS=1                     api_1k probe: an unmeasured wrk -c API_1K_CONN for this many s
#                                         must see no error/timeout (0 = skip it)
#   EDGE_PORT=8180  NGINX_PORT=8181       127.0.0.1 only
#   EDGE_NOSIB_PORT=8182 NGINX_NOSIB_PORT=8183   the no-sibling site (js_*_mem cases)
#   EDGE_TLS_PORT=8184 NGINX_TLS_PORT=8185       the TLS listeners (tls_* cases)
#   HS_CONN=1000                          tls_hs_new: connections (h2load -c HS_CONN -n HS_CONN)
#   STIME_SECS=5                          tls_hs_resumed / tls_hs_new_stime: openssl s_time -time
#   NGINX_TLS_SUITES=                     e.g. TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
#                                         = nginx prefers these TLS 1.3 suites (ssl_conf_command + server
#                                         preference), i.e. edge's default order; empty = nginx's default
#                                         (the client's order, as in the anchors)
#   VARIANT_WAIT=30                       max seconds to wait for edge's own br/gzip variants before probing
#   SERVER_CPU=0  LOADGEN_CPU=1           taskset CPUs: servers / wrk
#   BENCH_VAR=bench/var                   runtime files: site/ rendered/ run/ log/ results/
#   NGINX_OPEN_FILE_CACHE=1               0 = exactly the anchors' nginx (no open_file_cache)
#   EDGE_LOG_LEVEL=warn                   edge's [log] level
#   BUILD_WAIT_MAX=3600                   max seconds to wait for a running build to finish
#   BUILD_RETRIES=3                       repeat a measurement that overlapped a build (up to N times)
#   QUIET_MAX=25 QUIET_WAIT=120           before each measurement wait (up to QUIET_WAIT s) until other
#                                         processes use <= QUIET_MAX % of all CPUs; recorded as pre_busy
#   STRICT=0                              1 = abort when a probe shows a wrong status/size/header
#   NO_INSTALL=0                          1 = never apt-get install missing tools
#
# Only PIDs started here are ever signalled (recorded in BENCH_VAR/run/NAME.pid).
set -uo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
ANCH=$(cd "$REPO/../shared/anchors" 2>/dev/null && pwd) || {
  echo "bench: $REPO/../shared/anchors not found (the repo is expected to sit beside shared/)" >&2; exit 2; }
VAR=${BENCH_VAR:-$BENCH/var}
mkdir -p "$VAR" && VAR=$(cd "$VAR" && pwd)
SITE=$VAR/site
SITE_NOSIB=$VAR/site-nosib   # copy of SITE without the .br/.gz/.zst siblings (js_*_mem cases)
CACHE_20K_FILE=$VAR/upstream/readings-20k.json   # cache_20k: the upstream's fixed 20,480-byte JSON (written once)
R=$VAR/rendered

SERVERS=${SERVERS:-edge nginx}
TLS_CASES="tls_hs_new tls_hs_resumed tls_hs_new_stime tls_small tls_img"
API_CASES="api api_1k"
RL_CASES="api api_rl api_rl_redis"   # issue 7: the limiter off / local / Redis (not in the default CASES)
CACHE_CASES="cache_small cache_20k"  # issue 6: cache hits through edge / nginx proxy_cache / Varnish (not in the default CASES)
H2_CASES="h2_small h2_js_br"         # issue 9: HTTP/2 over TLS through edge / nginx (http2) / h2o (not in the default CASES)
CASES=${CASES:-small index spa js_id img js_br js_gz js_br_mem js_gz_mem $TLS_CASES $API_CASES}
CASES=$(for c in $CASES; do case $c in tls) echo $TLS_CASES ;; proxy) echo $API_CASES ;; rl) echo $RL_CASES ;; cache) echo $CACHE_CASES ;; h2) echo $H2_CASES ;; *) echo "$c" ;; esac; done |
        tr ' ' '\n' | awk '!seen[$0]++' | xargs)   # each case once ("proxy rl" names api twice)
RUNS=${RUNS:-3}; DUR=${DUR:-6}; WARMUP=${WARMUP:-1}; CONN=${CONN:-64}
API_1K_CONN=${API_1K_CONN:-1000}; API_PATH=${API_PATH:-/api/readings}
UPSTREAM_PORT=${UPSTREAM_PORT:-9101}; HAPROXY_PORT=${HAPROXY_PORT:-8186}; UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-64}
NOFILE=${NOFILE:-65536}; PROBE_CONC_SECS=${PROBE_CONC_SECS:-1}
EDGE_PORT=${EDGE_PORT:-8180}; NGINX_PORT=${NGINX_PORT:-8181}
EDGE_NOSIB_PORT=${EDGE_NOSIB_PORT:-8182}; NGINX_NOSIB_PORT=${NGINX_NOSIB_PORT:-8183}
EDGE_TLS_PORT=${EDGE_TLS_PORT:-8184}; NGINX_TLS_PORT=${NGINX_TLS_PORT:-8185}
NGINX_H2_PORT=${NGINX_H2_PORT:-8192}; H2O_PORT=${H2O_PORT:-8193}
H2_CONN=${H2_CONN:-64}; H2_STREAMS=${H2_STREAMS:-10}; H2_PROBE_REQS=${H2_PROBE_REQS:-640}
EDGE_RL_PORT=${EDGE_RL_PORT:-8187}; EDGE_RL_REDIS_PORT=${EDGE_RL_REDIS_PORT:-8188}; REDIS_PORT=${REDIS_PORT:-6390}
EDGE_CACHE_PORT=${EDGE_CACHE_PORT:-8189}; NGINX_CACHE_PORT=${NGINX_CACHE_PORT:-8190}; VARNISH_PORT=${VARNISH_PORT:-8191}
CACHE_TTL=${CACHE_TTL:-2h}; CACHE_20K_PATH=${CACHE_20K_PATH:-/api/readings-20k}; CACHE_BURST_SECS=${CACHE_BURST_SECS:-1}
UPSTREAM_STATUS_PATH=/bench-upstream-status   # stub_status on the upstream (cache cases): its request counter
RL_REQUESTS=100000000; RL_WINDOW=24h; RL_WINDOW_S=86400   # the rate-limit cases' limit (edge.toml.in; the probe checks q= and w=): never reached
HS_CONN=${HS_CONN:-1000}; STIME_SECS=${STIME_SECS:-5}; NGINX_TLS_SUITES=${NGINX_TLS_SUITES:-}
VARIANT_WAIT=${VARIANT_WAIT:-30}
SERVER_CPU=${SERVER_CPU:-0}; LOADGEN_CPU=${LOADGEN_CPU-1}
NGINX_OPEN_FILE_CACHE=${NGINX_OPEN_FILE_CACHE:-1}
EDGE_LOG_LEVEL=${EDGE_LOG_LEVEL:-warn}
BUILD_WAIT_MAX=${BUILD_WAIT_MAX:-3600}
QUIET_MAX=${QUIET_MAX:-25}; QUIET_WAIT=${QUIET_WAIT:-120}
STRICT=${STRICT:-0}; NO_INSTALL=${NO_INSTALL:-0}; PROBE_ONLY=${PROBE_ONLY:-0}
EDGE_LABEL=${EDGE_LABEL:-edge}; NGINX_LABEL=${NGINX_LABEL:-nginx}; HAPROXY_LABEL=${HAPROXY_LABEL:-haproxy}
VARNISH_LABEL=${VARNISH_LABEL:-varnish}; H2O_LABEL=${H2O_LABEL:-h2o}
EDGE_BIN=${EDGE_BIN:-build/edge}
case $EDGE_BIN in /*) ;; *) EDGE_BIN=$REPO/$EDGE_BIN ;; esac
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
REDIS_BIN=${REDIS_BIN:-/usr/bin/redis-server}
VARNISH_BIN=${VARNISH_BIN:-/usr/sbin/varnishd}
H2O_BIN=${H2O_BIN:-/usr/bin/h2o}

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 2; }
has() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
has_case() { case " $CASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# js_*_mem cases run against the no-sibling site (second edge instance, second nginx server block).
is_mem_case() { case $1 in *_mem) return 0 ;; *) return 1 ;; esac; }
any_mem_case() { local c; for c in $CASES; do is_mem_case "$c" && return 0; done; return 1; }
# tls_* cases run against the TLS listener of the same process (EDGE_TLS_PORT / NGINX_TLS_PORT).
is_tls_case() { case $1 in tls_*) return 0 ;; *) return 1 ;; esac; }
any_tls_case() { local c; for c in $CASES; do is_tls_case "$c" && return 0; done; return 1; }
# api cases go through the proxy route to the fast upstream (UPSTREAM_PORT); haproxy runs only these.
# (the cache cases are api cases too: same upstream, same body checks; haproxy does not run them)
is_api_case() { case $1 in api|api_1k|api_rl|api_rl_redis|cache_small|cache_20k) return 0 ;; *) return 1 ;; esac; }
any_api_case() { local c; for c in $CASES; do is_api_case "$c" && return 0; done; return 1; }
# the api cases all three proxies run (haproxy is started only for these)
any_proxy_case() { local c; for c in $CASES; do case $c in api|api_1k) return 0 ;; esac; done; return 1; }
# rate-limit cases (issue 7): edge only, each on its own edge process (edge_rl / edge_rl_redis)
is_rl_case() { case $1 in api_rl|api_rl_redis) return 0 ;; *) return 1 ;; esac; }
# cache-hit cases (issue 6): each server's cache on a port of its own (edge_cache, nginx's cache server, varnish)
is_cache_case() { case $1 in cache_small|cache_20k) return 0 ;; *) return 1 ;; esac; }
any_cache_case() { local c; for c in $CASES; do is_cache_case "$c" && return 0; done; return 1; }
# h2_* cases (issue 9): h2load over TLS, h2 by ALPN: edge's TLS listener, nginx's http2 server, h2o
is_h2_case() { case $1 in h2_small|h2_js_br) return 0 ;; *) return 1 ;; esac; }
any_h2_case() { local c; for c in $CASES; do is_h2_case "$c" && return 0; done; return 1; }
any_https_case() { any_tls_case || any_h2_case; }   # the certificate and edge's TLS listener are needed
conn_of() { if [ "$1" = api_1k ]; then echo "$API_1K_CONN"; else echo "$CONN"; fi; }   # wrk -c of a case
anchor_case() { # the case name ../shared/anchors/run.sh knows (js_br_mem -> js_br, tls_small -> small, api_1k -> api)
  case $1 in tls_hs_new) echo hs_new ;; tls_*) echo "${1#tls_}" ;; api_*|cache_*) echo api ;; *) echo "${1%_mem}" ;; esac
}
skip_reason() { # skip_reason SERVER CASE -> why this server does not run this case (empty: it runs it)
  # nginx has no on-the-fly brotli in Debian 12 (libnginx-mod-http-brotli-static is the static half only)
  if [ "$1" = h2o ] && ! is_h2_case "$2"; then echo "h2o_runs_only_the_h2_cases_(issue_9)"
  elif [ "$1" = varnish ] && ! is_cache_case "$2"; then echo "varnish_is_a_cache_only_(cache_cases)"
  elif [ "$1" = haproxy ] && is_cache_case "$2"; then echo "haproxy_has_no_cache_here_(cache_cases:_edge,_nginx,_varnish)"
  elif [ "$1" = nginx ] && [ "$2" = js_br_mem ]; then echo "Debian's_nginx_has_no_on-the-fly_brotli"
  elif [ "$1" != edge ] && is_rl_case "$2"; then echo "edge's_rate_limit_(issue_7):_edge_only"
  elif [ "$1" = haproxy ] && ! is_api_case "$2"; then echo "haproxy_is_a_proxy_only_(api_cases)"; fi
}
skipped() { [ -n "$(skip_reason "$1" "$2")" ]; }
brotli_mod() { # path of Debian's brotli_static nginx module, or nothing
  local f
  for f in /usr/lib/nginx/modules/ngx_http_brotli_static_module.so /usr/share/nginx/modules/ngx_http_brotli_static_module.so \
           $(dpkg -L libnginx-mod-http-brotli-static 2>/dev/null | grep 'ngx_http_brotli_static_module\.so$'); do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 0
}

# ---------------------------------------------------------------- preconditions
for s in $SERVERS; do case $s in edge|nginx|haproxy|varnish|h2o) ;; *) die "unknown server '$s' in SERVERS (edge, nginx, haproxy, varnish, h2o)";; esac; done
has haproxy && ! any_proxy_case && say "haproxy runs only the api cases api/api_1k (CASES has none): it is not started"
has varnish && ! any_cache_case && say "varnish runs only the cache cases cache_small/cache_20k (CASES has none): it is not started"
has h2o && ! any_h2_case && say "h2o runs only the HTTP/2 cases h2_small/h2_js_br (CASES has none): it is not started"
case $H2_PROBE_REQS in ''|*[!0-9]*) die "H2_PROBE_REQS must be a whole number (0 = no h2load probe)";; esac
case $CACHE_BURST_SECS in ''|*[!0-9]*) die "CACHE_BURST_SECS must be a whole number of seconds";; esac
case $CACHE_20K_PATH in /api/?*) ;; *) die "CACHE_20K_PATH must be under /api/ (the caches' routes)";; esac
[[ $CACHE_TTL =~ ^[1-9][0-9]*[smh]$ ]] || die "CACHE_TTL must be a number and s, m or h, like 2h (edge, nginx and VCL all read it)"
case $API_1K_CONN in ''|*[!0-9]*|0) die "API_1K_CONN must be a positive number";; esac
if has edge && [ ! -x "$EDGE_BIN" ]; then
  die "edge binary not found at $EDGE_BIN — build it first (cmake) or set EDGE_BIN=/path/to/edge; SERVERS=nginx runs the nginx half alone"
fi
[ "$(nproc)" -ge 2 ] || say "warning: fewer than 2 CPUs; server and load generator will share a core"
case $SERVER_CPU in ''|*[!0-9]*) die "SERVER_CPU must be a CPU number";; esac

# Tools. Debian package names; installing is allowed but must not leave a system nginx running.
need_pkgs=()
{ has nginx || any_api_case; } && [ ! -x "$NGINX_BIN" ] && need_pkgs+=(nginx)   # the api cases' upstream is nginx too
has haproxy && any_proxy_case && [ ! -x "$HAPROXY_BIN" ] && need_pkgs+=(haproxy)
has edge && has_case api_rl_redis && { [ ! -x "$REDIS_BIN" ] || ! command -v redis-cli >/dev/null; } &&
  need_pkgs+=(redis-server)   # pulls redis-tools (redis-cli)
has varnish && any_cache_case && [ ! -x "$VARNISH_BIN" ] && need_pkgs+=(varnish)   # compiles its VCL with the system cc
has h2o && any_h2_case && [ ! -x "$H2O_BIN" ] && need_pkgs+=(h2o)
has nginx && { has_case js_br || has_case h2_js_br; } && [ -z "$(brotli_mod)" ] && need_pkgs+=(libnginx-mod-http-brotli-static)   # brotli_static
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v brotli >/dev/null || need_pkgs+=(brotli)     # make-site.sh writes .br siblings
command -v openssl >/dev/null || need_pkgs+=(openssl)
{ has_case tls_hs_new || any_h2_case; } && ! command -v h2load >/dev/null && need_pkgs+=(nghttp2-client)   # h2load
any_h2_case && ! curl -V 2>/dev/null | grep -qw HTTP2 && die "this curl has no HTTP/2 (the h2_* probe needs curl --http2)"
command -v taskset >/dev/null || need_pkgs+=(util-linux)
command -v python3 >/dev/null || need_pkgs+=(python3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$NO_INSTALL" = 1 ] && die "missing: ${need_pkgs[*]} (NO_INSTALL=1)"
  [ "$(id -u)" = 0 ] || die "missing: ${need_pkgs[*]} — run: sudo apt-get install -y ${need_pkgs[*]}"
  say "installing ${need_pkgs[*]}"
  sys_pid_before=$(cat /run/nginx.pid 2>/dev/null || true); sys_hap_before=$(cat /run/haproxy.pid 2>/dev/null || true)
  sys_redis_before=$(cat /run/redis/redis-server.pid 2>/dev/null || true)
  sys_varnish_before=$(cat /run/varnishd.pid 2>/dev/null || true)
  sys_h2o_before=$(cat /run/h2o.pid 2>/dev/null || true)
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends \
    "${need_pkgs[@]}" >"$VAR/apt.log" 2>&1 || { tail -20 "$VAR/apt.log" >&2; die "apt-get install failed (log: $VAR/apt.log)"; }
  # The Debian package may start its own nginx on :80 (when no policy-rc.d forbids it).
  # That one was started by this install, so stop it; we never use port 80.
  sys_pid=$(cat /run/nginx.pid 2>/dev/null || true)
  if [ -n "$sys_pid" ] && [ "$sys_pid" != "$sys_pid_before" ] && kill -0 "$sys_pid" 2>/dev/null; then
    say "the nginx package started a system nginx (pid $sys_pid, :80); stopping it"
    if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
      systemctl stop nginx; systemctl disable nginx >/dev/null 2>&1 || true
    else
      kill -QUIT "$sys_pid" 2>/dev/null || true
    fi
  fi
  # Same for the haproxy package (its default config listens nowhere, but the service would run).
  sys_pid=$(cat /run/haproxy.pid 2>/dev/null || true)
  if [ -n "$sys_pid" ] && [ "$sys_pid" != "$sys_hap_before" ] && kill -0 "$sys_pid" 2>/dev/null; then
    say "the haproxy package started a system haproxy (pid $sys_pid); stopping it"
    if command -v systemctl >/dev/null && systemctl is-active --quiet haproxy 2>/dev/null; then
      systemctl stop haproxy; systemctl disable haproxy >/dev/null 2>&1 || true
    else
      kill -TERM "$sys_pid" 2>/dev/null || true
    fi
  fi
  # And for redis-server (its service listens on 127.0.0.1:6379; the bench's Redis is our own on REDIS_PORT).
  sys_pid=$(cat /run/redis/redis-server.pid 2>/dev/null || true)
  if [ -n "$sys_pid" ] && [ "$sys_pid" != "$sys_redis_before" ] && kill -0 "$sys_pid" 2>/dev/null; then
    say "the redis-server package started a system redis (pid $sys_pid, :6379); stopping it"
    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
      systemctl stop redis-server; systemctl disable redis-server >/dev/null 2>&1 || true
    else
      kill -TERM "$sys_pid" 2>/dev/null || true
    fi
  fi
  # And for varnish (its service listens on :6081; the bench's Varnish is our own on VARNISH_PORT).
  sys_pid=$(cat /run/varnishd.pid 2>/dev/null || true)
  if command -v systemctl >/dev/null && systemctl is-active --quiet varnish 2>/dev/null; then
    say "the varnish package started a system varnish service; stopping it"
    systemctl stop varnish; systemctl disable varnish >/dev/null 2>&1 || true
  elif [ -n "$sys_pid" ] && [ "$sys_pid" != "$sys_varnish_before" ] && kill -0 "$sys_pid" 2>/dev/null; then
    say "the varnish package started a system varnishd (pid $sys_pid, :6081); stopping it"
    kill -TERM "$sys_pid" 2>/dev/null || true
  fi
  # And for h2o (Debian's /etc/h2o/h2o.conf listens on :80, pid-file /run/h2o.pid).
  sys_pid=$(cat /run/h2o.pid 2>/dev/null || true)
  if command -v systemctl >/dev/null && systemctl is-active --quiet h2o 2>/dev/null; then
    say "the h2o package started a system h2o service; stopping it"
    systemctl stop h2o; systemctl disable h2o >/dev/null 2>&1 || true
  elif [ -n "$sys_pid" ] && [ "$sys_pid" != "$sys_h2o_before" ] && kill -0 "$sys_pid" 2>/dev/null; then
    say "the h2o package started a system h2o (pid $sys_pid, :80); stopping it"
    kill -TERM "$sys_pid" 2>/dev/null || true
  fi
fi
has haproxy && any_proxy_case && { [ -x "$HAPROXY_BIN" ] || die "haproxy still missing ($HAPROXY_BIN)"; }
has edge && has_case api_rl_redis && { [ -x "$REDIS_BIN" ] && command -v redis-cli >/dev/null ||
  die "redis-server ($REDIS_BIN) or redis-cli still missing (Debian packages redis-server, redis-tools)"; }
any_api_case && { [ -x "$NGINX_BIN" ] || die "nginx (the api cases' upstream) still missing ($NGINX_BIN)"; }
has varnish && any_cache_case && { [ -x "$VARNISH_BIN" ] || die "varnishd still missing ($VARNISH_BIN; Debian package varnish)"; }
has h2o && any_h2_case && { [ -x "$H2O_BIN" ] || die "h2o still missing ($H2O_BIN; Debian package h2o)"; }
any_h2_case && { command -v h2load >/dev/null || die "h2load still missing (Debian package nghttp2-client)"; }
for t in wrk curl brotli gzip taskset python3; do command -v $t >/dev/null || die "$t still missing"; done
BROTLI_MOD=$(brotli_mod)

# Open files: 1000 client connections (api_1k) through a proxy are 1000 more to the upstream, and wrk,
# edge and haproxy inherit this shell's limit (nginx sets its own: worker_rlimit_nofile 20000). Raise
# the soft limit to NOFILE (and the hard one when root may), else as far as the hard limit allows.
nofile_before=$(ulimit -Sn)
if [ "$nofile_before" != unlimited ] && [ "$nofile_before" -lt "$NOFILE" ]; then
  ulimit -n "$NOFILE" 2>/dev/null || ulimit -Sn "$NOFILE" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
fi
NOFILE_NOW=$(ulimit -Sn)
if [ "$NOFILE_NOW" != "$nofile_before" ]; then say "open-files limit raised: $nofile_before -> $NOFILE_NOW (hard $(ulimit -Hn))"
elif [ "$NOFILE_NOW" != unlimited ] && [ "$NOFILE_NOW" -lt "$NOFILE" ]; then
  say "open-files limit stays $NOFILE_NOW: the hard limit is $(ulimit -Hn) and may not be raised here (NOFILE=$NOFILE)"
fi
if has_case api_1k && [ "$NOFILE_NOW" != unlimited ] && [ "$NOFILE_NOW" -lt $(( API_1K_CONN * 2 + 1000 )) ]; then
  die "open-files limit $NOFILE_NOW is too low for api_1k ($API_1K_CONN client + $API_1K_CONN upstream connections); raise the hard limit (ulimit -Hn)"
fi
has nginx && { has_case js_br || has_case h2_js_br; } && [ -z "$BROTLI_MOD" ] &&
  say "warning: nginx brotli_static module not found (libnginx-mod-http-brotli-static); nginx js_br/h2_js_br will be served without brotli"

# ---------------------------------------------------------------- helpers
descendants() { local p=$1; echo "$p"; for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do descendants "$c"; done; }

mem_tree() { # mem_tree PID -> "rss_kb=.. pss_kb=.. procs=.. threads=.." (sums over the process tree)
  local rss=0 pss=0 n=0 thr=0 p v
  for p in $(descendants "$1"); do
    [ -r /proc/$p/status ] || continue
    v=$(awk '/^VmRSS:/{print $2}' /proc/$p/status); rss=$((rss + ${v:-0}))
    v=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null); pss=$((pss + ${v:-0}))
    v=$(awk '/^Threads:/{print $2}' /proc/$p/status); thr=$((thr + ${v:-0}))
    n=$((n + 1))
  done
  echo "rss_kb=$rss pss_kb=$pss procs=$n threads=$thr"
}

port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

build_busy() { # a compiler/build is running on this machine (never benchmark during a build)
  pgrep -f 'cc1plus|cmake --build|ninja|collect2|(^|/)g?make( |$)' >/dev/null
}
wait_no_build() {
  local waited=0
  while build_busy; do
    [ $waited = 0 ] && say "a build is running ($(pgrep -af 'cc1plus|cmake --build|ninja|collect2|(^|/)g?make( |$)' | head -1 | cut -c1-80)…); waiting"
    [ $waited -ge "$BUILD_WAIT_MAX" ] && die "build still running after ${BUILD_WAIT_MAX}s; giving up"
    sleep 10; waited=$((waited + 10))
  done
  [ $waited -gt 0 ] && { say "build finished after ~${waited}s; settling 5 s"; sleep 5; }
  return 0
}

busy_pct() { # busy % of all CPUs over 1 s (our servers are idle between measurements: this is others' load)
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat); sleep 1
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  echo "$a $b" | awk '{d=$4-$2; v=(d>0) ? 100*($3-$1)/d : 0; printf "%.0f", v}'
}
PRE_BUSY=0
wait_quiet() { # wait (up to QUIET_WAIT s) until other processes use at most QUIET_MAX % of the machine
  local waited=0
  PRE_BUSY=$(busy_pct)
  while [ "$PRE_BUSY" -gt "$QUIET_MAX" ] && [ $waited -lt "$QUIET_WAIT" ]; do
    [ $waited = 0 ] && say "machine busy (${PRE_BUSY}% of all CPUs used by other processes); waiting up to ${QUIET_WAIT}s for < ${QUIET_MAX}%"
    sleep 4; waited=$((waited + 5)); PRE_BUSY=$(busy_pct)
  done
  [ "$PRE_BUSY" -gt "$QUIET_MAX" ] && say "still ${PRE_BUSY}% busy; measuring anyway (pre_busy recorded)"
  return 0
}

# ---------------------------------------------------------------- server lifecycle
declare -A PID PORT
PORT[edge]=$EDGE_PORT; PORT[nginx]=$NGINX_PORT; PORT[edge_nosib]=$EDGE_NOSIB_PORT
PORT[haproxy]=$HAPROXY_PORT; PORT[upstream]=$UPSTREAM_PORT
PORT[edge_rl]=$EDGE_RL_PORT; PORT[edge_rl_redis]=$EDGE_RL_REDIS_PORT; PORT[redis]=$REDIS_PORT
PORT[edge_cache]=$EDGE_CACHE_PORT; PORT[varnish]=$VARNISH_PORT; PORT[h2o]=$H2O_PORT
# Processes started here: the servers, plus a second edge (edge_nosib, the no-sibling site) when a
# js_*_mem case is asked for. nginx serves both sites from one process (two server blocks).
# haproxy only when an api case is asked for; then also the fast upstream (an nginx on the load CPU),
# listed first so it is up before the proxies and stopped with them.
# The rate-limit cases add an edge per limiter (edge_rl: memory store, edge_rl_redis: Redis store) and,
# for the Redis one, a redis-server on the load CPU (listed last: stopped after the edge that uses it).
# The cache cases add an edge with the cached /api/ route (edge_cache) and Varnish (when SERVERS names it);
# nginx's cache is a server block of the same nginx.
INSTANCES=""
any_api_case && INSTANCES="upstream"
for s in $SERVERS; do
  [ "$s" = haproxy ] && ! any_proxy_case && continue
  [ "$s" = varnish ] && ! any_cache_case && continue
  [ "$s" = h2o ] && ! any_h2_case && continue
  INSTANCES="$INSTANCES $s"
  [ "$s" = edge ] && any_cache_case && INSTANCES="$INSTANCES edge_cache"
  [ "$s" = edge ] && any_mem_case && INSTANCES="$INSTANCES edge_nosib"
  [ "$s" = edge ] && has_case api_rl && INSTANCES="$INSTANCES edge_rl"
  [ "$s" = edge ] && has_case api_rl_redis && INSTANCES="$INSTANCES edge_rl_redis"
done
case " $INSTANCES " in *" edge_rl_redis "*) INSTANCES="$INSTANCES redis" ;; esac
inst_of() { # inst_of SERVER CASE -> the process instance that serves this case
  if [ "$1" = edge ] && is_mem_case "$2"; then echo edge_nosib
  elif [ "$1" = edge ] && is_rl_case "$2"; then echo "$2" | sed 's/^api_/edge_/'   # api_rl -> edge_rl, api_rl_redis -> edge_rl_redis
  elif [ "$1" = edge ] && is_cache_case "$2"; then echo edge_cache
  else echo "$1"; fi
}
port_of() { # port_of SERVER CASE (the api cases use each server's main port; haproxy has only HAPROXY_PORT)
  if [ "$1" = haproxy ]; then echo "$HAPROXY_PORT"
  elif [ "$1" = varnish ]; then echo "$VARNISH_PORT"
  elif [ "$1" = h2o ]; then echo "$H2O_PORT"
  elif is_h2_case "$2"; then [ "$1" = edge ] && echo "$EDGE_TLS_PORT" || echo "$NGINX_H2_PORT"
  elif is_rl_case "$2"; then echo "${PORT[$(inst_of "$1" "$2")]}"
  elif is_cache_case "$2"; then [ "$1" = edge ] && echo "$EDGE_CACHE_PORT" || echo "$NGINX_CACHE_PORT"
  elif is_tls_case "$2"; then [ "$1" = edge ] && echo "$EDGE_TLS_PORT" || echo "$NGINX_TLS_PORT"
  elif is_mem_case "$2"; then [ "$1" = edge ] && echo "$EDGE_NOSIB_PORT" || echo "$NGINX_NOSIB_PORT"
  else echo "${PORT[$1]}"; fi
}
mkdir -p "$VAR/run" "$VAR/log" "$R" "$VAR/nginx-tmp" "$VAR/results"

stop_server() { # stop_server NAME — TERM the recorded PID, then KILL what is left of its tree
  local name=$1 f=$VAR/run/$1.pid pid tree
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  # Only a process that is really ours: started by this invocation, or (a PID file left by an
  # interrupted run) a process whose command line names a config rendered by this script.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
     { [ "$pid" = "${PID[$name]:-}" ] || tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null | grep -qF "$R/"; }; then
    tree=$(descendants "$pid" | tr '\n' ' ')
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    for p in $tree; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
    wait "$pid" 2>/dev/null
    say "$name stopped (pid $pid)"
  fi
  rm -f "$f"
}
SAMPLER=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  for s in $INSTANCES; do stop_server "$s"; done
}

start_server() { # start_server NAME CMD... — foreground process pinned to SERVER_CPU; $! is its PID
  start_server_on "$SERVER_CPU" "$@"
}
start_server_on() { # start_server_on CPU NAME CMD... — the same, pinned to CPU ("" = not pinned)
  local cpu=$1 name=$2; shift 2
  local port=${PORT[$name]} pin=(env) wait=${START_WAIT:-10}; [ -n "$cpu" ] && pin=(taskset -c "$cpu")
  stop_server "$name"          # a PID left over from an interrupted run of this script
  port_open "$port" && die "port $port is already in use by something else; set ${name^^}_PORT"
  nohup "${pin[@]}" "$@" >"$VAR/log/$name.out" 2>&1 &
  PID[$name]=$!; echo "${PID[$name]}" > "$VAR/run/$name.pid"
  for _ in $(seq 1 $((wait * 10))); do
    port_open "$port" && { say "$name started: pid ${PID[$name]}, cpu ${cpu:-any}, http://127.0.0.1:$port"; return 0; }
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  say "$name did not open port $port; last lines of $VAR/log/$name.out:"; tail -20 "$VAR/log/$name.out" >&2
  return 1
}

# ---------------------------------------------------------------- site and configs
if [ ! -f "$SITE/index.html" ] || [ ! -f "$SITE/assets/hero-Bx8nR2Tq.jpg" ] || [ ! -f "$SITE/assets/index-Cq7Lx2Vd.js" ]; then
  say "generating the site in $SITE"
  "$ANCH/make-site.sh" "$SITE" >"$VAR/log/make-site.out" 2>&1 || { cat "$VAR/log/make-site.out" >&2; die "make-site.sh failed"; }
fi
JS=assets/index-Cq7Lx2Vd.js
for e in br gz; do [ -f "$SITE/$JS.$e" ] || say "warning: $SITE/$JS.$e is missing (make-site.sh writes it with brotli/gzip)"; done
# The no-sibling copy (js_*_mem): same files and mtimes, every .br/.gz/.zst deleted. Remade when it
# is missing, still has a sibling, or its JS differs from the site's.
nosib_ok() {
  [ -f "$SITE_NOSIB/index.html" ] && cmp -s "$SITE/$JS" "$SITE_NOSIB/$JS" &&
    [ -z "$(find "$SITE_NOSIB" -type f \( -name '*.br' -o -name '*.gz' -o -name '*.zst' \) | head -1)" ]
}
if ! nosib_ok; then
  say "copying the site without precompressed siblings to $SITE_NOSIB"
  rm -rf "$SITE_NOSIB.tmp" && cp -a "$SITE" "$SITE_NOSIB.tmp" &&
    find "$SITE_NOSIB.tmp" -type f \( -name '*.br' -o -name '*.gz' -o -name '*.zst' \) -delete &&
    rm -rf "$SITE_NOSIB" && mv "$SITE_NOSIB.tmp" "$SITE_NOSIB" || die "could not make $SITE_NOSIB"
  nosib_ok || die "$SITE_NOSIB is not a sibling-free copy of $SITE"
fi

# The TLS certificate both servers use (tls_* cases): ECDSA P-256, self-signed for localhost and
# 127.0.0.1, made with openssl exactly like ../shared/anchors/servers.sh does. Made once; remade when
# it is not P-256 or the key does not match it.
CERTS=$VAR/certs; CERT=$CERTS/ecdsa.crt; CERT_KEY=$CERTS/ecdsa.key; CERT_FP=""
cert_ok() {
  [ -s "$CERT" ] && [ -s "$CERT_KEY" ] &&
    openssl x509 -in "$CERT" -noout -text 2>/dev/null | grep -q 'ASN1 OID: prime256v1' &&
    [ "$(openssl x509 -in "$CERT" -noout -pubkey 2>/dev/null)" = "$(openssl pkey -in "$CERT_KEY" -pubout 2>/dev/null)" ]
}
if any_https_case; then
  if ! cert_ok; then
    say "making the ECDSA P-256 test certificate in $CERTS"
    mkdir -p "$CERTS"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
      -keyout "$CERT_KEY" -out "$CERT" -subj /CN=localhost \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>"$VAR/log/openssl-req.err" ||
      { cat "$VAR/log/openssl-req.err" >&2; die "openssl could not make $CERT"; }
    chmod 644 "$CERT"; chmod 600 "$CERT_KEY"
    cert_ok || die "$CERT is not an ECDSA P-256 certificate matching $CERT_KEY"
  fi
  CERT_FP=$(openssl x509 -in "$CERT" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g')
fi

# The 6 security headers of the anchors, as one TOML inline table (edge) and as the nginx include.
cmp -s "$BENCH/conf/nginx-sec-headers.inc" "$ANCH/conf/nginx-sec-headers.inc" ||
  say "warning: bench/conf/nginx-sec-headers.inc differs from $ANCH/conf/nginx-sec-headers.inc"
SEC_NAMES=$(awk '$1=="add_header"{print $2}' "$ANCH/conf/nginx-sec-headers.inc")
EDGE_HEADERS=$(awk '$1=="add_header"{ v=$0; sub(/^[^"]*"/, "", v); sub(/"[^"]*$/, "", v);
                  gsub(/\\/, "\\\\", v); printf "%s\"%s\" = \"%s\"", sep, $2, v; sep=", " }' "$ANCH/conf/nginx-sec-headers.inc")
[ "$(echo "$SEC_NAMES" | wc -l)" = 6 ] || say "warning: expected 6 security headers, found: $SEC_NAMES"

cpumask_of() { # nginx worker_cpu_affinity mask of one CPU: 0 -> 01, 1 -> 10, 2 -> 100
  local m=1; for _ in $(seq 1 "$1"); do m=${m}0; done; [ "$1" = 0 ] && m=01; echo "$m"
}
cpumask=$(cpumask_of "$SERVER_CPU")
if [ "$NGINX_OPEN_FILE_CACHE" = 1 ]; then
  OFC="    open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s; open_file_cache_min_uses 1; open_file_cache_errors on;"
else
  OFC="    # open_file_cache off (NGINX_OPEN_FILE_CACHE=0, as in the anchors)"
fi
esc() { printf '%s' "$1" | sed -e 's/[\\&#]/\\&/g'; }   # for sed replacement text
if [ -n "$BROTLI_MOD" ]; then
  LOADMOD="load_module $BROTLI_MOD;"; BROTLI="    brotli_static on;"
else
  LOADMOD="# brotli_static module not installed (libnginx-mod-http-brotli-static)"; BROTLI="    # brotli_static: module missing"
fi
# Lines starting with __TLS__ in the templates are the TLS listener: kept (prefix removed) when a
# tls_* case is asked for, deleted otherwise (so a run without TLS cases renders what it always did).
TLS_SED=(-e '/^__TLS__/d'); any_tls_case && TLS_SED=(-e 's/^__TLS__//')
# edge's TLS listener serves the h2_* cases too (nginx has a server of its own for them: __H2__ lines)
EDGE_TLS_SED=(-e '/^__TLS__/d'); any_https_case && EDGE_TLS_SED=(-e 's/^__TLS__//')
H2_SED=(-e '/^__H2__/d'); any_h2_case && H2_SED=(-e 's/^__H2__//')
# Lines starting with __API__ are the /api/ proxy (upstream pool + route): kept only for the api cases.
API_SED=(-e '/^__API__/d'); any_api_case && API_SED=(-e 's/^__API__//')
# Lines starting with __CACHE__ are the cache cases' (nginx: proxy_cache_path + the cache server): only for them.
CACHE_SED=(-e '/^__CACHE__/d'); any_cache_case && CACHE_SED=(-e 's/^__CACHE__//')
if [ -n "$NGINX_TLS_SUITES" ]; then
  NGINX_TLS_EXTRA="        ssl_prefer_server_ciphers on; ssl_conf_command Ciphersuites $NGINX_TLS_SUITES;   # NGINX_TLS_SUITES"
else
  NGINX_TLS_EXTRA="        ssl_prefer_server_ciphers off;   # the client's TLS 1.3 suite order, as in the anchors"
fi
render_edge() { # render_edge OUT PORT ROOT [tls] [api] [rl=STORE] [rlr] [cache]
  # rl=STORE keeps the __RL__ lines (the /api/ route's rate_limit and [rate_limit] store = STORE),
  # rlr also the __RLR__ ones (on_store_error = "deny" for the Redis store); cache keeps the __CACHE__
  # lines (the /api/ route's cache = { ttl = CACHE_TTL, override = true })
  local tls=(-e '/^__TLS__/d') api=(-e '/^__API__/d') rl=(-e '/^__RL__/d') rlr=(-e '/^__RLR__/d') cache=(-e '/^__CACHE__/d') store="" f
  for f in "${@:4}"; do case $f in tls) tls=("${EDGE_TLS_SED[@]}") ;; api) api=("${API_SED[@]}") ;;
    rl=*) rl=(-e 's/^__RL__//'); store=${f#rl=} ;; rlr) rlr=(-e 's/^__RLR__//') ;; cache) cache=(-e 's/^__CACHE__//') ;; esac; done
  sed "${tls[@]}" "${api[@]}" "${rl[@]}" "${rlr[@]}" "${cache[@]}" -e "s#__CACHE_TTL__#$CACHE_TTL#g" -e "s#__RL_STORE__#$(esc "$store")#g" \
      -e "s#__RL_REQUESTS__#$RL_REQUESTS#g" -e "s#__RL_WINDOW__#$RL_WINDOW#g" \
      -e "s#__LOG_LEVEL__#$(esc "$EDGE_LOG_LEVEL")#g" -e "s#__PORT__#$2#g" -e "s#__ROOT__#$(esc "$3")#g" \
      -e "s#__TLS_PORT__#$EDGE_TLS_PORT#g" -e "s#__CERT__#../certs/ecdsa.crt#g" -e "s#__KEY__#../certs/ecdsa.key#g" \
      -e "s#__UPSTREAM_PORT__#$UPSTREAM_PORT#g" -e "s#__UPSTREAM_KEEPALIVE__#$UPSTREAM_KEEPALIVE#g" \
      -e "s#__HEADERS__#$(esc "$EDGE_HEADERS")#g" "$BENCH/conf/edge.toml.in" > "$1"
}
render_edge "$R/edge.toml" "$EDGE_PORT" ../site tls api
render_edge "$R/edge-nosib.toml" "$EDGE_NOSIB_PORT" ../site-nosib
# The rate-limit cases: edge.toml's /api/ route (and static site) plus the limiter, one file per store.
render_edge "$R/edge-rl.toml" "$EDGE_RL_PORT" ../site api rl=memory
render_edge "$R/edge-rl-redis.toml" "$EDGE_RL_REDIS_PORT" ../site api rl=redis://127.0.0.1:$REDIS_PORT rlr
# The cache cases: edge.toml's /api/ route (and static site) plus the route's cache table.
render_edge "$R/edge-cache.toml" "$EDGE_CACHE_PORT" ../site api cache
sed "${TLS_SED[@]}" "${H2_SED[@]}" "${API_SED[@]}" "${CACHE_SED[@]}" -e "s#__CACHE_PORT__#$NGINX_CACHE_PORT#g" -e "s#__H2_PORT__#$NGINX_H2_PORT#g" -e "s#__UPSTREAM_PORT__#$UPSTREAM_PORT#g" -e "s#__UPSTREAM_KEEPALIVE__#$UPSTREAM_KEEPALIVE#g" \
    -e "s#__TLS_PORT__#$NGINX_TLS_PORT#g" -e "s#__CERT__#$(esc "$CERT")#g" -e "s#__KEY__#$(esc "$CERT_KEY")#g" \
    -e "s#__NGINX_TLS_EXTRA__#$(esc "$NGINX_TLS_EXTRA")#g" \
    -e "s#__VAR__#$(esc "$VAR")#g" -e "s#__SITE__#$(esc "$SITE")#g" -e "s#__CONF__#$(esc "$R")#g" \
    -e "s#__PORT__#$NGINX_PORT#g" -e "s#__NOSIB_PORT__#$NGINX_NOSIB_PORT#g" -e "s#__CPUMASK__#$cpumask#g" \
    -e "s#__OPEN_FILE_CACHE__#$(esc "$OFC")#g" -e "s#__LOAD_MODULES__#$(esc "$LOADMOD")#g" \
    -e "s#__BROTLI_STATIC__#$(esc "$BROTLI")#g" "$BENCH/conf/nginx.conf.in" > "$R/nginx.conf"
for f in nginx-site.inc nginx-sec-headers.inc nginx-api-proxy.inc; do
  sed -e "s#__SITE__#$(esc "$SITE")#g" -e "s#__CONF__#$(esc "$R")#g" "$BENCH/conf/$f" > "$R/$f"
done
sed -e "s#__SITE__#$(esc "$SITE_NOSIB")#g" -e "s#__CONF__#$(esc "$R")#g" "$BENCH/conf/nginx-site.inc" > "$R/nginx-site-nosib.inc"
# h2o (the h2_* cases): conf/h2o.conf.in, the anchors' h2o.conf shape, with the 6 security headers
# generated from the same nginx-sec-headers.inc as edge's and nginx's (h2o `header.add` lines)
awk '$1=="add_header"{ v=$0; sub(/^[^"]*"/, "", v); sub(/"[^"]*$/, "", v); gsub(/"/, "\\\"", v);
       printf "header.add: \"%s: %s\"\n", $2, v }' "$ANCH/conf/nginx-sec-headers.inc" > "$R/h2o-sec-headers.yaml"
sed -e "s#__VAR__#$(esc "$VAR")#g" -e "s#__SITE__#$(esc "$SITE")#g" -e "s#__PORT__#$H2O_PORT#g" \
    -e "s#__CERT__#$(esc "$CERT")#g" -e "s#__KEY__#$(esc "$CERT_KEY")#g" \
    -e "/__SEC_HEADERS__/{r $R/h2o-sec-headers.yaml" -e "d}" "$BENCH/conf/h2o.conf.in" > "$R/h2o.conf"

# The api cases: the fast upstream, rendered from the anchors' own file (same 291-byte JSON, 1 worker)
# with its port and CPU replaced (the anchors' 127.0.0.1:9001 / CPU1 -> UPSTREAM_PORT / LOADGEN_CPU),
# and HAProxy from bench/conf/haproxy.cfg.in (the anchors' haproxy.cfg) with the 6 security headers
# generated from the same nginx-sec-headers.inc as edge's and nginx's.
if any_api_case; then
  cmp -s "$BENCH/conf/nginx-api-proxy.inc" "$ANCH/conf/nginx-api-proxy.inc" ||
    say "warning: bench/conf/nginx-api-proxy.inc differs from $ANCH/conf/nginx-api-proxy.inc"
  if [ -n "$LOADGEN_CPU" ]; then UP_AFFINITY="worker_cpu_affinity $(cpumask_of "$LOADGEN_CPU");   # LOADGEN_CPU (bench/run.sh)"
  else UP_AFFINITY="# worker_cpu_affinity: LOADGEN_CPU is empty, not pinned (bench/run.sh)"; fi
  sed -e "s#__VAR__#$(esc "$VAR")#g" -e "s#listen 127\.0\.0\.1:9001 #listen 127.0.0.1:$UPSTREAM_PORT #" \
      -e "s#^worker_cpu_affinity 10;.*#$(esc "$UP_AFFINITY")#" "$ANCH/conf/nginx-upstream.conf" > "$R/nginx-upstream.conf"
  grep -q "listen 127.0.0.1:$UPSTREAM_PORT " "$R/nginx-upstream.conf" && grep -qF "$UP_AFFINITY" "$R/nginx-upstream.conf" ||
    die "could not set the port/CPU of $ANCH/conf/nginx-upstream.conf (expected 'listen 127.0.0.1:9001 ' and 'worker_cpu_affinity 10;')"
  if any_cache_case; then
    # The cache cases add two exact-match locations to the rendered upstream (the anchors' /api/
    # location, and so /api/readings, stay as they are): cache_20k's fixed JSON, and stub_status, whose
    # request counter shows whether a cache let anything through.
    awk -v p="$CACHE_20K_PATH" -v f="$CACHE_20K_FILE" -v st="$UPSTREAM_STATUS_PATH" '
      /^ *location \/ \{ return 404; \}/ && !done {
        print "        # bench/run.sh, cache cases only: cache_20k'"'"'s fixed JSON (written once) and the request counter"
        print "        location = " p " { types { } default_type application/json; alias " f "; }"
        print "        location = " st " { stub_status; }"
        done = 1 }
      { print } END { if (!done) exit 1 }' "$R/nginx-upstream.conf" > "$R/nginx-upstream.conf.tmp" &&
      mv "$R/nginx-upstream.conf.tmp" "$R/nginx-upstream.conf" ||
      die "could not add the cache cases' locations to $R/nginx-upstream.conf (expected 'location / { return 404; }')"
  fi
  awk '$1=="add_header"{ v=$0; sub(/^[^"]*"/, "", v); sub(/"[^"]*$/, "", v);
         printf "    http-response set-header %s \"%s\"\n", $2, v }' "$ANCH/conf/nginx-sec-headers.inc" > "$R/haproxy-sec-headers.cfg"
  sed -e "s#__VAR__#$(esc "$VAR")#g" -e "s#__PORT__#$HAPROXY_PORT#g" -e "s#__UPSTREAM_PORT__#$UPSTREAM_PORT#g" \
      -e "s#__API_PREFIX__#/api/#g" -e "/__SEC_HEADERS__/{r $R/haproxy-sec-headers.cfg" -e "d}" \
      "$BENCH/conf/haproxy.cfg.in" > "$R/haproxy.cfg"
  "$NGINX_BIN" -t -q -p "$VAR" -e "$VAR/log/upstream.error.log" -c "$R/nginx-upstream.conf" 2>"$VAR/log/upstream.check" ||
    { cat "$VAR/log/upstream.check" >&2; die "nginx -t rejected $R/nginx-upstream.conf"; }
  if has haproxy && any_proxy_case; then
    "$HAPROXY_BIN" -c -q -f "$R/haproxy.cfg" >"$VAR/log/haproxy.check" 2>&1 ||
      { cat "$VAR/log/haproxy.check" >&2; die "haproxy -c rejected $R/haproxy.cfg"; }
  fi
fi

# The cache cases (issue 6): cache_20k's body (made once, deterministic), nginx's cache include and
# Varnish's VCL, both rendered from the anchors' own files with the upstream port and the lifetime
# (CACHE_TTL instead of the anchors' 10 s) replaced.
if any_cache_case; then
  mkdir -p "$(dirname "$CACHE_20K_FILE")" "$VAR/nginx-cache" "$VAR/varnish"
  python3 - "$CACHE_20K_FILE.tmp" <<'JSON' || die "could not write $CACHE_20K_FILE"
import json, sys
N = 20480   # bytes, newline included (the anchors' 291-byte JSON ends with one too)
head = '{"ok":true,"station":"ST-0042","unit":"C","readings":['
tail = '],"alerts":[],"source":"bench-upstream","version":"1.0.0","trace":"0af7651916cd43dd","pad":"'
end = '"}\n'
items, i = [], 0
while True:
    it = '{"t":"2024-06-01T%02d:%02d:00Z","v":%.1f}' % (i // 60, i % 60, 18.0 + (i * 37 % 71) / 10)
    if len(head) + len(",".join(items + [it])) + len(tail) + len(end) > N:
        break
    items.append(it); i += 1
body = head + ",".join(items) + tail
body += "0" * (N - len(body) - len(end)) + end
assert len(body.encode()) == N and json.loads(body)["readings"]
open(sys.argv[1], "w").write(body)
JSON
  if cmp -s "$CACHE_20K_FILE.tmp" "$CACHE_20K_FILE"; then rm -f "$CACHE_20K_FILE.tmp"; else mv "$CACHE_20K_FILE.tmp" "$CACHE_20K_FILE"; fi
  sed -e "s#__CONF__#$(esc "$R")#g" \
      -e "s|proxy_cache_valid 200 10s;|proxy_cache_valid 200 $CACHE_TTL;   # CACHE_TTL (bench/run.sh; the anchors': 10s)|" \
      "$ANCH/conf/nginx-api-cache.inc" > "$R/nginx-api-cache.inc"
  grep -q "proxy_cache_valid 200 $CACHE_TTL;" "$R/nginx-api-cache.inc" && grep -q 'X-Cache \$upstream_cache_status' "$R/nginx-api-cache.inc" ||
    die "could not render $ANCH/conf/nginx-api-cache.inc (expected 'proxy_cache_valid 200 10s;' and 'add_header X-Cache \$upstream_cache_status')"
  sed -e "s|\.port = \"9001\";|.port = \"$UPSTREAM_PORT\";   # UPSTREAM_PORT (bench/run.sh; the anchors': 9001)|" \
      -e "s|set beresp\.ttl = 10s;|set beresp.ttl = $CACHE_TTL;   # CACHE_TTL (bench/run.sh; the anchors': 10s)|" \
      "$ANCH/conf/varnish.vcl" > "$R/varnish.vcl"
  grep -q "\.port = \"$UPSTREAM_PORT\";" "$R/varnish.vcl" && grep -q "set beresp.ttl = $CACHE_TTL;" "$R/varnish.vcl" ||
    die "could not render $ANCH/conf/varnish.vcl (expected '.port = \"9001\";' and 'set beresp.ttl = 10s;')"
  if has varnish; then   # -C: compile the VCL (with the system cc) and exit
    "$VARNISH_BIN" -C -j none -n "$VAR/varnish" -f "$R/varnish.vcl" >"$VAR/log/varnish.check" 2>&1 ||
      { tail -20 "$VAR/log/varnish.check" >&2; die "varnishd -C rejected $R/varnish.vcl"; }
  fi
fi

# The api_rl_redis case's Redis: Debian's redis-server, on 127.0.0.1:REDIS_PORT, no persistence (the
# brief's `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no`, as a file so that its
# command line names a config rendered here, which is how a PID left by an interrupted run is known to
# be ours: hence also set-proc-title no).
cat > "$R/redis.conf" <<REDIS
# rendered by bench/run.sh: the api_rl_redis case's rate-limit store (pinned to the load CPU)
port $REDIS_PORT
bind 127.0.0.1
save ""
appendonly no
daemonize no
set-proc-title no
logfile ""
dir $VAR/run
REDIS

if has edge; then
  rl_confs=""; has_case api_rl && rl_confs+=" edge-rl"; has_case api_rl_redis && rl_confs+=" edge-rl-redis"
  any_cache_case && rl_confs+=" edge-cache"
  for f in edge edge-nosib $rl_confs; do
    "$EDGE_BIN" --check --config "$R/$f.toml" >"$VAR/log/$f.check" 2>&1 ||
      { cat "$VAR/log/$f.check" >&2; die "edge --check rejected $R/$f.toml"; }
  done
fi
if has nginx; then
  "$NGINX_BIN" -t -q -p "$VAR" -e "$VAR/log/nginx.error.log" -c "$R/nginx.conf" 2>"$VAR/log/nginx.check" ||
    { cat "$VAR/log/nginx.check" >&2; die "nginx -t rejected $R/nginx.conf"; }
fi
if has h2o && any_h2_case; then
  "$H2O_BIN" -t -c "$R/h2o.conf" >"$VAR/log/h2o.check" 2>&1 ||
    { cat "$VAR/log/h2o.check" >&2; die "h2o -t rejected $R/h2o.conf"; }
fi

# ---------------------------------------------------------------- start
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$PROBE_ONLY" = 1 ] || wait_no_build   # probes are not timed: PROBE_ONLY does not wait for a build
if any_tls_case; then for s in $SERVERS; do
  case $s in edge|nginx) ;; *) continue ;; esac   # haproxy, varnish, h2o: no tls_* listener
  p=$(port_of "$s" tls_small); port_open "$p" && die "TLS port $p is already in use by something else; set ${s^^}_TLS_PORT"
done; fi
if any_h2_case; then for s in $SERVERS; do
  case $s in edge) ;; nginx|h2o) p=$(port_of "$s" h2_small)
    port_open "$p" && die "HTTP/2 port $p is already in use by something else; set $([ "$s" = h2o ] && echo H2O_PORT || echo NGINX_H2_PORT)" ;; esac
done; has edge && ! any_tls_case && port_open "$EDGE_TLS_PORT" && die "TLS port $EDGE_TLS_PORT is already in use by something else; set EDGE_TLS_PORT"; fi
case " $INSTANCES " in *" upstream "*)   # the fast upstream of the api cases: on the LOAD CPU, with wrk
  start_server_on "$LOADGEN_CPU" upstream "$NGINX_BIN" -p "$VAR" -e "$VAR/log/upstream.error.log" -c "$R/nginx-upstream.conf" || exit 1 ;; esac
case " $INSTANCES " in *" redis "*)   # the api_rl_redis case's store: on the LOAD CPU too, before its edge
  start_server_on "$LOADGEN_CPU" redis "$REDIS_BIN" "$R/redis.conf" || exit 1 ;; esac
if has edge; then start_server edge "$EDGE_BIN" --config "$R/edge.toml" || exit 1; fi
case " $INSTANCES " in *" edge_nosib "*)
  start_server edge_nosib "$EDGE_BIN" --config "$R/edge-nosib.toml" || exit 1 ;; esac
case " $INSTANCES " in *" edge_rl "*)
  start_server edge_rl "$EDGE_BIN" --config "$R/edge-rl.toml" || exit 1 ;; esac
case " $INSTANCES " in *" edge_rl_redis "*)
  start_server edge_rl_redis "$EDGE_BIN" --config "$R/edge-rl-redis.toml" || exit 1 ;; esac
case " $INSTANCES " in *" edge_cache "*)
  start_server edge_cache "$EDGE_BIN" --config "$R/edge-cache.toml" || exit 1 ;; esac
if has nginx; then
  # nginx keeps its cache on disk across restarts: start from an empty one (BENCH_VAR/nginx-cache is ours)
  if any_cache_case; then rm -rf "$VAR/nginx-cache" && mkdir -p "$VAR/nginx-cache" || die "could not empty $VAR/nginx-cache"; fi
  start_server nginx "$NGINX_BIN" -p "$VAR" -e "$VAR/log/nginx.error.log" -c "$R/nginx.conf" || exit 1
  if any_mem_case; then
    for _ in $(seq 1 50); do port_open "$NGINX_NOSIB_PORT" && break; sleep 0.1; done
    port_open "$NGINX_NOSIB_PORT" || die "nginx does not listen on $NGINX_NOSIB_PORT (no-sibling site); see $VAR/log/nginx.error.log"
    say "nginx also serves the no-sibling site on http://127.0.0.1:$NGINX_NOSIB_PORT (on-the-fly gzip)"
  fi
fi
case " $INSTANCES " in *" h2o "*)   # -m worker: one foreground process (num-threads: 1), as in ../shared/anchors/servers.sh
  start_server h2o "$H2O_BIN" -m worker -c "$R/h2o.conf" || exit 1 ;; esac
case " $INSTANCES " in *" haproxy "*)   # -db: foreground, no master-worker; nbthread 1
  start_server haproxy "$HAPROXY_BIN" -db -f "$R/haproxy.cfg" || exit 1 ;; esac
case " $INSTANCES " in *" varnish "*)   # -F: foreground (manager + child); the anchors' storage and thread settings
  # (servers.sh), -T none: no management port (not needed; varnishstat reads the shared memory). It
  # compiles the VCL with cc at start: allow 30 s.
  START_WAIT=30 start_server varnish "$VARNISH_BIN" -F -j none -n "$VAR/varnish" -a "127.0.0.1:$VARNISH_PORT" -T none \
    -f "$R/varnish.vcl" -s malloc,256m -p thread_pools=1 -p thread_pool_min=16 -p thread_pool_max=1000 || exit 1 ;; esac
if any_cache_case && has nginx; then
  for _ in $(seq 1 50); do port_open "$NGINX_CACHE_PORT" && break; sleep 0.1; done
  port_open "$NGINX_CACHE_PORT" || die "nginx does not listen on its cache port $NGINX_CACHE_PORT; see $VAR/log/nginx.error.log"
  say "nginx also serves /api/ through proxy_cache on http://127.0.0.1:$NGINX_CACHE_PORT"
fi
if any_tls_case; then for s in $SERVERS; do
  case $s in edge|nginx) ;; *) continue ;; esac
  p=$(port_of "$s" tls_small)
  for _ in $(seq 1 50); do port_open "$p" && break; sleep 0.1; done
  port_open "$p" || die "$s does not listen on its TLS port $p; see $VAR/log/$s.out / nginx.error.log"
  say "$s also serves https://127.0.0.1:$p (ECDSA P-256, sha256 ${CERT_FP:0:16}…)"
done; fi
if any_h2_case; then for s in $SERVERS; do
  case $s in edge|nginx|h2o) ;; *) continue ;; esac
  p=$(port_of "$s" h2_small)
  for _ in $(seq 1 50); do port_open "$p" && break; sleep 0.1; done
  port_open "$p" || die "$s does not listen on its HTTP/2 (TLS) port $p; see $VAR/log/$s.out / nginx.error.log / h2o.error.log"
  say "$s: the h2_* cases on https://127.0.0.1:$p (ECDSA P-256, sha256 ${CERT_FP:0:16}…)"
done; fi
# The api cases' reference answer: the upstream's own, fetched directly (the proxies must pass it on
# byte for byte). The anchors' upstream answers 200 with 291 bytes.
UPSTREAM_BODY=$VAR/log/upstream-body.json; UP_CHECK=""
if any_api_case; then
  UP_CHECK=$(curl -s --http1.1 --max-time 10 -o "$UPSTREAM_BODY" -w '%{http_code} %{size_download}' "http://127.0.0.1:$UPSTREAM_PORT$API_PATH")
  [ "$UP_CHECK" = "200 291" ] || say "warning: the upstream answers $API_PATH directly with '$UP_CHECK' (the anchors': '200 291')"
  say "upstream: GET $API_PATH directly -> ${UP_CHECK:-nothing} B"
fi
# cache_20k's reference: the upstream's own answer too (it must be the file written above, 20,480 B)
UPSTREAM_BODY_20K=$VAR/log/upstream-body-20k.json; UP_CHECK_20K=""
if any_cache_case; then
  UP_CHECK_20K=$(curl -s --http1.1 --max-time 10 -o "$UPSTREAM_BODY_20K" -w '%{http_code} %{size_download}' "http://127.0.0.1:$UPSTREAM_PORT$CACHE_20K_PATH")
  { [ "$UP_CHECK_20K" = "200 $(stat -c %s "$CACHE_20K_FILE")" ] && cmp -s "$UPSTREAM_BODY_20K" "$CACHE_20K_FILE"; } ||
    say "warning: the upstream answers $CACHE_20K_PATH directly with '$UP_CHECK_20K' (want 200 and $CACHE_20K_FILE)"
  say "upstream: GET $CACHE_20K_PATH directly -> ${UP_CHECK_20K:-nothing} B"
fi
# The upstream's request counter (stub_status "requests"; the cache cases add the location). Reading it
# is itself one request: a read right after another gives +1.
upstream_reqs() {
  curl -s --http1.1 --max-time 5 "http://127.0.0.1:$UPSTREAM_PORT$UPSTREAM_STATUS_PATH" | awk 'NR == 3 && NF == 3 {print $3}'
}
label_of() { # RESULT/PROBE label of a server; MEM label of an instance
  case $1 in edge) echo "$EDGE_LABEL" ;; edge_nosib) echo "$EDGE_LABEL-nosib" ;; haproxy) echo "$HAPROXY_LABEL" ;;
             edge_rl) echo "$EDGE_LABEL-rl" ;; edge_rl_redis) echo "$EDGE_LABEL-rl-redis" ;;
             edge_cache) echo "$EDGE_LABEL-cache" ;; varnish) echo "$VARNISH_LABEL" ;; h2o) echo "$H2O_LABEL" ;;
             upstream) echo upstream ;; redis) echo redis ;; *) echo "$NGINX_LABEL" ;; esac
}

STAMP=$(date -u +%Y%m%d-%H%M%S)
RAW=$VAR/results/raw-$STAMP.txt
{
  echo "# bench/run.sh $STAMP UTC  host=$(hostname) cpus=$(nproc) kernel=$(uname -r)"
  echo "# git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo -) servers=[$SERVERS] cases=[$CASES] RUNS=$RUNS DUR=$DUR WARMUP=$WARMUP CONN=$CONN server_cpu=$SERVER_CPU loadgen_cpu=$LOADGEN_CPU open_file_cache=$NGINX_OPEN_FILE_CACHE"
  has edge && echo "# edge: $EDGE_BIN ($("$EDGE_BIN" --version 2>&1 | head -1), built $(date -u -r "$EDGE_BIN" '+%Y-%m-%d %H:%M UTC'))"
  has nginx && echo "# nginx: $("$NGINX_BIN" -v 2>&1 | head -1)${BROTLI_MOD:+ + $(dpkg-query -W -f '${Package} ${Version}' libnginx-mod-http-brotli-static 2>/dev/null)}"
  if any_api_case; then
    echo "# api: GET $API_PATH; upstream nginx :$UPSTREAM_PORT on cpu ${LOADGEN_CPU:-any} ($R/nginx-upstream.conf, answers ${UP_CHECK:-nothing} B directly); upstream keepalive edge/nginx $UPSTREAM_KEEPALIVE; api CONN=$CONN api_1k CONN=$API_1K_CONN; open files $NOFILE_NOW (hard $(ulimit -Hn))"
    has haproxy && any_proxy_case && echo "# haproxy: $("$HAPROXY_BIN" -v 2>&1 | head -1) ($(dpkg-query -W -f '${Package} ${Version}' haproxy 2>/dev/null))"
    case " $INSTANCES " in *" edge_rl"*)
      echo "# rate limit: /api/ rate_limit = { requests = $RL_REQUESTS, window = \"$RL_WINDOW\" }; api_rl: edge_rl :$EDGE_RL_PORT store memory$(
        case " $INSTANCES " in *" redis "*) echo "; api_rl_redis: edge_rl_redis :$EDGE_RL_REDIS_PORT store redis://127.0.0.1:$REDIS_PORT ($("$REDIS_BIN" --version | cut -d' ' -f3), cpu ${LOADGEN_CPU:-any})" ;; esac)" ;; esac
  fi
  if any_cache_case; then
    echo "# cache: cache_small GET $API_PATH (${UP_CHECK:-?} B), cache_20k GET $CACHE_20K_PATH (${UP_CHECK_20K:-?} B); CACHE_TTL=$CACHE_TTL on every cache; edge: edge_cache :$EDGE_CACHE_PORT cache = { ttl = \"$CACHE_TTL\", override = true }; nginx: proxy_cache (the anchors' nginx-api-cache.inc) :$NGINX_CACHE_PORT; varnish :$VARNISH_PORT; CACHE_BURST_SECS=$CACHE_BURST_SECS"
    has varnish && echo "# varnish: $("$VARNISH_BIN" -V 2>&1 | head -1) ($(dpkg-query -W -f '${Package} ${Version}' varnish 2>/dev/null)), -s malloc,256m -p thread_pools=1 -p thread_pool_min=16 -p thread_pool_max=1000"
  fi
  if any_tls_case; then
    echo "# tls: cert $CERT (ECDSA P-256, sha256 $CERT_FP) on edge :$EDGE_TLS_PORT and nginx :$NGINX_TLS_PORT; $(openssl version); $(h2load --version 2>/dev/null | head -1); nginx TLS 1.3 suites: ${NGINX_TLS_SUITES:-client order (default)}; HS_CONN=$HS_CONN STIME_SECS=$STIME_SECS"
  fi
  if any_h2_case; then
    echo "# h2: h2load -t1 -c$H2_CONN -m$H2_STREAMS -D$DUR --warm-up-time=$WARMUP (h2_js_br: -H 'accept-encoding: br'), ALPN h2; cert $CERT (ECDSA P-256, sha256 $CERT_FP); $(h2load --version 2>/dev/null | head -1); $(openssl version)$(has edge && echo "; edge :$EDGE_TLS_PORT")$(has nginx && echo "; nginx :$NGINX_H2_PORT (listen ssl http2)")$(has h2o && echo "; h2o :$H2O_PORT ($("$H2O_BIN" --version 2>/dev/null | head -1), $(dpkg-query -W -f '${Package} ${Version}' h2o 2>/dev/null), num-threads 1)")"
  fi
  echo "# loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RAW"

sleep 1
for s in $INSTANCES; do echo "MEMIDLE label=$(label_of "$s") pid=${PID[$s]} $(mem_tree "${PID[$s]}")" | tee -a "$RAW"; done

# ---------------------------------------------------------------- probe (status, size, encoding, headers)
case_path() {
  case $1 in
    small) echo /assets/small-D1kP3xWa.svg ;; index) echo /index.html ;; root) echo / ;;
    spa) echo /readings/123 ;; js_id|js_br|js_gz|js_br_mem|js_gz_mem) echo "/$JS" ;;
    css_br) echo /assets/index-B4mZ9kQe.css ;; img) echo /assets/hero-Bx8nR2Tq.jpg ;;
    api|api_1k|api_rl|api_rl_redis|cache_small) echo "$API_PATH" ;;
    cache_20k) echo "$CACHE_20K_PATH" ;;
    *) echo "" ;;
  esac
}
case_want() { # case_want CASE -> sets WSIZE (empty = any), WENC (Accept-Encoding sent and
              # Content-Encoding wanted; - = none), WCC (Cache-Control), WFILE (file the body decodes to),
              # WCT (Content-Type, checked when set)
  local imm="public, max-age=31536000, immutable"
  WSIZE=""; WENC=-; WCC=$imm; WFILE=""; WCT=""
  case $1 in
    small) WSIZE=1024 ;;
    index|spa|root) WSIZE=1000; WCC="no-cache" ;;
    js_id) WSIZE=$(stat -c %s "$SITE/$JS") ;;
    img) WSIZE=1048576 ;;
    js_br) WSIZE=$(stat -c %s "$SITE/$JS.br"); WENC=br; WFILE=$SITE/$JS ;;      # the sibling, 53,100 B
    js_gz) WSIZE=$(stat -c %s "$SITE/$JS.gz"); WENC=gzip; WFILE=$SITE/$JS ;;    # the sibling, 58,169 B
    js_br_mem) WENC=br; WFILE=$SITE/$JS ;;       # the server's own compression: any size that decodes right
    js_gz_mem) WENC=gzip; WFILE=$SITE/$JS ;;
    css_br) WSIZE=$(stat -c %s "$SITE/assets/index-B4mZ9kQe.css.br"); WENC=br; WFILE=$SITE/assets/index-B4mZ9kQe.css ;;
    # through the proxy: the upstream's own answer byte for byte (291 B JSON), no Cache-Control required
    api|api_1k|api_rl|api_rl_redis|cache_small) WSIZE=$(stat -c %s "$UPSTREAM_BODY"); WFILE=$UPSTREAM_BODY; WCC=""; WCT=application/json ;;
    cache_20k) WSIZE=$(stat -c %s "$UPSTREAM_BODY_20K"); WFILE=$UPSTREAM_BODY_20K; WCC=""; WCT=application/json ;;
    *) WCC="" ;;
  esac
}
hdr_val() { tr -d '\r' < "$1" | awk -v n="$2" -F': *' 'tolower($1)==n{sub(/^[^:]*: */,""); print}' | paste -sd'|'; }
# Rate-limit decisions Redis has taken (the api_rl_redis store): calls of EVALSHA (+ EVAL, the script's
# first load) in INFO commandstats; empty when Redis does not answer.
redis_calls() {
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info commandstats 2>/dev/null | tr -d '\r' |
    awk -F'[:=,]' '/^cmdstat_(evalsha|eval):/{n += $3; ok = 1} /^# Commandstats/{ok = 1} END{if (ok) print n + 0}'
}
decode() { case $1 in br) brotli -d -c ;; gzip) gzip -d -c ;; *) cat ;; esac; }
# cache_marker SERVER HEADERS -> "yes|no MARKER": whether the response is a cache hit, by each cache's own
# header (edge: RFC 9211 Cache-Status "edge; hit; ttl=…"; nginx: the anchors' X-Cache: $upstream_cache_status;
# Varnish: X-Varnish carries two transaction ids on a hit (this request's and the one that stored it), or Age > 0)
cache_marker() {
  local v a
  case $1 in
    edge) v=$(hdr_val "$2" cache-status); v=${v// /}
          case ${v,,} in edge\;hit|edge\;hit\;*) echo "yes ${v:--}" ;; *) echo "no ${v:--}" ;; esac ;;
    nginx) v=$(hdr_val "$2" x-cache); v=${v// /}
           [ "$v" = HIT ] && echo "yes $v" || echo "no ${v:--}" ;;
    varnish) v=$(hdr_val "$2" x-varnish); a=$(hdr_val "$2" age)
             if [[ $v =~ ^[0-9]+\ +[0-9]+$ ]] || [[ $a =~ ^[0-9]+$ && $a -gt 0 ]]; then echo "yes xv:${v// /_},age:${a:--}"
             else echo "no xv:${v// /_},age:${a:--}"; fi ;;
    *) echo "no -" ;;
  esac
}

# Edge compresses a file without siblings once, in the background; until then it answers with the
# identity. Ask for each coding until the variant is there, so the measurement sees the hit path.
warm_variants() {
  local enc c n t0 got
  for c in js_br_mem js_gz_mem; do
    has_case "$c" || continue
    case $c in js_br_mem) enc=br ;; js_gz_mem) enc=gzip ;; esac
    t0=$(date +%s.%N); n=0; got=""
    while :; do
      n=$((n + 1))
      got=$(curl -s --http1.1 --max-time 10 -o /dev/null -D - -H "Accept-Encoding: $enc" \
            "http://127.0.0.1:$EDGE_NOSIB_PORT/$JS" | tr -d '\r' | awk -F': *' 'tolower($1)=="content-encoding"{print $2}')
      [ "$got" = "$enc" ] && break
      awk -v a="$t0" -v b="$(date +%s.%N)" -v m="$VARIANT_WAIT" 'BEGIN{exit !(b-a > m)}' && break
      sleep 0.1
    done
    local secs; secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
    echo "VARIANT label=$(label_of edge_nosib) enc=$enc requests=$n seconds=$secs ready=$([ "$got" = "$enc" ] && echo yes || echo "no(got_${got:-identity})")" | tee -a "$RAW"
    [ "$got" = "$enc" ] || say "edge (no siblings) still answers $enc requests with '${got:-identity}' after ${secs}s"
  done
}

BAD=0
probe_case() { # probe_case SERVER CASE -> PROBE line; sets BAD=1 on a mismatch
  local s=$1 c=$2 path out status size hbytes h b cc enc vary problems=() n port extra="" ct
  path=$(case_path "$c"); [ -n "$path" ] || { say "case $c is not a case of this bench"; return; }
  case_want "$c"; port=$(port_of "$s" "$c")
  h=$VAR/log/probe-$s-$c.headers; b=$VAR/log/probe-$s-$c.body
  local ae=(); [ "$WENC" != - ] && ae=(-H "Accept-Encoding: $WENC")
  # the cache cases: one warm-up request first (the miss that stores the copy); the probe's is then a hit
  is_cache_case "$c" && curl -s --http1.1 --max-time 10 -o /dev/null -D "$h.warm" "${ae[@]}" "http://127.0.0.1:$port$path"
  out=$(curl -s --http1.1 --max-time 10 -o "$b" -D "$h" "${ae[@]}" -w '%{http_code} %{size_download} %{size_header}' \
        "http://127.0.0.1:$port$path") || problems+=("curl failed")
  read -r status size hbytes <<<"$out"
  [ "$status" = 200 ] || problems+=("status $status (want 200)")
  [ -z "$WSIZE" ] || [ "$size" = "$WSIZE" ] || problems+=("size $size (want $WSIZE)")
  enc=$(hdr_val "$h" content-encoding); enc=${enc:--}
  [ "$enc" = "$WENC" ] || problems+=("Content-Encoding '$enc' (want '$WENC')")
  if [ -n "$WFILE" ] && [ "$enc" = "$WENC" ] && ! decode "$enc" < "$b" 2>/dev/null | cmp -s - "$WFILE"; then
    if is_api_case "$c"; then problems+=("body differs from the upstream's ($WFILE)")
    else problems+=("body does not decode to $(basename "$WFILE")"); fi
  fi
  vary=$(hdr_val "$h" vary); vary=${vary:--}
  cc=$(hdr_val "$h" cache-control)
  [ -z "$WCC" ] || [ "$cc" = "$WCC" ] || problems+=("Cache-Control '$cc' (want '$WCC')")
  n=0
  for name in $SEC_NAMES; do
    if tr -d '\r' < "$h" | grep -qi "^$name:"; then n=$((n + 1))
    # RFC 6797 7.2: HSTS must not be sent over plain http (edge omits it there since its TLS work;
    # the anchors' nginx config sends it anyway). Every URL here is http, so it is not required.
    elif [ "${name,,}" != strict-transport-security ]; then problems+=("missing $name"); fi
  done
  if [ -n "$WCT" ]; then
    ct=$(hdr_val "$h" content-type); extra+=" ctype=${ct// /}"
    case $ct in "$WCT"|"$WCT;"*) ;; *) problems+=("Content-Type '$ct' (want $WCT)") ;; esac
  fi
  if is_api_case "$c"; then
    # issue 7: the limited routes answer with RateLimit-Policy / RateLimit (edge's default `headers =
    # true`) naming the bench's limit; the unlimited /api/ (every proxy) sends neither.
    local rlp rl c0 c1
    rlp=$(hdr_val "$h" ratelimit-policy); rl=$(hdr_val "$h" ratelimit)
    if is_rl_case "$c"; then
      case $rlp in *";q=$RL_REQUESTS;w=$RL_WINDOW_S"|*";q=$RL_REQUESTS;w=$RL_WINDOW_S;"*) ;;
        *) problems+=("RateLimit-Policy '$rlp' (want …;q=$RL_REQUESTS;w=$RL_WINDOW_S)") ;; esac
      case $rl in *";r="*";t="*) ;; *) problems+=("RateLimit '$rl' (want …;r=…;t=…)") ;; esac
    else
      [ -z "$rlp$rl" ] || problems+=("RateLimit headers on an unlimited route ('$rlp' / '$rl')")
    fi
    rlp=${rlp// /}; rl=${rl// /}
    extra+=" ratelimit_policy=${rlp:--} ratelimit=${rl:--}"; extra=${extra//\"/}
    if [ "$c" = api_rl_redis ]; then
      # the decision must come from Redis: its EVALSHA count grows by one per request
      c0=$(redis_calls)
      curl -s --http1.1 --max-time 10 -o /dev/null "http://127.0.0.1:$port$path"
      c1=$(redis_calls)
      if [ -z "$c0" ] || [ -z "$c1" ]; then problems+=("redis-cli -p $REDIS_PORT got no INFO commandstats")
      elif [ "$c1" -le "$c0" ]; then problems+=("Redis took no rate-limit call for a request (EVALSHA calls $c0 -> $c1)"); fi
      extra+=" redis_calls_per_req=$(( ${c1:-0} - ${c0:-0} ))"
    fi
  fi
  if is_cache_case "$c"; then
    # issue 6: the answer is a hit, and an unmeasured burst (wrk -c CONN, CACHE_BURST_SECS) of the same
    # request never reaches the upstream (its stub_status request count grows only by our own read)
    local hit mark wmark u0 u1 w f e errs="" pin=(); local -A kv=(); [ -n "$LOADGEN_CPU" ] && pin=(taskset -c "$LOADGEN_CPU")
    read -r hit mark < <(cache_marker "$s" "$h"); read -r _ wmark < <(cache_marker "$s" "$h.warm")
    [ "$hit" = yes ] || problems+=("not a cache hit after a warm-up request ($mark; warm-up: $wmark)")
    extra+=" hit=$hit marker=$mark warm=$wmark"
    if [ "$CACHE_BURST_SECS" != 0 ]; then
      u0=$(upstream_reqs)
      w=$("${pin[@]}" timeout $((CACHE_BURST_SECS + 30)) wrk -t1 -c"$CONN" -d"${CACHE_BURST_SECS}s" --timeout 5s \
          -s "$ANCH/report.lua" "http://127.0.0.1:$port$path" 2>&1 | tee "$VAR/log/probe-$s-$c.wrk" | sed -n 's/^WRK //p')
      u1=$(upstream_reqs)
      for f in $w; do kv[${f%%=*}]=${f#*=}; done
      [ -n "$w" ] && [ "${kv[reqs]:-0}" != 0 ] || problems+=("burst: wrk -c$CONN got no answer (log/probe-$s-$c.wrk)")
      for e in connect read write status timeout; do
        errs+="${errs:+,}$e:${kv[err_$e]:-?}"
        [ "${kv[err_$e]:-0}" = 0 ] || problems+=("burst: ${kv[err_$e]} $e errors")
      done
      if [ -z "$u0" ] || [ -z "$u1" ]; then problems+=("the upstream's stub_status ($UPSTREAM_STATUS_PATH) did not answer")
      elif [ $((u1 - u0 - 1)) != 0 ]; then problems+=("burst: the upstream got $((u1 - u0 - 1)) request(s) during ${kv[reqs]:-?} (not all hits)"); fi
      extra+=" burst_secs=$CACHE_BURST_SECS burst_reqs=${kv[reqs]:-0} burst_upstream=$([ -n "$u0" ] && [ -n "$u1" ] && echo $((u1 - u0 - 1)) || echo '?') burst_errors=$errs"
    fi
  fi
  if [ "$c" = api_1k ] && [ "$PROBE_CONC_SECS" != 0 ]; then
    # api_1k: the case's own wrk (-c API_1K_CONN, --timeout 5s as in run.sh) for PROBE_CONC_SECS s,
    # unmeasured: all the connections must get through (open-files limits, backlogs, the proxy's own
    # connection limits) without a connect/read/write error, a non-2xx status or a timeout.
    local w f e errs="" pin=(); local -A kv=(); [ -n "$LOADGEN_CPU" ] && pin=(taskset -c "$LOADGEN_CPU")
    w=$("${pin[@]}" timeout $((PROBE_CONC_SECS + 30)) wrk -t1 -c"$API_1K_CONN" -d"${PROBE_CONC_SECS}s" --timeout 5s \
        -s "$ANCH/report.lua" "http://127.0.0.1:$port$path" 2>&1 | tee "$VAR/log/probe-$s-$c.wrk" | sed -n 's/^WRK //p')
    for f in $w; do kv[${f%%=*}]=${f#*=}; done
    if [ -z "$w" ] || [ "${kv[reqs]:-0}" = 0 ]; then
      problems+=("wrk -c$API_1K_CONN got no answer (log/probe-$s-$c.wrk)")
    fi
    for e in connect read write status timeout; do
      errs+="${errs:+,}$e:${kv[err_$e]:-?}"
      [ "${kv[err_$e]:-0}" = 0 ] || problems+=("wrk -c$API_1K_CONN: ${kv[err_$e]} $e errors")
    done
    extra+=" conc=$API_1K_CONN conc_secs=$PROBE_CONC_SECS conc_reqs=${kv[reqs]:-0} conc_p99_ms=${kv[p99_ms]:-?} conc_errors=$errs"
  fi
  local verdict=ok; [ ${#problems[@]} -gt 0 ] && { verdict="MISMATCH: $(IFS=';'; echo "${problems[*]}")"; BAD=1; }
  echo "PROBE label=$(label_of "$s") case=$c url=http://127.0.0.1:$port$path ae=${WENC} status=$status enc=$enc size=$size hdr_bytes=$hbytes vary=${vary// /} sec_headers=$n/$(echo "$SEC_NAMES" | wc -w)$extra result=${verdict// /_}" | tee -a "$RAW"
  [ "$verdict" = ok ] || say "$s $c ($path, Accept-Encoding: $WENC): $verdict — headers in $h, body in $b"
}
# ---------------------------------------------------------------- TLS probe (tls_* cases)
declare -A PROBED   # "SERVER:CASE" -> "status=.. enc=- size=.. proto=.." from probe_tls (for the s_time lines)
tls_path() { case $1 in tls_img) echo /assets/hero-Bx8nR2Tq.jpg ;; *) echo /assets/small-D1kP3xWa.svg ;; esac; }
tls_tool() { # the load tool of a tls_* case (its name goes into the table)
  case $1 in tls_hs_new) echo h2load ;; tls_hs_resumed|tls_hs_new_stime) echo s_time ;; *) echo wrk ;; esac
}
# probe_tls SERVER CASE -> PROBE line; sets BAD=1 on a mismatch. Checks, on the server's TLS port:
#  - curl over https (HTTP/1.1; HTTP/1.0 for the s_time cases, which send "GET … HTTP/1.0"): status 200,
#    the body byte for byte, Cache-Control, the 6 security headers (HSTS included: this is TLS), TLS 1.3;
#  - openssl s_client with OpenSSL's default client settings (what wrk and s_time use) offering ALPN
#    "http/1.1" (the tools of these cases speak HTTP/1.1: wrk and s_time offer no ALPN, h2load runs
#    with --h1; edge's TLS listener also offers h2, measured by the h2_* cases): the certificate is
#    BENCH_VAR/certs/ecdsa.crt (same SHA-256 on both servers), ALPN http/1.1, TLS 1.3, and the cipher
#    such a client gets (server preference decides it: edge prefers AES-128-GCM, nginx by default
#    follows the client, which lists AES-256-GCM first).
probe_tls() {
  local s=$1 c=$2 path port url h b v out status size hv problems=() want wfile cc n name ver cipher sc alpn dver dcipher fp hb
  path=$(tls_path "$c"); port=$(port_of "$s" "$c"); url=https://127.0.0.1:$port$path
  h=$VAR/log/probe-$s-$c.headers; b=$VAR/log/probe-$s-$c.body; v=$VAR/log/probe-$s-$c.curl
  wfile=$SITE$path; want=$(stat -c %s "$wfile")
  local httpv=--http1.1; case $c in tls_hs_resumed|tls_hs_new_stime) httpv=--http1.0 ;; esac
  out=$(curl -sk -v "$httpv" --max-time 10 -o "$b" -D "$h" -w '%{http_code} %{size_download} %{http_version} %{size_header}' "$url" 2>"$v") ||
    problems+=("curl failed")
  read -r status size hv hb <<<"$out"
  [ "$status" = 200 ] || problems+=("status $status (want 200)")
  [ "$size" = "$want" ] || problems+=("size $size (want $want)")
  [ "$status" = 200 ] && ! cmp -s "$b" "$wfile" && problems+=("body differs from $(basename "$wfile")")
  ver=$(sed -n 's/^\* SSL connection using \([^ ]*\) \/ \([^ ]*\).*/\1/p' "$v" | head -1)
  cipher=$(sed -n 's/^\* SSL connection using \([^ ]*\) \/ \([^ ]*\).*/\2/p' "$v" | head -1)
  [ "$ver" = TLSv1.3 ] || problems+=("curl got '${ver:-no TLS}' (want TLSv1.3)")
  cc=$(hdr_val "$h" cache-control)
  [ "$cc" = "public, max-age=31536000, immutable" ] || problems+=("Cache-Control '$cc' (want immutable)")
  n=0
  for name in $SEC_NAMES; do
    if tr -d '\r' < "$h" | grep -qi "^$name:"; then n=$((n + 1)); else problems+=("missing $name"); fi
  done
  sc=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -alpn http/1.1 </dev/null 2>/dev/null)
  alpn=$(echo "$sc" | sed -n 's/^ALPN protocol: //p' | head -1)
  [ -n "$alpn" ] || alpn=none
  dver=$(echo "$sc" | sed -n 's/^New, \([^,]*\), Cipher is \(.*\)/\1/p' | head -1)
  dcipher=$(echo "$sc" | sed -n 's/^New, \([^,]*\), Cipher is \(.*\)/\2/p' | head -1)
  fp=$(echo "$sc" | openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//; s/://g')
  [ -n "$fp" ] && [ "$fp" = "$CERT_FP" ] || problems+=("certificate sha256 ${fp:0:16}… is not $CERT ${CERT_FP:0:16}…")
  [ "$alpn" = http/1.1 ] || problems+=("ALPN offered http/1.1: got $alpn (want http/1.1)")
  [ "$dver" = TLSv1.3 ] || problems+=("s_client got '${dver:-nothing}' (want TLSv1.3)")
  local verdict=ok; [ ${#problems[@]} -gt 0 ] && { verdict="MISMATCH: $(IFS=';'; echo "${problems[*]}")"; BAD=1; }
  PROBED[$s:$c]="status=$status enc=- size=$size proto=h$hv"
  echo "PROBE label=$(label_of "$s") case=$c url=$url tool=$(tls_tool "$c") req=${httpv#--} resp=HTTP/$hv status=$status size=$size hdr_bytes=$hb tls=$ver cipher_curl=$cipher alpn=$alpn default_client=$dver/$dcipher cert_sha256=${fp:0:16} sec_headers=$n/$(echo "$SEC_NAMES" | wc -w) result=${verdict// /_}" | tee -a "$RAW"
  [ "$verdict" = ok ] || say "$s $c ($url): $verdict — headers in $h, body in $b, curl -v in $v"
}

# ---------------------------------------------------------------- HTTP/2 probe (h2_* cases)
h2_path() { case $1 in h2_js_br) echo "/$JS" ;; *) echo /assets/small-D1kP3xWa.svg ;; esac; }
h2_header() { case $1 in h2_js_br) echo "accept-encoding: br" ;; *) echo "" ;; esac; }   # sent by h2load (-H) and curl
# h2load_fields FILE -> "h2load_alpn=.. h2load_ok=.. h2load_2xx=.. h2load_data=.. data_per_req=.." from h2load's
# output: the protocol it negotiated, succeeded requests, 2xx answers, DATA payload bytes (= bodies) and per request
h2load_fields() {
  local alpn ok s2 data
  alpn=$(sed -n 's/^Application protocol: *//p' "$1" | head -1)
  ok=$(sed -n 's/^requests:.* \([0-9][0-9]*\) succeeded.*/\1/p' "$1" | head -1)
  s2=$(sed -n 's/^status codes: *\([0-9][0-9]*\) 2xx.*/\1/p' "$1" | head -1)
  data=$(sed -n 's/^traffic:.*(\([0-9][0-9]*\)) data.*/\1/p' "$1" | head -1)
  echo "h2load_alpn=${alpn:-none} h2load_ok=${ok:-0} h2load_2xx=${s2:-0} h2load_data=${data:-0} data_per_req=$(
    awk -v d="${data:-0}" -v n="${ok:-0}" 'BEGIN{ if (n > 0) printf "%.1f", d / n; else printf "?" }')"
}
# probe_h2 SERVER CASE -> PROBE line; sets BAD=1 on a mismatch. On the server's h2 port:
#  - curl --http2 (ALPN h2), with the case's accept-encoding: status 200, HTTP/2, the size, the
#    Content-Encoding, the body (decoded) byte for byte the file, Cache-Control, the 6 security headers
#    (HSTS included: this is TLS), TLS 1.3;
#  - openssl s_client -alpn h2,http/1.1: ALPN h2 and the certificate (BENCH_VAR/certs/ecdsa.crt on all);
#  - h2load itself, unmeasured: -t1 -c H2_CONN -m H2_STREAMS -n H2_PROBE_REQS with the case's header
#    (bench/bin/h2load, as in the measurement): h2 negotiated, every request succeeded with a 2xx, and
#    DATA bytes / requests = the expected body size (h2load really got the .br for h2_js_br).
probe_h2() {
  local s=$1 c=$2 path port url h b v out status size hv hb problems=() wfile wsize wenc enc cc n name ver cipher sc alpn fp hdr
  path=$(h2_path "$c"); port=$(port_of "$s" "$c"); url=https://127.0.0.1:$port$path; hdr=$(h2_header "$c")
  h=$VAR/log/probe-$s-$c.headers; b=$VAR/log/probe-$s-$c.body; v=$VAR/log/probe-$s-$c.curl
  wfile=$SITE$path
  if [ "$c" = h2_js_br ]; then wenc=br; wsize=$(stat -c %s "$SITE$path.br"); else wenc=-; wsize=$(stat -c %s "$wfile"); fi
  local ae=(); [ -n "$hdr" ] && ae=(-H "$hdr")
  out=$(curl -sk -v --http2 "${ae[@]}" --max-time 10 -o "$b" -D "$h" -w '%{http_code} %{size_download} %{http_version} %{size_header}' "$url" 2>"$v") ||
    problems+=("curl failed")
  read -r status size hv hb <<<"$out"
  [ "$status" = 200 ] || problems+=("status $status (want 200)")
  [ "$hv" = 2 ] || problems+=("curl --http2 got HTTP/$hv (want 2)")
  [ "$size" = "$wsize" ] || problems+=("size $size (want $wsize)")
  enc=$(hdr_val "$h" content-encoding); enc=${enc:--}
  [ "$enc" = "$wenc" ] || problems+=("Content-Encoding '$enc' (want '$wenc')")
  [ "$status" = 200 ] && [ "$enc" = "$wenc" ] && ! decode "$enc" < "$b" 2>/dev/null | cmp -s - "$wfile" &&
    problems+=("body does not decode to $(basename "$wfile")")
  ver=$(sed -n 's/^\* SSL connection using \([^ ]*\) \/ \([^ ]*\).*/\1/p' "$v" | head -1)
  cipher=$(sed -n 's/^\* SSL connection using \([^ ]*\) \/ \([^ ]*\).*/\2/p' "$v" | head -1)
  [ "$ver" = TLSv1.3 ] || problems+=("curl got '${ver:-no TLS}' (want TLSv1.3)")
  cc=$(hdr_val "$h" cache-control)
  [ "$cc" = "public, max-age=31536000, immutable" ] || problems+=("Cache-Control '$cc' (want immutable)")
  n=0
  for name in $SEC_NAMES; do
    if tr -d '\r' < "$h" | grep -qi "^$name:"; then n=$((n + 1)); else problems+=("missing $name"); fi
  done
  sc=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -alpn h2,http/1.1 </dev/null 2>/dev/null)
  alpn=$(echo "$sc" | sed -n 's/^ALPN protocol: //p' | head -1); [ -n "$alpn" ] || alpn=none
  fp=$(echo "$sc" | openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//; s/://g')
  [ -n "$fp" ] && [ "$fp" = "$CERT_FP" ] || problems+=("certificate sha256 ${fp:0:16}… is not $CERT ${CERT_FP:0:16}…")
  [ "$alpn" = h2 ] || problems+=("ALPN offered h2,http/1.1: got $alpn (want h2)")
  local hl="" f; local -A kv=()
  if [ "$H2_PROBE_REQS" != 0 ]; then
    local pin=(); [ -n "$LOADGEN_CPU" ] && pin=(taskset -c "$LOADGEN_CPU")
    PATH="$BENCH/bin:$PATH" H2LOAD_H1=0 H2LOAD_HEADER="$hdr" H2LOAD_OUT="$VAR/log/probe-$s-$c.h2load" \
      "${pin[@]}" timeout 60 "$BENCH/bin/h2load" -t1 -c"$H2_CONN" -m"$H2_STREAMS" -n"$H2_PROBE_REQS" "$url" >/dev/null 2>&1
    hl=$(h2load_fields "$VAR/log/probe-$s-$c.h2load")
    for f in $hl; do kv[${f%%=*}]=${f#*=}; done
    [ "${kv[h2load_alpn]}" = h2 ] || problems+=("h2load negotiated '${kv[h2load_alpn]}' (want h2; log/probe-$s-$c.h2load)")
    [ "${kv[h2load_ok]}" = "$H2_PROBE_REQS" ] || problems+=("h2load: ${kv[h2load_ok]}/$H2_PROBE_REQS requests succeeded")
    [ "${kv[h2load_2xx]}" = "$H2_PROBE_REQS" ] || problems+=("h2load: ${kv[h2load_2xx]}/$H2_PROBE_REQS answers 2xx")
    [ "${kv[h2load_data]}" = $((H2_PROBE_REQS * wsize)) ] ||
      problems+=("h2load: ${kv[h2load_data]} DATA bytes for $H2_PROBE_REQS requests (want $H2_PROBE_REQS × $wsize)")
    hl=" h2load_probe_reqs=$H2_PROBE_REQS $hl"
  fi
  local verdict=ok; [ ${#problems[@]} -gt 0 ] && { verdict="MISMATCH: $(IFS=';'; echo "${problems[*]}")"; BAD=1; }
  PROBED[$s:$c]="status=$status enc=$enc size=$size proto=h$hv"
  local aev=${hdr#accept-encoding: }
  echo "PROBE label=$(label_of "$s") case=$c url=$url tool=h2load ae=${aev:--} status=$status enc=$enc size=$size resp=HTTP/$hv hdr_bytes=$hb tls=$ver cipher_curl=$cipher alpn=$alpn cert_sha256=${fp:0:16} sec_headers=$n/$(echo "$SEC_NAMES" | wc -w)$hl result=${verdict// /_}" | tee -a "$RAW"
  [ "$verdict" = ok ] || say "$s $c ($url${hdr:+, $hdr}): $verdict — headers in $h, body in $b, curl -v in $v"
}

case " $INSTANCES " in *" edge_nosib "*) warm_variants ;; esac
for s in $SERVERS; do for c in $CASES; do
  if skipped "$s" "$c"; then
    echo "SKIP label=$(label_of "$s") case=$c reason=$(skip_reason "$s" "$c")" | tee -a "$RAW"; continue
  fi
  if is_tls_case "$c"; then probe_tls "$s" "$c"; elif is_h2_case "$c"; then probe_h2 "$s" "$c"; else probe_case "$s" "$c"; fi
done; done
if [ $BAD = 1 ] && [ "$STRICT" = 1 ]; then die "probe mismatch (STRICT=1)"; fi
[ "$PROBE_ONLY" = 1 ] && { say "PROBE_ONLY=1: done ($RAW)"; exit $BAD; }

# ---------------------------------------------------------------- load runs
# Interleaved per case: run 1 = case1 (edge, nginx), case2 (edge, nginx)…; run 2 starts with nginx.
# A build must not overlap a measurement: before each (case, server) we wait for builds to end,
# a background sampler watches for one during it, and an overlapped measurement is thrown away
# and repeated (up to BUILD_RETRIES times; after that it is kept with build_overlap=1).
BUILD_RETRIES=${BUILD_RETRIES:-3}
bound=$(( WARMUP + DUR + 70 ))   # run.sh itself bounds wrk by timeout DUR+30
order_for_run() { # rotate which server goes first, so none always follows the same one
  local list=($SERVERS) n i k out=()   # 2 servers: a b, b a, a b…; 3: a b c, b c a, c a b…
  n=${#list[@]}; k=$(( ($1 - 1) % n ))
  for i in $(seq 0 $((n - 1))); do out+=("${list[$(( (i + k) % n ))]}"); done
  echo "${out[*]}"
}
# ---------------------------------------------------------------- TLS measurements (tls_* cases)
# Handshake cases are charged exactly: server CPU (on-CPU ns of every thread of the server's process
# tree, /proc/PID/task/*/schedstat; utime+stime ticks alongside) read just before and after the load
# tool, divided by the connections it made (us_per_conn). wrk cases use run.sh's figures as the rest.
tree_cpu() { # tree_cpu PID -> "NS TICKS"
  local ns=0 ticks=0 p t v
  for p in $(descendants "$1"); do
    for t in /proc/"$p"/task/*/schedstat; do read -r v _ < "$t" 2>/dev/null && ns=$((ns + v)); done
    v=$(awk '{print $14+$15}' /proc/"$p"/stat 2>/dev/null); ticks=$((ticks + ${v:-0}))
  done
  echo "$ns $ticks"
}
cpu_snap() { awk '/^cpu[0-9]/{busy=$2+$3+$4+$7+$8; tot=busy+$5+$6+$9; printf "%s %d %d ", $1, busy, tot}' /proc/stat; }
cpu_pct() { # cpu_pct "snapBefore" "snapAfter" -> "cpu0=NN% cpu1=NN% ..."
  awk -v a="$1" -v b="$2" 'BEGIN{n=split(a, x, " "); split(b, y, " "); s="";
    for (i = 1; i <= n; i += 3) { db = y[i+1] - x[i+1]; dt = y[i+2] - x[i+2];
      s = s sprintf("%s%s=%.0f%%", (s == "" ? "" : " "), x[i], dt ? 100 * db / dt : 0) } print s}'
}

# stime_run SERVER CASE RUN -> RESULT line: openssl s_time (-reuse or -new) on the load CPU for
# STIME_SECS seconds; every connection is one TLS handshake + "GET path HTTP/1.0" + close.
stime_run() {
  local s=$1 c=$2 run=$3 port path mode pid out rc n0 k0 n1 k1 w0 w1 s0 s1 conns bpc cu marks reused full
  port=$(port_of "$s" "$c"); path=$(tls_path "$c"); pid=${PID[$s]}
  case $c in tls_hs_resumed) mode=-reuse ;; *) mode=-new ;; esac
  local pin=(); [ -n "$LOADGEN_CPU" ] && pin=(taskset -c "$LOADGEN_CPU")
  # unmeasured warm-up, like wrk's: the same s_time for WARMUP seconds (s_time counts whole seconds)
  [ "$WARMUP" != 0 ] && "${pin[@]}" timeout $((WARMUP + 30)) openssl s_time -connect "127.0.0.1:$port" -www "$path" "$mode" \
    -time "$WARMUP" >/dev/null 2>&1
  read -r n0 k0 < <(tree_cpu "$pid"); s0=$(cpu_snap); w0=$(date +%s%N)
  out=$("${pin[@]}" timeout $((STIME_SECS + 30)) openssl s_time -connect "127.0.0.1:$port" -www "$path" "$mode" -time "$STIME_SECS" 2>&1); rc=$?
  w1=$(date +%s%N); s1=$(cpu_snap); read -r n1 k1 < <(tree_cpu "$pid")
  printf '%s\n' "$out" > "$VAR/log/stime-$s-$c-run$run.out"
  conns=$(echo "$out" | awk '/ connections in .* real seconds/{print $1; exit}')
  bpc=$(echo "$out" | sed -n 's/.* real seconds, \([0-9]*\) bytes read per connection.*/\1/p' | head -1)
  cu=$(echo "$out" | sed -n 's/^[0-9]* connections in \([0-9.]*\)s; .*/\1/p' | head -1)   # s_time's own user CPU, s
  marks=$(echo "$out" | grep -E '^[rt3*]+$' | tr -d '\n')       # one character per connection: r = resumed
  reused=$(printf %s "$marks" | tr -cd r | wc -c); full=$(( ${#marks} - reused ))
  if [ -z "$conns" ] || [ "$conns" = 0 ]; then
    echo "RESULT label=$(label_of "$s") case=$c run=$run tool=s_time rps=0 error=s_time_failed_rc$rc"
    echo "$out" | tail -5 >&2; return
  fi
  echo "RESULT label=$(label_of "$s") case=$c run=$run tool=s_time mode=${mode#-} url=https://127.0.0.1:$port$path ae=- ${PROBED[$s:$c]:-status=? enc=- size=? proto=h1.0} $(
    awk -v c="$conns" -v ns=$((n1 - n0)) -v tk=$((k1 - k0)) -v w=$((w1 - w0)) -v bpc="${bpc:-0}" -v clk="$CLK" 'BEGIN{
      printf "rps=%.2f MBps=%.2f mean_ms=%.3f failed=0 errored=0 conns=%d", c / (w / 1e9), c * bpc / (w / 1e9) / 1e6, w / 1e6 / c, c;
      printf " srv_ns=%d srv_ticks=%d us_per_conn=%.1f us_per_conn_ticks=%.1f", ns, tk, ns / 1e3 / c, tk * 1e6 / clk / c }'
  ) reused=$reused full=$full bytes_per_conn=${bpc:-?} client_user_s=${cu:-?} rc=$rc $(cpu_pct "$s0" "$s1") $(
    awk -v ns=$((n1 - n0)) -v w=$((w1 - w0)) 'BEGIN{printf "srv_cpu=%.0f%%", 100 * ns / w}')"
}

# tls_run SERVER CASE RUN PORT LABEL -> RESULT line (run.sh for h2load/wrk, stime_run for s_time)
tls_run() {
  local s=$1 c=$2 run=$3 port=$4 ac out st alpn
  ac=$(anchor_case "$c")
  case $c in
    tls_hs_resumed|tls_hs_new_stime) stime_run "$s" "$c" "$run"; return ;;
    tls_hs_new)
      # run.sh's hs_new through bench/bin/h2load (first on PATH): adds --h1 and measures the server
      # CPU exactly around h2load into $st ("srv_ns=.. srv_ticks=.. wall_ns=..")
      st=$VAR/run/h2load-stats; rm -f "$st" "$st.out"
      # unmeasured warm-up (run.sh has none for h2load): 100 new connections, same options
      if [ "$WARMUP" != 0 ]; then
        local pin=(); [ -n "$LOADGEN_CPU" ] && pin=(taskset -c "$LOADGEN_CPU")
        "${pin[@]}" timeout 60 "$BENCH/bin/h2load" -t1 -c100 -n100 -m1 "https://127.0.0.1:$port$(tls_path "$c")" >/dev/null 2>&1
      fi
      out=$(PATH="$BENCH/bin:$PATH" H2LOAD_STATS="$st" H2LOAD_H1=1 HS_CONN="$HS_CONN" \
            CASES="$ac" DUR="$DUR" WARMUP="$WARMUP" LOADGEN_CPU="$LOADGEN_CPU" SERVER_PID="${PID[$s]}" RUN_ID="$run" \
            timeout "$bound" "$ANCH/run.sh" "https://127.0.0.1:$port" "$(label_of "$s")" | sed "s/ case=$ac / case=$c /")
      [ -s "$st.out" ] && cp "$st.out" "$VAR/log/h2load-$s-run$run.out"
      if [ -n "$out" ] && [ -s "$st" ]; then
        alpn=$(sed -n 's/^Application protocol: *//p' "$st.out" | head -1)
        local kv; kv=$(cat "$st")
        out="$out alpn=${alpn:-none} conns=$HS_CONN $kv $(echo "$kv $out" | awk -v clk="$CLK" '{
            for (i = 1; i <= NF; i++) { split($i, p, "="); v[p[1]] = p[2] }
            n = v["reqs"] + 0; if (n > 0) printf "us_per_conn=%.1f us_per_conn_ticks=%.1f", v["srv_ns"] / 1e3 / n, v["srv_ticks"] * 1e6 / clk / n }')"
      fi
      echo "$out" ;;
    *)
      CASES="$ac" DUR="$DUR" WARMUP="$WARMUP" CONN="$CONN" LOADGEN_CPU="$LOADGEN_CPU" \
        SERVER_PID="${PID[$s]}" RUN_ID="$run" \
        timeout "$bound" "$ANCH/run.sh" "https://127.0.0.1:$port" "$(label_of "$s")" | sed "s/ case=$ac / case=$c /" ;;
  esac
}
CLK=$(getconf CLK_TCK)

# h2_run SERVER CASE RUN PORT -> RESULT line: ../shared/anchors/run.sh's h2_small case (h2load -t1 -c H2_CONN
# -m H2_STREAMS -D DUR --warm-up-time=WARMUP; srv_cpu over the whole h2load call, as for every case) through
# bench/bin/h2load, which offers h2 by ALPN (H2LOAD_H1=0), adds the case's header (h2_js_br: accept-encoding: br;
# PATH_SMALL = the JS) and keeps h2load's output. run.sh's own curl probe sends no accept-encoding, so its
# status/enc/size fields are replaced by this script's h2 probe of the same request (PROBED); h2load's own
# figures are appended: the protocol it negotiated, succeeded requests, 2xx answers, DATA bytes per request.
h2_run() {
  local s=$1 c=$2 run=$3 port=$4 o=$VAR/run/h2load-run.out out probed ae
  rm -f "$o"
  out=$(PATH="$BENCH/bin:$PATH" H2LOAD_H1=0 H2LOAD_HEADER="$(h2_header "$c")" H2LOAD_OUT="$o" \
        CASES=h2_small PATH_SMALL="$(h2_path "$c")" H2_CONN="$H2_CONN" H2_STREAMS="$H2_STREAMS" \
        DUR="$DUR" WARMUP="$WARMUP" LOADGEN_CPU="$LOADGEN_CPU" SERVER_PID="${PID[$s]}" RUN_ID="$run" \
        timeout "$bound" "$ANCH/run.sh" "https://127.0.0.1:$port" "$(label_of "$s")" | sed "s/ case=h2_small / case=$c /")
  [ -s "$o" ] && cp "$o" "$VAR/log/h2load-$s-$c-run$run.out"
  [ -n "$out" ] || return 0
  probed=${PROBED[$s:$c]:-status=? enc=? size=? proto=?}; ae=$(h2_header "$c"); ae=${ae#accept-encoding: }
  out=$(echo "$out" | sed -E "s/ ae=- status=[^ ]* size=[^ ]* proto=[^ ]* enc=[^ ]*/ ae=${ae:--} $probed/")
  echo "$out conns=$H2_CONN streams=$H2_STREAMS $( [ -s "$o" ] && h2load_fields "$o")"
}

measure() { # measure SERVER CASE RUN -> RESULT line (+ load1, build_overlap) appended to RAW
  local s=$1 c=$2 run=$3 try out flag=$VAR/run/build-seen sampler l0 inst port ac rc0 rc1 rextra up0 up1
  inst=$(inst_of "$s" "$c"); port=$(port_of "$s" "$c"); ac=$(anchor_case "$c")
  for try in $(seq 0 "$BUILD_RETRIES"); do
    wait_no_build
    kill -0 "${PID[$inst]}" 2>/dev/null || { say "$inst (pid ${PID[$inst]}) has died; see $VAR/log/$inst.out"; tail -5 "$VAR/log/$inst.out" >&2; exit 1; }
    if is_api_case "$c"; then kill -0 "${PID[upstream]}" 2>/dev/null ||
      { say "the upstream (pid ${PID[upstream]}) has died; see $VAR/log/upstream.error.log"; exit 1; }; fi
    if [ "$c" = api_rl_redis ]; then kill -0 "${PID[redis]}" 2>/dev/null ||
      { say "redis (pid ${PID[redis]}) has died; see $VAR/log/redis.out"; exit 1; }; fi
    wait_quiet
    rm -f "$flag"
    ( while :; do build_busy && : > "$flag"; sleep 1; done ) & sampler=$!; SAMPLER=$sampler
    l0=$(cut -d' ' -f1 /proc/loadavg)
    rextra=""; [ "$c" = api_rl_redis ] && rc0=$(redis_calls)
    is_cache_case "$c" && up0=$(upstream_reqs)
    # run.sh knows js_br/js_gz; a js_*_mem case is the same request to the no-sibling site's port
    if is_tls_case "$c"; then
      out=$(tls_run "$s" "$c" "$run" "$port")
    elif is_h2_case "$c"; then
      out=$(h2_run "$s" "$c" "$run" "$port")
    else
      # api_1k is run.sh's api at API_1K_CONN connections (conn_of); PATH_API is the api cases' path
      out=$(CASES="$ac" DUR="$DUR" WARMUP="$WARMUP" CONN="$(conn_of "$c")" LOADGEN_CPU="$LOADGEN_CPU" PATH_API="$(case_path "$c")" \
            SERVER_PID="${PID[$inst]}" RUN_ID="$run" \
            timeout "$bound" "$ANCH/run.sh" "http://127.0.0.1:$port" "$(label_of "$s")" | sed "s/ case=$ac / case=$c /")
    fi
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null; SAMPLER=""
    # Redis's rate-limit calls over warm-up + measurement (>= the measured reqs when every request
    # was decided by Redis)
    [ "$c" = api_rl_redis ] && { rc1=$(redis_calls); rextra=" redis_calls=$(( ${rc1:-0} - ${rc0:-0} ))"; }
    # the cache cases: requests the upstream got during run.sh's probe + warm-up + measurement (0 = all hits)
    if is_cache_case "$c"; then up1=$(upstream_reqs)
      if [ -n "$up0" ] && [ -n "$up1" ]; then rextra+=" upstream_reqs=$((up1 - up0 - 1))"; else rextra+=" upstream_reqs=?"; fi; fi
    [ -n "$out" ] || out="RESULT label=$(label_of "$s") case=$c run=$run rps=0 error=run_sh_failed"
    if [ -e "$flag" ] && [ "$try" -lt "$BUILD_RETRIES" ]; then
      say "a build ran during $s $c (run $run); discarding and repeating"; continue
    fi
    echo "$out$rextra load1=$l0 pre_busy=${PRE_BUSY}% build_overlap=$([ -e "$flag" ] && echo 1 || echo 0)" | tee -a "$RAW"
    rm -f "$flag"; return 0
  done
}
for run in $(seq 1 "$RUNS"); do
  say "run $run/$RUNS (loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
  for c in $CASES; do
    for s in $(order_for_run "$run"); do skipped "$s" "$c" || measure "$s" "$c" "$run"; done
  done
done

for s in $INSTANCES; do
  if kill -0 "${PID[$s]}" 2>/dev/null; then
    echo "MEM label=$(label_of "$s") pid=${PID[$s]} $(mem_tree "${PID[$s]}")" | tee -a "$RAW"
  else
    say "$s (pid ${PID[$s]}) is no longer running after the runs"
  fi
done
echo "# loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RAW"
cleanup; trap - EXIT

# ---------------------------------------------------------------- tables
SUM=$VAR/results/summary-$STAMP.md
{
  echo "## $(echo $SERVERS | sed 's/ / vs /g') — $STAMP UTC (RUNS=$RUNS DUR=${DUR}s WARMUP=${WARMUP}s, server CPU$SERVER_CPU, wrk CPU$LOADGEN_CPU -c$CONN$(has_case api_1k && echo ", api_1k -c$API_1K_CONN"))"
  echo
  python3 "$BENCH/table.py" --edge "$EDGE_LABEL" --nginx "$NGINX_LABEL" --haproxy "$HAPROXY_LABEL" --varnish "$VARNISH_LABEL" --h2o "$H2O_LABEL" "$RAW"
  echo
  echo "<details><summary>full table (../shared/anchors/summarize.py)</summary>"
  echo
  python3 "$ANCH/summarize.py" "$RAW"
  echo
  echo "</details>"
} > "$SUM"
cat "$SUM"
say "raw: $RAW"
say "summary: $SUM"
[ $BAD = 0 ] || say "WARNING: some probes did not match (see PROBE lines above / in $RAW)"
exit 0
