"""TLS termination with real peers (openssl s_client, curl, python ssl), all on 127.0.0.1:
versions, ALPN, SNI, resumption, HSTS/CSP over TLS only, static files over TLS, bad input on the
TLS port (plain HTTP, garbage, idle, half handshake), config errors with file:line, the
self-signed certificate, graceful stop with a TLS download in flight."""
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

HSTS = "max-age=63072000; includeSubDomains"
MIB = 1024 * 1024
CERTS = None  # module temp folder: the api.test certificate, a stray key, a garbage PEM


def run(cmd, timeout=10, stdin=b""):
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def make_ecdsa_cert(cert, key, cn, sans):
    rc, out = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", key, "-out", cert, "-days", "30", "-subj", f"/CN={cn}",
                   "-addext", "subjectAltName=" + ",".join(sans)], timeout=20)
    if rc != 0:
        raise RuntimeError(out)


def setUpModule():
    global CERTS
    CERTS = tempfile.mkdtemp(prefix="edgetest-tls-certs-")
    make_ecdsa_cert(os.path.join(CERTS, "api.crt"), os.path.join(CERTS, "api.key"), "api.test", ["DNS:api.test"])
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", os.path.join(CERTS, "stray.key")])
    with open(os.path.join(CERTS, "garbage.crt"), "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")


def tearDownModule():
    shutil.rmtree(CERTS, ignore_errors=True)


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----\n.*?\n-----END CERTIFICATE-----\n?", re.S)

