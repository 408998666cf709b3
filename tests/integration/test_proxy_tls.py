"""Reverse proxy (issue 5): HTTPS upstreams, the timeouts test_proxy.py does not cover, and the
WebSocket tunnel's idle timeout -- end to end through the real edge, upstreams are upstream.js.

HTTPS upstreams (`tls = true` in [[upstream]]; `server_name`, `verify`, `ca`, `client_cert`,
`client_key`): a throwaway CA, a server certificate (SAN DNS:localhost, IP:127.0.0.1) and a client
certificate are made with the `openssl` CLI once per module.  Verified against the given CA (200),
SNI as the upstream saw it (server_name; the server's host name when unset; none for an IP host),
the system store (which does not know the test CA: 502), verify = false (200), a wrong server_name
(502), an upstream requiring a client certificate (without one: 502; with one: 200 and the upstream
sees its CN), keep-alive reuse of one TLS connection, 10 MB down and 2 MB up intact, a WebSocket
echo over TLS, a TLS handshake that never completes (bounded by connect_timeout: 504), and config
errors (`edge --check`, `file:line:`).

Timeouts: read_timeout cuts a streamed response that goes silent after its head (client sees a
truncated body, edge logs "timed out") and spares one that keeps talking; connect_timeout against
a listener whose accept queue is full (the kernel drops the SYNs: nothing ever answers) -> 504, and
the retry on another server; the WebSocket tunnel closes after read_timeout without traffic and
stays open while frames flow.  (header_timeout and `websocket = false` are in test_proxy.py.)

Everything listens on 127.0.0.1 only; processes are stopped by PID.
"""
import base64
import hashlib
import json
import os
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import test_proxy as tp  # noqa: E402  (helpers and ProxyCase; its own tests are not collected here)
import upstreamtest as ut  # noqa: E402

MiB = 1024 * 1024
NO_PASSIVE = {"max_fails": 0}  # a failing case must not take the server out for the next test


# ---------------------------------------------------------------------------------------------
# A throwaway PKI (openssl CLI), shared by the classes of this module

PKI = {}


def _openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')}")


def make_pki(d):
    """CA, server cert (SAN DNS:localhost, IP:127.0.0.1; serverAuth), client cert (CN
    edge-test-client; clientAuth), all P-256, in directory d.  Returns a dict of paths."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Edge Proxy Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    exts = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        "client": "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    }
    cns = {"server": "localhost", "client": "edge-test-client"}
    for who in ("server", "client"):
        with open(os.path.join(d, who + ".ext"), "w") as f:
            f.write(exts[who])
        _openssl("req", *ec, "-keyout", who + ".key", "-out", who + ".csr", "-subj", "/CN=" + cns[who], cwd=d)
        _openssl("x509", "-req", "-in", who + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", who + ".pem", "-days", "2", "-extfile", who + ".ext", cwd=d)
    return {k: os.path.join(d, f) for k, f in (
        ("dir", ""), ("ca", "ca.pem"), ("ca_key", "ca.key"), ("cert", "server.pem"), ("key", "server.key"),
        ("client_cert", "client.pem"), ("client_key", "client.key"))}


def setUpModule():
    if not shutil.which("openssl"):
        raise unittest.SkipTest("the openssl CLI is needed to make the test certificates")
    d = tempfile.mkdtemp(prefix="edgetest-proxytls-pki-")
    try:
        PKI.update(make_pki(d))
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise


def tearDownModule():
    if PKI.get("dir"):
        shutil.rmtree(PKI["dir"], ignore_errors=True)
    PKI.clear()


def client_context(with_cert=False):
    """An ssl context for talking to a test upstream directly (admin API): trusts the test CA."""
    ctx = ssl.create_default_context(cafile=PKI["ca"])
    if with_cert:
        ctx.load_cert_chain(PKI["client_cert"], PKI["client_key"])
    return ctx


def localhost_is_ipv4_loopback():
    try:
        infos = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and infos[0][0] == socket.AF_INET and infos[0][4][0] == "127.0.0.1"


def silent_listener(backlog):
    """A listening socket on 127.0.0.1 that never accepts."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s


