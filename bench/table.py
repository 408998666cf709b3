#!/usr/bin/env python3
"""table.py [--edge LABEL] [--nginx LABEL] [--haproxy LABEL] [--varnish LABEL] [--h2o LABEL] RAW... — edge vs nginx table from bench/run.sh raw files.

Per case, medians over runs of:
  CPU µs/req = 1e6 / (rps / (srv_cpu/100))   server user+sys CPU per request (lower is better)
  req/s      = wrk's requests per second      (raw throughput; bounded by the load generator too)
  p99 ms     = wrk's 99th percentile latency
  srv CPU    = the server process tree's CPU use during the measured run, % of one core
  others' load before = % of all CPUs busy during the 1 s before the measurement (servers idle)
Reads RESULT / PROBE / SKIP / VARIANT / MEMIDLE / MEM lines (../shared/anchors/run.sh + bench/run.sh).
After the table, for the compression cases: the issue's goal (<= 25 µs/req each) and edge's
in-memory / precompressed ratio (js_br_mem µs / js_br µs, goal <= 1.10).
The tls_* cases get a table of their own (issue 4): which tool measured what, CPU µs per handshake
(server CPU measured right around the tool / connections: us_per_conn) or per kept-alive request,
the goals, TLS version/cipher/ALPN and the resumption count.
The api cases (issue 5: GET /api/… through each proxy to a fast upstream) get a table of their own with
edge, nginx and HAProxy side by side, and the goal check (edge ≤ 30 µs/req, p99 no worse than HAProxy).
The rate-limit cases (issue 7: the same /api/ request through edge with a limit that never refuses, local
counters or Redis) get a small table "Rate limiting (issue 7)": req/s and CPU µs/req of api (off),
api_rl (local) and api_rl_redis, each as a ratio to off, and the goals (local costs < 3 % of the
throughput, Redis keeps ≥ 70 %).
The cache-hit cases (issue 6: cache_small, the 291-byte JSON, and cache_20k, a 20,480-byte JSON, served
from a fresh stored copy) get a table "Cache hits (issue 6)": CPU µs/req, req/s and p99 of edge, nginx
proxy_cache and Varnish side by side, the hit check of the probe and the upstream's requests during the
runs, and the goal line (a hit costs no more than a static file, ≤ 18 µs).
The HTTP/2 cases (issue 9: h2_small, the 1 KB asset, and h2_js_br, the 150 KB JS with accept-encoding: br,
by h2load -c64 -m10 over TLS with h2 by ALPN) get a table "HTTP/2 (issue 9)": CPU µs/req of edge, nginx
(http2) and h2o side by side, req/s, h2load's mean time per request, the checks (the probe's status,
encoding and size; the protocol h2load negotiated and its DATA bytes per request) and the goal line
(≤ 6 µs per small request, h2o's class).
"""
import argparse, re, statistics
from collections import OrderedDict

ap = argparse.ArgumentParser()
ap.add_argument("--edge", default="edge")
ap.add_argument("--nginx", default="nginx")
ap.add_argument("--haproxy", default="haproxy")
ap.add_argument("--varnish", default="varnish")
ap.add_argument("--h2o", default="h2o")
ap.add_argument("raw", nargs="+")
a = ap.parse_args()
E, N, H, V, O = a.edge, a.nginx, a.haproxy, a.varnish, a.h2o
API = ("api", "api_1k")    # reverse-proxy cases: their own table (three servers)
RL = ("api_rl", "api_rl_redis")   # rate-limit cases (edge only): their own table, with api as "off"
CACHE = ("cache_small", "cache_20k")   # cache-hit cases (issue 6): their own table (edge, nginx, varnish)
H2 = ("h2_small", "h2_js_br")   # HTTP/2 cases (issue 9): their own table (edge, nginx, h2o)

res = OrderedDict()      # case -> label -> [kv]
probe, mem, memidle, skip, variant = {}, OrderedDict(), OrderedDict(), {}, []
cache_ttl = None         # from bench/run.sh's "# cache: … CACHE_TTL=2h …" header line
for path in a.raw:
    for line in open(path):
        kv = dict(re.findall(r'(\w+)=(\S+)', line))
        if line.startswith("# cache:"):
            cache_ttl = kv.get("CACHE_TTL", cache_ttl)
        if line.startswith("RESULT "):
            res.setdefault(kv["case"], {}).setdefault(kv["label"], []).append(kv)
        elif line.startswith("PROBE "):
            probe[(kv["label"], kv["case"])] = kv
        elif line.startswith("SKIP "):
            skip[(kv["label"], kv["case"])] = kv.get("reason", "skipped").replace("_", " ")
        elif line.startswith("VARIANT "):
            variant.append(kv)
        elif line.startswith("MEMIDLE "):
            memidle[kv["label"]] = kv
        elif line.startswith("MEM "):
            mem[kv["label"]] = kv


