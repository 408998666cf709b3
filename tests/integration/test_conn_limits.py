"""Connection limits (issue 10): [server] max_connections across workers (the admin listener
exempt, a reload keeping the count), and running out of descriptors (EMFILE): accepting pauses,
edge does not spin, and it serves again once descriptors are free."""
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import opstest as ot  # noqa: E402


def served(port, path="/index.html", timeout=3.0):
    """A keep-alive connection that got one response (left open), or None when edge closed it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(et.request(path))
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            r, _rest = et.parse_one(buf)
            if r is not None:
                return s
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return None




def served_within(port, seconds=5.0):
    """served() tried until it succeeds or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        s = served(port)
        if s is not None or time.monotonic() >= deadline:
            return s
        time.sleep(0.05)


def sanitized(binary):
    """Whether `binary` is linked with ASan (./dev asan's build)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in out or "libubsan" in out


class MaxConnections(ot.OpsCase):
    server_opts = {"workers": "2", "max_connections": "4"}

    @classmethod
    def config_text(cls, ups):
        return ot.admin_toml() + ot.static_route()

    def refused(self):
        m = ot.parse_metrics(ot.http(self.admin_port, "/metrics").body.decode())
        return m.sum("edge_connections_refused_total", {"reason": "total"})

    def test_limit_across_workers_admin_exempt_and_reload(self):
        held = [served(self.port) for _ in range(4)]
        try:
            self.assertTrue(all(held), "the first four connections are served")
            before = self.refused()
            # Both workers accept (SO_REUSEPORT): whichever takes the fifth refuses it.
            for _ in range(4):
                self.assertIsNone(served(self.port), "a fifth connection is closed at accept")
            self.assertGreaterEqual(self.refused() - before, 4)
            # The admin listener is not counted.
            self.assertEqual(ot.http(self.admin_port, "/health").status, 200)
            # A reload keeps the count: still four open, still no room.
            n = self.edge.line_count()
            os.kill(self.edge.proc.pid, signal.SIGHUP)
            self.edge.wait_log(r"reload", since=n)
            time.sleep(0.3)
            self.assertIsNone(served(self.port), "no room after a reload either")
            # One closes: room for one.
            held.pop().close()
            again = served_within(self.port)
            self.assertIsNotNone(again, "a closed connection frees its place")
            held.append(again)
        finally:
            for s in held:
                if s:
                    s.close()


class MaxConnectionsConfig(unittest.TestCase):
    def check(self, value):
        d = tempfile.mkdtemp(prefix="edgetest-mc-")
        self.addCleanup(shutil.rmtree, d, True)
        site = et.Site(d)
        path = os.path.join(d, "edge.toml")
        with open(path, "w") as f:
            f.write(et.make_config(site, os.path.join(d, "a.log"), server={"max_connections": value}))
        return subprocess.run([et.EDGE_BIN, "--check", "--config", path], capture_output=True,
                              text=True)

    def test_errors_name_file_and_line(self):
        for value in ("0", "-1", '"lots"', "20000000"):
            r = self.check(value)
            self.assertEqual(r.returncode, 1, value)
            self.assertRegex(r.stderr, r"edge\.toml:\d+: max_connections must be", value)
        for value in ('"auto"', "1", "100000"):
            r = self.check(value)
            self.assertEqual(r.returncode, 0, (value, r.stderr))


class OutOfDescriptors(ot.OpsCase):
    """EMFILE: edge's descriptor limit lowered under it (prlimit); connections past it wait in
    the backlog while edge pauses accepting, without spinning; freed descriptors let it serve."""
    server_opts = {"workers": "1"}

    @classmethod
    def config_text(cls, ups):
        return ot.admin_toml() + ot.static_route()

    def test_emfile_pauses_and_recovers(self):
        if sanitized(et.EDGE_BIN):
            # UBSan's vptr check probes memory through a pipe(): with no descriptor left it fails
            # and reports a valid object as having an invalid vptr (seen with strace: pipe2 ->
            # EMFILE right before the report). The normal build runs this test.
            self.skipTest("a sanitizer build cannot run out of descriptors")
        pid = self.edge.proc.pid
        old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        limit = ot.fd_count(pid) + 8
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, old[1]))
        socks = []
        try:
            mark = self.edge.line_count()
            # More connections than descriptors left: the first few are served, the rest queue.
            for _ in range(30):
                socks.append(socket.create_connection(("127.0.0.1", self.port), timeout=3))
                socks[-1].sendall(et.request("/index.html"))
            self.edge.wait_log(r"accept: Too many open files; pausing accepts", since=mark,
                               timeout=5)
            # Paused, not spinning: well under a CPU's worth of time while the backlog waits.
            c0 = ot.cpu_seconds(pid)
            time.sleep(2.0)
            used = ot.cpu_seconds(pid) - c0
            self.assertLess(used, 0.5, f"edge used {used:.2f} s of CPU in 2 s while out of descriptors")
            self.assertIsNone(self.edge.proc.poll(), "edge is still running")
            # Free them: the queued connections and new ones are served again.
            for s in socks:
                s.close()
            socks = []
            resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
            ok = served_within(self.port)
            self.assertIsNotNone(ok, "served again once descriptors are free")
            ok.close()
        finally:
            for s in socks:
                s.close()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, old)


if __name__ == "__main__":
    unittest.main()
