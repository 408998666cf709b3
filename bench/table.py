#!/usr/bin/env python3
"""table.py [--edge LABEL] [--nginx LABEL] RAW... — edge vs nginx table from bench/run.sh raw files.

Per case, medians over runs of:
  CPU µs/req = 1e6 / (rps / (srv_cpu/100))   server user+sys CPU per request (lower is better)
  req/s      = wrk's requests per second      (raw throughput; bounded by the load generator too)
  p99 ms     = wrk's 99th percentile latency
  srv CPU    = the server process tree's CPU use during the measured run, % of one core
  others' load before = % of all CPUs busy during the 1 s before the measurement (servers idle)
Reads RESULT / PROBE / MEMIDLE / MEM lines (the format of ../shared/anchors/run.sh + bench/run.sh).
"""
import argparse, re, statistics
from collections import OrderedDict

ap = argparse.ArgumentParser()
ap.add_argument("--edge", default="edge")
ap.add_argument("--nginx", default="nginx")
ap.add_argument("raw", nargs="+")
a = ap.parse_args()
E, N = a.edge, a.nginx

res = OrderedDict()      # case -> label -> [kv]
probe, mem, memidle = {}, {}, {}
for path in a.raw:
    for line in open(path):
        kv = dict(re.findall(r'(\w+)=(\S+)', line))
        if line.startswith("RESULT "):
            res.setdefault(kv["case"], {}).setdefault(kv["label"], []).append(kv)
        elif line.startswith("PROBE "):
            probe[(kv["label"], kv["case"])] = kv
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
        check="%s %s" % (rs[0].get("status"), rs[0].get("size")))


def check(label, case, s):
    if s is None:
        return "–"
    p = probe.get((label, case))
    c = s["check"]
    if p and p.get("result") != "ok":
        c += " **" + p["result"].replace("_", " ") + "**"
    if s["overlap"]:
        c += " (%d run(s) overlapped a build)" % s["overlap"]
    if s["errs"]:
        c += " (%d errors)" % s["errs"]
    return c


print("| case | CPU µs/req edge | CPU µs/req nginx | edge/nginx | req/s edge | req/s nginx | p99 ms edge | p99 ms nginx | srv CPU edge / nginx | check edge / nginx (status size) | others' load before, edge / nginx | n |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|")
for case, by in res.items():
    e, n = stats(by.get(E, [])), stats(by.get(N, []))
    g = lambda s, k, spec: fmt(s[k], spec) if s else "–"
    pct = lambda s, k: (fmt(s[k], ".0f") + "%" if s[k] == s[k] else "–") if s else "–"
    span = lambda s: ("**%s** (%s–%s)" % (fmt(s["us"], ".1f"), fmt(s["us_lo"], ".0f"), fmt(s["us_hi"], ".0f"))) if s else "–"
    ratio = "%.2f" % (e["us"] / n["us"]) if e and n and e["us"] == e["us"] and n["us"] == n["us"] and n["us"] else "–"
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s |" % (
        case, span(e), span(n), ratio, g(e, "rps", ".0f"), g(n, "rps", ".0f"),
        g(e, "p99", ".2f"), g(n, "p99", ".2f"), pct(e, "srv"), pct(n, "srv"),
        check(E, case, e), check(N, case, n), pct(e, "pre"), pct(n, "pre"), "/".join(str(s["n"]) if s else "0" for s in (e, n))))

if mem or memidle:
    print()
    print("| server | RSS idle, 1 s after start (KiB) | RSS after the runs (KiB) | PSS after (KiB) | procs | threads |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in [l for l in (E, N) if l in mem or l in memidle]:
        i, m = memidle.get(label, {}), mem.get(label, {})
        print("| %s | %s | %s | %s | %s | %s |" % (label, i.get("rss_kb", "–"), m.get("rss_kb", "–"),
              m.get("pss_kb", "–"), m.get("procs", i.get("procs", "–")), m.get("threads", i.get("threads", "–"))))