def num(x):
    try:
        return float(str(x).rstrip('%'))
    except (TypeError, ValueError):
        return float('nan')


def us_per_req(r):
    if "us_per_conn" in r:          # handshake cases: server CPU / connections, measured around the tool
        return num(r["us_per_conn"])
    rps, srv = num(r.get("rps")), num(r.get("srv_cpu"))
    if not (rps > 0 and srv > 0):
        return float('nan')
    return 1e6 / (rps / (srv / 100))


def med(vals):
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else float('nan')


def fmt(v, spec):
    return "–" if v != v else format(v, spec)


def stats(rs):
    if not rs:
        return None
    us = [us_per_req(r) for r in rs]
    return dict(
        us=med(us), us_lo=min((u for u in us if u == u), default=float('nan')),
        us_hi=max((u for u in us if u == u), default=float('nan')),
        rps=med(num(r.get("rps")) for r in rs), p99=med(num(r.get("p99_ms")) for r in rs),
        srv=med(num(r.get("srv_cpu")) for r in rs), n=len(rs),
        pre=med(num(r.get("pre_busy")) for r in rs),
        errs=sum(int(num(r.get(k, 0)) or 0) for r in rs
                 for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")),
        overlap=sum(1 for r in rs if r.get("build_overlap") == "1"),
        check=" ".join(str(x) for x in (rs[0].get("status"), rs[0].get("enc"), rs[0].get("size"))
                       if x not in (None, "-")))


def check(label, case, s):
    if s is None:
        return skip.get((label, case), "–")
    p = probe.get((label, case))
    c = s["check"]
    if p and p.get("result") != "ok":
        c += " **" + p["result"].replace("_", " ") + "**"
    if s["overlap"]:
        c += " (%d run(s) overlapped a build)" % s["overlap"]
    if s["errs"]:
        c += " (%d errors)" % s["errs"]
    return c


NOTES = {  # what a case measures (printed under the table when present)
    "js_id": "150 KB JS, no Accept-Encoding (identity)",
    "js_br": "150 KB JS, Accept-Encoding: br, the .br sibling (edge: its default compression; nginx: brotli_static)",
    "js_gz": "150 KB JS, Accept-Encoding: gzip, the .gz sibling (edge: default; nginx: gzip_static)",
    "js_br_mem": "site without siblings, br: edge's own variant kept in memory; nginx: none (no on-the-fly brotli in Debian's nginx)",
    "js_gz_mem": "site without siblings, gzip: edge's own variant (level 9, once) vs nginx on-the-fly gzip level 6 (every request)",
}

if any(not c.startswith("tls_") and c not in API and c not in RL and c not in CACHE and c not in H2 for c in res):
    print("| case | CPU µs/req edge | CPU µs/req nginx | edge/nginx | req/s edge | req/s nginx | p99 ms edge | p99 ms nginx | srv CPU edge / nginx | check edge / nginx (status enc size) | others' load before, edge / nginx | n |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|")
for case, by in res.items():
    if case.startswith("tls_") or case in API or case in RL or case in CACHE or case in H2:
        continue
    e, n = stats(by.get(E, [])), stats(by.get(N, []))
    g = lambda s, k, spec: fmt(s[k], spec) if s else "–"
    pct = lambda s, k: (fmt(s[k], ".0f") + "%" if s[k] == s[k] else "–") if s else "–"
    span = lambda s: ("**%s** (%s–%s)" % (fmt(s["us"], ".1f"), fmt(s["us_lo"], ".0f"), fmt(s["us_hi"], ".0f"))) if s else "–"
    ratio = "–"
    if e and n and e["us"] == e["us"] and n["us"] == n["us"] and n["us"]:
        r = e["us"] / n["us"]
        ratio = "%.2f" % r if r >= 0.1 else "%.4f" % r
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s |" % (
        case, span(e), "n/a" if n is None and (N, case) in skip else span(n), ratio, g(e, "rps", ".0f"), g(n, "rps", ".0f"),
        g(e, "p99", ".2f"), g(n, "p99", ".2f"), pct(e, "srv"), pct(n, "srv"),
        check(E, case, e), check(N, case, n), pct(e, "pre"), pct(n, "pre"), "/".join(str(s["n"]) if s else "0" for s in (e, n))))

