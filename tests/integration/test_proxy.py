"""Reverse proxy (issue 5) against real upstreams: Node instances of upstream.js (built-ins only).

Pools, balancing (round robin, weights, ip_hash, least_conn), keep-alive to the upstream, the
headers sent upstream and filtered on the way back, strip_prefix / proxy_host, streaming both ways
(chunked, 100 MB upload with edge's RSS flat, 50 MB download, SSE event by event), WebSocket
tunnel, 413, smuggling refused before anything reaches the upstream, failures (an instance killed
mid-test, slow -> 504, malformed -> 502, reset -> retried for GET / never replayed for POST,
connect failure retried), active health checks and /health's "checks", all servers down -> 503.

Config syntax: conf/REFERENCE.md ([[upstream]], [upstream.health], [upstream.passive],
route `proxy` / `strip_prefix` / `proxy_host` / `max_body` / `websocket`, server `trusted_proxies`).
"""
import base64
import hashlib
import json
import os
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import opstest as ops  # noqa: E402
import upstreamtest as ut  # noqa: E402

MiB = 1024 * 1024
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---------------------------------------------------------------------------------------------
# Helpers


def big_block():
    """The 64 KiB block upstream.js repeats for /big (same formula)."""
    return bytes(((i * 7 + 13 + (i >> 9)) & 0xFF) for i in range(65536))


def big_sha256(total):
    b = big_block()
    h = hashlib.sha256()
    while total > 0:
        n = min(total, len(b))
        h.update(b[:n])
        total -= n
    return h.hexdigest()


