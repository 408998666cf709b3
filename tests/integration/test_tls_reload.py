"""SIGHUP reloads the configuration, certificates included: new connections see the new certificate, a broken file
keeps the old one serving, and connections in flight are not dropped."""
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


def fingerprint(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def make_cert(crt, key, cn):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "30", "-keyout", key, "-out", crt, "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True, timeout=30)


class CertificateReload(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="edge-reload-")
        self.crt = os.path.join(self.tmp, "site.crt")
        self.key = os.path.join(self.tmp, "site.key")
        make_cert(self.crt, self.key, "first")
        site = os.path.join(self.tmp, "site")
        os.mkdir(site)
        with open(os.path.join(site, "index.html"), "w") as f:
            f.write("<!doctype html><p>hi</p>")
        self.conf = os.path.join(self.tmp, "edge.toml")
        with open(self.conf, "w") as f:
            f.write(f"""[log]
access = "off"
[[listen]]
address = "127.0.0.1:0"
tls = {{ cert = "site.crt", key = "site.key" }}
[[route]]
prefix = "/"
root = "site"
""")
        self.edge = et.Edge(self.conf, expect_hosts={"127.0.0.1"}).start()
        self.port = self.edge.port

    def tearDown(self):
        try:
            self.assertEqual(self.edge.stop(), 0)
        finally:
            import shutil
            shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_for(self, pred, seconds=5):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.1)
        return pred()

    def test_new_certificate_after_sighup_and_bad_file_keeps_old(self):
        first = fingerprint(self.port)
        # A connection opened before the reload keeps working after it.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        held = ctx.wrap_socket(raw, server_hostname="localhost")
        make_cert(self.crt, self.key, "second")
        self.edge.signal(signal.SIGHUP)
        self.assertTrue(self.wait_for(lambda: fingerprint(self.port) != first), "new certificate not served")
        second = fingerprint(self.port)
        held.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = held.recv(65536)
            if not b:
                break
            data += b
        held.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:80])
        with open(self.crt, "w") as f:
            f.write("not a certificate\n")
        self.edge.signal(signal.SIGHUP)
        self.assertTrue(self.wait_for(lambda: "configuration not reloaded" in self.edge.stderr_text()),
                        self.edge.stderr_text())
        self.assertIn(f"{self.conf}:5:", self.edge.stderr_text())
        self.assertEqual(fingerprint(self.port), second)


if __name__ == "__main__":
    unittest.main()
