"""Safety: traversal, encoded tricks, NUL, dotfiles, symlinks."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

SECRETS = (b"root:x:0:0", b"EDGETEST-OUTSIDE-SECRET", b"EDGETEST-DOTENV-SECRET", b"EDGETEST-GIT-SECRET")


class Safety(et.EdgeTestCase):
    def send_raw_target(self, target):
        """Send `GET <target> HTTP/1.1` byte-exact; returns (responses, closed)."""
        data = b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        rs, closed, rest = et.raw_responses(self.port, data, timeout=3)
        return rs, closed

    def assertNoSecret(self, target, rs):
        for r in rs:
            for s in SECRETS:
                self.assertNotIn(s, r.body, f"{target!r} leaked {s!r}")

    def assert_400(self, target):
        rs, closed = self.send_raw_target(target)
        self.assertNoSecret(target, rs)
        self.assertTrue(rs, f"{target!r}: no response")
        self.assertEqual(rs[0].status, 400, f"{target!r}: {rs[0]!r}")

    def test_dotdot_escape(self):
        self.assert_400(b"/../etc/passwd")
        self.assert_400(b"/../../../../../../etc/passwd")
        self.assert_400(b"/assets/../../etc/passwd")

    def test_encoded_dotdot_escape(self):
        self.assert_400(b"/%2e%2e/%2e%2e/etc/passwd")
        self.assert_400(b"/%2E%2E/%2E%2E/%2E%2E/etc/passwd")
        self.assert_400(b"/.%2e/.%2e/etc/passwd")

    def test_encoded_slash_escape(self):
        self.assert_400(b"/assets/..%2f..%2f..%2fetc/passwd")
        self.assert_400(b"/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd")
        self.assert_400(b"/docs%2f..%2f..%2fetc%2fpasswd")

    def test_escape_to_outside_secret_by_relative_path(self):
        # <tmp>/site/../outside/secret.txt
        self.assert_400(b"/../outside/secret.txt")
        self.assert_400(b"/%2e%2e/outside/secret.txt")
        self.assert_400(b"/docs/..%2f..%2foutside%2fsecret.txt")

    def test_nul(self):
        self.assert_400(b"/index.html%00")
        self.assert_400(b"/index.html%00.js")
        self.assert_400(b"/%00/etc/passwd")

    def test_bad_percent_encoding(self):
        self.assert_400(b"/index%zz.html")
        self.assert_400(b"/index%2.html")
        self.assert_400(b"/index.html%")

    def test_raw_nul_byte(self):
        rs, closed = self.send_raw_target(b"/index\x00.html")
        self.assertNoSecret("raw NUL", rs)
        self.assertTrue(rs, "no response to a raw NUL in the target")
        self.assertEqual(rs[0].status, 400, rs[0])

    def test_dot_segments_inside_root_resolve(self):
        for target in (b"/assets/../index.html", b"/docs/./page.txt", b"/docs/%2e%2e/index.html",
                       b"/a/b/../../logo.svg", b"//logo.svg"):
            rs, _ = self.send_raw_target(target)
            self.assertTrue(rs, target)
            self.assertEqual(rs[0].status, 200, f"{target!r}: {rs[0]!r}")
        rs, _ = self.send_raw_target(b"/assets/../index.html")
        self.assertEqual(rs[0].body, et.INDEX_HTML)

    def test_dotfiles_denied(self):
        for target in (b"/.env", b"/.git/config", b"/.git/", b"/.git", b"/docs/../.env", b"/%2eenv",
                       b"/assets/.hidden.js"):
            rs, _ = self.send_raw_target(target)
            self.assertNoSecret(target, rs)
            self.assertTrue(rs, target)
            self.assertEqual(rs[0].status, 404, f"{target!r}: {rs[0]!r}")
            self.assertNotIn(b"EDGETEST-INDEX", rs[0].body, f"{target!r} served index.html")

    def test_well_known_allowed(self):
        r = self.get("/.well-known/security.txt")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"Contact: mailto:security@example.test\n")

    def test_symlink_inside_served(self):
        r = self.get("/link-inside.txt")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"EDGETEST-DOCS-PAGE\n")
        r = self.get("/linkdir-inside/page.txt")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"EDGETEST-DOCS-PAGE\n")

    def test_symlink_outside_not_served(self):
        for target in (b"/link-outside.txt", b"/linkdir-outside/secret.txt"):
            rs, _ = self.send_raw_target(target)
            self.assertNoSecret(target, rs)
            self.assertTrue(rs, target)
            self.assertIn(rs[0].status, (403, 404), f"{target!r}: {rs[0]!r}")

    def test_symlink_outside_not_served_via_curl(self):
        r = et.curl(self.url("/link-outside.txt"))
        self.assertNotIn(b"EDGETEST-OUTSIDE-SECRET", r.body)
        self.assertIn(r.status, (403, 404), r)

    def test_server_still_fine_after_attacks(self):
        self.assert_400(b"/../etc/passwd")
        r = self.get("/index.html")
        self.assertStatus(r, 200)


if __name__ == "__main__":
    unittest.main()
