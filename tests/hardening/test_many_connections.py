"""10,000 idle keep-alive HTTP/1.1 connections held at once while other clients are served normally;
memory per idle connection measured (issue 10).

edge: `workers = 2` (what "auto" gives on this 2-core machine), `keepalive_timeout = "600s"` (the
idle connections must outlive the test, not the default 75 s), access log off (as bench/idle_conns.py).
The test raises its own RLIMIT_NOFILE soft limit to the hard limit (the 10,000 client sockets live in
this process; edge, started from it, inherits the same limit: 20000 here) and skips below 10,500.

  1. bench/idle_conns.py's method: 50 connections opened and closed (warm buffers and caches), 0.5 s,
     RSS before; IDLE_CONNS (default 10,000) connections opened one after another, each making one
     `GET /index.html` and reading the whole answer, then left idle; 1 s; RSS after.
     bytes per idle connection = (after - before) x 1024 / N, printed; asserted <= 2048 B (the
     issue's goal is <= 1 KB; bench/idle_conns.py measured 905 B on one worker). A connection that
     kept its read buffer, or a per-connection arena, would cost 4-64 KB and fail.
  2. while they are held (proved: edge's open descriptors >= baseline + N, and
     `edge_connections_open` on the admin /metrics >= N): 20 curl requests (static file, /health)
     each 200 within 2 s, and wrk -t2 -c50 -d5s on a static file: 0 socket errors, 0 non-2xx, more
     than 1,000 requests.
  3. every held connection is still open and usable: a second request on each gets 200.
  4. all closed by the client: within 10 s edge's descriptor count is back to its baseline (+4) and
     `edge_connections_open` to 0; edge still answers.

Takes ~30 s. Needs wrk (else the load step uses a small Python keep-alive load instead) and curl.
Only 127.0.0.1; edge is stopped by its PID.
"""
import http.client
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import edgetest as et  # noqa: E402
import opstest as ops  # noqa: E402

WRK = os.environ.get("WRK_BIN") or shutil.which("wrk")
N = int(os.environ.get("IDLE_CONNS", "10000"))
BOUND_BYTES = 2048


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]




REQ = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"


def read_response(s):
    """Reads one response with a Content-Length body; returns (status, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {buf[:200]!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def open_idle(port, n):
    """bench/idle_conns.py's open_idle: n connections, each after one GET answered in full."""
    import socket
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
            s.sendall(REQ)
            status, _ = read_response(s)
            if status != 200:
                raise AssertionError(f"GET /index.html: {status}")
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