# Compression: the goals.
ES = {c: stats(by.get(E, [])) for c, by in res.items()}
comp = [c for c in ("js_br", "js_gz", "js_br_mem", "js_gz_mem") if ES.get(c)]
if comp:
    print()
    for c in [c for c in res if c in NOTES]:
        print("- `%s`: %s" % (c, NOTES[c]))
    print()
    goal = ", ".join("%s %s µs %s" % (c, fmt(ES[c]["us"], ".1f"), "✓" if ES[c]["us"] <= 25 else "✗") for c in comp)
    print("Goal ≤ 25 µs/req (edge, median): %s." % goal)
    for m, p in (("js_br_mem", "js_br"), ("js_gz_mem", "js_gz")):
        if ES.get(m) and ES.get(p) and ES[p]["us"] == ES[p]["us"] and ES[p]["us"]:
            r = ES[m]["us"] / ES[p]["us"]
            print("In-memory / precompressed (edge, %s µs / %s µs): %.1f / %.1f = **%.2f** (goal ≤ 1.10 %s)." % (
                m, p, ES[m]["us"], ES[p]["us"], r, "✓" if r <= 1.10 else "✗"))
    if variant:
        print("Edge's own variants before the runs: %s." % "; ".join(
            "%s ready=%s after %s request(s), %s s" % (v.get("enc"), v.get("ready"), v.get("requests"), v.get("seconds"))
            for v in variant))

# TLS (issue 4): its own table, with the tool that produced each figure.
TLS = OrderedDict([   # case -> (tool, what one unit is, goal for edge in µs, longer note)
    ("tls_hs_new", ("h2load", "new conn", 690,
                    "`h2load --h1 -t1 -c1000 -n1000 -m1` on the 1 KB asset: 1000 new TLS 1.3 connections, one request each "
                    "(no resumption); server CPU read right before/after h2load ÷ connections")),
    ("tls_hs_resumed", ("s_time", "resumed conn", None,
                        "`openssl s_time -reuse -www /assets/small-D1kP3xWa.svg -time S`: one connection at a time, each "
                        "resuming the first one's session (TLS 1.3 PSK with (EC)DHE), one HTTP/1.0 GET, close; server CPU ÷ connections")),
    ("tls_hs_new_stime", ("s_time", "new conn", None,
                          "`openssl s_time -new -www … -time S`: the same, every connection a full handshake (cross-check of "
                          "tls_hs_new: one connection at a time, so more wake-ups per connection than h2load's burst)")),
    ("tls_small", ("wrk", "request", 30, "`wrk -t1 -c64` over https, kept-alive, 1 KB asset (run.sh's `small`)")),
    ("tls_img", ("wrk", "request", 1200, "`wrk -t1 -c64` over https, kept-alive, 1 MiB asset (run.sh's `img`)")),
])
SHORT = {"TLS_AES_128_GCM_SHA256": "AES128-GCM", "TLS_AES_256_GCM_SHA384": "AES256-GCM",
         "TLS_CHACHA20_POLY1305_SHA256": "CHACHA20", "TLSv1.3": "1.3", "TLSv1.2": "1.2", "http/1.1": "h1.1"}


def tls_check(label, case, s):
    if s is None:
        return "–"
    rs = res[case][label]
    p = probe.get((label, case), {})
    r0 = rs[0]
    bits = [str(r0.get("status")), str(r0.get("size"))]
    sh = lambda x: SHORT.get(x, x)
    if r0.get("tool") == "h2load":      # h2load's own suite list; its ALPN from its output
        t = r0.get("tls", "?/?").split("/")
        bits += [sh(t[0]), sh(t[1]) if len(t) > 1 else "?", sh(r0.get("alpn", "?"))]
    else:                               # wrk and s_time: OpenSSL's default client, as the probe's s_client
        dc = p.get("default_client", "?/?").split("/")
        bits += [sh(dc[0]), sh(dc[-1]), sh(p.get("alpn", "?"))]
    if r0.get("tool") == "s_time":
        ru = sum(int(num(r.get("reused", 0))) for r in rs)
        tot = sum(int(num(r.get("conns", 0))) for r in rs)
        bits.append("resumed %d/%d" % (ru, tot))
        if r0.get("mode") == "reuse" and ru < tot:
            bits.append("**%d not resumed**" % (tot - ru))
        if r0.get("mode") == "new" and ru:
            bits.append("**%d resumed in -new**" % ru)
    c = " ".join(bits)
    if p and p.get("result") != "ok":
        c += " **" + p.get("result", "").replace("_", " ") + "**"
    if s["overlap"]:
        c += " (%d run(s) overlapped a build)" % s["overlap"]
    errs = s["errs"] + sum(int(num(r.get("failed", 0)) or 0) + int(num(r.get("errored", 0)) or 0) for r in rs)
    if errs:
        c += " (%d errors)" % errs
    return c


