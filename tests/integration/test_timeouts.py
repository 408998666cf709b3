"""Timeouts: header_timeout (slow-loris) and keepalive_timeout, with 1 s settings."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


class Timeouts(et.EdgeTestCase):
    server_opts = {"header_timeout": '"1s"', "keepalive_timeout": '"1s"'}
    listen = ["127.0.0.1:0"]

    def assert_408_or_close(self, c, within, what):
        t0 = time.monotonic()
        closed = c.wait_closed(within)
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, f"{what}: still open after {within}s")
        if c.buf:
            rs, _ = et.parse_all(c.buf, closed=True)
            self.assertEqual(rs[0].status, 408, f"{what}: {rs[0]!r}")
            self.assertEqual(len(rs), 1, what)
            self.assertEqual((rs[0].header("connection") or "").lower(), "close", what)
        return elapsed

    def test_half_head_gets_408_and_close(self):
        with et.Conn(self.port) as c:
            t0 = time.monotonic()
            c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
            self.assert_408_or_close(c, 3.0, "half head")
            self.assertGreaterEqual(time.monotonic() - t0, 0.8, "closed before header_timeout")
            # contract: 408 + close (the status line is what a client sees)
            self.assertTrue(c.buf == b"" or c.buf.startswith(b"HTTP/1.1 408 "), c.buf[:80])

    def test_half_head_gets_408_response(self):
        with et.Conn(self.port) as c:
            c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Partial: 1")
            self.assertTrue(c.wait_closed(3.0), "still open after 3 s")
            self.assertTrue(c.buf.startswith(b"HTTP/1.1 408 "), f"expected a 408 before the close, got {c.buf[:80]!r}")

    def test_slowloris_dribble_is_cut(self):
        """Bytes keep arriving but the head never completes: the deadline is for the whole head."""
        with et.Conn(self.port) as c:
            c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            closed = False
            i = 0
            while time.monotonic() - t0 < 4.0:
                try:
                    c.send(f"X-{i}: y\r\n".encode())
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                i += 1
                if c.wait_closed(0.25):
                    closed = True
                    break
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "a client dribbling header bytes kept the connection > 4 s (header_timeout 1s)")
        self.assertLess(elapsed, 3.0)

    def test_idle_new_connection_closed(self):
        with et.Conn(self.port) as c:
            self.assert_408_or_close(c, 3.0, "connection that never sends")

    def test_keepalive_idle_closed(self):
        with et.Conn(self.port) as c:
            c.send(et.request("/index.html"))
            r = c.read_response()
            self.assertStatus(r, 200)
            t0 = time.monotonic()
            closed = c.wait_closed(3.5)
            elapsed = time.monotonic() - t0
            self.assertTrue(closed, "idle keep-alive connection still open after 3.5 s (keepalive_timeout 1s)")
            self.assertGreaterEqual(elapsed, 0.7, "keep-alive connection closed too early")
            self.assertEqual(c.buf, b"", "an idle keep-alive close must not send a response")

    def test_active_connection_not_cut(self):
        """Requests every 0.4 s for 2.5 s on one connection: each gap is below both timeouts."""
        with et.Conn(self.port) as c:
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < 2.5:
                c.send(et.request("/logo.svg"))
                r = c.read_response()
                self.assertEqual(r.status, 200, f"request {n}")
                n += 1
                time.sleep(0.4)
            self.assertGreaterEqual(n, 5)

    def test_head_complete_in_time_ok(self):
        with et.Conn(self.port) as c:
            data = et.request("/index.html")
            c.send(data[:10])
            time.sleep(0.5)
            c.send(data[10:])
            r = c.read_response()
            self.assertStatus(r, 200)

    def test_other_clients_served_during_slow_ones(self):
        slow = [et.Conn(self.port) for _ in range(20)]
        try:
            for s in slow:
                s.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
            for _ in range(5):
                r = self.get("/index.html")
                self.assertStatus(r, 200)
            # all slow ones are cut within the deadline
            for s in slow:
                self.assertTrue(s.wait_closed(3.0))
        finally:
            for s in slow:
                s.close()


if __name__ == "__main__":
    unittest.main()
