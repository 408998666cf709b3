"""Listeners: IPv6 on ::1, workers = 2."""
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


@unittest.skipUnless(et.HAVE_IPV6, "::1 not available")
class IPv6(et.EdgeTestCase):
    listen = ["127.0.0.1:0", "[::1]:0"]

    def test_listening_line_format(self):
        hosts = {h for h, _ in self.edge.listening}
        self.assertIn("[::1]", hosts)
        self.assertIn("127.0.0.1", hosts)
        self.assertNotEqual(self.edge.port6, 0)

    def test_get_over_ipv6_curl(self):
        r = et.curl(self.edge.url("/index.html", v6=True))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, et.INDEX_HTML)

    def test_raw_ipv6_keepalive(self):
        with et.Conn(self.edge.port6, host="::1") as c:
            for p in ("/logo.svg", "/readings/1", "/nope.png"):
                c.send(et.request(p, host="[::1]"))
                r = c.read_response()
                self.assertEqual(r.status, 404 if p == "/nope.png" else 200, p)

    def test_ipv6_client_ip_logged(self):
        import json
        import time
        et.raw_one(self.edge.port6, et.request("/logo.svg", headers=[("X-Request-Id", "v6-log")]), host="::1")
        deadline = time.monotonic() + 3
        doc = None
        while doc is None and time.monotonic() < deadline:
            with open(self.access_log) as f:
                for ln in f:
                    d = json.loads(ln)
                    if d.get("request_id") == "v6-log":
                        doc = d
            time.sleep(0.1)
        self.assertIsNotNone(doc, "no log line for the IPv6 request")
        self.assertEqual(doc["client_ip"], "::1")


class TwoWorkers(et.EdgeTestCase):
    server_opts = {"workers": "2"}
    listen = ["127.0.0.1:0"]

    def test_one_port_per_listener(self):
        ports = {p for h, p in self.edge.listening if h == "127.0.0.1"}
        self.assertEqual(len(ports), 1, f"workers printed different ports: {self.edge.listening}")

    def test_threads(self):
        tasks = os.listdir(f"/proc/{self.edge.proc.pid}/task")
        self.assertGreaterEqual(len(tasks), 2, "workers = 2 but fewer than 2 threads")

    def test_concurrent_clients(self):
        errors = []
        results = []

        def client(n):
            try:
                for i in range(10):
                    r = et.raw_one(self.port, et.request("/logo.svg" if i % 2 else "/readings/9"))
                    results.append(r.status)
                with et.Conn(self.port) as c:
                    for i in range(10):
                        c.send(et.request("/blob.bin"))
                        r = c.read_response(timeout=10)
                        if r.body != et.blob_bytes():
                            errors.append(f"client {n}: bad body")
                        results.append(r.status)
            except Exception as e:  # noqa: BLE001
                errors.append(f"client {n}: {e!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 8 * 20)
        self.assertEqual(set(results), {200})

    def test_curl_many(self):
        for _ in range(10):
            r = et.curl(self.url("/index.html"))
            self.assertEqual(r.status, 200, r)


class PortInUse(et.EdgeTestCase):
    """SO_REUSEPORT must not let a second edge silently share a port a running edge holds."""

    listen = ["127.0.0.1:0"]

    def test_second_instance_on_same_port_is_refused(self):
        import subprocess
        import tempfile
        cfg = et.make_config(self.site, os.devnull, listen=[f"127.0.0.1:{self.port}"])
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(cfg)
        try:
            r = subprocess.run([et.EDGE_BIN, "--config", f.name], capture_output=True, text=True, timeout=10)
        finally:
            os.unlink(f.name)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("Address already in use", r.stderr)
        self.assertEqual(et.curl(self.url("/index.html")).status, 200)


if __name__ == "__main__":
    unittest.main()