class ManyConnections(ops.OpsCase):
    server_opts = {"workers": "2", "keepalive_timeout": ops.q("600s")}
    log_opts = {"access": ops.q("off")}

    @classmethod
    def setUpClass(cls):
        cls.nofile = raise_nofile()  # before edge starts: it inherits the limit
        if cls.nofile < N + 500:
            raise unittest.SkipTest(f"RLIMIT_NOFILE hard limit {cls.nofile} < {N + 500}")
        super().setUpClass()

    @classmethod
    def prepare_site(cls, site):
        site.write("/index.html", b"<!doctype html><title>idle</title>" + b"x" * 1000)

    @classmethod
    def config_text(cls, ups):
        return ops.admin_toml() + ops.HEALTH_ROUTE + f"""
[[route]]
prefix = "/"
root = {ops.q(cls.site.root)}
"""

    def fetch(self, port, path):
        """GET on a new connection with http.client (poll-based: edgetest's select() cannot take
        descriptor numbers above 1024, and this process holds 10,000)."""
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def open_count(self):
        status, body = self.fetch(self.admin_port, "/metrics")
        self.assertEqual(status, 200)
        m = ops.parse_metrics(body.decode())
        labels = m.label_values("edge_connections_open", "listener")
        for cand in (f"127.0.0.1:{self.port}", "127.0.0.1:0"):  # the public listener (not admin's)
            if cand in labels:
                return m.sum("edge_connections_open", {"listener": cand})
        self.fail(f"no edge_connections_open series for the public listener: {labels}")

    def load(self):
        """wrk -t2 -c50 -d5s on a static file (or a Python keep-alive load): (requests, errors,
        non-2xx, output)."""
        url = f"http://127.0.0.1:{self.port}/logo.svg"
        if WRK:
            p = subprocess.run([WRK, "-t2", "-c50", "-d5s", "--timeout", "5s", url],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            out = p.stdout.decode("utf-8", "replace")
            m = re.search(r"(\d+) requests in", out)
            if not m:
                self.fail(f"unexpected wrk output:\n{out}")
            s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
            n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            return (int(m.group(1)), sum(int(x) for x in s.groups()) if s else 0,
                    int(n.group(1)) if n else 0, out)
        res = {"requests": 0, "errors": 0, "bad": 0}
        lock = threading.Lock()

        def run():
            end = time.monotonic() + 5
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            while time.monotonic() < end:
                try:
                    c.request("GET", "/logo.svg")
                    r = c.getresponse()
                    r.read()
                    with lock:
                        res["requests"] += 1
                        res["bad"] += r.status != 200
                except (OSError, http.client.HTTPException):
                    with lock:
                        res["errors"] += 1
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            c.close()

        ts = [threading.Thread(target=run) for _ in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        return res["requests"], res["errors"], res["bad"], repr(res)

    def test_10000_idle_keepalive_connections(self):
        pid = self.edge.proc.pid
        for s in open_idle(self.port, 50):  # warm, then closed (as bench/idle_conns.py)
            s.close()
        time.sleep(0.5)
        fd0 = ops.fd_count(pid)
        before = ops.rss_kb(pid)
        t0 = time.monotonic()
        socks = open_idle(self.port, N)
        opened_in = time.monotonic() - t0
        try:
            time.sleep(1.0)
            after = ops.rss_kb(pid)
            per = (after - before) * 1024 / N
            fd_held = ops.fd_count(pid)
            open_held = self.open_count()
            msg = (f"{N} idle keep-alive connections (opened in {opened_in:.1f} s): RSS {before} -> {after} kB, "
                   f"{per:.0f} bytes per idle connection; edge fds {fd0} -> {fd_held}, "
                   f"edge_connections_open {open_held:.0f}")
            sys.stderr.write(f"\n[many connections] {msg}\n")

            with self.subTest("held at once"):
                self.assertGreaterEqual(fd_held - fd0, N, msg)
                self.assertGreaterEqual(open_held, N, msg)
            with self.subTest("memory per idle connection"):
                self.assertLessEqual(per, BOUND_BYTES, msg)

            # Other clients, served normally while the 10,000 are held.
            slow = []
            for i in range(20):
                path = "/health" if i % 2 else "/logo.svg"
                t = time.monotonic()
                r = et.curl(f"http://127.0.0.1:{self.port}{path}", timeout=2)
                dt = time.monotonic() - t
                if r.status != 200 or dt > 2.0:
                    slow.append((path, r.status, round(dt, 3), r.stderr))
            requests, errors, bad, out = self.load()
            sys.stderr.write(f"[many connections] while held: 20 curl requests ({len(slow)} failed), "
                             f"load: {requests} requests in 5 s, {errors} socket errors, {bad} non-2xx\n")
            with self.subTest("other clients served while held"):
                self.assertEqual(slow, [], msg)
                self.assertEqual(errors, 0, out)
                self.assertEqual(bad, 0, out)
                self.assertGreater(requests, 1000, out)

            # Each held connection is still there and usable.
            dead = []
            for i, s in enumerate(socks):
                try:
                    s.sendall(REQ)
                    status, _ = read_response(s)
                    if status != 200:
                        dead.append((i, status))
                except OSError as e:
                    dead.append((i, repr(e)))
            with self.subTest("every held connection still usable"):
                self.assertEqual(len(dead), 0, f"{len(dead)} of {N} held connections failed: {dead[:10]}")
        finally:
            for s in socks:
                s.close()

        deadline = time.monotonic() + 10
        while (ops.fd_count(pid) > fd0 + 4 or self.open_count() > 0) and time.monotonic() < deadline:
            time.sleep(0.2)
        fd_end, open_end, rss_end = ops.fd_count(pid), self.open_count(), ops.rss_kb(pid)
        sys.stderr.write(f"[many connections] closed: edge fds {fd_end} (baseline {fd0}), "
                         f"edge_connections_open {open_end:.0f}, RSS {rss_end} kB\n")
        with self.subTest("descriptors back to the baseline"):
            self.assertLessEqual(fd_end, fd0 + 4)
            self.assertEqual(open_end, 0)
            self.assertEqual(self.fetch(self.port, "/health")[0], 200)


if __name__ == "__main__":
    unittest.main()
