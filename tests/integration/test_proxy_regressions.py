"""Proxy cases found in review, each once a bug: trailers of a chunked request split across reads
(they used to join the head's fields with views into freed body bytes), uploads from an HTTPS
client (decrypted bytes used to be dropped when the buffer filled), the keep-alive deadline after
a proxied response (it used to be lost, holding the connection forever), a response head cut by
the close (used to pass as an empty 200), 204/304 announcing a length (llhttp would wait for a
body), and obs-fold in a response head (relayed as it was).
"""
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import test_proxy as tp  # noqa: E402  (ProxyCase; its own tests are not collected here)
import upstreamtest as ut  # noqa: E402


def read_response(s, timeout=5):
    """One response from socket s: (status, head text, body) — Content-Length or chunked."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head: %r" % buf)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    text = head.decode("latin-1")
    status = int(text.split(" ", 2)[1])
    lower = text.lower()
    if "content-length:" in lower:
        n = int(lower.split("content-length:")[1].split("\r\n")[0])
        while len(rest) < n:
            rest += s.recv(65536)
        return status, text, rest[:n]
    if "transfer-encoding: chunked" in lower:
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += s.recv(65536)
            line, rest = rest.split(b"\r\n", 1)
            size = int(line, 16)
            while len(rest) < size + 2:
                rest += s.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, text, body
    return status, text, rest


class ProxyRegressions(tp.ProxyCase):
    listen = ["127.0.0.1:0", {"address": "127.0.0.1:0", "tls": "{ self_signed = true }"}]
    server_opts = {"keepalive_timeout": '"1s"'}

    upstream_specs = {"R": ("normal", {})}

    @classmethod
    def proxy_config(cls, ups):
        cls.up = ups["R"]
        return ([ut.pool_toml("api", [cls.up.address], read_timeout="10s",
                              passive={"max_fails": 1000})],
                [ut.proxy_route("/api/", "api", strip_prefix="/api", max_body="8m")])

    def edge_port(self, scheme="http"):
        return self.edge.port_for("127.0.0.1", scheme)

    def test_trailer_split_across_reads(self):
        s = socket.create_connection(("127.0.0.1", self.edge_port()), timeout=5)
        try:
            s.sendall(b"POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Accept-Encoding: br\r\n\r\n5\r\nhello\r\n0\r\nAccept-Encoding: aaaaaaaaaa")
            time.sleep(0.2)
            s.sendall(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nUser-Agent: trailer\r\n\r\n")
            status, head, body = read_response(s)
            self.assertEqual(status, 200, head)
            self.assertIn(b'"bytes":5', body)
            # the connection and edge are fine: another request on it
            s.sendall(b"GET /api/json HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _ = read_response(s)
            self.assertEqual(status, 200)
        finally:
            s.close()
        self.assertTrue(self.edge.running())

    def test_trailers_are_bounded(self):
        s = socket.create_connection(("127.0.0.1", self.edge_port()), timeout=5)
        try:
            s.sendall(b"POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"1\r\nx\r\n0\r\n" + b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 1000) for i in range(60)))
            status, head, _ = read_response(s)
            self.assertEqual(status, 431, head)
        finally:
            s.close()

    def test_upload_from_an_https_client(self):
        data = os.urandom(1024 * 1024 + 123)
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            for chunked in (False, True):
                with self.subTest(chunked=chunked):
                    extra = ["-H", "Transfer-Encoding: chunked"] if chunked else []
                    r = et.curl(f"https://127.0.0.1:{self.edge_port('https')}/api/upload", "-k",
                                "--data-binary", "@" + f.name, *extra, timeout=20)
                    self.assertEqual(r.status, 200, r)
                    self.assertIn(hashlib.sha256(data).hexdigest().encode(), r.body)

    def test_keepalive_deadline_after_a_proxied_response(self):
        s = socket.create_connection(("127.0.0.1", self.edge_port()), timeout=5)
        try:
            s.sendall(b"GET /api/json HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _ = read_response(s)
            self.assertEqual(status, 200)
            s.settimeout(4)  # keepalive_timeout is 1 s (+ the 250 ms sweep)
            self.assertEqual(s.recv(10), b"", "the idle connection was not closed")
        finally:
            s.close()

    def test_head_cut_by_the_close_is_a_502(self):
        r = et.curl(f"http://127.0.0.1:{self.edge_port()}/api/malformed?kind=headcut")
        self.assertEqual(r.status, 502, r)
        self.assertEqual(r.header("content-type"), "application/json")

    def test_obs_fold_from_the_upstream_is_a_502(self):
        r = et.curl(f"http://127.0.0.1:{self.edge_port()}/api/malformed?kind=fold")
        self.assertEqual(r.status, 502, r)

    def test_bodiless_status_with_a_length(self):
        for kind, code in (("304cl", 304), ("204cl", 204)):
            with self.subTest(kind):
                s = socket.create_connection(("127.0.0.1", self.edge_port()), timeout=5)
                try:
                    # read_timeout is 10 s: an answer within 3 s means no body was awaited
                    s.sendall(b"GET /api/malformed?kind=%s HTTP/1.1\r\nHost: x\r\n\r\n" % kind.encode())
                    s.settimeout(3)
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        chunk = s.recv(4096)
                        self.assertTrue(chunk, "closed without an answer")
                        buf += chunk
                    self.assertTrue(buf.startswith(b"HTTP/1.1 %d" % code), buf)
                    self.assertNotIn(b"content-length: 100", buf.lower())
                    s.sendall(b"GET /api/json HTTP/1.1\r\nHost: x\r\n\r\n")
                    status, _, _ = read_response(s)
                    self.assertEqual(status, 200)
                finally:
                    s.close()


if __name__ == "__main__":
    unittest.main()
