"""The admin listener (issue 8, /work/notes/issue8-contract.md): `[admin]` on 127.0.0.1:0, its port
from the `admin listening on http://127.0.0.1:PORT` line; /metrics in the Prometheus text format
(checked by `promtool check metrics` when installed — Debian's `prometheus` package — and by a
parser here) whose counters move exactly with the traffic (static, 404, no route, proxied through
a real Node upstream, cache miss/hit, rate limited, connections held open), upstream errors and
`edge_upstream_up` falling to 0 when the upstream is SIGKILLed; the bearer token (401 +
`WWW-Authenticate: Bearer`, /health and /status open); admin paths never served on the public
listener; /status.json consistent with /metrics; /status's CSP hashes matching its inline script
and style; 404 JSON for unknown admin paths; POST /cache/purge; no `[admin]`: no admin listener.
"""
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import opstest as ops  # noqa: E402
import upstreamtest as ut  # noqa: E402

TOKEN = "tok-9Fq2-ops"
PUBLIC = "cc=public,max-age=60"

GAUGES = ["edge_build_info", "edge_start_time_seconds", "edge_uptime_seconds", "edge_connections_open",
          "edge_cache_bytes", "edge_cache_objects", "edge_cache_capacity_bytes", "edge_upstream_up",
          "edge_upstream_in_flight", "edge_config_last_reload_success",
          "edge_config_last_reload_timestamp_seconds"]
COUNTERS = ["edge_http_requests_total", "edge_http_request_body_bytes_total", "edge_http_response_bytes_total",
            "edge_connections_accepted_total", "edge_connections_refused_total", "edge_tls_handshakes_total",
            "edge_tls_resumptions_total", "edge_tls_handshake_errors_total", "edge_cache_requests_total",
            "edge_cache_evictions_total", "edge_cache_purged_total", "edge_upstream_requests_total",
            "edge_upstream_errors_total", "edge_rate_limited_total", "edge_rate_limit_store_errors_total",
            "edge_config_reloads_total"]
HISTOGRAMS = ["edge_http_request_duration_seconds", "edge_upstream_response_seconds"]
# Families that have at least one series in this setup once some traffic went through.
ALWAYS = ["edge_build_info", "edge_start_time_seconds", "edge_uptime_seconds", "edge_connections_open",
          "edge_connections_accepted_total", "edge_http_requests_total", "edge_http_request_duration_seconds",
          "edge_http_response_bytes_total", "edge_cache_bytes", "edge_cache_objects", "edge_cache_capacity_bytes",
          "edge_cache_evictions_total", "edge_cache_purged_total", "edge_upstream_up", "edge_upstream_in_flight",
          "edge_upstream_requests_total", "edge_upstream_response_seconds", "edge_rate_limit_store_errors_total",
          "edge_config_last_reload_success", "edge_config_last_reload_timestamp_seconds"]
CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"]
CSP_TEMPLATE = ("default-src 'none'; script-src '{script}'; style-src '{style}'; connect-src 'self'; "
                "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def edge_version():
    out = subprocess.run([et.EDGE_BIN, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=10).stdout.decode().strip()
    return out.split()[-1] if out else ""


class Admin(ops.OpsCase):
    """One edge (2 workers), admin on 127.0.0.1:0 with a token, a Node upstream behind /api/ and
    /cached/ (no active health checks, so its request counts are exact), a rate-limited static
    route, a named route and the SPA at /."""

    upstream_specs = {"A": ("normal", {})}
    token = TOKEN

    @classmethod
    def prepare_site(cls, site):
        site.write("/limited/a.txt", b"EDGETEST-LIMITED\n")
        site.write("/named.txt", b"EDGETEST-NAMED\n")

    @classmethod
    def config_text(cls, ups):
        cls.up = ups["A"]
        return (ops.admin_toml("127.0.0.1:0", TOKEN)
                + ut.pool_toml("api", [cls.up.address])
                + ops.HEALTH_ROUTE
                + ut.proxy_route("/api/", "api", strip_prefix="/api")
                + ut.proxy_route("/cached/", "api", strip_prefix="/cached", cache={"ttl": "2h"})
                + ops.static_route(prefix="/limited/", rate_limit={"requests": 2, "window": "60s"})
                + ops.static_route(path="/named.txt", name="named")
                + ops.static_route(prefix="/", spa_fallback="/index.html"))

    # -- helpers ---------------------------------------------------------------------------------
    def req_count(self, m, route, cls):
        return m.sum("edge_http_requests_total", {"route": route, "class": cls})

    def public_listener_label(self, m, name="edge_connections_open"):
        labels = m.label_values(name, "listener")
        for cand in (f"127.0.0.1:{self.port}", "127.0.0.1:0"):
            if cand in labels:
                return cand
        self.fail(f"no {name} series for the public listener 127.0.0.1:{self.port}: listeners {labels}")

    # -- the listener ----------------------------------------------------------------------------
    def test_admin_listener_is_its_own_port(self):
        self.assertIsNotNone(self.admin_port)
        self.assertNotEqual(self.admin_port, self.port)
        self.assertEqual(ops.listening_ports(self.edge.proc.pid), {self.port, self.admin_port},
                         "edge listens on exactly the public listener and the admin listener")
        self.assertEqual(self.edge.listening, [("127.0.0.1", self.port)], self.edge.stderr_text())

    # -- /metrics: format ----------------------------------------------------------------------------
    def test_metrics_content_type_and_families(self):
        self.assertEqual(self.get("/logo.svg").status, 200)
        self.assertEqual(self.get("/api/json").status, 200)
        r = self.admin("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-type"), ops.METRICS_CT, r)
        self.assertIn("no-store", r.header("cache-control") or "", r)
        self.assertEqual(r.header("x-content-type-options"), "nosniff", r)
        m = ops.parse_metrics(r.body.decode("utf-8"))
        expected = {**{n: "gauge" for n in GAUGES}, **{n: "counter" for n in COUNTERS},
                    **{n: "histogram" for n in HISTOGRAMS}}
        for fam in ALWAYS:
            self.assertIn(fam, m.types, f"no # TYPE for {fam}")
        for fam, typ in m.types.items():
            if fam in expected:
                self.assertEqual(typ, expected[fam], f"# TYPE of {fam}")
        for name, labels, _ in m.samples:
            fam = m.family(name)
            self.assertIn(fam, m.types, f"sample {name}{labels} has no # TYPE")
            self.assertIn(fam, m.helps, f"sample {name}{labels} has no # HELP")
            self.assertTrue(m.helps[fam].strip(), f"empty # HELP for {fam}")
            self.assertTrue(fam.startswith("edge_"), name)
        for fam in m.types:
            self.assertIn(fam, m.helps, f"# TYPE without # HELP: {fam}")
        # label sets
        for ls, _ in m.find("edge_http_requests_total"):
            self.assertEqual(set(ls), {"route", "class"}, ls)
            self.assertIn(ls["class"], CLASSES, ls)
        for ls, _ in m.find("edge_upstream_requests_total"):
            self.assertEqual(set(ls), {"pool", "server", "class"}, ls)
            self.assertIn(ls["class"], CLASSES, ls)
        for ls, _ in m.find("edge_upstream_errors_total"):
            self.assertEqual(set(ls), {"pool", "server", "kind"}, ls)
            self.assertIn(ls["kind"], ["connect", "timeout", "reset", "bad_response"], ls)
        for ls, _ in m.find("edge_cache_requests_total"):
            self.assertEqual(set(ls), {"route", "result"}, ls)
            self.assertIn(ls["result"], ["hit", "stale", "revalidated", "miss", "bypass"], ls)
        for ls, _ in m.find("edge_config_reloads_total"):
            self.assertIn(ls.get("result"), ["ok", "failed"], ls)
        for ls, _ in m.find("edge_connections_open"):
            self.assertEqual(set(ls), {"listener"}, ls)
        # build info and times
        bi = m.find("edge_build_info")
        self.assertEqual(len(bi), 1, bi)
        self.assertEqual(bi[0][1], 1)
        self.assertEqual(bi[0][0].get("version"), edge_version(), bi)
        now = time.time()
        start = m.get("edge_start_time_seconds")
        self.assertIsNotNone(start)
        self.assertTrue(now - 300 < start <= now + 1, (start, now))
        up = m.get("edge_uptime_seconds")
        self.assertIsNotNone(up)
        self.assertTrue(0 <= up <= now - start + 2, (up, now - start))
        self.assertEqual(m.get("edge_config_last_reload_success"), 1, "1 before any reload")
        self.assertAlmostEqual(m.get("edge_config_last_reload_timestamp_seconds"), start, delta=2,
                               msg="the start time before any reload")
        self.assertEqual(m.sum("edge_config_reloads_total"), 0)

    def test_promtool_accepts_metrics(self):
        if not ops.PROMTOOL:
            self.skipTest("promtool not installed (Debian package `prometheus`); CI installs it")
        self.get("/logo.svg")
        self.get("/nope.png")
        self.get("/api/json")
        self.get(f"/cached/text?bytes=100&{PUBLIC}&case=promtool")
        self.get(f"/cached/text?bytes=100&{PUBLIC}&case=promtool")
        text = self.admin("/metrics").body.decode("utf-8")
        rc, out = ops.promtool_check(text)
        self.assertEqual(rc, 0, f"promtool check metrics:\n{out}\n--- metrics ---\n{text[:4000]}")

    # -- /metrics: values -------------------------------------------------------------------------
    def test_static_requests_counted_exactly(self):
        n_ok, n_404 = 7, 3
        m0 = self.metrics()
        bodies = 0
        for i in range(n_ok):
            r = self.get(f"/logo.svg?i={i}")
            self.assertEqual(r.status, 200)
            bodies += len(r.body)
        for i in range(n_404):
            r = self.get(f"/nope-{i}.png")
            self.assertEqual(r.status, 404)
            bodies += len(r.body)
        target = self.req_count(m0, "/", "4xx") + n_404
        m1 = self.wait_metric("edge_http_requests_total", {"route": "/", "class": "4xx"}, target)
        self.assertEqual(self.req_count(m1, "/", "2xx") - self.req_count(m0, "/", "2xx"), n_ok)
        self.assertEqual(self.req_count(m1, "/", "4xx") - self.req_count(m0, "/", "4xx"), n_404)
        for c in ("1xx", "3xx", "5xx"):
            self.assertEqual(self.req_count(m1, "/", c), self.req_count(m0, "/", c), c)
        c0, s0 = ops.check_histogram(self, m0, "edge_http_request_duration_seconds", {"route": "/"}) \
            if m0.find("edge_http_request_duration_seconds_count", {"route": "/"}) else (0, 0)
        c1, s1 = ops.check_histogram(self, m1, "edge_http_request_duration_seconds", {"route": "/"}, ops.BUCKETS)
        self.assertEqual(c1 - c0, n_ok + n_404, "histogram _count vs requests")
        self.assertEqual(c1, sum(self.req_count(m1, "/", c) for c in CLASSES),
                         "histogram _count == the route's requests_total")
        self.assertGreater(s1, s0)
        self.assertLess(s1 - s0, 10 * (n_ok + n_404), "seconds, not milliseconds")
        self.assertEqual(m1.sum("edge_http_response_bytes_total", {"route": "/"})
                         - m0.sum("edge_http_response_bytes_total", {"route": "/"}), bodies,
                         "response bytes = the bodies")
        # every histogram series is well formed
        for ls in {tuple(sorted((k, v) for k, v in ls.items() if k != "le"))
                   for ls, _ in m1.find("edge_http_request_duration_seconds_bucket")}:
            ops.check_histogram(self, m1, "edge_http_request_duration_seconds", dict(ls), ops.BUCKETS)

    def test_connections_accepted_counts_the_public_listener_only(self):
        m0 = self.metrics()
        lbl = {"listener": self.public_listener_label(m0, "edge_connections_accepted_total")}
        for i in range(4):
            self.assertEqual(self.get(f"/logo.svg?acc={i}").status, 200)
        m1 = self.wait_metric("edge_connections_accepted_total", lbl,
                              m0.sum("edge_connections_accepted_total", lbl) + 4)
        self.assertEqual(m1.sum("edge_connections_accepted_total", lbl)
                         - m0.sum("edge_connections_accepted_total", lbl), 4,
                         f"4 public connections (and 2 admin ones, to read /metrics) in between; "
                         f"series: {m1.find('edge_connections_accepted_total')}")

    def test_no_route_and_named_route_labels(self):
        m0 = self.metrics()
        r = self.get("/%00")
        self.assertEqual(r.status, 400, r)
        r = self.get("/named.txt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"EDGETEST-NAMED\n")
        m1 = self.wait_metric("edge_http_requests_total", {"route": "named", "class": "2xx"},
                              self.req_count(m0, "named", "2xx") + 1)
        self.assertEqual(self.req_count(m1, "-", "4xx") - self.req_count(m0, "-", "4xx"), 1,
                         "a 400 before routing counts under route=\"-\"")
        self.assertEqual(self.req_count(m1, "named", "2xx") - self.req_count(m0, "named", "2xx"), 1)
        self.assertEqual(m1.find("edge_http_requests_total", {"route": "/named.txt"}), [],
                         "a route with a name is labelled by its name")

    def test_admin_requests_not_counted(self):
        m0 = self.metrics()
        for p in ("/health", "/status", "/status.json", "/nothing-here"):
            self.admin(p)
        time.sleep(0.2)
        m1 = self.metrics()
        self.assertEqual(m1.sum("edge_http_requests_total"), m0.sum("edge_http_requests_total"))

    def test_upstream_metrics(self):
        srv = {"pool": "api", "server": self.up.address}
        m0 = self.metrics()
        n = 5
        for i in range(n):
            r = self.get(f"/api/json?i={i}")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("x-upstream"), "A")
        body = b"x" * 1000
        r = self.get("/api/echo", method="POST", body=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body)["body_bytes"], 1000)
        r = self.get("/api/no-such-thing")
        self.assertEqual(r.status, 404, r)
        up2 = {**srv, "class": "2xx"}
        m1 = self.wait_metric("edge_upstream_requests_total", up2,
                              m0.sum("edge_upstream_requests_total", up2) + n + 1)
        self.assertEqual(m1.sum("edge_upstream_requests_total", up2)
                         - m0.sum("edge_upstream_requests_total", up2), n + 1)
        up4 = {**srv, "class": "4xx"}
        self.assertEqual(m1.sum("edge_upstream_requests_total", up4)
                         - m0.sum("edge_upstream_requests_total", up4), 1)
        self.assertEqual(m1.sum("edge_upstream_errors_total", srv), m0.sum("edge_upstream_errors_total", srv))
        self.assertEqual(m1.get("edge_upstream_up", srv), 1, m1.find("edge_upstream_up"))
        self.assertEqual(m1.get("edge_upstream_in_flight", srv), 0, m1.find("edge_upstream_in_flight"))
        c0 = m0.get("edge_upstream_response_seconds_count", srv) or 0
        c1, _ = ops.check_histogram(self, m1, "edge_upstream_response_seconds", srv)
        self.assertEqual(c1 - c0, n + 2)
        self.assertEqual(self.req_count(m1, "/api/", "2xx") - self.req_count(m0, "/api/", "2xx"), n + 1)
        self.assertEqual(self.req_count(m1, "/api/", "4xx") - self.req_count(m0, "/api/", "4xx"), 1)
        self.assertEqual(m1.sum("edge_http_request_body_bytes_total", {"route": "/api/"})
                         - m0.sum("edge_http_request_body_bytes_total", {"route": "/api/"}), 1000)

    def test_cache_miss_then_hit(self):
        path = f"/cached/text?bytes=300&{PUBLIC}&case=metrics"
        lbl = {"route": "/cached/"}
        m0 = self.metrics()
        a = self.get(path)
        b = self.get(path)
        self.assertEqual(a.header("cache-status"), "edge; fwd=miss; stored", a)
        self.assertTrue((b.header("cache-status") or "").startswith("edge; hit"), b)
        m1 = self.wait_metric("edge_cache_requests_total", {**lbl, "result": "hit"},
                              m0.sum("edge_cache_requests_total", {**lbl, "result": "hit"}) + 1)
        for res, d in (("miss", 1), ("hit", 1), ("stale", 0), ("revalidated", 0), ("bypass", 0)):
            self.assertEqual(m1.sum("edge_cache_requests_total", {**lbl, "result": res})
                             - m0.sum("edge_cache_requests_total", {**lbl, "result": res}), d, res)
        self.assertGreaterEqual(m1.get("edge_cache_objects"), 1)
        self.assertGreaterEqual(m1.get("edge_cache_bytes"), 300)
        self.assertEqual(m1.get("edge_cache_capacity_bytes"), 64 * 1024 * 1024, "[cache] size default 64m")
        self.assertEqual(m1.find("edge_cache_requests_total", {"route": "/api/"}), [],
                         "only routes with `cache` have cache series")

    def test_rate_limited_counter(self):
        m0 = self.metrics()
        rs = [self.get("/limited/a.txt") for _ in range(3)]
        self.assertEqual([r.status for r in rs], [200, 200, 429], rs)
        lbl = {"route": "/limited/"}
        m1 = self.wait_metric("edge_rate_limited_total", lbl, m0.sum("edge_rate_limited_total", lbl) + 1)
        self.assertEqual(m1.sum("edge_rate_limited_total", lbl) - m0.sum("edge_rate_limited_total", lbl), 1)
        self.assertEqual(self.req_count(m1, "/limited/", "4xx") - self.req_count(m0, "/limited/", "4xx"), 1)
        self.assertEqual(self.req_count(m1, "/limited/", "2xx") - self.req_count(m0, "/limited/", "2xx"), 2)
        self.assertEqual(m1.sum("edge_rate_limit_store_errors_total"), 0)

    def test_connections_open_follows_held_connections(self):
        m0 = self.metrics()
        lbl = {"listener": self.public_listener_label(m0)}
        base = m0.sum("edge_connections_open", lbl)
        conns = []
        try:
            for i in range(5):
                c = et.Conn(self.port)
                conns.append(c)
                c.send(et.request(f"/logo.svg?held={i}"))
                self.assertEqual(c.read_response().status, 200)
            got = ops.wait_until(lambda: self.metrics().sum("edge_connections_open", lbl) >= base + 5, 3)
            self.assertTrue(got, f"edge_connections_open with 5 held: {self.metrics().find('edge_connections_open')}")
        finally:
            for c in conns:
                c.close()
        back = ops.wait_until(lambda: self.metrics().sum("edge_connections_open", lbl) <= base, 3)
        self.assertTrue(back, f"edge_connections_open after closing: {self.metrics().find('edge_connections_open')}"
                              f" (base {base})")

    def test_admin_requests_in_the_access_log_as_route_admin(self):
        self.admin("/status.json", headers=[("X-Request-Id", "admin-logged-1")])

        def line():
            try:
                with open(self.access_log, "rb") as f:
                    docs = [json.loads(ln) for ln in f.read().decode().splitlines() if ln.strip()]
            except FileNotFoundError:
                return None
            return next((d for d in docs if d.get("request_id") == "admin-logged-1"), None)

        doc = ops.wait_until(line, 3)
        self.assertIsNotNone(doc, "the admin request is not in the access log")
        self.assertEqual((doc["route"], doc["status"], doc["path"]), ("admin", 200, "/status.json"), doc)

    # -- the token --------------------------------------------------------------------------------
    def assert401(self, r, what):
        self.assertEqual(r.status, 401, f"{what}: {r!r}")
        self.assertTrue((r.header("www-authenticate") or "").startswith("Bearer"), f"{what}: {r!r}")
        self.assertEqual(r.media_type(), "application/json", f"{what}: {r!r}")
        self.assertIsInstance(json.loads(r.body).get("error"), str, what)
        self.assertNotIn(b"edge_http_requests_total", r.body)

    def test_token_required(self):
        for path in ("/metrics", "/status.json"):
            self.assert401(self.admin(path, token=None), f"{path} without a token")
            self.assert401(self.admin(path, token="wrong"), f"{path} with a wrong token")
            self.assert401(self.admin(path, token=None, headers=[("Authorization", "Basic dG9rOng=")]),
                           f"{path} with Basic")
            self.assert401(self.admin(path, token=TOKEN + "x"), f"{path} with a longer token")
        r = self.admin("/metrics", token=TOKEN)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"edge_http_requests_total", r.body)
        r = self.admin("/status.json", token=TOKEN)
        self.assertEqual(r.status, 200, r)
        self.assert401(self.admin("/cache/purge?tag=nothing", method="POST", token=None), "purge without a token")
        self.assert401(self.admin("/cache/purge?tag=nothing", method="POST", token="wrong"), "purge, wrong token")

    def test_token_required_on_unknown_paths_too(self):
        # "every admin path but /health and /status needs the token": no 404 without it
        self.assert401(self.admin("/nothing-here", token=None), "/nothing-here without a token")

    def test_health_and_status_page_need_no_token(self):
        r = self.admin("/health", token=None)
        pub = self.get("/health")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.status, pub.status)
        self.assertEqual(r.media_type(), "application/json", r)
        doc, pdoc = json.loads(r.body), json.loads(pub.body)
        self.assertEqual(set(doc), set(pdoc), "the same health document as the public /health")
        self.assertEqual(doc["status"], "OK")
        self.assertEqual(doc.get("checks"), pdoc.get("checks"))
        self.assertEqual(doc.get("version"), pdoc.get("version"))
        r = self.admin("/status", token=None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8", r)

    # -- public vs admin --------------------------------------------------------------------------
    def test_admin_paths_not_on_the_public_listener(self):
        for path in ("/metrics", "/status"):
            for tok in (None, TOKEN):
                r = self.get(path, headers=[("Authorization", f"Bearer {tok}")] if tok else None)
                self.assertEqual(r.status, 200, f"public {path}: the SPA fallback: {r!r}")
                self.assertIn(b"EDGETEST-INDEX", r.body, f"public {path}: {r!r}")
                self.assertNotIn(b"# TYPE", r.body)
                self.assertNotIn(b"edge_http_requests_total", r.body)
        r = self.get("/status.json", headers=[("Authorization", f"Bearer {TOKEN}")])
        self.assertEqual(r.status, 404, f"public /status.json is a missing file: {r!r}")
        self.assertNotIn(b'"requests"', r.body)
        r = self.get("/cache/purge?tag=x", method="POST", headers=[("Authorization", f"Bearer {TOKEN}")])
        self.assertEqual(r.status, 405, f"public POST /cache/purge is the static route's 405: {r!r}")
        self.assertNotIn(b"purged", r.body)

    # -- /status.json -----------------------------------------------------------------------------
    def consistent_snapshot(self):
        """(metrics, status.json doc) with no counter moving in between (no traffic meanwhile)."""
        keys = ("edge_http_requests_total", "edge_http_response_bytes_total", "edge_cache_requests_total",
                "edge_upstream_requests_total", "edge_rate_limited_total", "edge_upstream_errors_total")
        for _ in range(5):
            m0 = self.metrics()
            r = self.admin("/status.json")
            m1 = self.metrics()
            if all(m0.sum(k) == m1.sum(k) for k in keys):
                return m1, r
            time.sleep(0.3)
        self.fail("the metrics kept moving without traffic")

    def test_status_json_shape_and_values(self):
        self.get("/logo.svg")
        self.get("/nope.png")
        self.get("/api/json")
        self.get("/api/echo", method="POST", body=b"abc")
        held = []
        try:
            for i in range(3):  # held open through the snapshot
                c = et.Conn(self.port)
                held.append(c)
                c.send(et.request(f"/logo.svg?snap={i}"))
                self.assertEqual(c.read_response().status, 200)
            time.sleep(0.2)
            m, r = self.consistent_snapshot()
        finally:
            for c in held:
                c.close()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.media_type(), "application/json", r)
        self.assertIn("no-store", (r.header("cache-control") or ""), r)
        doc = json.loads(r.body)
        for k in ("version", "time", "uptime_s", "workers", "requests", "responses", "latency_ms", "bytes_in",
                  "bytes_out", "connections_open", "cache", "rate_limited", "upstreams", "reloads"):
            self.assertIn(k, doc, f"/status.json lacks {k}: {doc}")
        self.assertEqual(doc["version"], m.find("edge_build_info")[0][0]["version"])
        self.assertEqual(doc["version"], edge_version())
        t = datetime.datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
        self.assertLess(abs(t.timestamp() - time.time()), 60, doc["time"])
        self.assertTrue(doc["time"].endswith("Z"), doc["time"])
        self.assertIsInstance(doc["uptime_s"], (int, float))
        self.assertAlmostEqual(doc["uptime_s"], m.get("edge_uptime_seconds"), delta=3)
        self.assertEqual(doc["workers"], 2)
        self.assertEqual(doc["requests"], m.sum("edge_http_requests_total"))
        self.assertGreater(doc["requests"], 0)
        self.assertEqual(set(doc["responses"]), set(CLASSES))
        for c in CLASSES:
            self.assertEqual(doc["responses"][c], m.sum("edge_http_requests_total", {"class": c}), c)
        self.assertEqual(doc["bytes_out"], m.sum("edge_http_response_bytes_total"))
        self.assertEqual(doc["bytes_in"], m.sum("edge_http_request_body_bytes_total"))
        self.assertGreaterEqual(doc["bytes_in"], 3)
        self.assertGreaterEqual(doc["connections_open"], 3, "3 connections held open")
        # (the admin connections of the two requests may or may not be counted at either moment)
        self.assertLessEqual(abs(doc["connections_open"] - m.sum("edge_connections_open")), 1,
                             (doc["connections_open"], m.find("edge_connections_open")))
        cache = doc["cache"]
        for res in ("hit", "stale", "revalidated", "miss", "bypass"):
            self.assertEqual(cache[res], m.sum("edge_cache_requests_total", {"result": res}), res)
        self.assertEqual(cache["bytes"], m.get("edge_cache_bytes"))
        self.assertEqual(cache["objects"], m.get("edge_cache_objects"))
        self.assertEqual(cache["capacity"], m.get("edge_cache_capacity_bytes"))
        self.assertEqual(cache["evictions"], m.sum("edge_cache_evictions_total"))
        self.assertEqual(doc["rate_limited"], m.sum("edge_rate_limited_total"))
        ups = doc["upstreams"]
        self.assertIsInstance(ups, list)
        series = m.find("edge_upstream_up")
        self.assertEqual(len(ups), len(series), (ups, series))
        for ls, v in series:
            e = [u for u in ups if u.get("pool") == ls["pool"] and u.get("server") == ls["server"]]
            self.assertEqual(len(e), 1, (ls, ups))
            e = e[0]
            self.assertIs(e["up"], v == 1, e)
            self.assertEqual(e["in_flight"], m.get("edge_upstream_in_flight", ls), e)
            self.assertEqual(e["requests"], m.sum("edge_upstream_requests_total", ls), e)
            self.assertEqual(e["errors"], m.sum("edge_upstream_errors_total", ls), e)
        self.assertEqual([(u["pool"], u["server"]) for u in ups], [("api", self.up.address)])
        self.assertEqual(doc["reloads"], {"ok": 0, "failed": 0, "last": "none"})
        # latency quantiles: ordered, and each inside the histogram bucket that holds its rank
        lat = doc["latency_ms"]
        for k in ("p50", "p90", "p99"):
            self.assertIsInstance(lat[k], (int, float), lat)
            self.assertGreaterEqual(lat[k], 0, lat)
        self.assertLessEqual(lat["p50"], lat["p90"])
        self.assertLessEqual(lat["p90"], lat["p99"])
        cum = [m.sum("edge_http_request_duration_seconds_bucket", {"le": le}) for le in ops.BUCKETS]
        total = cum[-1]
        self.assertEqual(total, doc["requests"], "the histogram holds every request")
        bounds = [0.0] + [float(le) * 1000 for le in ops.BUCKETS]
        for k, qv in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            rank = qv * total
            i = next(j for j, c in enumerate(cum) if c >= rank)
            lo, hi = bounds[i], bounds[i + 1]
            self.assertTrue(lo - 1e-6 <= lat[k] <= hi + 1e-6,
                            f"{k}={lat[k]} ms outside its bucket ({lo}, {hi}] (cumulative {cum})")

    # -- /status ----------------------------------------------------------------------------------
    def test_status_page_csp_hashes(self):
        r = self.admin("/status", token=None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        html = r.body
        scripts = re.findall(rb"<script([^>]*)>(.*?)</script\s*>", html, re.S | re.I)
        styles = re.findall(rb"<style([^>]*)>(.*?)</style\s*>", html, re.S | re.I)
        self.assertEqual(len(scripts), 1, "one inline <script>")
        self.assertEqual(len(styles), 1, "one inline <style>")
        self.assertNotIn(b"src=", scripts[0][0], "the script is inline")
        self.assertEqual(len(re.findall(rb"<script", html, re.I)), 1)
        csp = r.header("content-security-policy")
        self.assertIsNotNone(csp, r)
        self.assertEqual(r.count("content-security-policy"), 1, "one CSP (not the site preset as well)")
        expected = CSP_TEMPLATE.format(script=ops.csp_hash(scripts[0][1]), style=ops.csp_hash(styles[0][1]))
        self.assertEqual(csp, expected)
        # nothing the CSP would block: no inline handlers, no style attributes, no external loads
        outside = re.sub(rb"<script[^>]*>.*?</script\s*>|<style[^>]*>.*?</style\s*>", b"", html, flags=re.S | re.I)
        self.assertIsNone(re.search(rb"\son[a-z]+\s*=", outside, re.I), "inline event handler")
        self.assertIsNone(re.search(rb"\sstyle\s*=", outside, re.I), "style attribute")
        self.assertIsNone(re.search(rb"<link[^>]+stylesheet", outside, re.I), "external stylesheet")
        self.assertIn(b"status.json", scripts[0][1], "the page polls /status.json")
        self.assertIn(b"token", scripts[0][1], "the page takes #token=T from its URL")
        self.assertIn(b"Authorization", scripts[0][1], "the page sends Authorization: Bearer T")
        self.assertNotIn(TOKEN.encode(), html)

    def test_admin_response_headers(self):
        # conf/REFERENCE.md: admin responses carry Cache-Control: no-store,
        # X-Content-Type-Options: nosniff, X-Frame-Options: DENY
        cases = [("/metrics", "GET", TOKEN), ("/status.json", "GET", TOKEN), ("/status", "GET", None),
                 ("/health", "GET", None), ("/nothing-here", "GET", TOKEN), ("/metrics", "GET", None),
                 ("/cache/purge?tag=none-such", "POST", TOKEN), ("/cache/purge?tag=none-such", "GET", TOKEN)]
        bad = []
        for path, method, tok in cases:
            r = self.admin(path, method, token=tok)
            got = (r.header("cache-control") or "", r.header("x-content-type-options"), r.header("x-frame-options"))
            if "no-store" not in got[0] or got[1:] != ("nosniff", "DENY"):
                bad.append(f"{method} {path} ({r.status}): Cache-Control={got[0]!r} "
                           f"X-Content-Type-Options={got[1]!r} X-Frame-Options={got[2]!r}")
        self.assertEqual(bad, [], "admin responses without the admin headers")

    # -- the rest ---------------------------------------------------------------------------------
    def test_unknown_admin_path_404_json(self):
        for path in ("/nothing-here", "/metrics/extra", "/index.html", "/"):
            r = self.admin(path)
            self.assertEqual(r.status, 404, f"{path}: {r!r}")
            self.assertEqual(r.media_type(), "application/json", f"{path}: {r!r}")
            self.assertEqual(json.loads(r.body), {"error": "Not Found"}, path)

    def test_cache_purge_on_admin(self):
        path = f"/cached/text?bytes=100&{PUBLIC}&case=adminpurge&tag=ops-purge-tag"
        path2 = f"/cached/text?bytes=100&{PUBLIC}&case=adminpurge-url"
        for p in (path, path2):
            self.get(p)
            self.assertTrue(self.get(p).header("cache-status").startswith("edge; hit"))
        m0 = self.metrics()
        r = self.admin("/cache/purge?tag=ops-purge-tag", method="POST")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body), {"purged": 1}, r)
        self.assertEqual(self.get(path).header("cache-status"), "edge; fwd=miss; stored")
        self.assertTrue(self.get(path2).header("cache-status").startswith("edge; hit"), "the other one stays")
        url = urllib.parse.quote("http://localhost" + path2, safe="")
        r = self.admin(f"/cache/purge?url={url}", method="POST")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body), {"purged": 1}, r)
        self.assertEqual(self.get(path2).header("cache-status"), "edge; fwd=miss; stored")
        m1 = self.wait_metric("edge_cache_purged_total", None, m0.sum("edge_cache_purged_total") + 2)
        self.assertEqual(m1.sum("edge_cache_purged_total") - m0.sum("edge_cache_purged_total"), 2)
        self.assertEqual(self.admin("/cache/purge?tag=x", method="GET").status, 405)
        self.assertEqual(self.admin("/cache/purge?nothing=1", method="POST").status, 400)


