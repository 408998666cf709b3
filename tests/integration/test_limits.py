"""Limits and message framing: 414, 431, 413, 405, and ambiguous framing -> 400 + close."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


class Limits(et.EdgeTestCase):
    # the defaults, written out so the test does not depend on them
    server_opts = {"max_request_line": '"8k"', "max_header_bytes": '"32k"', "max_headers": "100"}

    def send(self, data, timeout=3.0):
        """Raw bytes -> (responses, closed)."""
        rs, closed, rest = et.raw_responses(self.port, data, timeout=timeout)
        return rs, closed

    def assert_status_and_close(self, data, statuses, what):
        """First response has one of `statuses` and the server closes the connection.

        A pipelined valid request follows the bad one: it must NOT be answered."""
        if isinstance(statuses, int):
            statuses = (statuses,)
        follow = et.request("/index.html", headers=[("X-Request-Id", "must-not-answer")])
        with et.Conn(self.port) as c:
            try:
                c.send(data + follow)
            except (BrokenPipeError, ConnectionResetError):
                pass
            closed = c.wait_closed(3.0)
            buf = c.buf
        rs, rest = et.parse_all(buf, closed=True)
        self.assertTrue(rs, f"{what}: no response at all (closed={closed}, bytes={buf[:200]!r})")
        self.assertIn(rs[0].status, statuses, f"{what}: {rs[0]!r}")
        self.assertTrue(closed, f"{what}: connection not closed after {rs[0].status}")
        self.assertEqual(len(rs), 1, f"{what}: the request after the bad one was answered: {rs[1:]!r}")
        self.assertEqual(rs[0].header("server"), "samia-edge", what)
        return rs[0]

    # -- sizes -----------------------------------------------------------------------------
    def test_414_long_uri(self):
        data = et.request("/" + "a" * 9000)
        self.assert_status_and_close(data, 414, "9000-char target")

    def test_long_uri_under_limit_ok(self):
        r = self.get("/readings/" + "a" * 7000)
        self.assertStatus(r, 200)  # SPA fallback

    def test_431_huge_header(self):
        data = et.request("/index.html", headers=[("X-Big", "b" * 40000)])
        self.assert_status_and_close(data, 431, "40 KB header")

    def test_431_header_block_many_medium(self):
        data = et.request("/index.html", headers=[(f"X-H{i}", "v" * 1000) for i in range(40)])
        self.assert_status_and_close(data, 431, "40 x 1 KB headers")

    def test_431_too_many_headers(self):
        data = et.request("/index.html", headers=[(f"X-N{i}", "1") for i in range(150)])
        self.assert_status_and_close(data, 431, "150 headers")

    def test_many_headers_under_limit_ok(self):
        r = self.get("/index.html", headers=[(f"X-N{i}", "1") for i in range(90)])
        self.assertStatus(r, 200)

    def test_413_body_on_static_route(self):
        data = et.request("/index.html", headers=[("Content-Length", "10")], body=b"0123456789")
        r = self.get_first(data)
        self.assertStatus(r, 413)

    def test_413_chunked_body_on_static_route(self):
        data = et.request("/index.html", headers=[("Transfer-Encoding", "chunked")],
                          body=b"5\r\nhello\r\n0\r\n\r\n")
        r = self.get_first(data)
        self.assertStatus(r, 413)

    def test_413_over_route_max_body(self):
        data = et.request("/docs/", headers=[("Content-Length", "2000")], body=b"x" * 2000)
        r = self.get_first(data)
        self.assertStatus(r, 413)

    def test_body_within_route_max_body(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/docs/", headers=[("Content-Length", "10")], body=b"0123456789"))
            r = c.read_response()
            self.assertStatus(r, 200)
            self.assertEqual(r.body, et.DOCS_INDEX_HTML)
            # the body was consumed: the next request on the connection parses
            c.send(et.request("/docs/", headers=[("Transfer-Encoding", "chunked")],
                              body=b"3\r\nabc\r\n0\r\n\r\n"))
            r = c.read_response()
            self.assertStatus(r, 200)
            c.send(et.request("/logo.svg"))
            self.assertEqual(c.read_response().status, 200)

    def test_chunked_body_over_max_body(self):
        body = b"".join(b"100\r\n" + b"y" * 256 + b"\r\n" for _ in range(6)) + b"0\r\n\r\n"  # 1536 > 1024
        r = self.get_first(et.request("/docs/", headers=[("Transfer-Encoding", "chunked")], body=body))
        self.assertStatus(r, 413)

    def test_chunked_body_with_trailer(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/docs/", headers=[("Transfer-Encoding", "chunked")],
                              body=b"4;ext=1\r\nabcd\r\n0\r\nX-Trailer: t\r\n\r\n") + et.request("/logo.svg"))
            r1 = c.read_response()
            r2 = c.read_response()
        self.assertStatus(r1, 200)
        self.assertStatus(r2, 200)
        self.assertEqual(r2.body, self.site.files["/logo.svg"])

    def test_zero_content_length_ok_on_static(self):
        r = self.get("/index.html", headers=[("Content-Length", "0")])
        self.assertStatus(r, 200)

    def test_413_body_is_not_parsed_as_a_request(self):
        """The refused body must never be read as the next request (no smuggling)."""
        smuggled = b"GET /logo.svg HTTP/1.1\r\nHost: x\r\nX-Request-Id: smuggled\r\n\r\n"
        data = et.request("/index.html", headers=[("Content-Length", str(len(smuggled)))]) + smuggled
        buf, closed = et.raw(self.port, data, timeout=2)
        rs, _ = et.parse_all(buf, closed=True)
        self.assertTrue(rs)
        self.assertEqual(rs[0].status, 413, rs[0])
        self.assertEqual([r for r in rs if r.header("x-request-id") == "smuggled"], [],
                         "the body of the refused request was answered as a request")

    def test_expect_with_too_large_body_gets_413_not_100(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/docs/", headers=[("Content-Length", "5000"), ("Expect", "100-continue")]))
            r = c.read_response(timeout=3)
        self.assertEqual(r.status, 413, f"expected 413 instead of 100 Continue for a body over max_body: {r!r}")

    def test_expect_on_static_route_gets_413_not_100(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/index.html", headers=[("Content-Length", "10"), ("Expect", "100-continue")]))
            r = c.read_response(timeout=3)
        self.assertEqual(r.status, 413, r)

    def test_missing_host_http11(self):
        # RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without Host
        self.assert_status_and_close(b"GET /index.html HTTP/1.1\r\n\r\n", 400, "no Host")

    def test_duplicate_host(self):
        # RFC 9112 3.2: ... or with more than one Host field line
        self.assert_status_and_close(b"GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
                                     "two Host lines")

    def test_http10_without_host_ok(self):
        r = self.get("/index.html", host=None, version="HTTP/1.0")
        self.assertStatus(r, 200)

    def get_first(self, data):
        with et.Conn(self.port) as c:
            c.send(data)
            return c.read_response()

    # -- methods ---------------------------------------------------------------------------
    def test_405_post_on_static(self):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            r = self.get("/index.html", method=method, headers=[("Content-Length", "0")])
            self.assertEqual(r.status, 405, f"{method}: {r!r}")
            allow = [m.strip() for m in (r.header("allow") or "").split(",")]
            self.assertEqual(sorted(allow), ["GET", "HEAD"], f"{method}: Allow {r.header('allow')!r}")

    def test_405_via_curl(self):
        r = et.curl(self.url("/index.html"), "-X", "POST", "--data-binary", "")
        self.assertEqual(r.status, 405, r)

    # -- framing ---------------------------------------------------------------------------
    def test_cl_and_te(self):
        data = (b"GET /docs/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\n")
        self.assert_status_and_close(data, 400, "CL + TE")
        data = (b"GET /docs/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                b"0\r\n\r\n")
        self.assert_status_and_close(data, 400, "TE + CL")

    def test_differing_content_lengths(self):
        data = b"GET /docs/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
        self.assert_status_and_close(data, 400, "two differing Content-Length")
        data = b"GET /docs/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!"
        self.assert_status_and_close(data, 400, "Content-Length: 5, 6")

    def test_duplicate_content_length(self):
        data = b"GET /docs/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
        self.assert_status_and_close(data, 400, "duplicate Content-Length")

    def test_malformed_content_length(self):
        for v in (b"abc", b"1x", b"-1", b"+5", b"0x10", b"5 5", b"", b"99999999999999999999999"):
            data = b"GET /docs/ HTTP/1.1\r\nHost: x\r\nContent-Length: " + v + b"\r\n\r\n"
            self.assert_status_and_close(data, 400, f"Content-Length: {v!r}")

    def test_obs_fold(self):
        data = b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n"
        self.assert_status_and_close(data, 400, "obs-fold (spaces)")
        data = b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tb\r\n\r\n"
        self.assert_status_and_close(data, 400, "obs-fold (tab)")

    def test_bare_lf(self):
        self.assert_status_and_close(b"GET /index.html HTTP/1.1\nHost: x\n\n", 400, "all bare LF")
        self.assert_status_and_close(b"GET /index.html HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400,
                                     "one header ending in bare LF")
        self.assert_status_and_close(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\n", 400, "head ends with LF")

    def test_bare_cr(self):
        self.assert_status_and_close(b"GET /index.html HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400, "bare CR")
        self.assert_status_and_close(b"GET /index.html HTTP/1.1\rHost: x\r\n\r\n", 400, "bare CR after line")
        self.assert_status_and_close(b"GET /index.html HTTP/1.1\r\nX-A: a\rb\r\nHost: x\r\n\r\n", 400,
                                     "CR inside a value")

    def test_invalid_header_names(self):
        for line in (b"Bad Name: x", b"X(a): b", b"Host : x", b"X-A\x01: b", b": novalue", b"X\"Q: 1",
                     b" Leading: ws", b"NoColon"):
            data = b"GET /index.html HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n"
            self.assert_status_and_close(data, 400, f"header line {line!r}")

    def test_unknown_transfer_encoding(self):
        for te in (b"gzip", b"foo", b"chunked, gzip", b"identity"):
            data = b"GET /docs/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te + b"\r\n\r\n"
            self.assert_status_and_close(data, (400, 501), f"Transfer-Encoding: {te!r}")

    def test_bad_request_line(self):
        for line in (b"GET", b"GET / HTTP/9.9", b"G@T / HTTP/1.1", b"GET / FOO/1.1", b"GET / HTTP/1.1 extra"):
            data = line + b"\r\nHost: x\r\n\r\n"
            self.assert_status_and_close(data, (400, 505), f"request line {line!r}")

    def test_bad_chunk_size(self):
        data = (b"GET /docs/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"zz\r\nhello\r\n0\r\n\r\n")
        self.assert_status_and_close(data, 400, "chunk size zz")

    def test_garbage(self):
        # a TLS ClientHello on the plain port: 400 or a plain close, never a hang or a 200
        with et.Conn(self.port) as c:
            c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)
            closed = c.wait_closed(3.0)
            buf = c.buf
        self.assertTrue(closed, f"not closed after garbage; got {buf[:100]!r}")
        if buf:
            self.assertTrue(buf.startswith(b"HTTP/1.1 400 "), buf[:100])

    def test_still_serving_after_errors(self):
        self.assert_status_and_close(b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400, "bare CR")
        r = self.get("/index.html")
        self.assertStatus(r, 200)


if __name__ == "__main__":
    unittest.main()