tcases = [c for c in TLS if c in res] + [c for c in res if c.startswith("tls_") and c not in TLS]
if tcases:
    print()
    print("TLS (issue 4): same ECDSA P-256 certificate on both, HTTP/1.1. Server CPU µs per connection (handshake cases) "
          "or per request (kept-alive), median of the runs (min–max):")
    print()
    print("| case | tool | per | CPU µs edge | CPU µs nginx | edge/nginx | goal (edge) | conn/s or req/s edge / nginx | srv CPU edge / nginx | check edge / nginx (status size TLS cipher ALPN [resumed]) | others' load before | n |")
    print("|---|---|---|---:|---:|---:|---|---|---|---|---|---:|")
    for case in tcases:
        by = res[case]
        e, n = stats(by.get(E, [])), stats(by.get(N, []))
        tool, unit, goal, _ = TLS.get(case, ("?", "?", None, ""))
        span = lambda s: ("**%s** (%s–%s)" % (fmt(s["us"], ".0f" if s["us"] >= 100 else ".1f"),
                                             fmt(s["us_lo"], ".0f"), fmt(s["us_hi"], ".0f"))) if s else "–"
        ratio = "%.2f" % (e["us"] / n["us"]) if e and n and n["us"] == n["us"] and n["us"] else "–"
        g = "–"
        if goal and e:
            g = "≤ %s %s" % (format(goal, ","), "✓" if e["us"] <= goal else "✗")
        pct = lambda s, k: (fmt(s[k], ".0f") + "%") if s else "–"
        rate = lambda s: fmt(s["rps"], ".0f") if s else "–"
        print("| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s / %s | %s |" % (
            case, tool, unit, span(e), span(n), ratio, g, rate(e), rate(n), pct(e, "srv"), pct(n, "srv"),
            tls_check(E, case, e), tls_check(N, case, n), pct(e, "pre"), pct(n, "pre"),
            "/".join(str(s["n"]) if s else "0" for s in (e, n))))
    print()
    for case in tcases:
        print("- `%s`: %s." % (case, TLS.get(case, ("", "", None, "?"))[3]))
    print("- cipher: the one the case's client got. h2load lists AES-128-GCM first; wrk and s_time use OpenSSL's "
          "default client order (AES-256-GCM first), which nginx follows by default (`ssl_prefer_server_ciphers off`) "
          "while edge applies its own order (AES-128-GCM first).")
    for case in tcases:
        per = []
        for lab in (E, N):
            rs = res[case].get(lab, [])
            if rs:
                per.append("%s %s" % (lab, ", ".join(fmt(us_per_req(r), ".0f" if us_per_req(r) >= 100 else ".1f") for r in rs)))
        extra = ""
        if case == "tls_hs_new":
            # run.sh's own formula divides by a wall time that includes its parsing after h2load
            # exits (python3 etc.): for a sub-second burst it reads low. Shown for comparison.
            f = lambda rs: med([1e6 / (num(r["rps"]) / (num(r["srv_cpu"]) / 100)) for r in rs
                                if num(r.get("rps")) > 0 and num(r.get("srv_cpu")) > 0])
            extra = " (run.sh's rps×srv_cpu formula: %s)" % ", ".join(
                "%s %s" % (lab, fmt(f(res[case].get(lab, [])), ".0f")) for lab in (E, N) if res[case].get(lab))
        print("- `%s` per run, µs: %s%s" % (case, "; ".join(per), extra))