REQ_CLOSE = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def s_client(port, *args, stdin=REQ_CLOSE, timeout=10):
    """openssl s_client against 127.0.0.1:port; with the default stdin it sends one request and
    reads to the close (-ign_eof), so TLS 1.3 tickets arrive.  Returns (rc, output)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof"] + list(args)
    return run(cmd, timeout=timeout, stdin=stdin)


def client_hello(server_hostname="localhost"):
    """The bytes of a real TLS ClientHello (python ssl over memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    assert data[:1] == b"\x16" and len(data) > 100, data[:10]
    return data


class TLS(et.EdgeTestCase):
    """One edge: a TLS listener (self-signed default + api.test by SNI) and a plain one."""

    server_opts = {"header_timeout": '"1s"'}

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="edgetest-tls-a-")
        cls.crt = os.path.join(cls.certdir, "a.crt")
        cls.key = os.path.join(cls.certdir, "a.key")
        cls.api_crt = os.path.join(CERTS, "api.crt")
        tls = (f"{{ self_signed = true, cert = {et.q(cls.crt)}, key = {et.q(cls.key)}, "
               f"certs = [ {{ cert = {et.q(cls.api_crt)}, key = {et.q(os.path.join(CERTS, 'api.key'))}, "
               f"names = [\"api.test\"] }} ] }}")
        cls.listen = [{"address": "127.0.0.1:0", "tls": tls}, "127.0.0.1:0"]
        try:
            super().setUpClass()
        except BaseException:
            shutil.rmtree(cls.certdir, ignore_errors=True)
            raise
        cls.tls_port = cls.edge.port_for("127.0.0.1", "https")
        cls.plain_port = cls.edge.port_for("127.0.0.1", "http")
        cls.port = cls.plain_port
        cls.ctx = ssl.create_default_context(cafile=cls.crt)  # trusts the self-signed cert only

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.certdir, ignore_errors=True)

    @classmethod
    def prepare_site(cls, site):
        cls.big = os.urandom(MIB)
        site.write("/big.bin", cls.big)

    # -- helpers -------------------------------------------------------------------------------
    def https(self, path, *args, host="localhost", **kw):
        return et.curl(f"https://{host}:{self.tls_port}{path}", "--resolve", f"localhost:{self.tls_port}:127.0.0.1",
                       "--cacert", self.crt, *args, **kw)

    def tls_conn(self, timeout=5.0):
        return et.TLSConn(self.tls_port, self.ctx, timeout=timeout)

    def assertStillServes(self):
        with self.tls_conn() as c:
            c.send(et.request("/index.html"))
            r = c.read_response()
        self.assertStatus(r, 200)
        self.assertIn(b"EDGETEST-INDEX", r.body)

    def served_cert(self, *args):
        rc, out = s_client(self.tls_port, *args)
        m = PEM_RE.search(out)
        self.assertIsNotNone(m, f"no certificate in s_client output (rc={rc}):\n{out[-2000:]}")
        return ssl.PEM_cert_to_DER_cert(m.group(0)), out

    # -- versions, ALPN, SNI, resumption --------------------------------------------------------
    def test_tls10_and_tls11_refused(self):
        for flag, name in (("-tls1", "TLSv1"), ("-tls1_1", "TLSv1.1")):
            # SECLEVEL=0 so the local client really offers the old version: the refusal must be the server's
            rc, out = s_client(self.tls_port, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
            self.assertNotEqual(rc, 0, f"{flag}: handshake succeeded:\n{out[-1500:]}")
            self.assertIsNone(re.search(r"^New, TLSv[\d.]+, Cipher is (?!\(NONE\))", out, re.M), out[-1500:])
            self.assertIn("alert protocol version", out, f"{flag}: expected the server's protocol_version alert")
            self.assertNotIn("HTTP/1.1 200", out)
        self.assertStillServes()

    def test_tls12_and_tls13_accepted(self):
        rc, out = s_client(self.tls_port, "-tls1_2")
        self.assertRegex(out, r"(?m)^New, TLSv1\.2, Cipher is ECDHE-ECDSA-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$")
        self.assertIn("HTTP/1.1 200", out)
        rc, out = s_client(self.tls_port, "-tls1_3")
        self.assertRegex(out, r"(?m)^New, TLSv1\.3, Cipher is TLS_(AES_\d+_GCM_SHA\d+|CHACHA20_POLY1305_SHA256)$")
        self.assertIn("HTTP/1.1 200", out)

    def test_tls12_refuses_weak_ciphers(self):
        """The default TLS 1.2 list is ECDHE + AEAD only: a CBC-only or non-ECDHE client is refused."""
        for cipher in ("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA", "AES128-GCM-SHA256:AES256-SHA"):
            rc, out = s_client(self.tls_port, "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0")
            self.assertNotEqual(rc, 0, f"{cipher}: accepted:\n{out[-1500:]}")
            self.assertNotIn("HTTP/1.1 200", out, cipher)

    def test_alpn_http11(self):
        rc, out = s_client(self.tls_port, "-alpn", "http/1.1")
        self.assertIn("ALPN protocol: http/1.1", out)
        self.assertIn("HTTP/1.1 200", out)
        # python's ssl, as a second peer
        ctx = ssl.create_default_context(cafile=self.crt)
        ctx.set_alpn_protocols(["http/1.1"])
        with et.TLSConn(self.tls_port, ctx) as c:
            self.assertEqual(c.sock.selected_alpn_protocol(), "http/1.1")
            self.assertEqual(c.sock.version(), "TLSv1.3")

    def test_sni_picks_the_certificate(self):
        api = der_of(self.api_crt)
        default = der_of(self.crt)
        self.assertNotEqual(api, default)
        got, out = self.served_cert("-servername", "api.test")
        self.assertEqual(got, api, "SNI api.test did not get the api.test certificate")
        self.assertRegex(out, r"subject=\s*CN\s*=\s*api\.test")
        got, out = self.served_cert("-servername", "API.Test")
        self.assertEqual(got, api, "SNI names are case-insensitive (RFC 6066 / DNS)")
        got, _ = self.served_cert("-noservername")
        self.assertEqual(got, default, "no SNI did not get the default certificate")
        got, _ = self.served_cert("-servername", "unknown.test")
        self.assertEqual(got, default, "an unknown SNI name did not get the default certificate")
        got, _ = self.served_cert("-servername", "localhost")
        self.assertEqual(got, default)
        # and curl verifies api.test against its own certificate
        r = et.curl(f"https://api.test:{self.tls_port}/index.html", "--resolve", f"api.test:{self.tls_port}:127.0.0.1",
                    "--cacert", self.api_crt)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.status, 200)

    def resume(self, *args):
        with tempfile.TemporaryDirectory() as d:
            sess = os.path.join(d, "sess.pem")
            rc, out1 = s_client(self.tls_port, *args, "-sess_out", sess)
            self.assertIn("HTTP/1.1 200", out1)
            self.assertRegex(out1, r"(?m)^New, TLSv1")
            self.assertTrue(os.path.exists(sess) and os.path.getsize(sess) > 0, "no session saved:\n" + out1[-1500:])
            rc, out2 = s_client(self.tls_port, *args, "-sess_in", sess)
            self.assertIn("HTTP/1.1 200", out2)
            self.assertRegex(out2, r"(?m)^Reused, TLSv1", "session not resumed:\n" + out2[-2000:])
            # and a fresh session is not "reused"
            rc, out3 = s_client(self.tls_port, *args)
            self.assertRegex(out3, r"(?m)^New, TLSv1")

    def test_resumption_tls13(self):
        self.resume("-tls1_3")

    def test_resumption_tls12_ticket(self):
        self.resume("-tls1_2")

    def test_resumption_tls12_session_cache(self):
        self.resume("-tls1_2", "-no_ticket")

    # -- headers -----------------------------------------------------------------------------
    def test_curl_verifies_and_gets_hsts_and_upgrade(self):
        r = self.https("/index.html")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, et.INDEX_HTML)
        self.assertEqual(r.header_all("strict-transport-security"), [HSTS])
        csp = r.header("content-security-policy") or ""
        self.assertIn("upgrade-insecure-requests", csp)
        self.assertIn("default-src 'self'", csp)
        self.assertEqual(r.header("x-content-type-options"), "nosniff")
        # the certificate names 127.0.0.1 too
        r = et.curl(f"https://127.0.0.1:{self.tls_port}/index.html", "--cacert", self.crt)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.status, 200)
        # an untrusted peer is not fooled: curl without the CA fails verification
        r = et.curl(f"https://localhost:{self.tls_port}/index.html", "--resolve", f"localhost:{self.tls_port}:127.0.0.1")
        self.assertNotEqual(r.rc, 0)

    def test_hsts_on_every_tls_response(self):
        for path in ("/missing.png", "/health", "/old/x", "/readings/7"):
            r = self.https(path)
            self.assertEqual(r.rc, 0, r.stderr)
            self.assertEqual(r.header_all("strict-transport-security"), [HSTS], f"{path}: {r!r}")

    def test_plain_listener_has_no_hsts(self):
        r = et.curl(f"http://127.0.0.1:{self.plain_port}/index.html")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, et.INDEX_HTML)
        self.assertIsNone(r.header("strict-transport-security"))
        self.assertNotIn("upgrade-insecure-requests", r.header("content-security-policy") or "")

    # -- static over TLS -----------------------------------------------------------------------
    def test_index_and_spa_route(self):
        r = self.https("/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, et.INDEX_HTML)
        r = self.https("/readings/42")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, et.INDEX_HTML)
        self.assertEqual(r.media_type(), "text/html")
        r = self.https("/assets/missing-Ab3dE5fG.js")
        self.assertEqual(r.status, 404, r)

    def test_1mib_byte_exact(self):
        r = self.https("/big.bin", timeout=10)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-length"), str(MIB))
        self.assertEqual(len(r.body), MIB)
        self.assertTrue(r.body == self.big, "1 MiB body differs over TLS")

    def test_range(self):
        r = self.https("/big.bin", "-r", "1000-2999")
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.header("content-range"), f"bytes 1000-2999/{MIB}")
        self.assertEqual(r.body, self.big[1000:3000])
        r = self.https("/big.bin", "-r", "-100")
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.body, self.big[-100:])

    def test_head(self):
        r = self.https("/big.bin", head=True)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-length"), str(MIB))
        self.assertEqual(r.header("strict-transport-security"), HSTS)
        with self.tls_conn() as c:
            c.send(et.request("/index.html", method="HEAD") + et.request("/logo.svg"))
            h = c.read_response("HEAD")
            g = c.read_response()
        self.assertEqual(h.status, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.header("content-length"), str(len(et.INDEX_HTML)))
        self.assertEqual(g.body, et.svg_1k(), "the response after a HEAD is misaligned")

    def test_keepalive_several_requests(self):
        paths = ["/index.html", "/logo.svg", "/big.bin", "/assets/app-Xy12Ab34.css", "/readings/1", "/index.html"]
        with self.tls_conn(timeout=10) as c:
            for p in paths:
                c.send(et.request(p))
                r = c.read_response(timeout=10)
                self.assertEqual(r.status, 200, f"{p}: {r!r}")
                want = self.big if p == "/big.bin" else self.site.files.get(p, et.INDEX_HTML)
                self.assertTrue(r.body == want, f"{p}: body differs")
                self.assertNotEqual((r.header("connection") or "").lower(), "close", p)
                time.sleep(0.05)
            self.assertFalse(c.eof)

    def test_pipelining_three_in_one_write(self):
        with self.tls_conn() as c:
            c.send(et.request("/logo.svg") + et.request("/big.bin") + et.request("/assets/app-Xy12Ab34.css"))
            a = c.read_response(timeout=10)
            b = c.read_response(timeout=10)
            d = c.read_response(timeout=10)
        self.assertEqual([a.status, b.status, d.status], [200, 200, 200])
        self.assertEqual(a.body, et.svg_1k())
        self.assertTrue(b.body == self.big, "pipelined 1 MiB body differs")
        self.assertEqual(d.body, self.site.files["/assets/app-Xy12Ab34.css"])

    # -- bad input on the TLS port ---------------------------------------------------------------
    def test_plain_http_on_tls_port_gets_400_and_close(self):
        with et.Conn(self.tls_port) as c:
            c.send(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
            closed = c.wait_closed(3.0)
            data = c.buf
        self.assertTrue(closed, f"not closed; got {data[:200]!r}")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), f"expected a plain 400, got {data[:200]!r}")
        rs, _ = et.parse_all(data, closed=True)
        self.assertEqual(len(rs), 1)
        self.assertNotIn(b"EDGETEST-INDEX", data)
        self.assertStillServes()

    def test_garbage_is_closed(self):
        rnd = random.Random(4)
        cases = {
            "random": bytes([0x80]) + bytes(rnd.getrandbits(8) for _ in range(99)),
            "tls-looking record of junk": b"\x16\x03\x01\x00\x60" + bytes(rnd.getrandbits(8) for _ in range(95)),
            "bad record type": b"\x63\x03\x03\x00\x10" + b"\x00" * 95,
        }
        for what, data in cases.items():
            with et.Conn(self.tls_port) as c:
                t0 = time.monotonic()
                try:
                    c.send(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                closed = c.wait_closed(3.0)
                self.assertTrue(closed, f"{what}: still open after 3 s")
                self.assertLess(time.monotonic() - t0, 2.5, what)
                self.assertNotIn(b"HTTP/1.1 200", c.buf, what)
            self.assertStillServes()

    def test_idle_tcp_closed_after_header_timeout(self):
        with et.Conn(self.tls_port) as idle:
            t0 = time.monotonic()
            self.assertStillServes()  # others are served meanwhile
            closed = idle.wait_closed(4.0)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "a silent TCP client kept the TLS port open > 4 s (header_timeout 1s)")
        self.assertGreaterEqual(elapsed, 0.8, "closed before header_timeout")
        self.assertLess(elapsed, 3.5)

    def test_half_client_hello_closed(self):
        hello = client_hello()
        with et.Conn(self.tls_port) as c:
            t0 = time.monotonic()
            c.send(hello[: len(hello) // 2])
            self.assertStillServes()
            closed = c.wait_closed(4.0)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "a half ClientHello kept the connection > 4 s (header_timeout 1s)")
        self.assertGreaterEqual(elapsed, 0.8, "closed before header_timeout")

    def test_stalled_handshake_closed(self):
        """A full ClientHello, then silence (the client never sends its Finished)."""
        hello = client_hello()
        with et.Conn(self.tls_port) as c:
            t0 = time.monotonic()
            c.send(hello)
            closed = c.wait_closed(4.0)
            elapsed = time.monotonic() - t0
            got = c.buf
        self.assertTrue(got.startswith(b"\x16\x03"), f"no ServerHello: {got[:20]!r}")
        self.assertTrue(closed, "a stalled handshake kept the connection > 4 s (header_timeout 1s)")
        self.assertGreaterEqual(elapsed, 0.8, "closed before header_timeout")
        self.assertStillServes()

    def test_idle_after_handshake_closed_after_header_timeout(self):
        """Handshake done, no request: the first request's head is due within header_timeout of
        the accept, as on a plain listener (not keepalive_timeout, 75 s here)."""
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = ssl.create_default_context(cafile=self.crt)
            ctx.maximum_version = version
            t0 = time.monotonic()
            with et.TLSConn(self.tls_port, ctx, timeout=5) as c:
                closed = c.wait_closed(4.0)
                elapsed = time.monotonic() - t0
            self.assertTrue(closed, f"{version.name}: a TLS client that sends no request after the handshake "
                                    f"kept the connection > 4 s (header_timeout 1s)")
            self.assertGreaterEqual(elapsed, 0.8, "closed before header_timeout")

    def test_half_head_over_tls_gets_408(self):
        with self.tls_conn() as c:
            t0 = time.monotonic()
            c.send(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n")
            closed = c.wait_closed(4.0)
            elapsed = time.monotonic() - t0
            data = c.buf
        self.assertTrue(closed, "half head over TLS still open after 4 s (header_timeout 1s)")
        self.assertGreaterEqual(elapsed, 0.8)
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data[:80])

    def test_request_in_one_byte_records(self):
        """Every byte of the head in its own TLS record: the codec must reassemble across records."""
        with self.tls_conn() as c:
            for b in et.request("/logo.svg"):
                c.send(bytes([b]))
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, et.svg_1k())

    def test_close_notify_on_connection_close(self):
        """`Connection: close` ends with a TLS close_notify (no truncation-looking EOF)."""
        s = socket.create_connection(("127.0.0.1", self.tls_port), timeout=5)
        s = self.ctx.wrap_socket(s, server_hostname="localhost", suppress_ragged_eofs=False)
        with s:
            s.sendall(et.request("/logo.svg", headers=[("Connection", "close")]))
            buf = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ssl.SSLEOFError as e:
                    self.fail(f"EOF without close_notify after {len(buf)} bytes: {e}")
                if not chunk:
                    break
                buf += chunk
        rs, rest = et.parse_all(buf, closed=True)
        self.assertEqual([r.status for r in rs], [200])
        self.assertEqual(rs[0].body, et.svg_1k())

    def test_concurrent_handshakes(self):
        results = []

        def one():
            try:
                with self.tls_conn(timeout=10) as c:
                    c.send(et.request("/index.html", headers=[("Connection", "close")]))
                    results.append(c.read_response(timeout=10).status)
            except Exception as e:  # noqa: BLE001
                results.append(repr(e))

        threads = [threading.Thread(target=one) for _ in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        self.assertEqual(results, [200] * 60)

    def test_no_early_data(self):
        """0-RTT is not offered (replayable requests): tickets say Max Early Data 0."""
        rc, out = s_client(self.tls_port, "-tls1_3")
        self.assertIn("Max Early Data: 0", out)
        self.assertNotRegex(out, r"Max Early Data: [1-9]")

    def test_key_file_mode(self):
        self.assertEqual(os.stat(self.key).st_mode & 0o777, 0o600)


class SelfSigned(unittest.TestCase):
    """`tls = { self_signed = true }`: an ECDSA P-256 cert for localhost/127.0.0.1/::1 at
    certs/localhost.crt beside the config, key 0600, reused by the next start."""

    def test_written_then_reused(self):
        tmp = tempfile.mkdtemp(prefix="edgetest-tls-ss-")
        self.addCleanup(shutil.rmtree, tmp, True)
        site = et.Site(tmp)
        cfg = os.path.join(tmp, "conf", "edge.toml")
        os.makedirs(os.path.dirname(cfg))
        with open(cfg, "w") as f:
            f.write(et.make_config(site, os.path.join(tmp, "access.log"),
                                   listen=[{"address": "127.0.0.1:0", "tls": "{ self_signed = true }"}]))
        crt = os.path.join(tmp, "conf", "certs", "localhost.crt")
        key = os.path.join(tmp, "conf", "certs", "localhost.key")
        self.assertFalse(os.path.exists(crt))

        edge = et.Edge(cfg, expect_hosts={"127.0.0.1"}).start()  # cwd "/": paths are beside the config
        self.addCleanup(edge.kill)
        self.assertEqual(edge.listeners[0][0], "https")
        self.assertTrue(os.path.exists(crt), f"{crt} not written")
        self.assertTrue(os.path.exists(key), f"{key} not written")
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600, "key not mode 0600")
        with open(crt, "rb") as f:
            first = f.read()
        rc, text = run(["openssl", "x509", "-in", crt, "-noout", "-text"])
        self.assertEqual(rc, 0, text)
        self.assertIn("id-ecPublicKey", text)
        self.assertRegex(text, r"NIST CURVE: P-256|prime256v1")
        self.assertIn("DNS:localhost", text)
        self.assertIn("IP Address:127.0.0.1", text)
        self.assertRegex(text, r"IP Address:0:0:0:0:0:0:0:1|IP Address:::1")
        r = et.curl(f"https://localhost:{edge.port}/index.html", "--resolve", f"localhost:{edge.port}:127.0.0.1",
                    "--cacert", crt)
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual(r.status, 200)
        edge.settle()
        self.assertEqual(edge.stop(), 0)

        edge2 = et.Edge(cfg, expect_hosts={"127.0.0.1"}).start()
        self.addCleanup(edge2.kill)
        with open(crt, "rb") as f:
            self.assertEqual(f.read(), first, "second start did not reuse the certificate")
        ctx = ssl.create_default_context(cafile=crt)
        with et.TLSConn(edge2.port, ctx) as c:
            self.assertEqual(c.sock.getpeercert(binary_form=True), ssl.PEM_cert_to_DER_cert(first.decode()))
            c.send(et.request("/index.html"))
            self.assertEqual(c.read_response().status, 200)
        edge2.settle()
        self.assertEqual(edge2.stop(), 0)


