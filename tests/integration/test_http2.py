"""HTTP/2 (issue 9, /work/notes/h2-contract.md) end to end: h2 over TLS (ALPN) and h2c with prior
knowledge, with curl (--http2 / --http2-prior-knowledge), nghttp, h2load and the raw client of
test_http2_floods.py (frames and HPACK, for what the tools hide: exact field names, GOAWAY codes,
the timing of DATA frames).

- negotiation: ALPN offers h2 then http/1.1; `http2 = false` → HTTP/1.1 only; `h2c = true` takes the
  preface and HTTP/1.1 on the same port, no `Upgrade: h2c`; a plain listener without h2c refuses
  the preface and keeps serving HTTP/1.1
- static, as over HTTP/1.1: SPA fallback, 404 for a missing asset, immutable hashed assets,
  ETag/304, Range/206, HEAD, precompressed siblings and on-the-fly br/gzip, security headers (HSTS
  on TLS only), lower-case field names and no connection-specific fields, `:authority` (or `host`)
  as the host, CONNECT → 405
- proxy to upstream.js (HTTP/1.1 upstream): JSON, a 5 MB POST intact (sha256, curl and nghttp),
  SSE events one by one, X-Forwarded-For/Proto, cookie crumbs joined, 502 JSON (upstream down),
  504 JSON (header_timeout 1s); cache miss then hit; rate limit 429 JSON + RateLimit headers
- many streams on one connection: h2load -n 1000 -c 4 -m 32 (TLS and h2c), nghttp with 20 URIs
- access log (one line per stream, status and bytes) and /metrics (admin listener) counting h2
- graceful SIGTERM with slow proxied streams in flight (nghttp over h2c, raw client over TLS):
  GOAWAY, the streams complete 200, exit 0
- SIGHUP: the next stream on the same connection sees the new config; a stream in flight finishes;
  a listener removed by the reload sends GOAWAY to its connections

Needs `node` (upstream.js), curl with HTTP/2, nghttp and h2load (Debian nghttp2-client), brotli.
"""
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import opstest as ops  # noqa: E402
import test_http2_floods as hf  # noqa: E402  (the raw HTTP/2 client; its tests are not collected here)
import test_rate_limit as trl  # noqa: E402  (RateLimitMixin)
import test_reload as tr  # noqa: E402  (ReloadCase)
import upstreamtest as ut  # noqa: E402

NGHTTP = shutil.which("nghttp")
H2LOAD = shutil.which("h2load")
BROTLI = shutil.which("brotli")
PROTOS = ("tls", "h2c")
SELF_SIGNED = "{ self_signed = true }"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
PUBLIC = "cc=public,max-age=60"
MiB = 1024 * 1024


def js_text(size, tag):
    """Deterministic, compressible JavaScript-like text of exactly `size` bytes."""
    out, total, x, i = [], 0, 4242 + len(tag), 0
    while total < size:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        line = f"export function {tag}_{i}(a) {{ return a * {x % 9973} + \"{tag}-{x % 100000:05d}\".length; }}\n"
        out.append(line)
        total += len(line)
        i += 1
    return "".join(out).encode()[:size]


SIB = js_text(8 * 1024, "sib")  # /sib/app.js; its .br / .gz siblings hold SIB_SRC
SIB_SRC = b"/* precompressed sibling */\n" + SIB
OTF = js_text(40 * 1024, "otf")  # /otf/app.js, compressed by edge


def brotli_bytes(data, decompress=False):
    cmd = [BROTLI, "-d", "-c"] if decompress else [BROTLI, "-c", "-q", "11"]
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    if p.returncode != 0:
        raise AssertionError(f"brotli failed: {p.stderr!r}")
    return p.stdout


# ---------------------------------------------------------------------------------------------
# curl


class CurlResult:
    def __init__(self, rc, version, blocks, body, stderr):
        self.rc = rc
        self.version = version  # "2" or "1.1" (curl's %{http_version})
        self.blocks = blocks  # [(status line, [(name, value)])], every head curl saw
        self.body = body
        self.stderr = stderr

    @property
    def status(self):
        if not self.blocks:
            return None
        m = re.match(r"^HTTP/[\d.]+ (\d{3})", self.blocks[-1][0])
        return int(m.group(1)) if m else None

    @property
    def status_line(self):
        return self.blocks[-1][0] if self.blocks else None

    @property
    def headers(self):
        return self.blocks[-1][1] if self.blocks else []

    def header(self, name):
        v = None
        for k, val in self.headers:
            if k.lower() == name.lower():
                v = val
        return v

    def header_all(self, name):
        return [val for k, val in self.headers if k.lower() == name.lower()]

    def media_type(self):
        ct = self.header("content-type")
        return None if ct is None else ct.split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return (f"<curl rc={self.rc} HTTP/{self.version} {self.status_line!r} headers={self.headers!r} "
                f"body[{len(self.body)}]={self.body[:100]!r} err={self.stderr[-300:]!r}>")