# Reverse proxy (issue 5): edge, nginx proxy_pass (upstream keepalive) and HAProxy, same upstream.
acases = [c for c in API if c in res]
if acases:
    print()
    print("Reverse proxy (issue 5): GET /api/… → fast upstream (nginx `return 200`, 291-byte JSON, on the load CPU). "
          "Server CPU µs per request, median of the runs (min–max):")
    print()
    labs = [E, N, H]
    print("| case | conns | CPU µs/req %s | CPU µs/req %s | CPU µs/req %s | edge/nginx | edge/haproxy | req/s %s | p99 ms %s | srv CPU %s | check %s (status size) | others' load before | n |" % (
        E, N, H, " / ".join(labs), " / ".join(labs), " / ".join(labs), " / ".join(labs)))
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---:|")
    goals = []
    for case in acases:
        by = res[case]
        st = {l: stats(by.get(l, [])) for l in labs}
        span = lambda s: ("**%s** (%s–%s)" % (fmt(s["us"], ".1f"), fmt(s["us_lo"], ".0f"), fmt(s["us_hi"], ".0f"))) if s else "–"
        ratio = lambda x, y: ("%.2f" % (x["us"] / y["us"])) if x and y and x["us"] == x["us"] and y["us"] == y["us"] and y["us"] else "–"
        join = lambda f: " / ".join(f(st[l]) if st[l] else "–" for l in labs)
        rs0 = next((by[l][0] for l in labs if by.get(l)), {})
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            case, rs0.get("conns", "?"), span(st[E]), span(st[N]), span(st[H]),
            ratio(st[E], st[N]), ratio(st[E], st[H]),
            join(lambda s: fmt(s["rps"], ".0f")), join(lambda s: fmt(s["p99"], ".2f")),
            join(lambda s: fmt(s["srv"], ".0f") + "%"),
            " / ".join(check(l, case, st[l]) for l in labs),
            join(lambda s: fmt(s["pre"], ".0f") + "%"),
            "/".join(str(st[l]["n"]) if st[l] else "0" for l in labs)))
        e, h = st[E], st[H]
        if e:
            g = "%s: edge %s µs %s" % (case, fmt(e["us"], ".1f"), "✓" if e["us"] <= 30 else "✗")
            if h:
                g += ", p99 %s ms vs HAProxy %s ms %s" % (fmt(e["p99"], ".2f"), fmt(h["p99"], ".2f"),
                                                        "✓" if e["p99"] <= h["p99"] else "✗")
            goals.append(g)
    if goals:
        print()
        print("Goal (issue 5): ≤ 30 µs/req and p99 no worse than HAProxy (medians): %s." % "; ".join(goals))
    print("- p99 is only comparable when every proxy's `srv CPU` is near 100 % (otherwise wrk or the upstream, "
          "both on the load CPU, was the limit and their queueing shows up as latency).")

