"""Proxied responses compressed on the fly (the route's `compress`, on by default): Brotli, zstd
and gzip negotiated from Accept-Encoding, Vary merged, ETag weakened, streamed responses flushed
read by read (an SSE event can be decoded as soon as it arrives), and responses left alone when
they must be: already encoded, `Cache-Control: no-transform`, not a compressible type, too small,
or `compress = false` on the route.
"""
import os
import socket
import subprocess
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import test_proxy as tp  # noqa: E402  (ProxyCase; its own tests are not collected here)
import upstreamtest as ut  # noqa: E402


def unbrotli(data):
    return subprocess.run(["brotli", "-dc"], input=data, capture_output=True, check=True).stdout


def unzstd(data):
    return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout


def text_body(n):
    unit = b'{"card":"The Star","meaning":"hope, renewal","reversed":false},\n'
    return (unit * (n // len(unit) + 1))[:n]


class ProxyCompression(tp.ProxyCase):
    listen = ["127.0.0.1:0"]

    upstream_specs = {"Z": ("normal", {})}

    @classmethod
    def proxy_config(cls, ups):
        cls.up = ups["Z"]
        return ([ut.pool_toml("api", [cls.up.address])],
                [ut.proxy_route("/plain/", "api", strip_prefix="/plain", compress=False),
                 ut.proxy_route("/api/", "api", strip_prefix="/api")])

    def get(self, path, ae=None, extra=()):
        headers = [("Accept-Encoding", ae)] if ae else []
        return et.curl(f"http://127.0.0.1:{self.edge.port}{path}", headers=headers + list(extra))

    def test_each_coding(self):
        want = text_body(20000)
        for ae, decode in (("br", unbrotli), ("zstd", unzstd), ("gzip", lambda d: zlib.decompress(d, 47))):
            with self.subTest(ae=ae):
                r = self.get("/api/text?bytes=20000&etag=%22v1%22", ae)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("content-encoding"), ae)
                self.assertIsNone(r.header("content-length"))
                self.assertEqual(r.header("transfer-encoding"), "chunked")
                self.assertIn("Accept-Encoding", r.header("vary") or "")
                self.assertEqual(r.header("etag"), 'W/"v1"')
                self.assertLess(len(r.body), len(want) // 4, "not compressed much")
                self.assertEqual(decode(r.body), want)

    def test_two_etag_fields_compressed(self):
        # A regression found by fuzz_upstream: two ETag lines from the upstream on a response
        # edge compresses freed the first weakened ETag's buffer before the head was written (a
        # heap use-after-free: the ASan build crashed). The first ETag counts, weakened.
        want = text_body(5000)
        r = self.get("/api/text?bytes=5000&etag=%22v1%22&etag2=%22v2%22", "gzip")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-encoding"), "gzip")
        self.assertEqual(r.header_all("etag"), ['W/"v1"'])
        self.assertEqual(zlib.decompress(r.body, 47), want)
        self.assertEqual(self.get("/plain/text?bytes=50&etag=%22v1%22&etag2=%22v2%22").header("etag"),
                         '"v1"')

    def test_server_order_and_identity(self):
        r = self.get("/api/text?bytes=5000", "gzip, br, zstd")
        self.assertEqual(r.header("content-encoding"), "br")  # br first in the route's order
        r = self.get("/api/text?bytes=5000")
        self.assertIsNone(r.header("content-encoding"))
        self.assertEqual(r.header("content-length"), "5000")
        self.assertEqual(r.body, text_body(5000))
        self.assertIn("Accept-Encoding", r.header("vary") or "")  # it could have been compressed
        r = self.get("/api/text?bytes=5000", "identity, gzip;q=0")
        self.assertIsNone(r.header("content-encoding"))

    def test_left_alone(self):
        cases = {
            "already gzipped": ("/api/text?bytes=5000&ce=gzip", "gzip"),
            "no-transform": ("/api/text?bytes=5000&cc=no-transform", None),
            "image": ("/api/text?bytes=5000&type=image/png", None),
            "small": ("/api/text?bytes=100", None),
            "route compress = false": ("/plain/text?bytes=5000", None),
        }
        for name, (path, ce) in cases.items():
            with self.subTest(name):
                r = self.get(path, "br, gzip")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("content-encoding"), ce)
                if ce == "gzip":  # the upstream's own encoding passes through untouched
                    self.assertEqual(zlib.decompress(r.body, 47), text_body(5000))
                else:
                    self.assertEqual(len(r.body), int(path.split("bytes=")[1].split("&")[0]))

    def test_sse_events_decodable_as_they_arrive(self):
        # Raw socket: read the first chunk(s) while the upstream is still sleeping between events.
        s = socket.create_connection(("127.0.0.1", self.edge.port), timeout=5)
        try:
            s.sendall(b"GET /api/sse?n=3&ms=700 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, rest = buf.split(b"\r\n\r\n", 1)
            self.assertIn(b"Content-Encoding: gzip", head)
            d = zlib.decompressobj(47)
            text = b""
            t0 = time.monotonic()
            # de-chunk what arrives until the first event decodes
            while b"data:" not in text and time.monotonic() - t0 < 3:
                while True:
                    line_end = rest.find(b"\r\n")
                    if line_end < 0:
                        break
                    size = int(rest[:line_end], 16)
                    if len(rest) < line_end + 2 + size + 2:
                        break
                    text += d.decompress(rest[line_end + 2:line_end + 2 + size])
                    rest = rest[line_end + 2 + size + 2:]
                if b"data:" in text:
                    break
                rest += s.recv(65536)
            self.assertIn(b"data:", text)
            # Events are 700 ms apart: had the encoder held the first back, it would have come
            # decodable only together with a later one.
            self.assertEqual(text.count(b"data:"), 1, "the first event came only with later ones")
        finally:
            s.close()

    def test_head_and_304(self):
        r = et.curl(f"http://127.0.0.1:{self.edge.port}/api/text?bytes=5000", head=True,
                    headers=[("Accept-Encoding", "br")])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-encoding"), "br")
        r = self.get("/api/json", "br", extra=[("If-None-Match", '"json-v1"')])
        self.assertEqual(r.status, 304)
        self.assertIsNone(r.header("content-encoding"))


if __name__ == "__main__":
    unittest.main()