def curl(url, *args, headers=(), timeout=10):
    """curl -sS, heads to one file, body to another; returns CurlResult."""
    tmp = tempfile.mkdtemp(prefix="edgetest-h2curl-")
    try:
        hpath, bpath = os.path.join(tmp, "h"), os.path.join(tmp, "b")
        cmd = ["curl", "-sS", "-g", "--path-as-is", "--max-time", str(timeout), "-D", hpath, "-o", bpath,
               "-w", "%{http_version}"]
        for k, v in headers:
            cmd += ["-H", f"{k}: {v}"]
        cmd += list(args) + [url]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 10)
        blocks = []
        if os.path.exists(hpath):
            with open(hpath, "rb") as f:
                text = f.read().decode("latin-1")
            for blk in text.split("\r\n\r\n"):
                lines = [ln for ln in blk.split("\r\n") if ln]
                if lines and lines[0].startswith("HTTP/"):
                    hs = []
                    for ln in lines[1:]:
                        k, _, v = ln.partition(":")
                        hs.append((k, v.strip(" \t")))
                    blocks.append((lines[0].strip(), hs))
        body = b""
        if os.path.exists(bpath):
            with open(bpath, "rb") as f:
                body = f.read()
        return CurlResult(p.returncode, p.stdout.decode().strip(), blocks, body, p.stderr.decode("utf-8", "replace"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(cmd, timeout=60):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def h2load_counts(out):
    """(succeeded, 2xx, total) from h2load's summary."""
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    s = re.search(r"status codes: (\d+) 2xx", out)
    if not m or not s:
        return None
    return int(m.group(2)), int(s.group(1)), int(m.group(1))


def nghttp_statuses(out):
    """{stream id: status} from `nghttp -v` output."""
    return {int(a): int(b) for a, b in re.findall(r"recv \(stream_id=(\d+)\) :status: (\d{3})", out)}


def nghttp_goaways(out):
    """[(last_stream_id, error name)] of the GOAWAY frames `nghttp -v` received."""
    return re.findall(r"recv GOAWAY frame <[^>]*>\s*\(last_stream_id=(\d+), error_code=([A-Z_]+)", out)


# ---------------------------------------------------------------------------------------------
# One edge: 4 listeners, an admin listener, upstream.js behind proxy / cache / rate-limit routes


class H2Case(ops.OpsCase, trl.RateLimitMixin):
    """Listeners, in order: TLS (h2 + http/1.1 by ALPN), TLS with `http2 = false`, plain with
    `h2c = true`, plain without.  Upstreams: A (normal) and S (slow, 3 s)."""

    server_opts = {"workers": "2"}
    listen = [{"address": "127.0.0.1:0", "tls": SELF_SIGNED},
              {"address": "127.0.0.1:0", "tls": SELF_SIGNED, "http2": "false"},
              {"address": "127.0.0.1:0", "h2c": "true"},
              "127.0.0.1:0"]
    upstream_specs = {"A": ("normal", {}), "S": ("slow", {"delay_ms": 3000})}

    @classmethod
    def prepare_site(cls, site):
        m = et.SITE_MTIME
        site.write("/sib/app.js", SIB, m)
        site.write("/sib/app.js.br", brotli_bytes(SIB_SRC), m)
        site.write("/sib/app.js.gz", gzip.compress(SIB_SRC, mtime=0), m)
        site.write("/otf/app.js", OTF, m)

    @classmethod
    def config_text(cls, ups):
        cls.up = ups["A"]
        no_passive = {"max_fails": 1000}
        return (ops.admin_toml("127.0.0.1:0")
                + ut.pool_toml("api", [ups["A"].address])
                + ut.pool_toml("slow", [ups["S"].address], header_timeout="1s", tries=1, passive=no_passive)
                + ut.pool_toml("down", [ut.dead_address()], tries=1, connect_timeout="1s", passive=no_passive)
                + ut.proxy_route("/api/", "api", strip_prefix="/api", max_body="128m")
                + ut.proxy_route("/slow/", "slow", strip_prefix="/slow")
                + ut.proxy_route("/down/", "down", strip_prefix="/down")
                + ut.proxy_route("/cached/", "api", strip_prefix="/cached", cache={"ttl": "2h"})
                + ut.proxy_route("/limited/", "api", strip_prefix="/limited",
                                 rate_limit={"requests": 2, "window": "60s", "key": "header:X-Rl-Key"})
                + et.default_routes(cls.site.root))

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        schemes = [s for s, _, _ in cls.edge.listeners]
        if schemes != ["https", "https", "http", "http"]:
            cls.tearDownClass()
            raise et.EdgeError(f"listeners not in config order: {cls.edge.listeners}")
        cls.tls_port, cls.tls11_port, cls.h2c_port, cls.plain_port = [p for _, _, p in cls.edge.listeners]
        cls.port = cls.h2c_port  # OpsCase.get: HTTP/1.1 on the h2c listener

    # -- helpers ---------------------------------------------------------------------------------
    def base(self, proto):
        if proto == "tls":
            return f"https://localhost:{self.tls_port}"
        return f"http://127.0.0.1:{self.h2c_port}"

    def h2(self, proto, path, *args, headers=(), timeout=10, expect_h2=True):
        """curl over HTTP/2: -k --http2 on the TLS listener, --http2-prior-knowledge on h2c."""
        if proto == "tls":
            extra = ["-k", "--http2", "--resolve", f"localhost:{self.tls_port}:127.0.0.1"]
        else:
            extra = ["--http2-prior-knowledge"]
        r = curl(self.base(proto) + path, *extra, *args, headers=headers, timeout=timeout)
        if expect_h2:
            self.assertEqual(r.rc, 0, r)
            self.assertEqual(r.version, "2", f"not HTTP/2: {r!r}")
            self.assertTrue(r.status_line.startswith("HTTP/2 "), r)
        return r

    def conn(self, proto, **kw):
        c = hf.H2Conn(self.tls_port if proto == "tls" else self.h2c_port, tls=(proto == "tls"),
                      window=64 * MiB, settings=[(hf.SETTINGS_INITIAL_WINDOW_SIZE, 16 * MiB)], **kw)
        self.addCleanup(c.close)
        return c

    def raw(self, proto, path, method="GET", headers=(), authority="localhost"):
        """One stream on a fresh raw connection; returns the Stream (status, headers as sent)."""
        c = self.conn(proto)
        sid = c.request(path, method=method, headers=headers, authority=authority)
        st = c.response(sid, 10)
        self.assertTrue(st.ended, f"{path}: {st!r}; {c.frame_summary()}")
        return st

    def assertJsonError(self, r, status, what=""):
        self.assertEqual(r.status, status, f"{what}: {r!r}")
        self.assertNotIn(b"EDGETEST-INDEX", r.body, what)
        self.assertEqual(r.media_type(), "application/json", f"{what}: {r!r}")
        self.assertIn("no-store", (r.header("cache-control") or "").lower(), f"{what}: {r!r}")
        doc = json.loads(r.body)
        self.assertIsInstance(doc.get("error"), str, doc)
        self.assertEqual(doc.get("request_id"), r.header("x-request-id"), f"{what}: {doc}")
        return doc

    def log_lines(self):
        try:
            with open(self.access_log, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for ln in data.decode("utf-8", "replace").splitlines():
            try:
                out.append(json.loads(ln))
            except ValueError:
                pass
        return out

    def log_entries(self, pred, count, timeout=5.0):
        """Access-log entries matching pred, once there are `count` of them (or timeout)."""
        return ops.wait_until(lambda: [d for d in self.log_lines() if pred(d)] if
                              len([d for d in self.log_lines() if pred(d)]) >= count else None, timeout) \
            or [d for d in self.log_lines() if pred(d)]


class Negotiation(H2Case):
    # -- ALPN, h2c, listeners without HTTP/2 ---------------------------------------------------------
    def alpn(self, port, protos):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(protos)
        with et.TLSConn(port, ctx) as c:
            return c.sock.selected_alpn_protocol()

    def test_alpn_offers_h2_then_http11(self):
        self.assertEqual(self.alpn(self.tls_port, ["h2", "http/1.1"]), "h2")
        self.assertEqual(self.alpn(self.tls_port, ["http/1.1", "h2"]), "h2", "the server's order: h2 first")
        self.assertEqual(self.alpn(self.tls_port, ["http/1.1"]), "http/1.1")
        r = self.h2("tls", "/index.html")
        self.assertEqual((r.status, r.body), (200, et.INDEX_HTML), r)
        # HTTP/1.1 still works on the same listener
        r = curl(f"https://localhost:{self.tls_port}/index.html", "-k", "--http1.1",
                 "--resolve", f"localhost:{self.tls_port}:127.0.0.1")
        self.assertEqual((r.rc, r.version, r.status), (0, "1.1", 200), r)

    @unittest.skipUnless(NGHTTP, "nghttp (nghttp2-client) not installed")
    def test_nghttp_negotiates_h2(self):
        rc, out, err = run([NGHTTP, "-nv", f"https://127.0.0.1:{self.tls_port}/logo.svg"], 20)
        self.assertEqual(rc, 0, out[-2000:] + err)
        self.assertIn("The negotiated protocol: h2", out)
        self.assertEqual(list(nghttp_statuses(out).values()), [200], out[-2000:])

    def test_http2_false_listener_speaks_http11_only(self):
        self.assertEqual(self.alpn(self.tls11_port, ["h2", "http/1.1"]), "http/1.1")
        self.assertIn(self.alpn(self.tls11_port, ["h2"]), (None, ), "h2 alone must not be selected")
        r = curl(f"https://localhost:{self.tls11_port}/index.html", "-k", "--http2",
                 "--resolve", f"localhost:{self.tls11_port}:127.0.0.1")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.version, "1.1", r)
        self.assertTrue(r.status_line.startswith("HTTP/1.1 200"), r)
        self.assertEqual(r.body, et.INDEX_HTML)

    def test_h2c_prior_knowledge_and_http11_on_the_same_listener(self):
        r = self.h2("h2c", "/index.html")
        self.assertEqual((r.status, r.body), (200, et.INDEX_HTML), r)
        r = curl(f"http://127.0.0.1:{self.h2c_port}/index.html")
        self.assertEqual((r.rc, r.version, r.status, r.body), (0, "1.1", 200, et.INDEX_HTML), r)
        # HTTP/1.1 keep-alive with several requests on the h2c listener
        with et.Conn(self.h2c_port) as c:
            for _ in range(3):
                c.send(et.request("/logo.svg"))
                self.assertEqual(c.read_response().status, 200)

    def test_h2c_listener_does_no_upgrade(self):
        # curl --http2 over plain HTTP sends `Upgrade: h2c`: edge answers in HTTP/1.1, never 101
        r = curl(f"http://127.0.0.1:{self.h2c_port}/index.html", "--http2")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.version, "1.1", r)
        self.assertEqual([b[0].split()[1] for b in r.blocks], ["200"], f"no 101 expected: {r!r}")
        self.assertIsNone(r.header("upgrade"), r)

    def test_plain_listener_without_h2c_refuses_the_preface(self):
        r = curl(f"http://127.0.0.1:{self.plain_port}/index.html", "--http2-prior-knowledge", timeout=5)
        self.assertFalse(r.rc == 0 and r.version == "2", f"h2c accepted without `h2c = true`: {r!r}")
        with hf.H2Conn(self.plain_port) as c:
            sid = c.request("/index.html")
            c.wait(lambda: c.closed, 3)
            self.assertFalse([f for f in c.frames if f[0] == hf.SETTINGS],
                             f"edge spoke HTTP/2 on a plain listener without h2c: {c.frame_summary()}")
            self.assertIsNone(c.streams[sid].status)
        # and HTTP/1.1 keeps working there
        r = curl(f"http://127.0.0.1:{self.plain_port}/index.html")
        self.assertEqual((r.rc, r.version, r.status), (0, "1.1", 200), r)
        self.assertTrue(self.edge.running())


class Static(H2Case):
    # -- static routes, as over HTTP/1.1 ----------------------------------------------------------
    def test_spa_fallback_for_app_routes(self):
        for proto in PROTOS:
            with self.subTest(proto):
                for path in ("/readings/7", "/account/settings?tab=2", "/"):
                    r = self.h2(proto, path)
                    self.assertEqual(r.status, 200, f"{path}: {r!r}")
                    self.assertEqual(r.body, et.INDEX_HTML, path)
                    self.assertEqual(r.media_type(), "text/html", path)

    def test_missing_asset_is_a_real_404(self):
        for proto in PROTOS:
            with self.subTest(proto):
                r = self.h2(proto, "/assets/x.js")
                self.assertEqual(r.status, 404, r)
                self.assertNotIn(b"EDGETEST-INDEX", r.body)
                self.assertIn("no-store", r.header("cache-control") or "", r)

    def test_hashed_assets_immutable(self):
        for proto in PROTOS:
            with self.subTest(proto):
                r = self.h2(proto, "/assets/index-Ab3dE5fG.js")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("cache-control"), et.IMMUTABLE, r)
                self.assertEqual(r.body, self.site.files["/assets/index-Ab3dE5fG.js"])
                r = self.h2(proto, "/index.html")
                self.assertNotIn("immutable", r.header("cache-control") or "", r)

    def test_etag_then_304(self):
        for proto in PROTOS:
            with self.subTest(proto):
                r = self.h2(proto, "/logo.svg")
                etag = r.header("etag")
                self.assertTrue(etag, r)
                r2 = self.h2(proto, "/logo.svg", headers=[("If-None-Match", etag)])
                self.assertEqual(r2.status, 304, r2)
                self.assertEqual(r2.body, b"")
                self.assertEqual(r2.header("etag"), etag)
                r3 = self.h2(proto, "/logo.svg", headers=[("If-None-Match", '"other"')])
                self.assertEqual(r3.status, 200, r3)

    def test_range_206(self):
        blob = et.blob_bytes()
        for proto in PROTOS:
            with self.subTest(proto):
                r = self.h2(proto, "/blob.bin", headers=[("Range", "bytes=100-199")])
                self.assertEqual(r.status, 206, r)
                self.assertEqual(r.header("content-range"), f"bytes 100-199/{et.BLOB_SIZE}")
                self.assertEqual(r.header("content-length"), "100")
                self.assertEqual(r.body, blob[100:200])
                r = self.h2(proto, "/blob.bin", headers=[("Range", "bytes=-10")])
                self.assertEqual((r.status, r.body), (206, blob[-10:]), r)
                r = self.h2(proto, "/blob.bin", headers=[("Range", f"bytes={et.BLOB_SIZE}-")])
                self.assertEqual(r.status, 416, r)
                self.assertEqual(r.header("content-range"), f"bytes */{et.BLOB_SIZE}")
                r = self.h2(proto, "/blob.bin")
                self.assertEqual((r.status, len(r.body)), (200, et.BLOB_SIZE))
                self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(blob).hexdigest())

    def test_head(self):
        for proto in PROTOS:
            with self.subTest(proto):
                st = self.raw(proto, "/logo.svg", method="HEAD")
                self.assertEqual(st.status, 200, st)
                self.assertEqual(st.header("content-length"), "1024", st)
                self.assertEqual(bytes(st.body), b"")

    def test_precompressed_siblings(self):
        for proto in PROTOS:
            for enc, suffix in (("br", ".br"), ("gzip", ".gz")):
                with self.subTest(proto=proto, enc=enc):
                    r = self.h2(proto, "/sib/app.js", headers=[("Accept-Encoding", enc)])
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.header("content-encoding"), enc, r)
                    self.assertEqual(r.body, self.site.files["/sib/app.js" + suffix],
                                     "not the precompressed sibling")
                    self.assertEqual(r.header("content-length"), str(len(r.body)))
                    self.assertIn("accept-encoding", (r.header("vary") or "").lower())
                    # curl decodes it like a browser
                    d = self.h2(proto, "/sib/app.js", "--compressed", headers=[("Accept-Encoding", enc)])
                    self.assertEqual(d.body, SIB_SRC)
                r = self.h2(proto, "/sib/app.js", headers=[("Accept-Encoding", "identity")])
                self.assertIsNone(r.header("content-encoding"), r)
                self.assertEqual(r.body, SIB)

    def test_on_the_fly_compression(self):
        for proto in PROTOS:
            for enc in ("br", "gzip"):
                with self.subTest(proto=proto, enc=enc):
                    deadline = time.monotonic() + 5
                    while True:
                        r = self.h2(proto, "/otf/app.js", headers=[("Accept-Encoding", enc)])
                        self.assertEqual(r.status, 200, r)
                        if r.header("content-encoding") is not None or time.monotonic() > deadline:
                            break
                        self.assertEqual(r.body, OTF, "identity answer while compressing")
                        time.sleep(0.1)
                    self.assertEqual(r.header("content-encoding"), enc, r)
                    plain = gzip.decompress(r.body) if enc == "gzip" else brotli_bytes(r.body, decompress=True)
                    self.assertEqual(plain, OTF)
                    self.assertLess(len(r.body), len(OTF) // 2)

    def test_security_headers(self):
        for proto in PROTOS:
            with self.subTest(proto):
                for path in ("/index.html", "/readings/7", "/assets/x.js", "/health"):
                    r = self.h2(proto, path)
                    self.assertEqual(r.header("x-content-type-options"), "nosniff", f"{path}: {r!r}")
                    self.assertEqual(r.header("referrer-policy"), "no-referrer", path)
                    self.assertEqual(r.header("cross-origin-opener-policy"), "same-origin", path)
                    csp = r.header("content-security-policy") or ""
                    self.assertIn("default-src 'self'", csp, path)
                    if proto == "tls":
                        self.assertEqual(r.header("strict-transport-security"), "max-age=63072000; includeSubDomains",
                                         path)
                        self.assertIn("upgrade-insecure-requests", csp, path)
                    else:
                        self.assertIsNone(r.header("strict-transport-security"), f"HSTS over h2c: {path}")
                        self.assertNotIn("upgrade-insecure-requests", csp, path)
                self.assertEqual(self.h2(proto, "/index.html").header("x-frame-options"), "DENY")

    def test_field_names_lower_case_no_connection_fields(self):
        paths = ["/index.html", "/readings/7", "/assets/x.js", "/blob.bin", "/health", "/api/json",
                 "/api/chunked?n=3&ms=0", "/api/powered", "/api/sse?n=2&ms=10", "/down/json", "/cached/text?bytes=10"]
        for proto in PROTOS:
            with self.subTest(proto):
                c = self.conn(proto)
                sids = {c.request(p): p for p in paths}
                etag = self.h2(proto, "/logo.svg").header("etag")
                sids[c.request("/logo.svg", headers=[("if-none-match", etag)])] = "304"
                for sid, path in sids.items():
                    st = c.response(sid, 10)
                    self.assertTrue(st.ended and st.headers, f"{path}: {st!r}")
                    for name, _ in st.headers:
                        self.assertEqual(name, name.lower(), f"{path}: field name {name!r} not lower-case")
                        self.assertNotIn(name, HOP_BY_HOP, f"{path}: connection-specific field {name!r}")
                    pseudo = [n for n, _ in st.headers if n.startswith(":")]
                    self.assertEqual(pseudo, [":status"], path)
                    self.assertEqual(st.headers[0][0], ":status", path)
                # curl prints them as received, too
                r = self.h2(proto, "/api/chunked?n=3&ms=0")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, b"chunk 0 of 3\nchunk 1 of 3\nchunk 2 of 3\nend\n")
                for name, _ in r.headers:
                    self.assertEqual(name, name.lower(), r)
                    self.assertNotIn(name, HOP_BY_HOP, r)

    def test_authority_is_the_host(self):
        # the `nospa.test` route (no SPA fallback) is chosen by :authority, or by `host` without it
        for proto in PROTOS:
            with self.subTest(proto):
                self.assertEqual(self.raw(proto, "/readings/7").status, 200)
                self.assertEqual(self.raw(proto, "/readings/7", authority="nospa.test").status, 404)
                c = self.conn(proto)
                sid = c.new_sid()
                scheme = "https" if proto == "tls" else "http"
                c.send(hf.frame(hf.HEADERS, hf.END_HEADERS | hf.END_STREAM, sid, hf.encode_headers(
                    [(":method", "GET"), (":scheme", scheme), (":path", "/readings/7"), ("host", "nospa.test")])))
                st = c.response(sid)
                self.assertEqual(st.status, 404, f"`host` without :authority not used: {st!r}")

    def test_connect_405(self):
        for proto in PROTOS:
            with self.subTest(proto):
                c = self.conn(proto)
                sid = c.new_sid()
                c.send(hf.frame(hf.HEADERS, hf.END_HEADERS | hf.END_STREAM, sid, hf.encode_headers(
                    [(":method", "CONNECT"), (":authority", "example.com:443")])))
                st = c.response(sid)
                self.assertEqual(st.status, 405, st)
                sid = c.request("/index.html")
                self.assertEqual(c.response(sid).status, 200, "the connection goes on")

    def test_request_id_from_the_client(self):
        for proto in PROTOS:
            with self.subTest(proto):
                st = self.raw(proto, "/logo.svg", headers=[("x-request-id", f"h2-rid-{proto}")])
                self.assertEqual(st.header("x-request-id"), f"h2-rid-{proto}")
                st = self.raw(proto, "/logo.svg")
                self.assertRegex(st.header("x-request-id") or "", et.REQUEST_ID_RE)