# Rate limiting (issue 7): edge's /api/ with the limiter off (api), local counters (api_rl) and Redis
# (api_rl_redis); same request, route, headers and upstream, one edge process per store.
if any(c in res for c in RL):
    rows = [("off", "api"), ("local (memory)", "api_rl"), ("Redis", "api_rl_redis")]
    st = {c: stats(res.get(c, {}).get(E, [])) for _, c in rows}
    off = st["api"]
    ok = lambda v: v == v
    rr = lambda s, k: (s[k] / off[k]) if s and off and ok(s[k]) and ok(off[k]) and off[k] else float("nan")
    # at full server CPU edge's throughput is 1 / (CPU per request): off µs / case µs
    cpu_tp = lambda s: (off["us"] / s["us"]) if s and off and ok(s["us"]) and ok(off["us"]) and s["us"] else float("nan")

    def rl_check(case, s):
        c = check(E, case, s)
        p = probe.get((E, case), {})
        if p:
            has = p.get("ratelimit", "-") != "-"     # the probe checked: present when limited, absent when off
            c += (" RateLimit ✓" if has else " no RateLimit") if p.get("result") == "ok" else ""
        if case == "api_rl_redis" and s:
            rs = res[case][E]
            calls = [num(r.get("redis_calls")) for r in rs]
            reqs = sum(num(r.get("reqs", 0)) for r in rs)
            if all(ok(x) for x in calls) and calls:
                c += " Redis calls %s %s requests" % (format(int(sum(calls)), ","), "≥" if sum(calls) >= reqs else "**<**")
        return c

    print()
    print("Rate limiting (issue 7): edge, GET /api/… → fast upstream, wrk -c%s, `rate_limit = { requests = 100000000, "
          "window = \"24h\" }` (never refuses) on the limited routes; median of the runs (min–max):" %
          next((r.get("conns", "?") for _, c in rows for r in res.get(c, {}).get(E, [])), "?"))
    print()
    print("| limiter | case | req/s | req/s vs off | CPU µs/req | CPU µs vs off | throughput at full CPU vs off | p99 ms | srv CPU | check (status size headers) | others' load before | n |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for name, case in rows:
        s = st[case]
        if s is None:
            print("| %s | %s | – | – | – | – | – | – | – | %s | – | 0 |" % (name, case, skip.get((E, case), "not run")))
            continue
        print("| %s | %s | %s | %s | **%s** (%s–%s) | %s | %s | %s | %s%% | %s | %s%% | %d |" % (
            name, case, fmt(s["rps"], ".0f"), fmt(rr(s, "rps"), ".3f"),
            fmt(s["us"], ".1f"), fmt(s["us_lo"], ".1f"), fmt(s["us_hi"], ".1f"), fmt(rr(s, "us"), ".3f"),
            fmt(cpu_tp(s), ".3f"), fmt(s["p99"], ".2f"), fmt(s["srv"], ".0f"), rl_check(case, s),
            fmt(s["pre"], ".0f"), s["n"]))
    print()
    goals = []
    # local: costs < 3 % (ratio > 0.97); Redis: keeps >= 70 % (ratio >= 0.70)
    for name, case, met, what in (("local", "api_rl", lambda v: v > 0.97, "costs < 3 %"),
                                  ("Redis", "api_rl_redis", lambda v: v >= 0.70, "keeps ≥ 70 %")):
        s = st[case]
        if not (s and off):
            continue
        a, b = rr(s, "rps"), cpu_tp(s)
        mark = lambda v: ("✓" if met(v) else "✗") if ok(v) else "?"
        goals.append("%s %s of the throughput: req/s ×%s %s, at full CPU ×%s %s" % (
            name, what, fmt(a, ".3f"), mark(a), fmt(b, ".3f"), mark(b)))
    if goals:
        print("Goals (issue 7, against off in the same sitting): %s." % "; ".join(goals))
    print("- req/s is wrk's; with `srv CPU` under 100 % the load CPU (wrk, the upstream, and Redis for api_rl_redis) "
          "was the limit, so the req/s ratio hides edge's cost (local) or adds Redis's to it (Redis). "
          "\"at full CPU\" = off µs ÷ case µs: edge's throughput ratio when its own CPU is the bottleneck "
          "(Redis's CPU is not in edge's µs).")
    for name, case in rows:
        rs = res.get(case, {}).get(E, [])
        if rs:
            print("- `%s` per run, req/s (µs/req): %s" % (case, ", ".join(
                "%s (%s)" % (fmt(num(r.get("rps")), ".0f"), fmt(us_per_req(r), ".1f")) for r in rs)))

# Cache hits (issue 6): edge's shared cache, nginx proxy_cache and Varnish on the same upstream.
ccases = [c for c in CACHE if c in res]
if ccases:
    labs = [E, N, V]
    CDESC = {"cache_small": "291-byte JSON (`/api/readings`)", "cache_20k": "20,480-byte JSON"}
    print()
    print("Cache hits (issue 6): GET /api/… answered from each cache's fresh copy (stored by one warm-up request; "
          "upstream = the api cases' fast nginx on the load CPU), wrk -c%s. Server CPU µs per request, median of "
          "the runs (min–max):" % next((r.get("conns", "?") for c in ccases for l in labs
                                        for r in res[c].get(l, [])), "?"))
    print()
    print("| case | CPU µs/req %s | CPU µs/req %s | CPU µs/req %s | edge/nginx | edge/varnish | req/s %s | p99 ms %s | "
          "srv CPU %s | check %s (status size, hit, upstream requests during the runs) | others' load before | n |" % (
              E, N, V, " / ".join(labs), " / ".join(labs), " / ".join(labs), " / ".join(labs)))
    print("|---|---:|---:|---:|---:|---:|---|---|---|---|---|---:|")

    def cache_check(label, case, s):
        c = check(label, case, s)
        if s is None:
            return c
        p = probe.get((label, case), {})
        if p.get("hit") == "yes":
            c += " hit ✓"
        elif p:
            c += " **not a hit (%s)**" % p.get("marker", "?")
        ups = [num(r.get("upstream_reqs")) for r in res[case][label]]
        if ups and all(u == u for u in ups):
            tot = int(sum(ups))
            c += (" upstream +0" if tot == 0 else " **upstream +%d**" % tot)
        if p.get("burst_upstream") not in (None, "0"):
            c += " **burst upstream +%s**" % p.get("burst_upstream")
        return c

    goals = []
    for case in ccases:
        by = res[case]
        st = {l: stats(by.get(l, [])) for l in labs}
        span = lambda s: ("**%s** (%s–%s)" % (fmt(s["us"], ".1f"), fmt(s["us_lo"], ".0f"), fmt(s["us_hi"], ".0f"))) if s else "–"
        ratio = lambda x, y: ("%.2f" % (x["us"] / y["us"])) if x and y and x["us"] == x["us"] and y["us"] == y["us"] and y["us"] else "–"
        join = lambda f: " / ".join(f(st[l]) if st[l] else "–" for l in labs)
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            case, span(st[E]), span(st[N]), span(st[V]), ratio(st[E], st[N]), ratio(st[E], st[V]),
            join(lambda s: fmt(s["rps"], ".0f")), join(lambda s: fmt(s["p99"], ".2f")),
            join(lambda s: fmt(s["srv"], ".0f") + "%"),
            " / ".join(cache_check(l, case, st[l]) for l in labs),
            join(lambda s: fmt(s["pre"], ".0f") + "%"),
            "/".join(str(st[l]["n"]) if st[l] else "0" for l in labs)))
        e = st[E]
        if e:
            goals.append("%s edge %s µs %s" % (case, fmt(e["us"], ".1f"), ("✓" if e["us"] <= 18 else "✗") if e["us"] == e["us"] else "?"))
    print()
    if goals:
        g = "Goal (issue 6): a hit costs no more than a static file, ≤ 18 µs/req (edge, median): %s." % "; ".join(goals)
        sm = stats(res.get("small", {}).get(E, []))
        if sm and sm["us"] == sm["us"]:
            # the "no more than a static file": against edge's own 1 KB static file, same sitting
            g += " Against edge's static 1 KB file (`small`, %s µs, this sitting): %s." % (fmt(sm["us"], ".1f"), "; ".join(
                "%s ×%s %s" % (c, fmt(u / sm["us"], ".2f"), "✓" if u <= sm["us"] else "✗")
                for c, u in ((c, stats(res[c][E])["us"]) for c in ccases if res[c].get(E)) if u == u))
        print(g)
    for case in ccases:
        print("- `%s`: %s" % (case, CDESC.get(case, "?")))
    print("- edge: its own process (`edge-cache` in the memory table), the /api/ route with "
          "`cache = { ttl = \"%s\", override = true }`; nginx: the anchors' `nginx-api-cache.inc` "
          "(`proxy_cache`, X-Cache) in a server block of the same nginx; Varnish: the anchors' `varnish.vcl`, "
          "`-p thread_pools=1 -p thread_pool_min=16 -p thread_pool_max=1000`, whole process on the server CPU. "
          "Same lifetime for all three (CACHE_TTL = %s: nginx `proxy_cache_valid 200`, Varnish `beresp.ttl`)." % (
              cache_ttl or "?", cache_ttl or "?"))
    print("- Anchors (../shared/anchors/BASELINE.md, /api cache hit, quiet re-run): nginx proxy_cache 32 µs, "
          "Varnish 43 µs (issue 6, another sitting: 38 and 46 µs); they kept a 10 s lifetime (a refresh every 10 s).")
    print("- p99 is only comparable when every server's `srv CPU` is near 100 % (wrk and the upstream share the load CPU).")
    for case in ccases:
        per = []
        for lab in labs:
            rs = res[case].get(lab, [])
            if rs:
                per.append("%s %s" % (lab, ", ".join("%s (%s)" % (fmt(num(r.get("rps")), ".0f"), fmt(us_per_req(r), ".1f"))
                                                    for r in rs)))
        print("- `%s` per run, req/s (µs/req): %s" % (case, "; ".join(per)))