class AdminUpstreamDown(ops.OpsCase):
    """The upstream SIGKILLed: connect errors counted, edge_upstream_up 1 -> 0 (200 ms checks)."""

    upstream_specs = {"D": ("normal", {})}
    server_opts = {"workers": "1"}

    @classmethod
    def config_text(cls, ups):
        cls.up = ups["D"]
        return (ops.admin_toml()
                + ut.pool_toml("doomed", [cls.up.address], tries=1,
                               health={"path": "/health", "interval": "200ms", "timeout": "500ms",
                                       "rise": 1, "fall": 2},
                               passive={"max_fails": 0})
                + ops.HEALTH_ROUTE
                + ut.proxy_route("/doomed/", "doomed", strip_prefix="/doomed")
                + ops.static_route(prefix="/", spa_fallback="/index.html"))

    def test_kill_upstream_errors_and_down(self):
        srv = {"pool": "doomed", "server": self.up.address}
        self.assertEqual(self.get("/doomed/json").status, 200)
        m0 = self.metrics()
        self.assertEqual(m0.get("edge_upstream_up", srv), 1, m0.find("edge_upstream_up"))
        self.up.kill()
        time.sleep(0.1)  # edge drops its idle keep-alive connection to it (closed by the kernel)
        codes = [self.get(f"/doomed/json?after={i}").status for i in range(3)]
        self.assertTrue(all(c in (502, 503) for c in codes), codes)
        self.assertEqual(codes[0], 502, "the first request after the kill tries the server")
        conn = {**srv, "kind": "connect"}
        m1 = self.wait_metric("edge_upstream_errors_total", conn, m0.sum("edge_upstream_errors_total", conn) + 1)
        self.assertGreaterEqual(m1.sum("edge_upstream_errors_total", conn)
                                - m0.sum("edge_upstream_errors_total", conn), 1)
        self.assertEqual(m1.sum("edge_upstream_errors_total", {**srv, "kind": "timeout"}), 0)
        down = ops.wait_until(lambda: self.metrics().get("edge_upstream_up", srv) == 0, 5)
        self.assertTrue(down, f"edge_upstream_up after the kill: {self.metrics().find('edge_upstream_up')}")
        doc = json.loads(self.admin("/status.json").body)
        self.assertEqual([(u["server"], u["up"]) for u in doc["upstreams"]], [(self.up.address, False)])
        self.assertGreaterEqual(doc["upstreams"][0]["errors"], 1)
        self.assertEqual(self.get("/doomed/json").status, 503)
        self.assertEqual(self.admin("/health").status, 503, "the admin /health is the public one")


