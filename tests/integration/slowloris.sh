#!/usr/bin/env bash
# Bounded slow-loris run against the real edge with Debian's slowhttptest.
#
#   tests/integration/slowloris.sh EDGE_BIN
#
# Starts edge on 127.0.0.1:<ephemeral> with header_timeout = 5s, runs slowhttptest in slow-headers
# mode (-H) with 500 connections, while a probe curls the server every second.  Fails when a probe
# fails (the service must stay available every second), when slowhttptest reports the service
# unavailable, or when edge does not exit 0 on SIGTERM.  The whole run takes at most ~60 s.
set -u

EDGE_BIN=${1:-${EDGE_BIN:-/work/main/build/edge}}
CONNS=${SLOWLORIS_CONNS:-500}
LENGTH=${SLOWLORIS_SECONDS:-20}

say() { printf 'slowloris: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

[ -x "$EDGE_BIN" ] || die "edge binary not found: $EDGE_BIN"
command -v curl >/dev/null || die "curl is missing"
if ! command -v slowhttptest >/dev/null; then
  say "installing slowhttptest"
  command -v slowhttptest || apt-get install -y slowhttptest >/dev/null || die "cannot install slowhttptest"
fi

tmp=$(mktemp -d /tmp/edgetest-slowloris.XXXXXX)
edge_pid=""
probe_pid=""
cleanup() {
  [ -n "$probe_pid" ] && kill "$probe_pid" 2>/dev/null
  if [ -n "$edge_pid" ] && kill -0 "$edge_pid" 2>/dev/null; then kill -KILL "$edge_pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# edge and slowhttptest both need more than 500 descriptors
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"

mkdir -p "$tmp/site/assets"
printf '<!doctype html><title>slowloris</title><p>EDGETEST-SLOWLORIS</p>\n' >"$tmp/site/index.html"
printf 'console.log(1)\n' >"$tmp/site/assets/index-Ab3dE5fG.js"
cat >"$tmp/edge.toml" <<TOML
[server]
workers = 1
header_timeout = "5s"
keepalive_timeout = "10s"
grace_period = "5s"

[log]
access = "off"
level = "info"

[[listen]]
address = "127.0.0.1:0"

[[route]]
path = "/health"
health = true

[[route]]
prefix = "/"
root = "$tmp/site"
spa_fallback = "/index.html"
TOML


"$EDGE_BIN" --config "$tmp/edge.toml" </dev/null >"$tmp/edge.out" 2>"$tmp/edge.err" &
edge_pid=$!

port=""
for _ in $(seq 1 100); do
  port=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$tmp/edge.err" 2>/dev/null | head -1 | sed 's/.*://')
  [ -n "$port" ] && break
  kill -0 "$edge_pid" 2>/dev/null || { cat "$tmp/edge.err" >&2; die "edge exited at start"; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/edge.err" >&2; die "no 'listening on' line within 10 s"; }
url="http://127.0.0.1:$port/"
say "edge pid $edge_pid on $url"

curl -sS -o /dev/null --max-time 2 "$url" || die "edge does not answer before the attack"

# Probe: one request every second for the length of the attack (+ a few seconds).
probe_seconds=$((LENGTH + 4))
(
  for i in $(seq 1 "$probe_seconds"); do
    start=$(date +%s.%N)
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 1.5 "${url}readings/$i" 2>>"$tmp/probe.err")
    rc=$?
    printf '%s %s %s\n' "$i" "$rc" "$code" >>"$tmp/probe.log"
    left=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { d = 1 - (n - s); if (d < 0) d = 0; print d }')
    sleep "$left"
  done
) &
probe_pid=$!

say "slowhttptest -H -c $CONNS -r 100 -i 5 -l $LENGTH against $url"
timeout --signal=INT --kill-after=5 $((LENGTH + 20)) \
  slowhttptest -H -c "$CONNS" -r 100 -i 5 -l "$LENGTH" -x 24 -p 3 -u "$url" >"$tmp/slow.out" 2>&1
slow_rc=$?

wait "$probe_pid"
probe_pid=""

status=0
sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$tmp/slow.out" >"$tmp/slow.txt"
tail -n 25 "$tmp/slow.txt" >&2
if [ "$slow_rc" -ne 0 ]; then
  say "slowhttptest exited with $slow_rc"
  status=1
fi
if grep -Eiq 'service available:[[:space:]]*NO' "$tmp/slow.txt"; then
  say "slowhttptest reported the service unavailable"
  status=1
fi
if grep -Eq 'Exit status:.*(Cannot establish connection|Connection refused)' "$tmp/slow.txt"; then
  say "slowhttptest could not connect"
  status=1
fi
# header_timeout = 5s bounds the whole request head: every slow connection must have been cut by
# the server long before the end of the run (slowhttptest opens them all in the first seconds).
last_connected=$(grep -E '^connected:' "$tmp/slow.txt" | tail -1 | awk '{ print $2 }')
max_left=$((CONNS / 20))
# slowhttptest's last status line is a snapshot taken once a second: connections opened in the
# last moments before it are legitimately still inside their 5 s. "No open connections left"
# means the server cut every one of them before the run's end, which is what we want to see.
if grep -q 'Exit status: No open connections left' "$tmp/slow.txt"; then
  say "slowhttptest: the server closed every slow connection before the run ended"
elif [ -n "$last_connected" ] && [ "$last_connected" -gt "$max_left" ]; then
  say "$last_connected slow connections still open at the end (header_timeout = 5s should have cut them; allowed: $max_left)"
  status=1
fi
if ! grep -q 'service available' "$tmp/slow.txt"; then
  say "slowhttptest printed no availability status (did it run?)"
  status=1
fi

probes=$(wc -l <"$tmp/probe.log" 2>/dev/null || echo 0)
bad=$(awk '$2 != 0 || $3 != "200"' "$tmp/probe.log" 2>/dev/null | wc -l)
say "probes: $probes, failed: $bad"
if [ "$probes" -lt "$LENGTH" ]; then
  say "too few probes ($probes < $LENGTH)"
  status=1
fi
if [ "$bad" -ne 0 ]; then
  awk '$2 != 0 || $3 != "200" { print "probe " $1 ": curl rc " $2 ", status " $3 }' "$tmp/probe.log" >&2
  cat "$tmp/probe.err" >&2 2>/dev/null
  status=1
fi

curl -sS -o /dev/null --max-time 2 "$url" || { say "edge does not answer after the attack"; status=1; }

kill -TERM "$edge_pid"
edge_rc=""
for _ in $(seq 1 100); do
  if ! kill -0 "$edge_pid" 2>/dev/null; then
    wait "$edge_pid"
    edge_rc=$?
    break
  fi
  sleep 0.1
done
if [ -z "$edge_rc" ]; then
  say "edge still running 10 s after SIGTERM"
  status=1
elif [ "$edge_rc" -ne 0 ]; then
  say "edge exited with $edge_rc after SIGTERM"
  status=1
fi
edge_pid=""

if [ "$status" -ne 0 ]; then
  say "edge stderr tail:"
  tail -n 20 "$tmp/edge.err" >&2
  say "FAILED"
else
  say "OK: service stayed available every second during the slow-loris run"
fi
exit "$status"