# HTTP/2 (issue 9): edge's TLS listener, nginx `listen … ssl http2`, h2o; h2load over TLS, h2 by ALPN.
hcases = [c for c in H2 if c in res]
if hcases:
    labs = [E, N, O]
    HDESC = {"h2_small": "1 KB asset (`/assets/small-D1kP3xWa.svg`, tls_small's path), no accept-encoding",
             "h2_js_br": "150 KB JS (`/assets/index-Cq7Lx2Vd.js`), `-H 'accept-encoding: br'`: each server's "
                         "precompressed .br (53,100 B)"}
    r0 = next((r for c in hcases for l in labs for r in res[c].get(l, [])), {})
    print()
    print("HTTP/2 (issue 9): `h2load -t1 -c%s -m%s` over TLS (h2 by ALPN), same ECDSA P-256 certificate and site "
          "on every server (edge: its TLS listener; nginx: `listen … ssl http2`; h2o 2.2, `num-threads: 1`). "
          "Server CPU µs per request, median of the runs (min–max):" % (r0.get("conns", "?"), r0.get("streams", "?")))
    print()
    print("| case | CPU µs/req %s | CPU µs/req %s | CPU µs/req %s | edge/nginx | edge/h2o | req/s %s | mean ms %s | "
          "srv CPU %s | check %s (status enc size; h2load: protocol, cipher, DATA B/req) | others' load before | n |" % (
              E, N, O, " / ".join(labs), " / ".join(labs), " / ".join(labs), " / ".join(labs)))
    print("|---|---:|---:|---:|---:|---:|---|---|---|---|---|---:|")

    def h2_check(label, case, s):
        c = check(label, case, s)
        if s is None:
            return c
        rs = res[case][label]
        protos = sorted(set(r.get("h2load_alpn", "?") for r in rs))
        dpr = med(num(r.get("data_per_req")) for r in rs)
        ciphers = sorted(set(SHORT.get(t[1], t[1]) for t in (r.get("tls", "?/?").split("/") for r in rs) if len(t) > 1))
        c += "; h2load %s %s, %s B/req" % ("/".join(protos), "/".join(ciphers) or "?", fmt(dpr, ".0f"))
        if protos != ["h2"]:
            c += " **not h2**"
        size = num(rs[0].get("size"))
        # (h2load's byte totals include its warm-up while its request count does not: up to ~1/DUR
        # more; less than the size means short bodies)
        if dpr == dpr and size == size and size and not (0.95 * size <= dpr <= 1.3 * size):
            c += " **DATA/req ≠ size**"
        bad = sum(int(num(r.get("failed", 0)) or 0) + int(num(r.get("errored", 0)) or 0) for r in rs)
        non2xx = sum(max(0, int(num(r.get("h2load_ok", 0)) or 0) - int(num(r.get("h2load_2xx", 0)) or 0)) for r in rs)
        if bad:
            c += " (**%d failed/errored**)" % bad
        if non2xx:
            c += " (**%d non-2xx**)" % non2xx
        return c

    for case in hcases:
        by = res[case]
        st = {l: stats(by.get(l, [])) for l in labs}
        mean = {l: med(num(r.get("mean_ms")) for r in by.get(l, [])) for l in labs}
        span = lambda s: ("**%s** (%s–%s)" % (fmt(s["us"], ".1f"), fmt(s["us_lo"], ".1f"), fmt(s["us_hi"], ".1f"))) if s else "–"
        ratio = lambda x, y: ("%.2f" % (x["us"] / y["us"])) if x and y and x["us"] == x["us"] and y["us"] == y["us"] and y["us"] else "–"
        join = lambda f: " / ".join(f(st[l]) if st[l] else "–" for l in labs)
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            case, span(st[E]), span(st[N]), span(st[O]), ratio(st[E], st[N]), ratio(st[E], st[O]),
            join(lambda s: fmt(s["rps"], ".0f")),
            " / ".join(fmt(mean[l], ".2f") if st[l] else "–" for l in labs),
            join(lambda s: fmt(s["srv"], ".0f") + "%"),
            " / ".join(h2_check(l, case, st[l]) for l in labs),
            join(lambda s: fmt(s["pre"], ".0f") + "%"),
            "/".join(str(st[l]["n"]) if st[l] else "0" for l in labs)))
    print()
    sm = {l: stats(res.get("h2_small", {}).get(l, [])) for l in labs}
    e = sm[E]
    if e:
        others = ", ".join("%s %s µs" % (l, fmt(sm[l]["us"], ".1f")) for l in (O, N) if sm[l])
        print("Goal (issue 9): ≤ 6 µs per small request (h2o's class): edge h2_small %s µs %s%s." % (
            fmt(e["us"], ".1f"), ("✓" if e["us"] <= 6 else "✗") if e["us"] == e["us"] else "?",
            " (this sitting: %s)" % others if others else ""))
    else:
        print("Goal (issue 9): ≤ 6 µs per small request (h2o's class): edge's h2_small was not measured.")
    for case in hcases:
        print("- `%s`: %s" % (case, HDESC.get(case, "?")))
    print("- CPU µs/req as for every case: run.sh's `1e6 / (rps / srv_cpu)`, h2load's req/s of the measured "
          "seconds and the server tree's user+sys over the whole h2load call (its warm-up included). "
          "`mean ms` is h2load's mean time per request (h2load prints no percentiles).")
    print("- Anchors (../shared/anchors/BASELINE.md, `h2load -t1 -c64 -m10 -D8 --warm-up-time=1`, 1 KB asset): "
          "nginx 34–36 µs, h2o 5–6 µs per request; compare with the nginx and h2o columns of this sitting.")
    for case in hcases:
        per = []
        for lab in labs:
            rs = res[case].get(lab, [])
            if rs:
                per.append("%s %s" % (lab, ", ".join("%s (%s)" % (fmt(num(r.get("rps")), ".0f"), fmt(us_per_req(r), ".1f"))
                                                    for r in rs)))
        print("- `%s` per run, req/s (µs/req): %s" % (case, "; ".join(per)))

if mem or memidle:
    print()
    print("| server | RSS idle, 1 s after start (KiB) | RSS after the runs (KiB) | PSS after (KiB) | procs | threads |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in list(OrderedDict.fromkeys(list(memidle) + list(mem))):
        i, m = memidle.get(label, {}), mem.get(label, {})
        print("| %s | %s | %s | %s | %s | %s |" % (label, i.get("rss_kb", "–"), m.get("rss_kb", "–"),
              m.get("pss_kb", "–"), m.get("procs", i.get("procs", "–")), m.get("threads", i.get("threads", "–"))))
