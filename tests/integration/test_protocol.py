"""HTTP/1.1 protocol: keep-alive, pipelining, HEAD, Expect, Date/Server, X-Request-Id."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


class Protocol(et.EdgeTestCase):
    def test_keepalive_reuse(self):
        with et.Conn(self.port) as c:
            for path, body in (("/index.html", et.INDEX_HTML), ("/logo.svg", self.site.files["/logo.svg"]),
                               ("/readings/7", et.INDEX_HTML), ("/blob.bin", et.blob_bytes())):
                c.send(et.request(path))
                r = c.read_response()
                self.assertEqual(r.status, 200, f"{path}: {r!r}")
                self.assertEqual(r.body, body, path)
                self.assertNotEqual((r.header("connection") or "").lower(), "close", path)
            # a 404 keeps the connection too
            c.send(et.request("/nope.png"))
            self.assertEqual(c.read_response().status, 404)
            c.send(et.request("/index.html"))
            self.assertEqual(c.read_response().status, 200)

    def test_keepalive_via_curl(self):
        r = et.curl(self.url("/index.html"), "-v", "-o", os.devnull, self.url("/logo.svg"))
        self.assertEqual(r.rc, 0, r)
        self.assertIn("Re-using existing connection", r.stderr)

    def test_connection_close_honoured(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/index.html", headers=[("Connection", "close")]))
            r = c.read_response()
            self.assertStatus(r, 200)
            self.assertEqual((r.header("connection") or "").lower(), "close")
            self.assertTrue(c.wait_closed(2.0), "server kept the connection after Connection: close")

    def test_http10_closes_by_default(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/index.html", version="HTTP/1.0"))
            r = c.read_response()
            self.assertStatus(r, 200)
            self.assertEqual(r.body, et.INDEX_HTML)
            self.assertTrue(c.wait_closed(2.0), "HTTP/1.0 without keep-alive must close")

    def test_http10_keepalive(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/index.html", version="HTTP/1.0", headers=[("Connection", "keep-alive")]))
            r = c.read_response()
            self.assertStatus(r, 200)
            self.assertEqual((r.header("connection") or "").lower(), "keep-alive")
            c.send(et.request("/logo.svg", version="HTTP/1.0", headers=[("Connection", "keep-alive")]))
            self.assertEqual(c.read_response().status, 200)

    def test_pipelining_in_order(self):
        paths = ["/logo.svg", "/index.html", "/readings/1", "/nope.css", "/assets/app-Xy12Ab34.css"]
        data = b"".join(et.request(p, headers=[("X-Request-Id", f"pipe-{i}")]) for i, p in enumerate(paths))
        with et.Conn(self.port) as c:
            c.send(data)
            rs = [c.read_response() for _ in paths]
        self.assertEqual([r.status for r in rs], [200, 200, 200, 404, 200])
        self.assertEqual([r.header("x-request-id") for r in rs], [f"pipe-{i}" for i in range(len(paths))])
        self.assertEqual(rs[0].body, self.site.files["/logo.svg"])
        self.assertEqual(rs[1].body, et.INDEX_HTML)
        self.assertEqual(rs[2].body, et.INDEX_HTML)
        self.assertEqual(rs[4].body, self.site.files["/assets/app-Xy12Ab34.css"])

    def test_pipelining_three_in_one_write_then_close(self):
        data = (et.request("/index.html") + et.request("/blob.bin", "HEAD")
                + et.request("/logo.svg", headers=[("Connection", "close")]))
        rs, closed, rest = et.raw_responses(self.port, data, methods=["GET", "HEAD", "GET"], timeout=3)
        self.assertEqual([r.status for r in rs], [200, 200, 200], rs)
        self.assertEqual(rs[0].body, et.INDEX_HTML)
        self.assertEqual(rs[1].body, b"")
        self.assertEqual(rs[1].header("content-length"), str(et.BLOB_SIZE))
        self.assertEqual(rs[2].body, self.site.files["/logo.svg"])
        self.assertTrue(closed)
        self.assertEqual(rest, b"")

    def test_pipelining_large_bodies(self):
        # several large responses queued behind each other (sendfile path) stay in order
        n = 4
        data = b"".join(et.request("/blob.bin", headers=[("X-Request-Id", f"big-{i}")]) for i in range(n))
        with et.Conn(self.port, timeout=10) as c:
            c.send(data)
            rs = [c.read_response(timeout=10) for _ in range(n)]
        for i, r in enumerate(rs):
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("x-request-id"), f"big-{i}")
            self.assertEqual(r.body, et.blob_bytes())

    def test_pipelining_many(self):
        n = 100
        paths = ["/logo.svg", "/readings/3", "/nope.js", "/index.html"]
        data = b"".join(et.request(paths[i % 4], headers=[("X-Request-Id", f"many-{i}")]) for i in range(n))
        with et.Conn(self.port, timeout=10) as c:
            c.send(data)
            rs = [c.read_response(timeout=10) for _ in range(n)]
        self.assertEqual([r.header("x-request-id") for r in rs], [f"many-{i}" for i in range(n)])
        self.assertEqual([r.status for r in rs], [[200, 200, 404, 200][i % 4] for i in range(n)])

    def test_pipelining_mixed(self):
        blob = et.blob_bytes()
        etag = self.get("/logo.svg").header("etag")
        reqs = [
            ("GET", et.request("/blob.bin")),
            ("HEAD", et.request("/index.html", "HEAD")),
            ("GET", et.request("/blob.bin", headers=[("Range", "bytes=10-19")])),
            ("GET", et.request("/logo.svg", headers=[("If-None-Match", etag)])),
            ("GET", et.request("/docs")),
            ("GET", et.request("/docs/", headers=[("Content-Length", "3")], body=b"abc")),
            ("GET", et.request("/health")),
            ("GET", et.request("/blob.bin", headers=[("Range", "bytes=0-1,5-6")])),
            ("GET", et.request("/index.html")),
        ]
        with et.Conn(self.port, timeout=10) as c:
            c.send(b"".join(d for _, d in reqs))
            rs = [c.read_response(m, timeout=10) for m, _ in reqs]
        self.assertEqual([r.status for r in rs], [200, 200, 206, 304, 301, 200, 200, 206, 200])
        self.assertEqual(rs[0].body, blob)
        self.assertEqual(rs[1].body, b"")
        self.assertEqual(rs[2].body, blob[10:20])
        self.assertEqual(rs[5].body, et.DOCS_INDEX_HTML)
        self.assertEqual(rs[7].media_type(), "multipart/byteranges")
        self.assertEqual(rs[8].body, et.INDEX_HTML)

    def test_connection_close_in_the_middle_of_a_pipeline(self):
        data = (et.request("/logo.svg") + et.request("/index.html", headers=[("Connection", "close")])
                + et.request("/readings/1", headers=[("X-Request-Id", "after-close")]))
        rs, closed, rest = et.raw_responses(self.port, data, timeout=3)
        self.assertEqual([r.status for r in rs], [200, 200], rs)
        self.assertTrue(closed)

    def test_client_half_close_still_answered(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/index.html"))
            c.sock.shutdown(2 - 1)  # SHUT_WR: the client is done sending, still reading
            r = c.read_response()
        self.assertStatus(r, 200)
        self.assertEqual(r.body, et.INDEX_HTML)

    def test_query_string_ignored_for_files(self):
        r = self.get("/logo.svg?v=123&x=%2F..%2F")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, self.site.files["/logo.svg"])

    def test_request_split_across_writes(self):
        data = et.request("/index.html")
        with et.Conn(self.port) as c:
            for i in range(0, len(data), 7):
                c.send(data[i:i + 7])
                time.sleep(0.005)
            r = c.read_response()
        self.assertStatus(r, 200)
        self.assertEqual(r.body, et.INDEX_HTML)

    def test_head_no_body_same_length(self):
        g = self.get("/index.html")
        with et.Conn(self.port) as c:
            c.send(et.request("/index.html", "HEAD"))
            h = c.read_response("HEAD")
            # nothing more may arrive: no body after a HEAD
            data, closed = c.read_until_close(0.5)
        self.assertStatus(h, 200)
        self.assertEqual(data, b"", "bytes after a HEAD response head")
        self.assertHeader(h, "content-length", g.header("content-length"))
        self.assertHeader(h, "content-type", g.header("content-type"))
        self.assertHeader(h, "etag", g.header("etag"))

    def test_expect_100_continue(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/docs/", headers=[("Content-Length", "5"), ("Expect", "100-continue")]))
            interim = c.read_response(timeout=3)
            self.assertEqual(interim.status, 100, interim)
            c.send(b"hello")
            r = c.read_response()
        self.assertStatus(r, 200)
        self.assertEqual(r.body, et.DOCS_INDEX_HTML)

    def test_expect_100_continue_via_curl(self):
        r = et.curl(self.url("/docs/"), "-X", "GET", "--data-binary", "x" * 600,
                    "-H", "Expect: 100-continue", "--expect100-timeout", "5")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([b.status for b in r.responses], [100, 200], r.responses)
        self.assertEqual(r.body, et.DOCS_INDEX_HTML)

    def test_expect_unknown_417(self):
        r = self.get("/index.html", headers=[("Expect", "something-else")])
        self.assertStatus(r, 417)

    def test_date_header(self):
        for path in ("/index.html", "/nope.png", "/readings/1", "/health"):
            r = self.get(path)
            d = r.header("date")
            self.assertIsNotNone(d, f"{path}: {r!r}")
            self.assertRegex(d, r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                                r"\d{4} \d\d:\d\d:\d\d GMT$")
            self.assertLess(abs(et.parse_http_date(d) - time.time()), 5, d)
            self.assertEqual(r.count("date"), 1)

    def test_server_header_everywhere(self):
        responses = [self.get("/index.html"), self.get("/nope.png"), self.get("/health"),
                     self.get("/docs"), self.get("/index.html", method="POST", headers=[("Content-Length", "0")])]
        rs, _, _ = et.raw_responses(self.port, b"GET /../x HTTP/1.1\r\nHost: x\r\n\r\n")
        responses += rs
        for r in responses:
            self.assertEqual(r.header("server"), "samia-edge", r)
            self.assertEqual(r.count("server"), 1, r)

    def test_request_id_generated(self):
        a = self.get("/index.html").header("x-request-id")
        b = self.get("/index.html").header("x-request-id")
        self.assertIsNotNone(a)
        self.assertRegex(a, et.REQUEST_ID_RE)
        self.assertRegex(b, et.REQUEST_ID_RE)
        self.assertNotEqual(a, b)

    def test_request_id_kept(self):
        for rid in ("abc-123", "A.b_c:d-e", "x" * 128, "0"):
            r = self.get("/index.html", headers=[("X-Request-Id", rid)])
            self.assertEqual(r.header("x-request-id"), rid)
            self.assertEqual(r.count("x-request-id"), 1)

    def test_request_id_on_errors(self):
        r = self.get("/nope.png", headers=[("X-Request-Id", "err-404")])
        self.assertEqual(r.header("x-request-id"), "err-404")
        rs, _, _ = et.raw_responses(self.port, b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(rs)
        self.assertRegex(rs[0].header("x-request-id") or "", et.REQUEST_ID_RE)

    def test_request_id_replaced_when_malformed(self):
        for bad in ("has space", "x" * 129, "semi;colon", "quote\"", "slash/ok?", "\u00e9t\u00e9"):
            data = (f"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Request-Id: {bad}\r\n\r\n").encode("utf-8")
            with et.Conn(self.port) as c:
                c.send(data)
                r = c.read_response()
            self.assertStatus(r, 200)
            got = r.header("x-request-id")
            self.assertIsNotNone(got, bad)
            self.assertRegex(got, et.REQUEST_ID_RE, bad)
            self.assertNotEqual(got.encode("latin-1"), bad.encode("utf-8"), bad)

    def test_absolute_form_target(self):
        r = self.get("http://localhost/index.html")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, et.INDEX_HTML)

    def test_many_sequential_connections(self):
        for i in range(50):
            r = self.get("/logo.svg")
            self.assertEqual(r.status, 200, i)


if __name__ == "__main__":
    unittest.main()