def blackhole():
    """(listener, fillers, reason): a listener with backlog 0 whose accept queue is full, so Linux
    drops every further SYN (nothing answers a connect, which then times out).  reason is None
    when a probe confirmed it, else why it could not be made (the caller skips)."""
    lst = silent_listener(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # listen(0) queues one connection; more in case the kernel allows more
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            fillers.append(s)
            s.connect_ex(("127.0.0.1", port))
            deadline = time.monotonic() + 0.5
            done = False
            while time.monotonic() < deadline:
                _, w, _ = select.select([], [s], [], deadline - time.monotonic())
                if w:
                    done = True
                    break
            if not done:
                # this connect got no SYN-ACK within 0.5 s: the queue is full.  Drop the probe (its
                # SYN retransmits would take the place the next connect needs) and keep the rest.
                fillers.pop().close()
                return lst, fillers, None
        reason = "a listener with a full accept queue still completed connects (tcp_abort_on_overflow?)"
    except OSError as e:
        reason = f"cannot set up the SYN blackhole: {e}"
    for s in fillers:
        s.close()
    lst.close()
    return None, [], reason


def ws_handshake(c, path):
    key = base64.b64encode(os.urandom(16)).decode()
    c.send(et.request(path, headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                     ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
    head = tp.read_head(c)
    return key, head


class LogMixin:
    def log_mark(self):
        return len(self.edge.stderr_lines)

    def log_since(self, mark):
        return "\n".join(self.edge.stderr_lines[mark:])

    def wait_log(self, mark, needle, timeout=2.0):
        return tp.wait_until(lambda: needle in self.log_since(mark), timeout, 0.05)


# ---------------------------------------------------------------------------------------------
# HTTPS upstreams


class ProxyTLS(LogMixin, tp.ProxyCase):
    """T: an HTTPS upstream (test CA); M: one that also requires a client certificate; D: one whose
    handshakes take 300 ms (a far-away upstream)."""

    server_opts = {"header_timeout": '"3s"'}  # a request body edge stops reading fails in 3 s, not 10

    @classmethod
    def setUpClass(cls):
        tls = {"tls_cert": PKI["cert"], "tls_key": PKI["key"]}
        cls.upstream_specs = {
            "T": ("normal", dict(tls, admin_context=client_context())),
            "M": ("normal", dict(tls, tls_ca_for_clients=PKI["ca"], admin_context=client_context(True))),
            "D": ("normal", dict(tls, tls_handshake_delay_ms=300, admin_context=client_context())),
        }
        cls.stall = silent_listener(16)  # TCP connects, the TLS handshake never gets an answer
        try:
            super().setUpClass()
        except BaseException:
            cls.stall.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.stall.close()

    @classmethod
    def proxy_config(cls, u):
        T, M, D = u["T"], u["M"], u["D"]
        ca = PKI["ca"]
        cls.localhost_ok = localhost_is_ipv4_loopback()
        fail = dict(tries=1, passive=NO_PASSIVE)
        pools = [
            ut.pool_toml("tca", [T.address], tls=True, ca=ca, server_name="localhost", keepalive=8),
            ut.pool_toml("tip", [T.address], tls=True, ca=ca),
            ut.pool_toml("tfresh", [D.address], tls=True, ca=ca, server_name="localhost", keepalive=0, tries=1),
            ut.pool_toml("tsys", [T.address], tls=True, server_name="localhost", **fail),
            ut.pool_toml("tnoverify", [T.address], tls=True, verify=False, server_name="localhost"),
            ut.pool_toml("twrong", [T.address], tls=True, ca=ca, server_name="wrong.example", **fail),
            ut.pool_toml("mnocert", [M.address], tls=True, ca=ca, server_name="localhost", **fail),
            ut.pool_toml("mcert", [M.address], tls=True, ca=ca, server_name="localhost",
                         client_cert=PKI["client_cert"], client_key=PKI["client_key"]),
            ut.pool_toml("tstall", ["127.0.0.1:%d" % cls.stall.getsockname()[1]], tls=True, ca=ca,
                         server_name="localhost", connect_timeout="1s", header_timeout="20s", **fail),
        ]
        names = ["tca", "tip", "tfresh", "tsys", "tnoverify", "twrong", "mnocert", "mcert", "tstall"]
        if cls.localhost_ok:
            pools.append(ut.pool_toml("tname", [f"localhost:{T.port}"], tls=True, ca=ca))
            names.append("tname")
        proxies = [ut.proxy_route(f"/{p}/", p, strip_prefix=f"/{p}", max_body="8m") for p in names]
        return pools, proxies

    def requests_of(self, name):
        return self.ups[name].count()["requests"]

    # -- verification against the given CA, SNI ------------------------------------------------
    def test_ca_verified_200(self):
        r, doc = self.echo("/tca/echo?x=1")
        self.assertEqual(doc["instance"], "T")
        self.assertEqual(doc["url"], "/echo?x=1")
        self.assertIsNotNone(doc["tls"], "the upstream saw a plain-HTTP request")
        self.assertIn(doc["tls"]["protocol"], ("TLSv1.2", "TLSv1.3"), doc["tls"])
        self.assertEqual(r.header("server"), "samia-edge")
        r = self.get("/tca/json")
        self.assertStatus(r, 200)
        self.assertEqual(self.json_body(r)["service"], "edgetest-upstream")

    def test_sni_is_server_name(self):
        _, doc = self.echo("/tca/echo")
        self.assertEqual(doc["tls"]["servername"], "localhost", doc["tls"])

    def test_sni_absent_for_an_ip_host(self):
        # no server_name, host 127.0.0.1: no SNI (RFC 6066 forbids IP literals), and the
        # certificate is checked against the IP (its SAN IP:127.0.0.1)
        _, doc = self.echo("/tip/echo")
        self.assertIsNone(doc["tls"]["servername"], doc["tls"])

    def test_sni_defaults_to_the_host_name(self):
        if not self.localhost_ok:
            self.skipTest("localhost does not resolve to 127.0.0.1 first here")
        _, doc = self.echo("/tname/echo")
        self.assertEqual(doc["tls"]["servername"], "localhost", doc["tls"])

    # -- verification failures -----------------------------------------------------------------
    def assert_refused_upstream(self, path, upstream, what):
        before = self.requests_of(upstream)
        mark = self.log_mark()
        t0 = time.monotonic()
        r = self.get(path, timeout=8)
        elapsed = time.monotonic() - t0
        self.assertJsonError(r, 502, what)
        self.assertLess(elapsed, 4, f"{what}: the 502 took {elapsed:.1f}s")
        self.assertEqual(self.requests_of(upstream), before, f"{what}: the request reached the upstream")
        return self.log_since(mark)

    def test_system_store_does_not_know_the_test_ca_502(self):
        log = self.assert_refused_upstream("/tsys/echo", "T", "no ca: the system store")
        self.assertIn("certificate", log.lower(), f"the verification failure is not logged:\n{log}")

    def test_verify_false_without_ca_200(self):
        _, doc = self.echo("/tnoverify/echo")
        self.assertEqual(doc["tls"]["servername"], "localhost", doc["tls"])

    def test_wrong_server_name_502(self):
        log = self.assert_refused_upstream("/twrong/echo", "T", "server_name = wrong.example")
        self.assertIn("certificate", log.lower(), f"the verification failure is not logged:\n{log}")

    # -- client certificates -------------------------------------------------------------------
    def test_client_cert_required_without_one_502(self):
        self.assert_refused_upstream("/mnocert/echo", "M", "upstream requires a client certificate, none configured")

    def test_client_cert_presented(self):
        _, doc = self.echo("/mcert/echo")
        self.assertEqual(doc["instance"], "M")
        self.assertTrue(doc["tls"]["authorized"], doc["tls"])
        self.assertEqual(doc["tls"]["peer_cn"], "edge-test-client", doc["tls"])

    # -- keep-alive over TLS -----------------------------------------------------------------
    def test_keepalive_reuses_one_tls_connection(self):
        T = self.ups["T"]
        self.echo("/tca/echo?warm=1")  # an idle pooled connection exists from here on
        before = T.count()["connections"]
        docs = [self.echo(f"/tca/echo?ka={i}")[1] for i in range(5)]  # a fresh client connection each
        ids = {d["socket_id"] for d in docs}
        self.assertEqual(len(ids), 1, f"edge opened {len(ids)} TLS connections for 5 sequential requests")
        reqs = [d["socket_requests"] for d in docs]
        self.assertEqual(reqs, list(range(reqs[0], reqs[0] + 5)), reqs)
        self.assertGreater(reqs[0], 1, "the warm-up request's connection was not reused")
        self.assertEqual(T.count()["connections"] - before, 0)

    # -- bodies over TLS -----------------------------------------------------------------------
    def test_10mb_response_intact(self):
        total = 10 * MiB
        r = et.curl(self.url(f"/tca/big?bytes={total}"), timeout=30)
        self.assertEqual((r.rc, r.status), (0, 200), r)
        self.assertEqual(r.header("content-length"), str(total))
        self.assertEqual(len(r.body), total)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), tp.big_sha256(total))

    def test_chunked_response_intact(self):
        total = 3 * MiB + 11
        r = et.curl(self.url(f"/tca/big?bytes={total}&chunked=1"), timeout=30)
        self.assertEqual((r.rc, r.status), (0, 200), r)
        self.assertEqual(len(r.body), total)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), tp.big_sha256(total))

    def post(self, path, body, timeout=10):
        with et.Conn(self.port, timeout=timeout) as c:
            c.send(et.request(path, "POST", headers=[("Content-Length", str(len(body))),
                                                     ("Content-Type", "application/octet-stream")]))
            try:
                c.send(body)
            except OSError as e:  # edge stopped reading and gave up: its answer says why
                sent_error = e
            else:
                sent_error = None
            try:
                return c.read_response(timeout=timeout)
            except et.ProtocolError as e:
                self.fail(f"POST {path}: no response ({e}); sending the body: {sent_error!r}")

    def assert_uploaded(self, r, body, what):
        self.assertEqual(r.status, 200, f"{what}: {r!r}")
        doc = self.json_body(r)
        self.assertEqual(doc["bytes"], len(body), what)
        self.assertEqual(doc["sha256"], hashlib.sha256(body).hexdigest(), what)

    def test_2mb_post_intact(self):
        # over a pooled TLS connection (the warm-up leaves one idle); the second POST makes the
        # upstream stop reading for 300 ms, so edge has to wait for the TLS socket to drain
        self.echo("/tca/echo?warm=post")
        body = os.urandom(2 * MiB)
        for q in ("", "?stall_ms=300"):
            with self.subTest(q=q):
                self.assert_uploaded(self.post("/tca/upload" + q, body), body, f"2 MB POST{q}")

    def test_post_on_a_fresh_tls_connection(self):
        # keepalive = 0 and an upstream whose handshake takes 300 ms (as one far away does): the
        # body arrives while the handshake runs and more than edge's 256 KiB write backlog piles
        # up; once the handshake is done and the backlog written, edge must read the client again
        r, doc = self.echo("/tfresh/echo")  # the slow handshake alone is fine
        small = os.urandom(100000)  # under the backlog bound: fine too
        self.assert_uploaded(self.post("/tfresh/upload", small), small, "100 kB POST on a fresh TLS connection")
        for size in (300000, 2 * MiB):
            with self.subTest(size=size):
                body = os.urandom(size)
                self.assert_uploaded(self.post("/tfresh/upload", body), body,
                                     f"{size}-byte POST on a fresh upstream TLS connection")

    def test_websocket_echo_over_tls(self):
        with et.Conn(self.port, timeout=5) as c:
            key, head = ws_handshake(c, "/tca/ws")
            self.assertStatus(head, 101)
            accept = base64.b64encode(hashlib.sha1((key + tp.WS_GUID).encode()).digest()).decode()
            self.assertEqual(head.header("sec-websocket-accept"), accept)
            c.send(tp.ws_frame(0x1, b"over tls"))
            self.assertEqual(tp.ws_read_frame(c), (0x81, b"over tls"))
            big = os.urandom(100000)
            c.send(tp.ws_frame(0x2, big))
            self.assertEqual(tp.ws_read_frame(c), (0x82, big))
            c.send(tp.ws_frame(0x8, struct.pack(">H", 1000)))
            self.assertEqual(tp.ws_read_frame(c), (0x88, struct.pack(">H", 1000)))
            self.assertTrue(c.wait_closed(3), "tunnel not closed after the upstream closed")

    # -- a handshake that never completes --------------------------------------------------------
    def test_stalled_handshake_bounded_by_connect_timeout(self):
        mark = self.log_mark()
        t0 = time.monotonic()
        r = self.get("/tstall/echo", timeout=8)
        elapsed = time.monotonic() - t0
        self.assertJsonError(r, 504, "TLS handshake never answered")
        self.assertGreater(elapsed, 0.8, "504 before connect_timeout = 1s")
        self.assertLess(elapsed, 3, "connect_timeout = 1s does not bound the TLS handshake")
        self.assertTrue(self.wait_log(mark, "timed out"), self.log_since(mark))