class Proxy(H2Case):
    # -- proxied routes through upstream.js ---------------------------------------------------------
    def test_get_json(self):
        for proto in PROTOS:
            with self.subTest(proto):
                r = self.h2(proto, "/api/json")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("x-upstream"), "A")
                self.assertEqual(r.media_type(), "application/json")
                self.assertEqual(r.json()["service"], "edgetest-upstream")
                self.assertEqual(r.header("etag"), '"json-v1"')
                self.assertEqual(r.header("content-length"), str(len(r.body)))
                r = self.h2(proto, "/api/status?code=418")
                self.assertEqual(r.status, 418, r)
                r = self.h2(proto, "/api/no-such-thing")
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.json()["url"], "/no-such-thing")

    def test_post_5mb_echoed_intact(self):
        body = os.urandom(5 * MiB)
        digest = hashlib.sha256(body).hexdigest()
        path = os.path.join(self.tmp, "upload.bin")
        with open(path, "wb") as f:
            f.write(body)
        for proto in PROTOS:
            with self.subTest(proto, client="curl"):
                r = self.h2(proto, "/api/upload", "--data-binary", f"@{path}",
                            headers=[("Content-Type", "application/octet-stream")], timeout=30)
                self.assertEqual(r.status, 200, r)
                doc = r.json()
                self.assertEqual((doc["bytes"], doc["sha256"]), (len(body), digest), doc)
        if NGHTTP:
            for proto in PROTOS:
                with self.subTest(proto, client="nghttp"):
                    url = (f"https://127.0.0.1:{self.tls_port}" if proto == "tls" else
                           f"http://127.0.0.1:{self.h2c_port}") + "/api/upload"
                    rc, out, err = run([NGHTTP, "-d", path, url], 30)
                    self.assertEqual(rc, 0, out[-1000:] + err)
                    doc = json.loads(out)
                    self.assertEqual((doc["bytes"], doc["sha256"]), (len(body), digest), doc)

    def test_post_without_content_length_streamed_with_flow_control(self):
        # raw client, no content-length: the upstream gets it chunked.  It stops reading for 3 s:
        # edge's flow control must hold the client back meanwhile (request bodies are credited back
        # once the upstream took them), not buffer 64 MB
        block = os.urandom(MiB)
        total = 64
        for proto in PROTOS:
            with self.subTest(proto):
                c = self.conn(proto, timeout=30)
                sid = c.request("/api/upload?stall_ms=3000", method="POST", end=False,
                                headers=[("content-type", "application/octet-stream")])
                t0 = time.monotonic()
                waited = 0.0
                with ops.RssSampler(self.edge.proc.pid) as rss:
                    for i in range(total):
                        waited += c.send_data(sid, block, end=(i == total - 1), timeout=20)
                sent_in = time.monotonic() - t0
                st = c.response(sid, 30)
                self.assertEqual(st.status, 200, st)
                doc = json.loads(bytes(st.body))
                h = hashlib.sha256()
                for _ in range(total):
                    h.update(block)
                self.assertEqual((doc["bytes"], doc["sha256"]), (total * MiB, h.hexdigest()), doc)
                self.assertIsNone(doc["content_length"], doc)
                self.assertEqual(doc["transfer_encoding"], "chunked", doc)
                # (of the 3 s stall, the client's own sending of what the buffers take may use a
                # second or more on a loaded machine: 1.2 s of waiting still proves the hold)
                self.assertGreater(waited, 1.2, f"the client sent {total} MB in {sent_in:.2f}s without waiting "
                                                "for a window while the upstream did not read")
                if not os.environ.get("ASAN_OPTIONS"):  # (ASan's quarantine keeps freed blocks)
                    self.assertLess(rss.growth_kb, 32 * 1024, f"edge's RSS grew {rss.growth_kb} kB during the upload")

    def test_sse_events_arrive_one_by_one(self):
        n, ms = 5, 300
        for proto in PROTOS:
            with self.subTest(proto):
                c = self.conn(proto, timeout=10)
                sid = c.request(f"/api/sse?n={n}&ms={ms}", headers=[("accept", "text/event-stream")])
                st = c.streams[sid]
                arrivals = {}
                deadline = time.monotonic() + 10
                while not st.ended and st.rst is None and not c.closed:
                    now = time.monotonic()
                    for i in range(n):
                        if i not in arrivals and (b'"i":%d,' % i) in st.body:
                            arrivals[i] = now
                    if not c._recv(deadline):
                        self.fail(f"SSE stalled; events {sorted(arrivals)}; {st!r}")
                end_at = time.monotonic()
                for i in range(n):
                    if i not in arrivals and (b'"i":%d,' % i) in st.body:
                        arrivals[i] = end_at
                self.assertEqual(st.status, 200, st)
                self.assertEqual(st.header("content-type"), "text/event-stream", st)
                self.assertEqual(sorted(arrivals), list(range(n)), st)
                self.assertGreaterEqual(len([t for t in arrivals.values() if t < end_at - 0.1]), 2,
                                        f"events held back until the end: {arrivals} end {end_at}")
                self.assertGreater(arrivals[n - 1] - arrivals[0], (n - 1) * ms / 1000 * 0.5,
                                   "events arrived together, not one by one")
                self.assertGreaterEqual(len(st.data_frames), n, "one DATA frame per event at least")

    def test_forwarded_headers_and_cookies(self):
        for proto in PROTOS:
            with self.subTest(proto):
                c = self.conn(proto)
                sid = c.request("/api/echo?x=1", authority="example.test:8443",
                                headers=[("cookie", "a=1"), ("cookie", "b=2"), ("x-custom", "keep-me")])
                st = c.response(sid)
                self.assertEqual(st.status, 200, st)
                doc = json.loads(bytes(st.body))
                h = doc["headers"]
                self.assertEqual(doc["url"], "/echo?x=1")
                self.assertEqual(doc["http_version"], "1.1", "upstreams stay HTTP/1.1")
                self.assertEqual(h.get("x-forwarded-for"), "127.0.0.1", h)
                self.assertEqual(h.get("x-real-ip"), "127.0.0.1", h)
                self.assertEqual(h.get("x-forwarded-proto"), "https" if proto == "tls" else "http", h)
                self.assertEqual(h.get("host"), "example.test:8443", ":authority is the host")
                self.assertEqual(h.get("x-forwarded-host"), "example.test:8443", h)
                self.assertEqual(h.get("cookie"), "a=1; b=2", "split cookie fields joined with '; '")
                self.assertEqual(h.get("x-custom"), "keep-me")
                self.assertEqual(h.get("x-request-id"), st.header("x-request-id"))
                names = [k.lower() for k, _ in doc["raw_headers"]]
                for n in ("host", "cookie", "x-forwarded-for", "x-forwarded-proto"):
                    self.assertEqual(names.count(n), 1, f"{n} sent {names.count(n)} times: {doc['raw_headers']}")
                self.assertFalse([n for n in names if n.startswith(":")], f"pseudo-headers sent upstream: {names}")

    def test_upstream_down_502_json(self):
        for proto in PROTOS:
            with self.subTest(proto):
                r = self.h2(proto, "/down/json")
                self.assertJsonError(r, 502, "upstream down")

    def test_slow_upstream_504_json(self):
        for proto in PROTOS:
            with self.subTest(proto):
                t0 = time.monotonic()
                r = self.h2(proto, "/slow/json")
                elapsed = time.monotonic() - t0
                self.assertJsonError(r, 504, "slow upstream")
                self.assertGreater(elapsed, 0.8, "504 before header_timeout")
                self.assertLess(elapsed, 2.5, "header_timeout = 1s not applied (the upstream answers after 3 s)")

    def test_cache_miss_then_hit(self):
        for proto in PROTOS:
            with self.subTest(proto):
                path = f"/cached/text?bytes=3000&{PUBLIC}&case=h2-{proto}"
                before = self.up.count()["by_path"].get("/text", 0)
                r = self.h2(proto, path)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("cache-status"), "edge; fwd=miss; stored", r)
                for _ in range(3):
                    r2 = self.h2(proto, path)
                    self.assertEqual(r2.status, 200, r2)
                    self.assertTrue((r2.header("cache-status") or "").startswith("edge; hit"), r2)
                    self.assertIsNotNone(r2.header("age"), r2)
                    self.assertEqual(r2.body, r.body)
                    self.assertEqual(r2.header("x-served"), r.header("x-served"))
                self.assertEqual(len(r.body), 3000)
                self.assertEqual(self.up.count()["by_path"].get("/text", 0) - before, 1)

    def test_rate_limit_429_json(self):
        for proto in PROTOS:
            with self.subTest(proto):
                key = [("X-Rl-Key", f"h2-{proto}-{time.monotonic()}")]
                ok = [self.h2(proto, f"/limited/json?i={i}", headers=key) for i in range(2)]
                for r in ok:
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.header("x-upstream"), "A", r)
                name, params = self.policy(ok[0])
                self.assertEqual((params.get("q"), params.get("w")), (2, 60), ok[0])
                self.assertEqual([self.rl(r)[1].get("r") for r in ok], [1, 0])
                refused = self.h2(proto, "/limited/json?i=refused", headers=key)
                self.assert429(refused, policy=ok[0].header("ratelimit-policy"), name=name, max_retry=60)
                self.assertNotIn("i=refused", " ".join(e["url"] for e in self.up.log()))


