"""https_redirect on a plain listener: 301 for GET/HEAD, 308 otherwise, /health exempt, query kept."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


class HttpsRedirect(et.EdgeTestCase):
    listen = ["127.0.0.1:0"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Rewrite the config with the option on this listener and restart.
        cls.edge.settle()
        cls.edge.stop()
        with open(cls.config_path) as f:
            text = f.read()
        text = text.replace('address = "127.0.0.1:0"', 'address = "127.0.0.1:0"\nhttps_redirect = true\nhttps_port = 8443', 1)
        with open(cls.config_path, "w") as f:
            f.write(text)
        cls.edge = et.Edge(cls.config_path, expect_hosts={"127.0.0.1"}).start()
        cls.port = cls.edge.port

    def test_get_and_head_get_301_with_query(self):
        for method in ("GET", "HEAD"):
            r = self.get("/readings/42?card=7", method=method, host="samia.example")
            self.assertStatus(r, 301)
            self.assertHeader(r, "location", "https://samia.example:8443/readings/42?card=7")

    def test_other_methods_get_308(self):
        r = self.get("/api/readings", method="POST", host="samia.example:8080",
                     headers=[("Content-Length", "3")], body=b"a=b")
        self.assertStatus(r, 308)
        self.assertHeader(r, "location", "https://samia.example:8443/api/readings")

    def test_health_is_not_redirected(self):
        r = self.get("/health")
        self.assertStatus(r, 200)

    def test_bad_host_is_refused(self):
        r = self.get("/x", host="evil.example/@x")
        self.assertStatus(r, 400)

    def test_config_error(self):
        import subprocess
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('[[listen]]\naddress = "127.0.0.1:0"\nhttps_port = 70000\n[[route]]\nhealth = true\n')
        try:
            r = subprocess.run([et.EDGE_BIN, "--check", "--config", f.name], capture_output=True, text=True, timeout=10)
        finally:
            os.unlink(f.name)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{f.name}:3:", r.stderr + r.stdout)


if __name__ == "__main__":
    unittest.main()
