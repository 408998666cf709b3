"""Graceful stop: SIGTERM/SIGINT finish in-flight requests, stop accepting, exit 0."""
import hashlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

BIG = 12 * 1024 * 1024


class SlowReader(threading.Thread):
    """Downloads a path over a socket with a small receive buffer, at about `rate` bytes/s, so
    the server really has data left to send for a while (kernel buffers cannot absorb it)."""

    def __init__(self, port, path, rate):
        super().__init__(daemon=True)
        self.port, self.path, self.rate = port, path, rate
        self.head = b""
        self.received = 0
        self.sha = hashlib.sha256()
        self.closed_early = False
        self.error = None
        self.started_flow = threading.Event()
        self.status = None
        self.content_length = None

    def run(self):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            s.settimeout(20)
            s.connect(("127.0.0.1", self.port))
            s.sendall(et.request(self.path))
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise et.ProtocolError("closed before the head")
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.head = head
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
                period = step / self.rate  # the test may raise the rate meanwhile
                t0 = time.monotonic()
                chunk = s.recv(step)
                if not chunk:
                    self.closed_early = True
                    break
                self.received += len(chunk)
                self.sha.update(chunk)
                dt = period - (time.monotonic() - t0)
                if dt > 0:
                    time.sleep(dt)
            s.close()
        except Exception as e:  # noqa: BLE001
            self.error = e
            self.closed_early = True
            self.started_flow.set()


class Graceful(unittest.TestCase):
    def start(self, grace):
        self.tmp = tempfile.mkdtemp(prefix="edgetest-graceful-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.site = et.Site(self.tmp)
        chunk = os.urandom(1024 * 1024)
        data = chunk * (BIG // len(chunk))
        self.big_sha = hashlib.sha256(data).hexdigest()
        self.site.write("/big.bin", data)
        cfg = os.path.join(self.tmp, "edge.toml")
        with open(cfg, "w") as f:
            f.write(et.make_config(self.site, os.path.join(self.tmp, "access.log"),
                                   server={"grace_period": et.q(grace)}, listen=["127.0.0.1:0"]))
        self.edge = et.Edge(cfg, expect_hosts={"127.0.0.1"}).start()
        self.addCleanup(self.edge.kill)
        return self.edge

    def test_inflight_download_completes(self):
        edge = self.start("10s")
        reader = SlowReader(edge.port, "/big.bin", rate=5 * 1024 * 1024)  # ~2.4 s
        reader.start()
        self.assertTrue(reader.started_flow.wait(5), "download did not start")
        self.assertIsNone(reader.error)
        self.assertEqual(reader.status, 200)
        time.sleep(0.3)
        t0 = time.monotonic()
        edge.signal(signal.SIGTERM)
        time.sleep(0.3)
        # stopped accepting: a new connection is refused (or closed without an answer)
        try:
            with et.Conn(edge.port, timeout=2) as c:
                c.send(et.request("/index.html"))
                data, closed = c.read_until_close(2)
            self.assertFalse(data.startswith(b"HTTP/1.1 200"), "a new request was served after SIGTERM")
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            pass
        self.assertTrue(edge.running() or reader.received >= BIG,
                        "edge exited while the download was still in flight")
        reader.join(20)
        self.assertFalse(reader.is_alive())
        self.assertIsNone(reader.error, repr(reader.error))
        self.assertFalse(reader.closed_early, f"download cut at {reader.received} of {BIG} bytes")
        self.assertEqual(reader.received, BIG)
        self.assertEqual(reader.sha.hexdigest(), self.big_sha)
        rc = edge.wait(12)
        self.assertEqual(rc, 0, "edge exit code after graceful stop\n" + edge.stderr_text())
        self.assertGreater(time.monotonic() - t0, 0.5, "exited before the download could have finished")

    def test_idle_keepalive_does_not_delay_exit(self):
        edge = self.start("10s")
        with et.Conn(edge.port) as c:
            c.send(et.request("/index.html"))
            self.assertEqual(c.read_response().status, 200)
            edge.settle()
            t0 = time.monotonic()
            edge.signal(signal.SIGTERM)
            rc = edge.wait(5)
            elapsed = time.monotonic() - t0
            self.assertEqual(rc, 0, "edge did not exit 0 within 5 s with only an idle keep-alive connection")
            self.assertLess(elapsed, 3.0)
            self.assertTrue(c.wait_closed(1.0))

    def test_grace_period_bounds_exit(self):
        edge = self.start("1s")
        reader = SlowReader(edge.port, "/big.bin", rate=256 * 1024)  # ~48 s: far beyond the grace period
        reader.start()
        self.assertTrue(reader.started_flow.wait(5), "download did not start")
        edge.settle()
        t0 = time.monotonic()
        edge.signal(signal.SIGTERM)
        rc = edge.wait(8)
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(rc, "edge still running 8 s after SIGTERM with grace_period = 1s")
        self.assertGreaterEqual(elapsed, 0.8, f"the in-flight download was not given its grace period (rc {rc})")
        self.assertLess(elapsed, 4.0, "exit took far longer than grace_period = 1s")
        self.assertEqual(rc, 0)
        reader.rate = 1e12  # drain what the kernel still holds quickly
        reader.join(15)
        self.assertTrue(reader.closed_early, "the cut download cannot have completed")

    def test_sigterm_right_after_listening_line(self):
        """Once 'listening on' is printed, SIGTERM must already mean a graceful stop (exit 0)."""
        edge = self.start("10s")
        rcs = [edge.stop()]
        cfg = edge.config_path
        for _ in range(10):
            e = et.Edge(cfg, expect_hosts={"127.0.0.1"}).start()
            rcs.append(e.stop())
        self.assertEqual(rcs, [0] * 11, "exit codes of edge stopped by SIGTERM as soon as it printed "
                                       "'listening on' (-15 = killed by the default action)")

    def test_sigint(self):
        edge = self.start("10s")
        r = et.raw_one(edge.port, et.request("/index.html"))
        self.assertEqual(r.status, 200)
        edge.settle()
        edge.signal(signal.SIGINT)
        self.assertEqual(edge.wait(5), 0)


if __name__ == "__main__":
    unittest.main()