class ConfigErrors(unittest.TestCase):
    """Bad TLS settings are `file:line:` errors, from --check and at start, exit 1."""

    def check(self, tls_lines, bad_lines, names=(), absent=()):
        tmp = tempfile.mkdtemp(prefix="edgetest-tls-cfg-")
        self.addCleanup(shutil.rmtree, tmp, True)
        lines = ['[[listen]]', 'address = "127.0.0.1:0"', '[listen.tls]'] + tls_lines + [
            '', '[[route]]', 'path = "/health"', 'health = true']
        cfg = os.path.join(tmp, "edge.toml")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        for mode in (["--check"], []):
            r = subprocess.run([et.EDGE_BIN, *mode, "--config", cfg], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=10)
            out = r.stdout + r.stderr
            self.assertEqual(r.returncode, 1, f"{mode}: rc={r.returncode}\n{out}")
            self.assertNotIn("listening on", out)
            # the line of the offending key, or of the [listen.tls] table that holds it (line 3)
            self.assertTrue(any(f"{cfg}:{n}:" in out for n in list(bad_lines) + [3]),
                            f"{mode}: no {cfg}:{bad_lines}: in\n{out}")
            for n in names:
                self.assertIn(n, out, mode)
            for n in absent:
                self.assertNotIn(n, out, mode)
        return out

    def certkey(self):
        return [f'cert = {et.q(os.path.join(CERTS, "api.crt"))}', f'key = {et.q(os.path.join(CERTS, "api.key"))}']

    def test_unknown_cipher_is_named(self):
        # lines: 1 [[listen]], 2 address, 3 [listen.tls], 4 cert, 5 key, 6 ciphers
        self.check(self.certkey() + ['ciphers = "ECDHE-RSA-AES256-GCM-SHA512:ECDHE-RSA-AES128-GCM-SHA256"'],
                   [6], names=["ECDHE-RSA-AES256-GCM-SHA512"], absent=["ECDHE-RSA-AES128-GCM-SHA256"])

    def test_unknown_tls13_suite_is_named(self):
        self.check(self.certkey() + ['ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_512_GCM_SHA1024"'],
                   [6], names=["TLS_AES_512_GCM_SHA1024"])

    def test_key_does_not_match_cert(self):
        self.check([f'cert = {et.q(os.path.join(CERTS, "api.crt"))}', f'key = {et.q(os.path.join(CERTS, "stray.key"))}'],
                   [4, 5], names=["match"])

    def test_missing_cert_file(self):
        missing = os.path.join(CERTS, "nope", "missing.crt")
        self.check([f'cert = {et.q(missing)}', f'key = {et.q(os.path.join(CERTS, "api.key"))}'],
                   [4], names=["missing.crt"])

    def test_cert_is_a_directory(self):
        self.check([f'cert = {et.q(CERTS)}', f'key = {et.q(os.path.join(CERTS, "api.key"))}'], [4])

    def test_garbage_cert(self):
        self.check([f'cert = {et.q(os.path.join(CERTS, "garbage.crt"))}', f'key = {et.q(os.path.join(CERTS, "api.key"))}'],
                   [4], names=["garbage.crt"])

    def test_min_version_tls11(self):
        self.check(self.certkey() + ['min_version = "TLSv1.1"'], [6], names=["min_version"])

    def test_sni_cert_key_mismatch(self):
        # lines 4, 5 default; 6 certs = [...] with a mismatched pair
        self.check(self.certkey() + [f'certs = [ {{ cert = {et.q(os.path.join(CERTS, "api.crt"))}, '
                                     f'key = {et.q(os.path.join(CERTS, "stray.key"))}, names = ["x.test"] }} ]'],
                   [6], names=["match"])