class ProxyTLSConfig(unittest.TestCase):
    """`edge --check`: the TLS keys of [[upstream]] and their errors (file:line:)."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(et.EDGE_BIN):
            raise et.EdgeError(f"edge binary not found at {et.EDGE_BIN}")
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-proxytls-config-")
        cls.site = et.Site(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def config(self, **tls):
        pool = ut.pool_toml("api", ["127.0.0.1:5999"], **tls)
        routes = ut.routes_toml([pool], [ut.proxy_route("/api/", "api")])
        return et.make_config(self.site, "off", listen=["127.0.0.1:0"], routes=routes)

    def check(self, name, text):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        proc = subprocess.run([et.EDGE_BIN, "--check", "--config", p], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        return p, proc.returncode, proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")

    @staticmethod
    def line_of(text, needle):
        for i, ln in enumerate(text.splitlines(), 1):
            if needle in ln:
                return i
        raise AssertionError(needle)

    def test_good_tls_config(self):
        text = self.config(tls=True, ca=PKI["ca"], server_name="api.internal", verify=True,
                           client_cert=PKI["client_cert"], client_key=PKI["client_key"])
        p, rc, out = self.check("good.toml", text)
        self.assertEqual(rc, 0, out)

    def test_missing_ca_file(self):
        missing = os.path.join(self.tmp, "no-such-ca.pem")
        text = self.config(tls=True, ca=missing)
        p, rc, out = self.check("missing-ca.toml", text)
        self.assertEqual(rc, 1, out)
        self.assertIn(f"{p}:{self.line_of(text, 'ca = ')}: ", out)
        self.assertIn(missing, out)

    def test_client_cert_without_key(self):
        text = self.config(tls=True, ca=PKI["ca"], client_cert=PKI["client_cert"])
        p, rc, out = self.check("cert-no-key.toml", text)
        self.assertEqual(rc, 1, out)
        self.assertIn("client_key", out)
        lines = {self.line_of(text, "[[upstream]]"), self.line_of(text, "client_cert = ")}
        self.assertTrue(any(f"{p}:{n}: " in out for n in lines), f"expected {p}:<line>: in:\n{out}")

    def test_client_key_not_matching_cert(self):
        text = self.config(tls=True, ca=PKI["ca"], client_cert=PKI["client_cert"], client_key=PKI["key"])
        p, rc, out = self.check("cert-wrong-key.toml", text)
        self.assertEqual(rc, 1, out)
        self.assertIn("client_key", out)
        first = self.line_of(text, "[[upstream]]")
        last = self.line_of(text, "client_key = ")
        self.assertTrue(any(f"{p}:{n}: " in out for n in range(first, last + 1)),
                        f"expected {p}:<a line of the [[upstream]]>: in:\n{out}")

    def test_tls_keys_without_tls(self):
        text = self.config(server_name="localhost")
        p, rc, out = self.check("no-tls.toml", text)
        self.assertEqual(rc, 1, out)
        self.assertIn(f"{p}:{self.line_of(text, 'server_name = ')}: ", out)


# ---------------------------------------------------------------------------------------------
# Timeouts: read_timeout, connect_timeout, the WebSocket tunnel's idle timeout


class ProxyTimeouts(LogMixin, tp.ProxyCase):
    upstream_specs = {"N": ("normal", {})}

    @classmethod
    def setUpClass(cls):
        cls.hole, cls.hole_fillers, cls.hole_reason = blackhole()
        cls.late, cls.late_fillers, cls.late_reason = blackhole()  # opened later by test_post_while_connecting
        try:
            super().setUpClass()
        except BaseException:
            cls._close_hole()
            raise

    @classmethod
    def _close_hole(cls):
        for s in cls.hole_fillers + cls.late_fillers:
            s.close()
        for s in (cls.hole, cls.late):
            if s is not None:
                s.close()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._close_hole()

    @classmethod
    def proxy_config(cls, u):
        N = u["N"].address
        pools = [
            ut.pool_toml("rt", [N], read_timeout="1s", tries=1, passive=NO_PASSIVE),
            ut.pool_toml("ws", [N], read_timeout="1s", passive=NO_PASSIVE),
        ]
        names = ["rt", "ws"]
        if cls.hole is not None:
            hole = "127.0.0.1:%d" % cls.hole.getsockname()[1]
            pools += [
                ut.pool_toml("ct", [hole], connect_timeout="1s", tries=1, passive=NO_PASSIVE),
                ut.pool_toml("ctretry", [hole, N], connect_timeout="1s", tries=2, passive=NO_PASSIVE),
            ]
            names += ["ct", "ctretry"]
        if cls.late is not None:
            pools.append(ut.pool_toml("late", ["127.0.0.1:%d" % cls.late.getsockname()[1]], connect_timeout="5s",
                                      tries=1, passive=NO_PASSIVE))
            names.append("late")
        return pools, [ut.proxy_route(f"/{p}/", p, strip_prefix=f"/{p}") for p in names]

    # -- read_timeout ----------------------------------------------------------------------------
    def test_read_timeout_cuts_a_silent_stream(self):
        # events 0 and 1 (100 ms apart), then 4 s of silence: read_timeout = 1s must cut it
        mark = self.log_mark()
        with et.Conn(self.port, timeout=8) as c:
            c.send(et.request("/rt/sse?n=4&ms=100&pause_at=2&pause_ms=4000"))
            head = tp.read_head(c)
            self.assertStatus(head, 200)
            self.assertEqual(head.media_type(), "text/event-stream")
            last_event_at = None
            deadline = time.monotonic() + 6
            while not c.eof:
                if b'"i":1,' in c.buf and last_event_at is None:
                    last_event_at = time.monotonic()
                if not c._recv(deadline):
                    break
            closed_at = time.monotonic()
            body = c.buf
        self.assertTrue(c.eof, f"edge kept the client connection open through the silence: {body[-200:]!r}")
        self.assertIn(b'"i":0,', body)
        if last_event_at is None:
            self.assertIn(b'"i":1,', body)
            last_event_at = closed_at
        self.assertNotIn(b'"i":2,', body, "the stream was not cut: the event after the pause arrived")
        self.assertFalse(body.endswith(b"0\r\n\r\n"), "a cut stream must not end like a complete one")
        silence = closed_at - last_event_at
        self.assertGreater(silence, 0.7, f"cut {silence:.2f}s after the last event: before read_timeout = 1s")
        self.assertLess(silence, 2.5, f"cut {silence:.2f}s after the last event: read_timeout = 1s")
        self.assertTrue(self.wait_log(mark, "timed out"), f"no 'timed out' in edge's log:\n{self.log_since(mark)}")

    def test_read_timeout_curl_sees_an_error(self):
        t0 = time.monotonic()
        r = et.curl(self.url("/rt/sse?n=3&ms=50&pause_at=1&pause_ms=4000"), timeout=6)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        self.assertNotEqual(r.rc, 0, f"curl saw a complete response: {r}")
        self.assertNotEqual(r.rc, 28, f"curl hit its own --max-time: edge did not cut the stream: {r}")
        self.assertIn(b'"i":0,', r.body)
        self.assertNotIn(b'"i":1,', r.body)
        self.assertLess(elapsed, 3.5, r)

    def test_read_timeout_spares_a_stream_that_keeps_talking(self):
        # 6 events 400 ms apart: 2.4 s in all, never 1 s of silence
        r = et.curl(self.url("/rt/sse?n=6&ms=400"), timeout=8)
        self.assertEqual((r.rc, r.status), (0, 200), r)
        for i in range(6):
            self.assertIn(b'"i":%d,' % i, r.body)

    # -- connect_timeout -------------------------------------------------------------------------
    def need_hole(self):
        if self.hole is None:
            self.skipTest(self.hole_reason)

    def test_connect_timeout_504(self):
        self.need_hole()
        mark = self.log_mark()
        t0 = time.monotonic()
        r = self.get("/ct/echo", timeout=8)
        elapsed = time.monotonic() - t0
        self.assertJsonError(r, 504, "connect never answered")
        self.assertGreater(elapsed, 0.8, "504 before connect_timeout = 1s")
        self.assertLess(elapsed, 2.5, "connect_timeout = 1s not applied (default 5s?)")
        self.assertTrue(self.wait_log(mark, "timed out"), self.log_since(mark))

    def test_connect_timeout_retried_on_the_next_server(self):
        self.need_hole()
        slow = 0
        for i in range(2):  # round robin: one of the two goes to the blackhole first
            t0 = time.monotonic()
            r = self.get(f"/ctretry/echo?i={i}", timeout=8)
            elapsed = time.monotonic() - t0
            self.assertEqual((r.status, r.header("x-upstream")), (200, "N"), r)
            self.assertLess(elapsed, 3, r)
            slow += elapsed > 0.8
        self.assertGreaterEqual(slow, 1, "no request went through the blackhole's connect_timeout first")

    def test_post_while_connecting(self):
        # The upstream's TCP connect completes only after ~1 s (its accept queue is full until we
        # accept the filler: the kernel drops edge's first SYN, the retransmit gets through), as a
        # far-away upstream's would take a round trip.  A 300 kB body sent at once piles up past
        # edge's 256 KiB write backlog meanwhile; once connected and written, edge must read the
        # client again.  A one-shot HTTP upstream (this thread) answers with the body's sha256.
        if self.late is None:
            self.skipTest("cannot make a listener whose connects wait: " + str(self.late_reason))
        body = os.urandom(300000)
        got = {}

        def serve():
            buf = b""
            seen = 0
            try:
                self.late.settimeout(4)
                c, _ = self.late.accept()
                with c:
                    c.settimeout(3)  # edge stalls: the body stops coming
                    while b"\r\n\r\n" not in buf:
                        chunk = c.recv(65536)
                        if not chunk:
                            raise OSError("edge closed before the request head")
                        buf += chunk
                    head, rest = buf.split(b"\r\n\r\n", 1)
                    n = int(next(ln.split(b":", 1)[1] for ln in head.split(b"\r\n")
                                 if ln.lower().startswith(b"content-length:")))
                    h, seen = hashlib.sha256(rest), len(rest)
                    got["head"] = head.decode("latin-1")
                    while seen < n:
                        chunk = c.recv(65536)
                        if not chunk:
                            raise OSError(f"edge closed after {seen} of {n} body bytes")
                        h.update(chunk)
                        seen += len(chunk)
                    out = json.dumps({"bytes": seen, "sha256": h.hexdigest()}).encode()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                              b"Connection: close\r\n\r\n" % len(out) + out)
                    got["bytes"] = seen
            except OSError as e:
                got["error"] = repr(e)
                got["received"] = {"head_buffer": len(buf), "body": seen}

        with et.Conn(self.port, timeout=8) as c:
            c.send(et.request("/late/upload", "POST", headers=[("Content-Length", str(len(body)))]))
            c.send(body)
            time.sleep(0.3)  # edge's first SYN has been dropped by now
            for f in self.late_fillers:  # free the accept queue: the SYN retransmit will get in
                a, _ = self.late.accept()
                a.close()
                f.close()
            self.late_fillers.clear()
            t = threading.Thread(target=serve, daemon=True)
            t.start()
            try:
                r = c.read_response(timeout=8)
            finally:
                t.join(8)
        self.assertEqual(r.status, 200, f"{r!r}; the upstream saw: {got}")
        doc = self.json_body(r)
        self.assertEqual(doc, {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    # -- the WebSocket tunnel's idle timeout -----------------------------------------------------
    def test_websocket_idle_tunnel_closes_after_read_timeout(self):
        with et.Conn(self.port, timeout=6) as c:
            _, head = ws_handshake(c, "/ws/ws")
            self.assertStatus(head, 101)
            c.send(tp.ws_frame(0x1, b"ping"))
            self.assertEqual(tp.ws_read_frame(c), (0x81, b"ping"))
            t0 = time.monotonic()
            closed = c.wait_closed(4)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "an idle tunnel stayed open 4 s with read_timeout = 1s")
        self.assertGreater(elapsed, 0.7, f"closed {elapsed:.2f}s after the last traffic")
        self.assertLess(elapsed, 2.5, f"closed {elapsed:.2f}s after the last traffic, read_timeout = 1s")

    def test_websocket_tunnel_with_traffic_stays_open(self):
        with et.Conn(self.port, timeout=6) as c:
            _, head = ws_handshake(c, "/ws/ws")
            self.assertStatus(head, 101)
            for i in range(6):  # 6 x 0.4 s = 2.4 s, never 1 s idle
                msg = b"tick %d" % i
                c.send(tp.ws_frame(0x1, msg))
                self.assertEqual(tp.ws_read_frame(c), (0x81, msg), f"frame {i}")
                time.sleep(0.4)
            c.send(tp.ws_frame(0x1, b"last"))
            self.assertEqual(tp.ws_read_frame(c), (0x81, b"last"))


if __name__ == "__main__":
    unittest.main()