class AdminTlsCounters(unittest.TestCase):
    """edge_tls_handshakes_total / edge_tls_resumptions_total / edge_tls_handshake_errors_total on a
    TLS listener (a self-signed certificate made by edge), labelled by the bound address."""

    def test_handshakes_resumptions_and_errors(self):
        import ssl
        tmp = tempfile.mkdtemp(prefix="edgetest-ops-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        site = et.Site(tmp)
        conf = os.path.join(tmp, "edge.toml")
        with open(conf, "w") as f:
            f.write(f"""[server]
workers = 1
[log]
access = "off"
[[listen]]
address = "127.0.0.1:0"
tls = {{ self_signed = true }}
{ops.admin_toml()}
[[route]]
prefix = "/"
root = {ops.q(site.root)}
""")
        edge = ops.OpsEdge(conf, expect_hosts={"127.0.0.1"}, expect_count=1).start()
        self.addCleanup(edge.kill)
        self.assertIsNotNone(edge.wait_admin())
        port = edge.port
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        def fetch(session=None):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
            s.sendall(b"GET /logo.svg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
            reused, sess = s.session_reused, s.session
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:60])
            return reused, sess

        reused, sess = fetch()
        self.assertFalse(reused)
        reused, _ = fetch(sess)
        self.assertTrue(reused, "the second handshake resumed with the first's ticket")
        bad = socket.create_connection(("127.0.0.1", port), timeout=5)  # not a TLS ClientHello
        bad.sendall(b"\x16\x03\x01\x00\x05hello")
        bad.settimeout(5)
        try:
            bad.recv(100)
        except OSError:
            pass
        bad.close()
        label = {"listener": f"127.0.0.1:{port}"}

        def metrics():
            r = ops.http(edge.admin_port, "/metrics")
            return ops.parse_metrics(r.body.decode("utf-8"))

        m = ops.wait_until(lambda: (lambda x: x if x.get("edge_tls_handshake_errors_total", label) >= 1 else None)(
            metrics()), 3) or metrics()
        self.assertEqual(m.get("edge_tls_handshakes_total", label), 2, m.find("edge_tls_handshakes_total"))
        self.assertEqual(m.get("edge_tls_resumptions_total", label), 1, m.find("edge_tls_resumptions_total"))
        self.assertEqual(m.get("edge_tls_handshake_errors_total", label), 1,
                         m.find("edge_tls_handshake_errors_total"))
        self.assertEqual(edge.stop(), 0)


class NoAdminSection(ops.OpsCase):
    """Without [admin]: no admin listener, no line, only the configured listener."""

    has_admin = False

    @classmethod
    def config_text(cls, ups):
        return ops.HEALTH_ROUTE + ops.static_route(prefix="/", spa_fallback="/index.html")

    def test_nothing_but_the_configured_listener(self):
        self.assertEqual(self.get("/logo.svg").status, 200)
        self.edge.settle(0.5)
        self.assertIsNone(self.edge.admin_port)
        self.assertNotIn("admin listening", self.edge.stderr_text())
        self.assertEqual(ops.listening_ports(self.edge.proc.pid), {self.port})
        r = self.get("/metrics")
        self.assertIn(b"EDGETEST-INDEX", r.body)


if __name__ == "__main__":
    unittest.main()