def served_der(port, servername, cafile=None):
    """The DER certificate the server presents for `servername` (python ssl, no verification)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw_sock:
        with ctx.wrap_socket(raw_sock, server_hostname=servername) as s:
            return s.getpeercert(binary_form=True)


class Reload(unittest.TestCase):
    """SIGHUP re-reads certificates: new connections get the new ones, a connection in flight
    keeps working, earlier session tickets stay valid; a bad pair is logged with file:line and
    the previous certificate keeps serving."""

    def test_sighup_reloads_certificates(self):
        tmp = tempfile.mkdtemp(prefix="edgetest-tls-reload-")
        self.addCleanup(shutil.rmtree, tmp, True)
        site = et.Site(tmp)
        for n in ("one", "two", "three"):
            make_ecdsa_cert(os.path.join(tmp, f"{n}.crt"), os.path.join(tmp, f"{n}.key"), "localhost",
                            ["DNS:localhost", "IP:127.0.0.1"])
        crt, key = os.path.join(tmp, "live.crt"), os.path.join(tmp, "live.key")
        shutil.copy(os.path.join(tmp, "one.crt"), crt)
        shutil.copy(os.path.join(tmp, "one.key"), key)
        cfg = os.path.join(tmp, "edge.toml")
        with open(cfg, "w") as f:
            f.write(et.make_config(site, os.path.join(tmp, "access.log"),
                                   listen=[{"address": "127.0.0.1:0",
                                            "tls": f"{{ cert = {et.q(crt)}, key = {et.q(key)} }}"}]))
        edge = et.Edge(cfg, expect_hosts={"127.0.0.1"}).start()
        self.addCleanup(edge.kill)
        one, two = der_of(os.path.join(tmp, "one.crt")), der_of(os.path.join(tmp, "two.crt"))
        self.assertEqual(served_der(edge.port, "localhost"), one)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(os.path.join(tmp, "one.crt"))
        ctx.load_verify_locations(os.path.join(tmp, "two.crt"))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # a session object right after the handshake
        inflight = et.TLSConn(edge.port, ctx)
        self.addCleanup(inflight.close)
        inflight.send(et.request("/index.html"))
        self.assertEqual(inflight.read_response().status, 200)
        old_session = inflight.sock.session
        self.assertIsNotNone(old_session)

        # new pair, SIGHUP
        shutil.copy(os.path.join(tmp, "two.crt"), crt)
        shutil.copy(os.path.join(tmp, "two.key"), key)
        edge.settle()
        edge.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while served_der(edge.port, "localhost") != two and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(served_der(edge.port, "localhost"), two, "new connections did not get the new certificate")
        self.assertTrue(edge.running())
        inflight.send(et.request("/logo.svg"))
        r = inflight.read_response()
        self.assertEqual(r.status, 200, "the connection in flight broke on SIGHUP")
        self.assertEqual(r.body, et.svg_1k())
        raw_sock = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
        with ctx.wrap_socket(raw_sock, server_hostname="localhost", session=old_session) as s:
            self.assertTrue(s.session_reused, "a session from before SIGHUP was not resumed")

        # a key that does not match: logged with file:line, the previous certificate keeps serving
        shutil.copy(os.path.join(tmp, "three.key"), key)
        n_lines = len(edge.stderr_lines)
        edge.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(f"{cfg}:" in ln for ln in edge.stderr_lines[n_lines:]):
            time.sleep(0.1)
        self.assertTrue(any(f"{cfg}:" in ln for ln in edge.stderr_lines[n_lines:]),
                        "no file:line error logged for a bad pair on SIGHUP:\n" + "\n".join(edge.stderr_lines[n_lines:]))
        self.assertTrue(edge.running(), "edge died on a bad certificate reload")
        self.assertEqual(served_der(edge.port, "localhost"), two, "a failed reload did not keep the previous certificate")
        with et.TLSConn(edge.port, ctx) as c:
            c.send(et.request("/index.html"))
            self.assertEqual(c.read_response().status, 200)
        inflight.close()
        edge.settle()
        self.assertEqual(edge.stop(), 0)


class OCSPStapling(unittest.TestCase):
    """A certificate that names an OCSP responder, with `ocsp = <DER response>`: the response is
    stapled (TLS 1.2 and 1.3); a certificate without one staples nothing."""

    def test_stapled(self):
        tmp = tempfile.mkdtemp(prefix="edgetest-tls-ocsp-")
        self.addCleanup(shutil.rmtree, tmp, True)
        j = lambda n: os.path.join(tmp, n)  # noqa: E731
        steps = [
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", j("ca.key"), "-out", j("ca.crt"), "-days", "30", "-subj", "/CN=edgetest-ca",
             "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", j("leaf.key"), "-out", j("leaf.csr"), "-subj", "/CN=ocsp.test"],
        ]
        for cmd in steps:
            rc, out = run(cmd, timeout=20)
            self.assertEqual(rc, 0, out)
        with open(j("ext.cnf"), "w") as f:
            f.write("subjectAltName=DNS:ocsp.test\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:9/\n"
                    "basicConstraints=CA:false\n")
        rc, out = run(["openssl", "x509", "-req", "-in", j("leaf.csr"), "-CA", j("ca.crt"), "-CAkey", j("ca.key"),
                       "-CAcreateserial", "-days", "30", "-extfile", j("ext.cnf"), "-out", j("leaf.crt")])
        self.assertEqual(rc, 0, out)
        rc, serial = run(["openssl", "x509", "-in", j("leaf.crt"), "-noout", "-serial"])
        serial = serial.strip().split("=", 1)[1]
        expiry = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 30 * 86400))
        with open(j("index.txt"), "w") as f:
            f.write(f"V\t{expiry}\t\t{serial}\tunknown\t/CN=ocsp.test\n")
        rc, out = run(["openssl", "ocsp", "-index", j("index.txt"), "-rsigner", j("ca.crt"), "-rkey", j("ca.key"),
                       "-CA", j("ca.crt"), "-issuer", j("ca.crt"), "-cert", j("leaf.crt"), "-respout", j("resp.der"),
                       "-ndays", "1"])
        self.assertTrue(os.path.exists(j("resp.der")), out)
        with open(j("chain.crt"), "wb") as f:
            for n in ("leaf.crt", "ca.crt"):
                with open(j(n), "rb") as g:
                    f.write(g.read())
        site = et.Site(tmp)
        cfg = j("edge.toml")
        tls = (f"{{ self_signed = true, cert = {et.q(j('default.crt'))}, key = {et.q(j('default.key'))}, "
               f"certs = [ {{ cert = {et.q(j('chain.crt'))}, key = {et.q(j('leaf.key'))}, "
               f"ocsp = {et.q(j('resp.der'))} }} ] }}")
        with open(cfg, "w") as f:
            f.write(et.make_config(site, j("access.log"), listen=[{"address": "127.0.0.1:0", "tls": tls}]))
        edge = et.Edge(cfg, expect_hosts={"127.0.0.1"}).start()
        self.addCleanup(edge.kill)
        for v in ("-tls1_2", "-tls1_3"):
            rc, out = s_client(edge.port, v, "-status", "-servername", "ocsp.test", "-CAfile", j("ca.crt"))
            self.assertIn("OCSP Response Status: successful", out, f"{v}: nothing stapled:\n{out[-2000:]}")
            self.assertIn("Cert Status: good", out, v)
            self.assertIn("Verify return code: 0 (ok)", out, v)
            self.assertIn("HTTP/1.1 200", out, v)
            # the default (self-signed, no responder) staples nothing
            rc, out = s_client(edge.port, v, "-status", "-servername", "localhost")
            self.assertIn("OCSP response: no response sent", out, v)
        edge.settle()
        self.assertEqual(edge.stop(), 0)


class SlowTLSReader(threading.Thread):
    """Downloads `path` over TLS with a small receive buffer at about `rate` bytes/s."""

    def __init__(self, port, ctx, path, rate):
        super().__init__(daemon=True)
        self.port, self.ctx, self.path, self.rate = port, ctx, path, rate
        self.received = 0
        self.sha = hashlib.sha256()
        self.status = None
        self.content_length = None
        self.error = None
        self.started_flow = threading.Event()

    def run(self):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            s.settimeout(20)
            s.connect(("127.0.0.1", self.port))
            s = self.ctx.wrap_socket(s, server_hostname="localhost")
            s.sendall(et.request(self.path))
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(16384)
                if not chunk:
                    raise et.ProtocolError("closed before the head")
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.status = int(head.split(b" ", 2)[1])
            for ln in head.split(b"\r\n")[1:]:
                k, _, v = ln.partition(b":")
                if k.strip().lower() == b"content-length":
                    self.content_length = int(v.strip())
            self.received = len(rest)
            self.sha.update(rest)
            self.started_flow.set()
            step = 16 * 1024
            while self.received < self.content_length:
                t0 = time.monotonic()
                chunk = s.recv(step)
                if not chunk:
                    break
                self.received += len(chunk)
                self.sha.update(chunk)
                dt = step / self.rate - (time.monotonic() - t0)
                if dt > 0:
                    time.sleep(dt)
            s.close()
        except Exception as e:  # noqa: BLE001
            self.error = e
            self.started_flow.set()


class GracefulTLS(unittest.TestCase):
    def test_inflight_tls_download_completes(self):
        big = 8 * MIB
        tmp = tempfile.mkdtemp(prefix="edgetest-tls-graceful-")
        self.addCleanup(shutil.rmtree, tmp, True)
        site = et.Site(tmp)
        data = os.urandom(MIB) * 8
        site.write("/big.bin", data)
        crt, key = os.path.join(tmp, "a.crt"), os.path.join(tmp, "a.key")
        cfg = os.path.join(tmp, "edge.toml")
        with open(cfg, "w") as f:
            f.write(et.make_config(site, os.path.join(tmp, "access.log"), server={"grace_period": et.q("10s")},
                                   listen=[{"address": "127.0.0.1:0",
                                            "tls": f"{{ self_signed = true, cert = {et.q(crt)}, key = {et.q(key)} }}"}]))
        edge = et.Edge(cfg, expect_hosts={"127.0.0.1"}).start()
        self.addCleanup(edge.kill)
        reader = SlowTLSReader(edge.port, ssl.create_default_context(cafile=crt), "/big.bin", rate=4 * MIB)  # ~2 s
        reader.start()
        self.assertTrue(reader.started_flow.wait(5), "download did not start")
        self.assertIsNone(reader.error, repr(reader.error))
        self.assertEqual(reader.status, 200)
        time.sleep(0.3)
        edge.signal(signal.SIGTERM)
        time.sleep(0.3)
        self.assertTrue(edge.running() or reader.received >= big, "edge exited while the download was in flight")
        reader.join(20)
        self.assertFalse(reader.is_alive())
        self.assertIsNone(reader.error, repr(reader.error))
        self.assertEqual(reader.received, big, f"download cut at {reader.received} of {big}")
        self.assertEqual(reader.sha.hexdigest(), hashlib.sha256(data).hexdigest())
        self.assertEqual(edge.wait(15), 0, edge.stderr_text()[-2000:])


if __name__ == "__main__":
    unittest.main()