def ws_frame(opcode, payload, fin=True):
    """A masked client frame."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(c ^ mask[i & 3] for i, c in enumerate(payload))


def ws_read_frame(conn, timeout=5.0):
    """(first byte, payload) of one unmasked server frame from conn.buf / the socket."""
    deadline = time.monotonic() + timeout
    while True:
        b = conn.buf
        if len(b) >= 2:
            if b[1] & 0x80:
                raise AssertionError(f"server frame is masked: {b[:16]!r}")
            n, off = b[1] & 0x7F, 2
            ok = True
            if n == 126:
                ok = len(b) >= 4
                if ok:
                    n, off = struct.unpack(">H", b[2:4])[0], 4
            elif n == 127:
                ok = len(b) >= 10
                if ok:
                    n, off = struct.unpack(">Q", b[2:10])[0], 10
            if ok and len(b) >= off + n:
                conn.buf = b[off + n:]
                return b[0], b[off:off + n]
        if conn.eof:
            raise AssertionError(f"connection closed inside a WebSocket frame; have {conn.buf[:60]!r}")
        if not conn._recv(deadline):
            raise AssertionError(f"timeout waiting for a WebSocket frame; have {conn.buf[:60]!r}")


def read_head(conn, timeout=5.0):
    """Read up to the end of a response head; returns (Response without body, nothing consumed
    past the head stays in conn.buf)."""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in conn.buf:
        if conn.eof or not conn._recv(deadline):
            raise AssertionError(f"no response head; have {conn.buf[:300]!r}")
    end = conn.buf.index(b"\r\n\r\n")
    head, conn.buf = conn.buf[:end], conn.buf[end + 4:]
    v, s, reason, headers = et._parse_head(head)
    return et.Response(v, s, reason, headers, b"", head)


def wait_until(pred, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    return last


class ProxyCase(et.EdgeTestCase):
    """Starts `upstream_specs` (name -> (mode, kwargs)) before edge, writes the routes from
    `proxy_config(ups)` (-> (pools, proxy routes)), stops everything by PID afterwards."""

    listen = ["127.0.0.1:0"]
    upstream_specs = {}
    ups = {}

    @classmethod
    def proxy_config(cls, ups):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.ups = {}
        try:
            for name, (mode, kw) in cls.upstream_specs.items():
                cls.ups[name] = ut.Upstream(name, mode, **kw).start()
            pools, proxies = cls.proxy_config(cls.ups)
            cls.routes = ut.routes_toml(pools, proxies)
            super().setUpClass()
        except BaseException:
            ut.stop_all(cls.ups.values())
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            ut.stop_all(cls.ups.values())

    # -- helpers ---------------------------------------------------------------------------------
    def total(self, key="requests", names=None):
        return sum(self.ups[n].count()[key] for n in (names or self.ups))

    def seqs(self):
        return {n: u.count()["requests"] for n, u in self.ups.items()}

    def urls_seen(self, since=None):
        """URLs the upstreams saw (only those after `since`, a seqs() snapshot, when given)."""
        return [e["url"] for n, u in self.ups.items() for e in u.log()
                if since is None or e["seq"] > since[n]]

    def json_body(self, r):
        try:
            return json.loads(r.body)
        except ValueError:
            self.fail(f"not JSON: {r!r}")

    def assertJsonError(self, r, status, what=""):
        self.assertEqual(r.status, status, f"{what}: {r!r}")
        self.assertNotIn(b"EDGETEST-INDEX", r.body, f"{what}: index.html served for a proxy error")
        self.assertEqual(r.media_type(), "application/json", f"{what}: {r!r}")
        self.assertIn("no-store", (r.header("cache-control") or "").lower(), f"{what}: {r!r}")
        doc = self.json_body(r)
        self.assertIsInstance(doc.get("error"), str, f"{what}: {doc}")
        self.assertTrue(doc["error"], what)
        self.assertIsNotNone(r.header("x-request-id"), what)
        self.assertEqual(doc.get("request_id"), r.header("x-request-id"), f"{what}: {doc}")
        self.assertEqual(r.header("server"), "samia-edge", what)
        return doc

    def echo(self, path, **kw):
        r = self.get(path, **kw)
        self.assertEqual(r.status, 200, f"{path}: {r!r}")
        doc = self.json_body(r)
        self.assertEqual(doc["instance"], r.header("x-upstream"), f"{path}: X-Upstream vs body")
        return r, doc


# ---------------------------------------------------------------------------------------------
# The happy paths


class ProxyBasics(ProxyCase):
    upstream_specs = {n: ("normal", {}) for n in ("A", "B", "C", "D", "E")}

    @classmethod
    def proxy_config(cls, u):
        A, B, C, D, E = (u[n].address for n in "ABCDE")
        pools = [
            ut.pool_toml("api", [A, B, C]),
            ut.pool_toml("weighted", [{"address": A, "weight": 1}, {"address": B, "weight": 3}]),
            ut.pool_toml("iphash", [A, B, C], balance="ip_hash"),
            ut.pool_toml("lc", [A, B], balance="least_conn"),
            ut.pool_toml("single", [A], keepalive=8),
            ut.pool_toml("ka", [E], keepalive=8, keepalive_timeout="60s"),
            ut.pool_toml("noka", [D], keepalive=0),
        ]
        proxies = [
            ut.proxy_route("/api/", "api", strip_prefix="/api"),
            ut.proxy_route("/nostrip/", "api"),
            ut.proxy_route("/weighted/", "weighted", strip_prefix="/weighted"),
            ut.proxy_route("/iphash/", "iphash", strip_prefix="/iphash"),
            ut.proxy_route("/lc/", "lc", strip_prefix="/lc"),
            ut.proxy_route("/ka/", "ka", strip_prefix="/ka"),
            ut.proxy_route("/noka/", "noka", strip_prefix="/noka"),
            ut.proxy_route("/small/", "single", strip_prefix="/small", max_body="1k"),
            ut.proxy_route("/bigup/", "single", strip_prefix="/bigup", max_body="200m"),
            ut.proxy_route("/hostup/", "single", strip_prefix="/hostup", proxy_host="upstream"),
            ut.proxy_route("/hostlit/", "single", strip_prefix="/hostlit", proxy_host="backend.internal"),
            ut.proxy_route("/nows/", "single", strip_prefix="/nows", websocket=False),
        ]
        return pools, proxies

    # -- basic GET / status / body -----------------------------------------------------------
    def test_get_through_api(self):
        r = self.get("/api/json")
        self.assertStatus(r, 200)
        self.assertIn(r.header("x-upstream"), ("A", "B", "C"), r)
        doc = self.json_body(r)
        self.assertEqual(doc["service"], "edgetest-upstream")
        self.assertEqual(doc["instance"], r.header("x-upstream"))
        self.assertEqual(r.media_type(), "application/json")
        self.assertEqual(r.header("content-length"), str(len(r.body)))
        self.assertEqual(r.header("server"), "samia-edge")
        self.assertRegex(r.header("x-request-id") or "", et.REQUEST_ID_RE)
        self.assertEqual(r.header("etag"), '"json-v1"')

    def test_get_via_curl_keepalive(self):
        r = et.curl(self.url("/api/json"), "-v", "-o", os.devnull, self.url("/api/echo"))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.status, 200, r)
        self.assertIn("Re-using existing connection", r.stderr)

    def test_upstream_status_passes(self):
        r = self.get("/api/status?code=418")
        self.assertStatus(r, 418)
        self.assertEqual(self.json_body(r)["status"], 418)
        r = self.get("/api/status?code=503")
        self.assertStatus(r, 503)
        self.assertEqual(self.json_body(r)["status"], 503, "upstream's own 503 body must pass unchanged")
        r = self.get("/api/status?code=204")
        self.assertStatus(r, 204)
        self.assertEqual(r.body, b"")
        r = self.get("/api/no-such-thing")
        self.assertStatus(r, 404)
        self.assertNotIn(b"EDGETEST-INDEX", r.body)
        self.assertEqual(self.json_body(r)["url"], "/no-such-thing")

    def test_post_body_reaches_upstream(self):
        body = os.urandom(5000)
        r, doc = self.echo("/api/echo?x=1", method="POST", body=body,
                           headers=[("Content-Length", str(len(body))), ("Content-Type", "application/octet-stream")])
        self.assertEqual(doc["method"], "POST")
        self.assertEqual(doc["url"], "/echo?x=1")
        self.assertEqual(doc["http_version"], "1.1")
        self.assertEqual(doc["body_bytes"], len(body))
        self.assertEqual(doc["body_sha256"], hashlib.sha256(body).hexdigest())
        self.assertEqual(doc["headers"].get("content-length"), str(len(body)))
        self.assertNotIn("transfer-encoding", doc["headers"])
        self.assertEqual(doc["headers"].get("content-type"), "application/octet-stream")
        for m in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            r, doc = self.echo("/api/echo", method=m, body=b"abc", headers=[("Content-Length", "3")])
            self.assertEqual((doc["method"], doc["body_bytes"]), (m, 3))

    # -- headers ---------------------------------------------------------------------------------
    def test_headers_sent_upstream(self):
        r, doc = self.echo("/api/echo?a=1&b=%20x", host="example.test:8080", headers=[
            ("X-Custom", "keep-me"), ("Authorization", "Bearer t0k"), ("Cookie", "a=b; c=d"),
            ("Accept", "application/json"), ("X-Request-Id", "req-abc-123")])
        h = doc["headers"]
        self.assertEqual(doc["url"], "/echo?a=1&b=%20x")
        self.assertEqual(h.get("host"), "example.test:8080", "proxy_host defaults to pass")
        self.assertEqual(h.get("x-custom"), "keep-me")
        self.assertEqual(h.get("authorization"), "Bearer t0k")
        self.assertEqual(h.get("cookie"), "a=b; c=d")
        self.assertEqual(h.get("accept"), "application/json")
        self.assertEqual(h.get("x-forwarded-for"), "127.0.0.1")
        self.assertEqual(h.get("x-real-ip"), "127.0.0.1")
        self.assertEqual(h.get("x-forwarded-proto"), "http")
        self.assertEqual(h.get("x-forwarded-host"), "example.test:8080")
        self.assertEqual(h.get("x-request-id"), "req-abc-123")
        self.assertEqual(r.header("x-request-id"), "req-abc-123")
        names = [k.lower() for k, _ in doc["raw_headers"]]
        for n in ("host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "x-request-id"):
            self.assertEqual(names.count(n), 1, f"{n} sent {names.count(n)} times: {doc['raw_headers']}")

    def test_request_id_generated_and_forwarded(self):
        r, doc = self.echo("/api/echo")
        rid = r.header("x-request-id")
        self.assertRegex(rid or "", et.REQUEST_ID_RE)
        self.assertEqual(doc["headers"].get("x-request-id"), rid)

    def test_hop_by_hop_removed(self):
        r, doc = self.echo("/api/echo", headers=[
            ("Connection", "keep-alive, X-Hop-A, x-hop-b"), ("X-Hop-A", "1"), ("X-Hop-B", "2"),
            ("Keep-Alive", "timeout=5, max=100"), ("TE", "trailers"), ("Trailer", "X-Trail"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("Proxy-Connection", "keep-alive"),
            ("X-End-To-End", "yes")])
        h = doc["headers"]
        for n in ("x-hop-a", "x-hop-b", "keep-alive", "te", "trailer", "proxy-authorization",
                  "proxy-connection", "transfer-encoding", "upgrade"):
            self.assertNotIn(n, h, f"hop-by-hop {n} forwarded: {doc['raw_headers']}")
        self.assertEqual(h.get("x-end-to-end"), "yes")
        conn = (h.get("connection") or "").lower()
        self.assertNotIn("x-hop", conn)

    def test_non_websocket_upgrade_not_forwarded(self):
        r, doc = self.echo("/api/echo", headers=[("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                                 ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
        self.assertNotIn("upgrade", doc["headers"], doc["raw_headers"])
        self.assertNotIn("http2-settings", doc["headers"], doc["raw_headers"])
        self.assertNotIn("upgrade", (doc["headers"].get("connection") or "").lower())

    def test_client_forwarded_headers_ignored_from_untrusted_peer(self):
        r, doc = self.echo("/api/echo", headers=[
            ("X-Forwarded-For", "1.2.3.4, 5.6.7.8"), ("X-Real-IP", "9.9.9.9"), ("CF-Connecting-IP", "8.8.4.4"),
            ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example")])
        h = doc["headers"]
        self.assertEqual(h.get("x-forwarded-for"), "127.0.0.1", doc["raw_headers"])
        self.assertEqual(h.get("x-real-ip"), "127.0.0.1", doc["raw_headers"])
        self.assertEqual(h.get("x-forwarded-proto"), "http", doc["raw_headers"])
        self.assertEqual(h.get("x-forwarded-host"), "localhost", doc["raw_headers"])

    def test_strip_prefix(self):
        _, doc = self.echo("/api/echo?q=1")
        self.assertEqual(doc["url"], "/echo?q=1")
        r = self.get("/api/")
        self.assertStatus(r, 404)  # upstream.js has no "/"
        self.assertEqual(self.json_body(r)["url"], "/")
        # no strip_prefix: the path goes upstream whole
        r = self.get("/nostrip/echo?q=2")
        self.assertStatus(r, 404)
        self.assertIn(r.header("x-upstream"), ("A", "B", "C"))
        self.assertEqual(self.json_body(r)["url"], "/nostrip/echo?q=2")

    def test_proxy_host(self):
        _, doc = self.echo("/hostup/echo", host="client.example")
        self.assertEqual(doc["headers"].get("host"), self.ups["A"].address)
        self.assertEqual(doc["headers"].get("x-forwarded-host"), "client.example")
        _, doc = self.echo("/hostlit/echo", host="client.example")
        self.assertEqual(doc["headers"].get("host"), "backend.internal")
        self.assertEqual(doc["headers"].get("x-forwarded-host"), "client.example")

    def test_response_headers_filtered(self):
        r = self.get("/api/powered")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b'{"powered":true}\n')
        self.assertIsNone(r.header("x-powered-by"), r)
        self.assertEqual(r.header_all("server"), ["samia-edge"], r)
        self.assertEqual(r.header("x-custom-resp"), "yes")
        self.assertIn(r.header("x-upstream"), ("A", "B", "C"))
        self.assertIsNone(r.header("keep-alive"), "upstream's Keep-Alive is hop-by-hop")
        self.assertEqual(r.count("date"), 1, r)
        self.assertEqual(r.count("x-request-id"), 1, r)
        self.assertEqual(r.header("content-length"), "17")
        # the route's security headers (the default preset)
        self.assertEqual(r.header("x-content-type-options"), "nosniff")
        self.assertEqual(r.header("x-frame-options"), "DENY")
        self.assertIsNotNone(r.header("content-security-policy"))
        self.assertEqual(r.header("referrer-policy"), "no-referrer")

    # -- balancing -------------------------------------------------------------------------------
    def test_round_robin(self):
        seen = [self.echo("/api/echo")[0].header("x-upstream") for _ in range(30)]
        counts = {n: seen.count(n) for n in "ABC"}
        for n in "ABC":
            self.assertGreaterEqual(counts[n], 8, f"round robin over 30 requests: {counts}")
        self.assertEqual(sum(counts.values()), 30, seen)

    def test_weights(self):
        seen = [self.echo("/weighted/echo")[0].header("x-upstream") for _ in range(40)]
        a, b = seen.count("A"), seen.count("B")
        self.assertEqual(a + b, 40, seen)
        self.assertTrue(26 <= b <= 34 and 6 <= a <= 14, f"weights 1:3 over 40 requests gave A={a} B={b}")

    def test_ip_hash_sticky(self):
        seen = {self.echo("/iphash/echo")[0].header("x-upstream") for _ in range(20)}
        self.assertEqual(len(seen), 1, f"ip_hash sent one client to {seen}")

    def test_least_conn(self):
        slow = {}

        def long_request():
            try:
                slow["r"] = self.get("/lc/slow?ms=1500", timeout=6)
            except Exception as e:  # reported below
                slow["e"] = e

        t = threading.Thread(target=long_request)
        t.start()
        try:
            busy = wait_until(lambda: [n for n in "AB" if self.ups[n].count()["active"] > 0], 1.0, 0.05)
            self.assertEqual(len(busy or []), 1, f"the slow request is on one server: {busy}")
            quick = [self.echo("/lc/echo")[0].header("x-upstream") for _ in range(6)]
        finally:
            t.join(8)
        self.assertNotIn("e", slow, slow)
        self.assertEqual(slow["r"].status, 200, slow["r"])
        self.assertEqual(slow["r"].header("x-upstream"), busy[0])
        other = "B" if busy[0] == "A" else "A"
        self.assertEqual(quick, [other] * 6, f"least_conn with {busy[0]} busy")

    # -- keep-alive to the upstream ------------------------------------------------------------
    def test_keepalive_reuse_to_upstream(self):
        E = self.ups["E"]
        before = E.count()["connections"]
        docs = [self.echo("/ka/echo")[1] for _ in range(5)]  # a fresh client connection each time
        ids = {d["socket_id"] for d in docs}
        self.assertEqual(len(ids), 1, f"edge opened {len(ids)} upstream connections for 5 sequential requests")
        reqs = [d["socket_requests"] for d in docs]
        self.assertEqual(reqs, list(range(reqs[0], reqs[0] + 5)), reqs)
        self.assertLessEqual(E.count()["connections"] - before, 1)

    def test_keepalive_zero_means_no_reuse(self):
        D = self.ups["D"]
        before = D.count()["connections"]
        docs = [self.echo("/noka/echo")[1] for _ in range(3)]
        self.assertEqual([d["socket_requests"] for d in docs], [1, 1, 1])
        self.assertEqual(len({d["socket_id"] for d in docs}), 3)
        self.assertEqual(D.count()["connections"] - before, 3)

    # -- HEAD / 304 --------------------------------------------------------------------------
    def test_head(self):
        before = sum(u.count()["methods"].get("HEAD", 0) for u in self.ups.values())
        with et.Conn(self.port) as c:
            c.send(et.request("/api/json", "HEAD"))
            h = c.read_response("HEAD")
            c.send(et.request("/api/json"))
            g = c.read_response()
        self.assertStatus(h, 200)
        self.assertEqual(h.body, b"")
        self.assertStatus(g, 200)
        self.assertEqual(h.header("content-length"), str(len(g.body)))
        self.assertEqual(h.header("etag"), '"json-v1"')
        after = sum(u.count()["methods"].get("HEAD", 0) for u in self.ups.values())
        self.assertEqual(after - before, 1, "the upstream must see HEAD, not GET")

    def test_304_passes(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/api/json", headers=[("If-None-Match", '"json-v1"')]))
            r = c.read_response()
            c.send(et.request("/api/json", headers=[("If-None-Match", '"other"')]))
            r2 = c.read_response()
        self.assertStatus(r, 304)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("etag"), '"json-v1"')
        self.assertIsNone(r.header("transfer-encoding"), r)
        self.assertStatus(r2, 200)
        self.assertEqual(self.json_body(r2)["service"], "edgetest-upstream")

    # -- streaming ------------------------------------------------------------------------------
    def test_chunked_request_body(self):
        parts = [os.urandom(n) for n in (1, 1000, 70000, 5, 300)]
        body = b"".join(parts)
        with et.Conn(self.port, timeout=10) as c:
            c.send(et.request("/api/upload", "POST", headers=[("Transfer-Encoding", "chunked")]))
            for p in parts:
                c.send(b"%x;ext=1\r\n" % len(p) + p + b"\r\n")
                time.sleep(0.05)
            c.send(b"0\r\n\r\n")
            r = c.read_response(timeout=10)
        self.assertStatus(r, 200)
        doc = self.json_body(r)
        self.assertEqual(doc["bytes"], len(body))
        self.assertEqual(doc["sha256"], hashlib.sha256(body).hexdigest())
        self.assertEqual(doc["transfer_encoding"], "chunked", "a chunked body goes upstream re-chunked")

    def test_chunked_response(self):
        expected = b"".join(b"chunk %d of 5\n" % i for i in range(5)) + b"end\n"
        r = self.get("/api/chunked?n=5&ms=30")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, expected)
        self.assertIsNone(r.header("content-length"))
        self.assertEqual((r.header("transfer-encoding") or "").lower(), "chunked", r)
        # an HTTP/1.0 client cannot take chunked: the body ends with the connection
        with et.Conn(self.port) as c:
            c.send(et.request("/api/chunked?n=5&ms=10", version="HTTP/1.0"))
            data, closed = c.read_until_close(5)
        self.assertTrue(closed)
        rs, _ = et.parse_all(data, closed=True)
        self.assertEqual(len(rs), 1, data[:300])
        self.assertIsNone(rs[0].header("transfer-encoding"), rs[0])
        self.assertEqual(rs[0].body, expected)

    def test_upload_100mb_streamed_rss_flat(self):
        total = 100 * MiB
        block = os.urandom(MiB)
        h = hashlib.sha256()
        for _ in range(total // MiB):
            h.update(block)
        pid = self.edge.proc.pid
        err = None
        with ops.RssSampler(pid) as rss:
            with et.Conn(self.port, timeout=60) as c:
                # the upstream stops reading for 1.5 s: edge must push back, not buffer
                c.send(et.request("/bigup/upload?stall_ms=1500", "POST",
                                  headers=[("Content-Length", str(total)), ("Content-Type", "application/octet-stream")]))
                t0 = time.monotonic()
                try:
                    for _ in range(total // MiB):
                        c.sock.sendall(block)
                except OSError as e:
                    err = e
                send_s = time.monotonic() - t0
                r = c.read_response(timeout=60)
        self.assertIsNone(err, f"upload cut: {err}; response {r!r}")
        self.assertStatus(r, 200)
        doc = self.json_body(r)
        self.assertEqual(doc["bytes"], total)
        self.assertEqual(doc["sha256"], h.hexdigest())
        self.assertEqual(doc["content_length"], str(total))
        self.assertLess(rss.growth_kb, 64 * 1024,
                        f"edge RSS grew {rss.growth_kb} kB during a 100 MB upload (base {rss.base} kB)")
        self.assertGreater(send_s, 1.0, "the client finished sending while the upstream was not reading: "
                                        "the body was buffered, not streamed with backpressure")

    def test_max_body_413(self):
        before = self.total()
        # route max_body = 1k: Content-Length over it
        r = self.get("/small/upload", method="POST", body=b"x" * 2000, headers=[("Content-Length", "2000")])
        self.assertStatus(r, 413)
        # ... announced with Expect: 413, not 100 Continue
        with et.Conn(self.port) as c:
            c.send(et.request("/small/upload", "POST", headers=[("Content-Length", "5000"), ("Expect", "100-continue")]))
            r = c.read_response()
        self.assertStatus(r, 413)
        # default max_body for a proxy route: 1m (only the head is sent: edge answers from the head)
        with et.Conn(self.port) as c:
            c.send(et.request("/api/upload", "POST", headers=[("Content-Length", str(2 * MiB))]))
            r = c.read_response(timeout=5)
        self.assertStatus(r, 413)
        time.sleep(0.2)
        self.assertEqual(self.total(), before, "a request over max_body reached the upstream")
        # chunked over the limit: 413 (the head may have gone upstream; the body never completes)
        with et.Conn(self.port) as c:
            c.send(et.request("/small/upload", "POST", headers=[("Transfer-Encoding", "chunked")]))
            try:
                for _ in range(4):
                    c.send(b"200\r\n" + b"y" * 512 + b"\r\n")
                c.send(b"0\r\n\r\n")
            except OSError:
                pass
            r = c.read_response(timeout=5)
        self.assertStatus(r, 413)
        # within the limit: fine
        r = self.get("/small/upload", method="POST", body=b"z" * 1000, headers=[("Content-Length", "1000")])
        self.assertStatus(r, 200)
        self.assertEqual(self.json_body(r)["bytes"], 1000)

    def test_sse_events_arrive_one_by_one(self):
        n, ms = 5, 300
        arrivals = {}
        with et.Conn(self.port, timeout=10) as c:
            c.send(et.request(f"/api/sse?n={n}&ms={ms}", headers=[("Accept", "text/event-stream")]))
            head = read_head(c)
            self.assertStatus(head, 200)
            self.assertEqual(head.media_type(), "text/event-stream")
            chunked = "chunked" in (head.header("transfer-encoding") or "").lower()
            deadline = time.monotonic() + 10
            while True:
                now = time.monotonic()
                for i in range(n):
                    if i not in arrivals and (b'"i":%d,' % i) in c.buf:
                        arrivals[i] = now
                if (chunked and c.buf.endswith(b"\r\n0\r\n\r\n")) or c.eof:
                    end_at = now
                    break
                if not c._recv(deadline):
                    self.fail(f"SSE stream stalled; events so far {sorted(arrivals)}; have {c.buf[-200:]!r}")
        self.assertEqual(sorted(arrivals), list(range(n)), c.buf[-300:])
        early = [i for i, t in arrivals.items() if t < end_at - 0.1]
        self.assertGreaterEqual(len(early), 2, f"events were held back until the end: {arrivals} end {end_at}")
        self.assertGreater(arrivals[n - 1] - arrivals[0], (n - 1) * ms / 1000 * 0.5,
                           "events arrived together, not one by one")

    def test_large_response_streamed(self):
        total = 50 * MiB
        pid = self.edge.proc.pid
        h = hashlib.sha256()
        got = 0
        with ops.RssSampler(pid) as rss:
            with et.Conn(self.port, timeout=30) as c:
                c.send(et.request("/api/big?bytes=%d" % total))
                time.sleep(1.5)  # not reading: edge must stop reading the upstream, not buffer 50 MB
                stalled_growth = rss.growth_kb
                head = read_head(c, timeout=10)
                self.assertStatus(head, 200)
                self.assertEqual(head.header("content-length"), str(total), head)
                h.update(c.buf)
                got = len(c.buf)
                c.buf = b""
                deadline = time.monotonic() + 30
                while got < total and time.monotonic() < deadline:
                    chunk = c.sock.recv(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    got += len(chunk)
        self.assertEqual(got, total)
        self.assertEqual(h.hexdigest(), big_sha256(total))
        self.assertLess(stalled_growth, 32 * 1024, f"edge RSS grew {stalled_growth} kB while the client did not read")
        self.assertLess(rss.growth_kb, 64 * 1024, f"edge RSS grew {rss.growth_kb} kB for a 50 MB response")

    def test_large_response_with_connection_close(self):
        # the client's Connection: close must not end the response early
        for q in ("bytes=20000000", "bytes=20000000&chunked=1"):
            r = et.curl(self.url(f"/api/big?{q}"), headers=[("Connection", "close")], timeout=20)
            self.assertEqual((r.rc, r.status), (0, 200), f"{q}: {r}")
            self.assertEqual(len(r.body), 20000000, q)
            self.assertEqual(hashlib.sha256(r.body).hexdigest(), big_sha256(20000000), q)
        with et.Conn(self.port, timeout=20) as c:
            c.send(et.request("/api/big?bytes=%d" % (8 * MiB), version="HTTP/1.0"))
            data, closed = c.read_until_close(20)
        rs, _ = et.parse_all(data, closed=True)
        self.assertEqual(len(rs[0].body), 8 * MiB, "HTTP/1.0 client")

    def test_large_chunked_response(self):
        total = 3 * MiB + 7
        r = et.curl(self.url(f"/api/big?bytes={total}&chunked=1"), timeout=20)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), total)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), big_sha256(total))

    # -- WebSocket -----------------------------------------------------------------------------
    def ws_handshake(self, c, path):
        key = base64.b64encode(os.urandom(16)).decode()
        c.send(et.request(path, headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                         ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
        head = read_head(c)
        return key, head

    def test_websocket_echo(self):
        before = self.total("upgrades")
        with et.Conn(self.port, timeout=5) as c:
            key, head = self.ws_handshake(c, "/api/ws")
            self.assertStatus(head, 101)
            self.assertEqual((head.header("upgrade") or "").lower(), "websocket", head)
            self.assertIn("upgrade", (head.header("connection") or "").lower(), head)
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.assertEqual(head.header("sec-websocket-accept"), accept)
            c.send(ws_frame(0x1, "héllo through edge".encode()))
            b0, payload = ws_read_frame(c)
            self.assertEqual((b0, payload.decode()), (0x81, "héllo through edge"))
            big = os.urandom(70000)
            c.send(ws_frame(0x2, big))
            b0, payload = ws_read_frame(c)
            self.assertEqual(b0, 0x82)
            self.assertEqual(payload, big)
            c.send(ws_frame(0x8, struct.pack(">H", 1000)))
            b0, payload = ws_read_frame(c)
            self.assertEqual((b0, payload), (0x88, struct.pack(">H", 1000)))
            self.assertTrue(c.wait_closed(3), "tunnel not closed after the upstream closed")
        self.assertEqual(self.total("upgrades") - before, 1)

    def test_websocket_disabled_route(self):
        before = self.total("upgrades")
        with et.Conn(self.port, timeout=5) as c:
            _, head = self.ws_handshake(c, "/nows/ws")
        self.assertNotEqual(head.status, 101, head)
        self.assertEqual(self.total("upgrades"), before)

    # -- smuggling -----------------------------------------------------------------------------
    def assert_refused_unseen(self, data, what, statuses=(400,), complete_only=False):
        """edge answers `data` with one of `statuses`, closes, does not answer the request pipelined
        after it, and no upstream saw it (or, complete_only: no upstream got a complete request),
        nor anything with 'smuggled' in its URL."""
        with self.subTest(what):
            self._assert_refused_unseen(data, what, statuses, complete_only)

    def _assert_refused_unseen(self, data, what, statuses, complete_only):
        key = "completed" if complete_only else "requests"
        before = self.total(key)
        seqs = self.seqs()
        follow = et.request("/api/echo?smuggled=follow")
        with et.Conn(self.port) as c:
            try:
                c.send(data + follow)
            except OSError:
                pass
            closed = c.wait_closed(3.0)
            buf = c.buf
        rs, _ = et.parse_all(buf, closed=True)
        self.assertTrue(rs, f"{what}: no response")
        self.assertIn(rs[0].status, statuses, f"{what}: {rs[0]!r}")
        self.assertTrue(closed, f"{what}: connection kept open")
        self.assertEqual(len(rs), 1, f"{what}: more than one response: {rs!r}")
        time.sleep(0.2)
        self.assertEqual(self.total(key), before, f"{what}: reached the upstream")
        smuggled = [u for u in self.urls_seen(seqs) if "smuggled" in u]
        self.assertEqual(smuggled, [], f"{what}: the upstream saw {smuggled}")

    SMUGGLED = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n"

    def test_smuggling_cl_te(self):
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n" + self.SMUGGLED, "CL + TE")
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
            b"8\r\nSMUGGLED\r\n0\r\n\r\n", "TE + CL")

    def test_smuggling_content_length(self):
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "duplicate CL")
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n" + self.SMUGGLED,
            "differing CL")
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 44\r\n\r\n" + self.SMUGGLED, "CL list")

    def test_smuggling_obs_fold(self):
        self.assert_refused_unseen(b"GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", "obs-fold")
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 44\r\n\r\n"
            + self.SMUGGLED, "folded Transfer-Encoding")

    def test_smuggling_transfer_encoding(self):
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "TE xchunked",
            statuses=(400, 501))
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            "TE chunked, identity", statuses=(400, 501))

    def test_smuggling_bad_chunk(self):
        # the head may already be on its way upstream (the body streams); the request must never
        # complete there and the bytes after the bad chunk must never be read as a request
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nhello\r\n0\r\n\r\n" + self.SMUGGLED, "chunk size zz", complete_only=True)
        self.assert_refused_unseen(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhelloXX0\r\n\r\n" + self.SMUGGLED, "chunk without CRLF", complete_only=True)

    def test_error_pages_are_not_index_for_unknown_api_paths(self):
        r = self.get("/api/readings/7")  # an SPA-looking path under /api/ is the upstream's business
        self.assertStatus(r, 404)
        self.assertNotIn(b"EDGETEST-INDEX", r.body)
        self.assertIn(r.header("x-upstream"), ("A", "B", "C"))


# ---------------------------------------------------------------------------------------------
# Trusted proxies: the real client IP


class ProxyTrusted(ProxyCase):
    server_opts = {"trusted_proxies": '["127.0.0.1", "::1"]'}
    upstream_specs = {n: ("normal", {}) for n in ("T1", "T2", "T3")}

    @classmethod
    def proxy_config(cls, u):
        T1, T2, T3 = (u[n].address for n in ("T1", "T2", "T3"))
        return ([ut.pool_toml("api", [T1]), ut.pool_toml("iphash", [T1, T2, T3], balance="ip_hash")],
                [ut.proxy_route("/api/", "api", strip_prefix="/api"),
                 ut.proxy_route("/iphash/", "iphash", strip_prefix="/iphash")])

    def test_x_forwarded_for_chain_from_trusted_peer(self):
        r, doc = self.echo("/api/echo", headers=[("X-Forwarded-For", "203.0.113.7, 198.51.100.2")])
        h = doc["headers"]
        self.assertEqual(h.get("x-forwarded-for"), "203.0.113.7, 198.51.100.2, 127.0.0.1", doc["raw_headers"])
        self.assertEqual(h.get("x-real-ip"), "198.51.100.2", doc["raw_headers"])

    def test_cf_connecting_ip_from_trusted_peer(self):
        r, doc = self.echo("/api/echo", headers=[("CF-Connecting-IP", "192.0.2.55")])
        h = doc["headers"]
        self.assertEqual(h.get("x-real-ip"), "192.0.2.55", doc["raw_headers"])
        self.assertTrue((h.get("x-forwarded-for") or "").endswith("127.0.0.1"), doc["raw_headers"])

    def test_no_client_headers_real_ip_is_the_peer(self):
        _, doc = self.echo("/api/echo")
        self.assertEqual(doc["headers"].get("x-real-ip"), "127.0.0.1")
        self.assertEqual(doc["headers"].get("x-forwarded-for"), "127.0.0.1")

    def test_ip_hash_on_the_real_client_ip(self):
        picks = {}
        for k in range(8):
            ip = f"100.{64 + 5 * k}.{7 * k}.{20 + k}"  # different /24s (an nginx-style hash uses 3 octets)
            seen = {self.echo("/iphash/echo", headers=[("CF-Connecting-IP", ip)])[0].header("x-upstream")
                    for _ in range(3)}
            self.assertEqual(len(seen), 1, f"client {ip} went to {seen}")
            picks[ip] = seen.pop()
        self.assertGreaterEqual(len(set(picks.values())), 2,
                                f"8 client IPs behind a trusted proxy all hashed to one server: {picks}")


# ---------------------------------------------------------------------------------------------
# Failures


class ProxyFailures(ProxyCase):
    upstream_specs = {
        "K1": ("normal", {}), "K2": ("normal", {}), "K3": ("normal", {}),
        "S": ("slow", {"delay_ms": 3000}),
        "M": ("malformed", {}),
        "R": ("reset", {}),
        "N": ("normal", {}),
    }

    @classmethod
    def proxy_config(cls, u):
        no_passive = {"max_fails": 1000}
        cls.dead = ut.dead_address()
        pools = [
            ut.pool_toml("kill", [u["K1"].address, u["K2"].address, u["K3"].address]),
            ut.pool_toml("slow", [u["S"].address], header_timeout="1s", tries=1, passive=no_passive),
            ut.pool_toml("bad", [u["M"].address], tries=3, passive=no_passive),
            ut.pool_toml("nbad", [u["N"].address], tries=1, passive=no_passive),
            ut.pool_toml("flaky", [u["R"].address, u["N"].address], tries=3, passive=no_passive),
            ut.pool_toml("deadfirst", [cls.dead, u["N"].address], tries=3, connect_timeout="2s", passive=no_passive),
        ]
        proxies = [ut.proxy_route(f"/{p}/", p, strip_prefix=f"/{p}")
                   for p in ("kill", "slow", "bad", "nbad", "flaky", "deadfirst")]
        return pools, proxies

    def methods(self, name):
        return self.ups[name].count()["methods"]

    def test_kill_one_instance_mid_test(self):
        K2 = self.ups["K2"]
        total, kill_after = 75, 15
        results, lock = [], threading.Lock()
        issued = [0]

        def worker():
            while True:
                with lock:
                    if issued[0] >= total:
                        return
                    issued[0] += 1
                try:
                    r = self.get("/kill/slow?ms=30", timeout=10)
                    out = (r.status, r.header("x-upstream"), r.body[:200])
                except Exception as e:
                    out = ("exception", None, repr(e))
                with lock:
                    results.append(out)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            self.assertTrue(wait_until(lambda: len(results) >= kill_after, 10, 0.01), results)
            with lock:
                killed_at = len(results)
            K2.kill()  # SIGKILL by PID, mid-traffic (some requests are in flight on it)
        finally:
            for t in threads:
                t.join(30)
        self.assertEqual(len(results), total)
        bad = [x for x in results if x[0] != 200]
        self.assertEqual(bad, [], f"failed GETs around the kill (killed after {killed_at})")
        self.assertIn("K2", [x[1] for x in results[:killed_at]], "K2 was not in rotation before the kill")
        after = results[killed_at + 4:]  # past the requests in flight at the kill
        self.assertGreaterEqual(len(after), 50)
        self.assertNotIn("K2", [x[1] for x in after])
        # and it stays fine afterwards
        for _ in range(10):
            r = self.get("/kill/json")
            self.assertEqual((r.status, r.header("x-upstream") in ("K1", "K3")), (200, True), r)

    def test_slow_upstream_504(self):
        t0 = time.monotonic()
        r = self.get("/slow/json", headers=[("X-Request-Id", "slow-req-1")], timeout=8)
        elapsed = time.monotonic() - t0
        doc = self.assertJsonError(r, 504, "slow upstream")
        self.assertEqual(doc["request_id"], "slow-req-1")
        self.assertGreater(elapsed, 0.8, "504 before header_timeout")
        self.assertLess(elapsed, 2.5, "header_timeout = 1s not applied (the upstream answers after 3 s)")
        self.assertEqual(self.ups["S"].count()["requests"], 1)

    def test_malformed_502(self):
        M = self.ups["M"]
        before = M.count()["requests"]
        r = self.get("/bad/json")
        self.assertJsonError(r, 502, "garbage status line")
        self.assertEqual(M.count()["requests"] - before, 1, "a response with bytes in it is not retried")

    def test_malformed_variants_502(self):
        # garbage status line; a header name with spaces; two differing Content-Length
        for kind in ("status", "header", "length"):
            with self.subTest(kind=kind):
                r = self.get(f"/nbad/malformed?kind={kind}")
                self.assertJsonError(r, 502, f"malformed kind={kind}")

    def test_truncated_response_is_cut_not_padded(self):
        # the head (Content-Length: 100) is fine, the upstream closes after 9 bytes of body
        with et.Conn(self.port) as c:
            c.send(et.request("/nbad/malformed?kind=truncated"))
            closed = c.wait_closed(5)
            data = c.buf
        self.assertTrue(closed, f"edge kept the client waiting for a body that will never come: {data[:300]!r}")
        if data.startswith(b"HTTP/1.1 502"):
            return  # answered as a bad gateway before anything went to the client: fine too
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), data[:300])
        self.assertLess(len(body), 100, "the truncated body was padded")

    def test_reset_get_retried_elsewhere(self):
        R, N = self.ups["R"], self.ups["N"]
        r_before = R.count()["requests"]
        for i in range(6):
            r = self.get(f"/flaky/echo?i={i}")
            self.assertEqual(r.status, 200, f"GET {i}: {r!r}")
            self.assertEqual(r.header("x-upstream"), "N")
        self.assertGreaterEqual(R.count()["requests"] - r_before, 1, "R never tried: the retry path was not exercised")

    def test_reset_post_not_replayed(self):
        R, N = self.ups["R"], self.ups["N"]
        r0, n0 = self.methods("R").get("POST", 0), self.methods("N").get("POST", 0)
        statuses = []
        for i in range(4):
            r = self.get(f"/flaky/echo?post={i}", method="POST", body=b"p" * 100, headers=[("Content-Length", "100")])
            statuses.append(r.status)
            if r.status == 502:
                self.assertJsonError(r, 502, f"POST {i} reset by the upstream")
            else:
                self.assertEqual((r.status, r.header("x-upstream")), (200, "N"), r)
        n502, n200 = statuses.count(502), statuses.count(200)
        self.assertEqual(n502 + n200, 4, statuses)
        self.assertGreaterEqual(n502, 1, f"no POST went to the resetting server: {statuses}")
        self.assertEqual(self.methods("R").get("POST", 0) - r0, n502, "R saw a POST more than once")
        self.assertEqual(self.methods("N").get("POST", 0) - n0, n200, "a reset POST was replayed on N")

    def test_connect_failure_retried_even_for_post(self):
        n0 = self.methods("N").get("POST", 0)
        for i in range(4):
            r = self.get(f"/deadfirst/echo?i={i}", method="POST", body=b"q" * 10, headers=[("Content-Length", "10")])
            self.assertEqual((r.status, r.header("x-upstream")), (200, "N"), f"POST {i}: {r!r}")
        for i in range(4):
            r = self.get(f"/deadfirst/echo?g={i}")
            self.assertEqual((r.status, r.header("x-upstream")), (200, "N"), f"GET {i}: {r!r}")
        self.assertEqual(self.methods("N").get("POST", 0) - n0, 4)


# ---------------------------------------------------------------------------------------------
# Active health checks and /health


class ProxyHealth(ProxyCase):
    upstream_specs = {"H1": ("normal", {}), "H2": ("normal", {})}

    @classmethod
    def proxy_config(cls, u):
        return ([ut.pool_toml("api", [u["H1"].address, u["H2"].address],
                              health={"path": "/health", "interval": "200ms", "timeout": "1s", "rise": 2, "fall": 2})],
                [ut.proxy_route("/api/", "api", strip_prefix="/api")])

    def health(self):
        r = self.get("/health")
        return r, self.json_body(r)

    def setUp(self):
        for u in self.ups.values():
            u.set_health(True)
        ok = wait_until(lambda: self.health()[0].status == 200, 5)
        self.assertTrue(ok, f"edge /health not 200 with both servers up: {self.health()}")

    def test_checks_poll_the_upstream(self):
        a = self.ups["H1"].count()["by_path"].get("/health", 0)
        time.sleep(1.0)
        b = self.ups["H1"].count()["by_path"].get("/health", 0)
        self.assertGreaterEqual(b - a, 2, "interval = 200ms: several checks a second")
        self.assertLessEqual(b - a, 15, "checks far more often than interval")

    def test_health_route_reports_pool(self):
        r, doc = self.health()
        self.assertStatus(r, 200)
        self.assertEqual(doc["status"], "OK")
        self.assertEqual(doc["checks"], {"api": "OK"})

    def test_one_down_traffic_avoids_it(self):
        H1 = self.ups["H1"]
        H1.set_health(False)

        def only_h2():
            return all(self.echo("/api/echo")[0].header("x-upstream") == "H2" for _ in range(10))

        self.assertTrue(wait_until(only_h2, 5), "traffic still goes to H1 after its health check failed")
        r, doc = self.health()
        self.assertEqual((r.status, doc["checks"].get("api")), (200, "OK"), "one healthy server left is OK")
        H1.set_health(True)

        def h1_back():
            return "H1" in {self.echo("/api/echo")[0].header("x-upstream") for _ in range(6)}

        self.assertTrue(wait_until(h1_back, 5), "H1 not back in rotation after its checks pass again")

    def test_none_healthy_503_then_recovers(self):
        for u in self.ups.values():
            u.set_health(False)
        self.assertTrue(wait_until(lambda: self.health()[0].status == 503, 5), f"/health: {self.health()}")
        r, doc = self.health()
        self.assertEqual(doc["status"], "ERROR", doc)
        self.assertTrue(str(doc["checks"].get("api", "")).startswith("FAIL"), doc)
        self.assertEqual(r.media_type(), "application/json")
        r = self.get("/api/json")
        self.assertJsonError(r, 503, "no healthy server")
        r = self.get("/api/", method="POST", body=b"{}", headers=[("Content-Length", "2")])
        self.assertJsonError(r, 503, "no healthy server, POST")
        for u in self.ups.values():
            u.set_health(True)
        self.assertTrue(wait_until(lambda: self.health()[0].status == 200, 5), f"/health: {self.health()}")
        self.assertEqual(self.health()[1]["checks"], {"api": "OK"})
        self.assertTrue(wait_until(lambda: self.get("/api/json").status == 200, 3))


# ---------------------------------------------------------------------------------------------
# Every server down


class ProxyAllDown(ProxyCase):
    upstream_specs = {}

    @classmethod
    def proxy_config(cls, u):
        return ([ut.pool_toml("gone", [ut.dead_address(), ut.dead_address()], tries=2, connect_timeout="1s",
                              passive={"max_fails": 1, "fail_window": "10s", "fail_timeout": "30s"})],
                [ut.proxy_route("/api/", "gone", strip_prefix="/api")])

    def test_all_down_json_never_index(self):
        r = self.get("/api/json")
        self.assertIn(r.status, (502, 503), r)
        self.assertJsonError(r, r.status, "first request to a pool of dead servers")
        for path in ("/api/json", "/api/", "/api/index.html", "/api/readings/7"):
            self.assertJsonError(self.get(path), 503, f"GET {path}, every server down")
        self.assertJsonError(self.get("/api/x", method="POST", body=b"{}", headers=[("Content-Length", "2")]),
                             503, "POST, every server down")
        h = self.get("/api/json", method="HEAD")
        self.assertStatus(h, 503)
        self.assertEqual(h.body, b"")

    def test_health_route_fails_with_the_pool(self):
        self.get("/api/json")  # let the passive check see the failures
        r = self.get("/health")
        self.assertStatus(r, 503)
        doc = self.json_body(r)
        self.assertEqual(doc["status"], "ERROR")
        self.assertTrue(str(doc["checks"].get("gone", "")).startswith("FAIL"), doc)

    def test_static_still_served(self):
        r = self.get("/index.html")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, et.INDEX_HTML)


if __name__ == "__main__":
    unittest.main()