class Streams(H2Case):
    # -- many streams on one connection; access log and metrics ---------------------------------------
    @unittest.skipUnless(H2LOAD, "h2load (nghttp2-client) not installed")
    def test_h2load_1000_requests_32_streams_per_connection(self):
        for proto, path in (("tls", "/logo.svg"), ("h2c", "/logo.svg"), ("h2c", "/api/json"), ("tls", "/api/json")):
            with self.subTest(proto=proto, path=path):
                url = (f"https://127.0.0.1:{self.tls_port}" if proto == "tls" else
                       f"http://127.0.0.1:{self.h2c_port}") + path
                rc, out, err = run([H2LOAD, "-n", "1000", "-c", "4", "-m", "32", url], 120)
                self.assertEqual(rc, 0, out[-1500:] + err)
                self.assertIn("Application protocol: " + ("h2" if proto == "tls" else "h2c"), out)
                self.assertEqual(h2load_counts(out), (1000, 1000, 1000), out[-1500:])
        self.assertTrue(self.edge.running())

    @unittest.skipUnless(NGHTTP, "nghttp (nghttp2-client) not installed")
    def test_nghttp_20_uris_one_connection_one_log_line_each(self):
        for proto in PROTOS:
            with self.subTest(proto):
                base = (f"https://127.0.0.1:{self.tls_port}" if proto == "tls" else
                        f"http://127.0.0.1:{self.h2c_port}")
                tag = f"ng20{proto}"
                urls = [f"{base}/logo.svg?{tag}={i}" for i in range(10)] + \
                       [f"{base}/nope-{tag}-{i}.png" for i in range(5)] + \
                       [f"{base}/api/json?{tag}={i}" for i in range(5)]
                rc, out, err = run([NGHTTP, "-nv"] + urls, 30)
                self.assertEqual(rc, 0, out[-2000:] + err)
                self.assertEqual(len(re.findall(r"\] Connected", out)), 1, "one connection")
                st = nghttp_statuses(out)
                self.assertEqual(len(st), 20, out[-2000:])
                self.assertEqual(sorted(st.values()), [200] * 15 + [404] * 5, st)
                # nghttp numbers its streams 13, 15, ... in the order of the URIs
                sids = sorted(st)
                lengths = {int(a): int(b) for a, b in
                           re.findall(r"recv \(stream_id=(\d+)\) content-length: (\d+)", out)}  # (+ " (sensitive)")
                entries = self.log_entries(lambda d: tag in (d.get("query") or "") or tag in d.get("path", ""), 20)
                self.assertEqual(len(entries), 20, f"one access-log line per stream: {entries}")
                for d in entries:
                    if d["path"] == "/logo.svg":
                        i = int(d["query"].split("=")[1])
                    elif d["path"].startswith("/nope-"):
                        i = 10 + int(d["path"].rsplit("-", 1)[1].split(".")[0])
                    else:
                        i = 15 + int(d["query"].split("=")[1])
                    sid = sids[i]
                    self.assertEqual(d["status"], st[sid], d)
                    self.assertEqual(d["bytes"], lengths[sid], f"bytes vs the stream's content-length: {d}")
                    if i >= 15:
                        self.assertEqual((d["path"], d["upstream"] != ""), ("/api/json", True), d)
                self.assertEqual(len({d["request_id"] for d in entries}), 20)

    def test_access_log_status_and_bytes_per_stream(self):
        blob = et.blob_bytes()
        for proto in PROTOS:
            with self.subTest(proto):
                c = self.conn(proto)
                etag = self.h2(proto, "/logo.svg").header("etag")
                p = f"h2log-{proto}-"
                reqs = {
                    p + "200": ("GET", "/logo.svg", []),
                    p + "404": ("GET", "/nope.png", []),
                    p + "206": ("GET", "/blob.bin", [("range", "bytes=0-99")]),
                    p + "304": ("GET", "/logo.svg", [("if-none-match", etag)]),
                    p + "head": ("HEAD", "/logo.svg", []),
                    p + "big": ("GET", "/blob.bin", []),
                    p + "spa": ("GET", "/readings/42", []),
                    p + "api": ("GET", "/api/json", []),
                }
                sids = {rid: c.request(path, method=m, headers=h + [("x-request-id", rid)])
                        for rid, (m, path, h) in reqs.items()}
                got = {rid: c.response(sid, 10) for rid, sid in sids.items()}
                self.assertEqual(bytes(got[p + "206"].body), blob[:100])
                entries = self.log_entries(lambda d: str(d.get("request_id", "")).startswith(p), len(reqs))
                by_id = {}
                for d in entries:
                    by_id.setdefault(d["request_id"], []).append(d)
                self.assertEqual(sorted(by_id), sorted(reqs), entries)
                for rid, ds in by_id.items():
                    self.assertEqual(len(ds), 1, f"{rid}: {ds}")
                    d, st = ds[0], got[rid]
                    self.assertEqual(d["status"], st.status, d)
                    self.assertEqual(d["bytes"], len(st.body), f"{rid}: bytes = the body sent: {d}")
                    self.assertEqual(d["method"], reqs[rid][0])
                    self.assertEqual(d["path"], reqs[rid][1])
                    self.assertEqual(d["client_ip"], "127.0.0.1")
                kinds = ("200", "404", "206", "304", "head", "big", "spa")
                self.assertEqual([by_id[p + k][0]["status"] for k in kinds], [200, 404, 206, 304, 200, 200, 200])
                self.assertEqual(by_id[p + "big"][0]["bytes"], et.BLOB_SIZE)

    def test_metrics_count_h2_requests(self):
        n_ok, n_404 = 7, 3
        m0 = self.metrics()
        lbl = {"listener": f"127.0.0.1:{self.h2c_port}"}
        if not m0.find("edge_connections_accepted_total", lbl):
            self.skipTest(f"no per-port listener label: {m0.find('edge_connections_accepted_total')}")
        c = self.conn("h2c")
        sids = [c.request(f"/logo.svg?metrics={i}") for i in range(n_ok)]
        sids += [c.request(f"/nope-metrics-{i}.png") for i in range(n_404)]
        bodies = 0
        for sid in sids:
            st = c.response(sid)
            self.assertTrue(st.ended, st)
            bodies += len(st.body)
        c.close()

        def req(m, cls):
            return m.sum("edge_http_requests_total", {"route": "/", "class": cls})

        m1 = self.wait_metric("edge_http_requests_total", {"route": "/", "class": "4xx"}, req(m0, "4xx") + n_404)
        self.assertEqual(req(m1, "2xx") - req(m0, "2xx"), n_ok)
        self.assertEqual(req(m1, "4xx") - req(m0, "4xx"), n_404)
        self.assertEqual(m1.sum("edge_http_response_bytes_total", {"route": "/"})
                         - m0.sum("edge_http_response_bytes_total", {"route": "/"}), bodies)
        accepted = (m1.sum("edge_connections_accepted_total", lbl)
                    - m0.sum("edge_connections_accepted_total", lbl))
        self.assertEqual(accepted, 1, "10 streams, one connection")
        c0 = m0.sum("edge_http_request_duration_seconds_count", {"route": "/"})
        c1 = m1.sum("edge_http_request_duration_seconds_count", {"route": "/"})
        self.assertEqual(c1 - c0, n_ok + n_404, "histogram _count")


