"""Security headers: the helmet + platform preset on every route, per-route overrides that keep
the rest, CSP as a TOML table, report-only, no HSTS over plain HTTP, config errors with file:line."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

PRESET = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-dns-prefetch-control": "off",
    "x-permitted-cross-domain-policies": "none",
    "x-xss-protection": "0",
    "origin-agent-cluster": "?1",
    "x-download-options": "noopen",
}


def routes(root):
    r = et.q(root)
    return f"""
[[route]]
path = "/health"
health = true

[[route]]
regex = "^/embed/(.*)$"
rewrite = "/$1"
root = {r}
headers = {{ "X-Frame-Options" = "SAMEORIGIN", "X-Embed" = "yes" }}
remove_headers = ["X-XSS-Protection"]
csp = {{ frame-ancestors = ["https://partner.example"], object-src = false }}

[[route]]
regex = "^/raw/(.*)$"
rewrite = "/$1"
root = {r}
security_headers = false

[[route]]
prefix = "/"
root = {r}
spa_fallback = "/index.html"
"""


class Preset(et.EdgeTestCase):
    listen = ["127.0.0.1:0"]
    routes = None

    @classmethod
    def setUpClass(cls):
        cls.routes = routes("site")
        super().setUpClass()

    def test_every_route_gets_the_preset(self):
        for path in ("/index.html", "/readings/7", "/health", "/missing.png"):
            r = self.get(path)
            for name, value in PRESET.items():
                self.assertHeader(r, name, value)
            csp = r.header("content-security-policy")
            self.assertIsNotNone(csp, path)
            for d in ("default-src 'self'", "script-src 'self'",
                      "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
                      "font-src 'self' https://fonts.gstatic.com", "img-src 'self' data: https:",
                      "connect-src 'self' https://api.stripe.com", "object-src 'none'"):
                self.assertIn(d, csp, path)

    def test_no_hsts_and_no_upgrade_over_plain_http(self):
        r = self.get("/index.html")
        self.assertIsNone(r.header("strict-transport-security"))
        self.assertNotIn("upgrade-insecure-requests", r.header("content-security-policy"))

    def test_route_override_keeps_the_rest(self):
        r = self.get("/embed/logo.svg")
        self.assertStatus(r, 200)
        self.assertHeader(r, "x-frame-options", "SAMEORIGIN")
        self.assertHeader(r, "x-embed", "yes")
        self.assertIsNone(r.header("x-xss-protection"))
        self.assertHeader(r, "x-content-type-options", "nosniff")
        self.assertEqual(r.count("x-frame-options"), 1)
        csp = r.header("content-security-policy")
        self.assertIn("frame-ancestors https://partner.example", csp)
        self.assertNotIn("object-src", csp)
        self.assertIn("script-src 'self'", csp)

    def test_route_without_preset(self):
        r = self.get("/raw/logo.svg")
        self.assertStatus(r, 200)
        for name in PRESET:
            self.assertIsNone(r.header(name), name)
        self.assertIsNone(r.header("content-security-policy"))


class GlobalSettings(et.EdgeTestCase):
    listen = ["127.0.0.1:0"]

    @classmethod
    def setUpClass(cls):
        cls.routes = """
[security_headers]
csp_report_only = true
csp = { connect-src = "'self' https://api.samia.example", report-uri = ["/csp-report"] }
headers = { "Permissions-Policy" = "camera=()" }
remove = ["X-Download-Options"]
""" + routes("site")
        super().setUpClass()

    def test_report_only_csp_and_global_changes(self):
        r = self.get("/index.html")
        self.assertIsNone(r.header("content-security-policy"))
        csp = r.header("content-security-policy-report-only")
        self.assertIn("connect-src 'self' https://api.samia.example", csp)
        self.assertIn("report-uri /csp-report", csp)
        self.assertIn("default-src 'self'", csp)
        self.assertHeader(r, "permissions-policy", "camera=()")
        self.assertIsNone(r.header("x-download-options"))
        self.assertHeader(r, "x-frame-options", "DENY")


class BadConfig(unittest.TestCase):
    def check(self, extra, routes_text=None):
        with tempfile.TemporaryDirectory() as d:
            os.mkdir(os.path.join(d, "site"))
            with open(os.path.join(d, "site", "index.html"), "w") as f:
                f.write("x")
            p = os.path.join(d, "edge.toml")
            with open(p, "w") as f:
                f.write('[[listen]]\naddress = "127.0.0.1:0"\n' + extra + "\n" +
                        (routes_text or '[[route]]\nprefix = "/"\nroot = "site"\n'))
            r = subprocess.run([et.EDGE_BIN, "--check", "--config", p], capture_output=True, text=True, timeout=10)
            return r.returncode, r.stdout + r.stderr, p

    def test_errors_name_file_and_line(self):
        cases = [
            ('[security_headers]\ncsp = { "script src" = ["x"] }', 4),
            ('[security_headers]\ncsp = { script-src = ["\'self\'; evil"] }', 4),
            ('[security_headers]\nhsts = { max_age = "2y", preload = true, include_subdomains = false }', 4),
            ('[security_headers]\nheaders = { "Bad Name" = "x" }', 4),
            ('[security_headers]\nfoo = 1', 4),
        ]
        for text, line in cases:
            rc, out, p = self.check(text)
            self.assertEqual(rc, 1, (text, out))
            self.assertIn(f"{p}:{line}:", out, text)

    def test_route_level_errors(self):
        rc, out, p = self.check("", '[[route]]\nprefix = "/"\nroot = "site"\nremove_headers = ["a b"]\n')
        self.assertEqual(rc, 1, out)
        self.assertIn(f"{p}:7:", out)


if __name__ == "__main__":
    unittest.main()