# ---------------------------------------------------------------------------------------------
# Config


class Config(unittest.TestCase):
    """`[http2]` and the listener keys: `--check` accepts them, refuses bad ones with file:line."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-h2-config-")
        cls.site = et.Site(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def text(self, listen=None, http2=""):
        listen = listen or [{"address": "127.0.0.1:0", "h2c": "true"},
                            {"address": "127.0.0.1:0", "tls": SELF_SIGNED, "http2": "false"}]
        out = et.make_config(self.site, "off", listen=listen, routes=et.default_routes(self.site.root))
        return out + http2

    def check(self, text):
        p = os.path.join(self.tmp, f"edge-{time.monotonic_ns()}.toml")
        with open(p, "w") as f:
            f.write(text)
        proc = subprocess.run([et.EDGE_BIN, "--check", "--config", p], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        return p, proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")

    def assert_bad(self, text, needle):
        p, rc, out = self.check(text)
        line = next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)
        self.assertEqual(rc, 1, f"exit {rc}:\n{out}")
        self.assertIn(f"{p}:{line}: ", out, f"expected {p}:{line}: for {needle!r}:\n{out}")

    def test_good(self):
        text = self.text(http2="\n[http2]\nmax_concurrent_streams = 64\ninitial_window_size = \"512k\"\n"
                               "connection_window = \"4m\"\nreset_burst = 200\nreset_rate = 10\n")
        p, rc, out = self.check(text)
        self.assertEqual(rc, 0, out)

    def test_h2c_with_tls_is_an_error(self):
        self.assert_bad(self.text([{"address": "127.0.0.1:0", "tls": SELF_SIGNED, "h2c": "true"}]), "h2c = true")

    def test_bad_values(self):
        for key, value in (("max_concurrent_streams", "0"), ("max_concurrent_streams", '"8"'),
                           ("initial_window_size", '"1k"'), ("connection_window", '"4g"'),
                           ("reset_burst", "0"), ("no_such_key", "1")):
            with self.subTest(key=key, value=value):
                self.assert_bad(self.text(http2=f"\n[http2]\n{key} = {value}\n"), f"{key} = {value}")
        with self.subTest("http2 not a boolean"):
            self.assert_bad(self.text([{"address": "127.0.0.1:0", "tls": SELF_SIGNED, "http2": '"yes"'}]),
                            'http2 = "yes"')


# ---------------------------------------------------------------------------------------------
# Graceful stop


class Graceful(unittest.TestCase):
    """SIGTERM with slow proxied streams in flight: GOAWAY, they complete 200, exit 0."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="edgetest-h2-graceful-")
        self.up = ut.Upstream("G").start()
        self.edge = None
        site = et.Site(self.tmp)
        routes = (ut.pool_toml("api", [self.up.address])
                  + ut.proxy_route("/api/", "api", strip_prefix="/api")
                  + et.default_routes(site.root))
        listen = [{"address": "127.0.0.1:0", "h2c": "true"}, {"address": "127.0.0.1:0", "tls": SELF_SIGNED}]
        cfg = os.path.join(self.tmp, "edge.toml")
        with open(cfg, "w") as f:
            f.write(et.make_config(site, os.path.join(self.tmp, "access.log"), listen=listen, routes=routes))
        self.edge = et.Edge(cfg, expect_hosts={"127.0.0.1"}, expect_count=2).start()
        self.h2c_port = self.edge.port_for("127.0.0.1", "http")
        self.tls_port = self.edge.port_for("127.0.0.1", "https")

    def tearDown(self):
        if self.edge is not None:
            self.edge.kill()
        self.up.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @unittest.skipUnless(NGHTTP, "nghttp (nghttp2-client) not installed")
    def test_sigterm_goaway_streams_in_flight_complete(self):
        self.edge.settle(0.3)
        ng = subprocess.Popen([NGHTTP, "-v", f"http://127.0.0.1:{self.h2c_port}/api/slow?ms=2500"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        result = {}

        def raw_tls():
            try:
                with hf.H2Conn(self.tls_port, tls=True, timeout=10) as c:
                    sid = c.request("/api/slow?ms=2500")
                    result["st"] = c.response(sid, 12)
                    c.wait_closed(5)
                    result["goaway"], result["closed"] = c.goaway, c.closed
            except Exception as e:  # noqa: BLE001
                result["error"] = e

        t = threading.Thread(target=raw_tls, daemon=True)
        t.start()
        try:
            ok = ops.wait_until(lambda: self.up.count()["active"] >= 2, 5)
            self.assertTrue(ok, f"the two slow streams did not reach the upstream: {self.up.count()}")
            t_term = time.monotonic()
            self.edge.signal(signal.SIGTERM)
            rc = self.edge.wait(15)
            took = time.monotonic() - t_term
            out, err = ng.communicate(timeout=15)
        finally:
            if ng.poll() is None:
                ng.kill()
                ng.wait()
        t.join(15)
        out = out.decode("utf-8", "replace")
        self.assertEqual(rc, 0, "edge exit code; stderr:\n" + self.edge.stderr_text()[-2000:])
        self.assertGreater(took, 1.0, "edge exited before the streams in flight were done")
        # nghttp (h2c): GOAWAY, then the stream's 200 and its body
        self.assertEqual(ng.returncode, 0, out[-3000:] + err.decode(errors="replace"))
        goaways = nghttp_goaways(out)
        self.assertTrue(goaways, "no GOAWAY in nghttp -v output:\n" + out[-3000:])
        sid = max(nghttp_statuses(out) or {0: 0})
        self.assertEqual(nghttp_statuses(out).get(sid), 200, out[-3000:])
        self.assertIn(goaways[0][1], ("NO_ERROR",), goaways)
        self.assertGreaterEqual(int(goaways[0][0]), sid,
                                f"GOAWAY's last stream id excludes the stream in flight: {goaways}")
        self.assertIn('"slept_ms":2500', out, "the stream's body")
        # raw client (TLS)
        self.assertNotIn("error", result, result)
        st = result["st"]
        self.assertEqual((st.status, st.ended, st.rst), (200, True, None), st)
        self.assertTrue(json.loads(bytes(st.body)), st)
        self.assertIsNotNone(result["goaway"], "no GOAWAY over TLS")
        self.assertEqual(result["goaway"][1], hf.NO_ERROR, result["goaway"])
        self.assertGreaterEqual(result["goaway"][0], 1)
        self.assertTrue(result["closed"], "connection not closed after the last stream")


# ---------------------------------------------------------------------------------------------
# Reload (SIGHUP)


class Reload(tr.ReloadCase):
    upstream_names = ["A"]

    def h2c_cfg(self, gen, ports=None):
        ports = ports or [self.p1]
        return self.cfg(gen, listen=[{"address": f"127.0.0.1:{p}", "h2c": "true"} for p in ports],
                        pools=ut.pool_toml("api", [self.ups["A"].address]),
                        routes=ut.proxy_route("/api/", "api", strip_prefix="/api", headers={"X-Edge-Gen": gen}))

    def test_next_stream_on_the_same_connection_sees_the_new_config(self):
        self.start(self.h2c_cfg("a"))
        with hf.H2Conn(self.p1) as c:
            st = c.response(c.request("/index.html"))
            self.assertEqual((st.status, st.header("x-edge-gen")), (200, "a"), st)
            st = c.response(c.request("/api/json"))
            self.assertEqual((st.status, st.header("x-edge-gen")), (200, "a"), st)
            self.sighup(self.h2c_cfg("b"))
            time.sleep(0.2)
            st = c.response(c.request("/index.html"))
            self.assertEqual(st.status, 200, st)
            self.assertEqual(st.header("x-edge-gen"), "b", "the next stream of a connection opened before the reload")
            st = c.response(c.request("/api/json"))
            self.assertEqual((st.status, st.header("x-edge-gen")), (200, "b"), st)
            self.assertIsNone(c.goaway, "its listener is kept: no GOAWAY")
            self.assertFalse(c.closed)
        self.assertEqual(self.gen(), "b")

    def test_stream_in_flight_finishes_across_the_reload(self):
        self.start(self.h2c_cfg("a"))
        with hf.H2Conn(self.p1, timeout=10) as c:
            slow = c.request("/api/slow?ms=1500")
            self.assertTrue(ops.wait_until(lambda: self.ups["A"].count()["active"] >= 1, 5))
            self.sighup(self.h2c_cfg("b"))
            st = c.response(c.request("/index.html"))
            self.assertEqual(st.header("x-edge-gen"), "b", st)
            st = c.response(slow, 10)
            self.assertEqual((st.status, st.ended, st.rst), (200, True, None), st)
            self.assertEqual(st.header("x-edge-gen"), "a", "the stream in flight keeps its snapshot")
            self.assertTrue(json.loads(bytes(st.body)))

    def test_listener_removed_sends_goaway_stream_finishes(self):
        # conf/REFERENCE.md: "a listener removed by a reload sends GOAWAY: streams in flight finish,
        # no new ones start"
        p2 = ops.free_port()
        self.start(self.h2c_cfg("a", [self.p1, p2]), n_listen=2)
        with hf.H2Conn(p2, timeout=10) as c:
            slow = c.request("/api/slow?ms=2000")
            self.assertTrue(ops.wait_until(lambda: self.ups["A"].count()["active"] >= 1, 5))
            self.sighup(self.h2c_cfg("b", [self.p1]))
            goaway_in_flight = c.wait(lambda: c.goaway is not None, 1.5)  # the slow stream is still running
            st = c.response(slow, 10)
            self.assertEqual((st.status, st.ended, st.rst), (200, True, None), st)
            after = ""
            if not goaway_in_flight:
                c.wait(lambda: c.goaway is not None, 1.0)
                seen = c.goaway
                nxt = c.response(c.request("/index.html"), 3)
                after = (f"; GOAWAY by the end of the stream in flight: {seen}; a new stream then got "
                         f"status {nxt.status} x-edge-gen={nxt.header('x-edge-gen')!r}, GOAWAY {c.goaway}")
            self.assertTrue(goaway_in_flight, "no GOAWAY within 1.5 s of the reload that removed the listener"
                            + after)
            self.assertEqual(c.goaway[1], hf.NO_ERROR, c.goaway)
            self.assertGreaterEqual(c.goaway[0], slow)
            self.assertTrue(c.wait_closed(5), "connection kept open after its last stream")
        self.assertEqual(self.gen(), "b")


if __name__ == "__main__":
    unittest.main()
