"""The SPA rules, cache headers, directories, and route matching (redirect / rewrite / host)."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


def location_path(loc):
    """'/x' or 'http://host:port/x' -> '/x'."""
    if loc is None:
        return None
    return re.sub(r"^https?://[^/]+", "", loc)


class SpaRules(et.EdgeTestCase):
    def test_deep_link_gets_index(self):
        for path in ("/readings/42", "/readings/42/", "/settings", "/a/b/c/d"):
            r = et.curl(self.url(path))
            self.assertEqual(r.status, 200, f"{path}: {r!r}")
            self.assertEqual(r.body, et.INDEX_HTML, path)
            self.assertEqual(r.header("cache-control"), "no-cache", path)
            self.assertEqual(r.header("content-type"), "text/html; charset=utf-8", path)

    def test_deep_link_with_query(self):
        r = self.get("/readings/42?tab=history&x=%20")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, et.INDEX_HTML)
        self.assertHeader(r, "cache-control", "no-cache")

    def test_deep_link_with_dot_in_earlier_segment(self):
        # the extension is decided by the LAST segment only
        r = self.get("/v1.2/readings")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, et.INDEX_HTML)

    def test_missing_asset_with_extension_is_404(self):
        for path in ("/assets/index-0ld.js", "/favicon.png", "/assets/app-Zz99Zz99.css", "/readings/42.json",
                     "/missing.html"):
            r = et.curl(self.url(path))
            self.assertEqual(r.status, 404, f"{path}: {r!r}")
            self.assertEqual(r.header("cache-control"), "no-store", path)
            self.assertNotIn(b"EDGETEST-INDEX", r.body, f"{path}: 404 must never be index.html")
            self.assertNotEqual(r.media_type(), "text/javascript", path)

    def test_404_head(self):
        r = self.get("/favicon.png", method="HEAD")
        self.assertStatus(r, 404)
        self.assertHeader(r, "cache-control", "no-store")

    def test_hashed_asset_immutable(self):
        for path in ("/assets/index-Ab3dE5fG.js", "/assets/app-Xy12Ab34.css"):
            r = self.get(path)
            self.assertStatus(r, 200)
            self.assertEqual(r.header("cache-control"), et.IMMUTABLE, path)
            self.assertEqual(r.body, self.site.files[path])

    def test_immutable_prefix_without_hash(self):
        r = self.get("/assets/plain.js")
        self.assertStatus(r, 200)
        self.assertHeader(r, "cache-control", et.IMMUTABLE)

    def test_hashed_name_outside_prefix(self):
        r = self.get("/chunk-Zz98Yy76.js")
        self.assertStatus(r, 200)
        self.assertHeader(r, "cache-control", et.IMMUTABLE)

    def test_other_files_get_configured_cache_control(self):
        for path in ("/plain.js", "/logo.svg", "/blob.bin"):
            r = self.get(path)
            self.assertStatus(r, 200)
            self.assertEqual(r.header("cache-control"), "public, max-age=60", path)

    def test_index_html_always_no_cache(self):
        for path in ("/", "/index.html"):
            r = self.get(path)
            self.assertStatus(r, 200)
            self.assertEqual(r.header("cache-control"), "no-cache", path)

    def test_immutable_only_on_2xx(self):
        r = self.get("/assets/index-0ld12345.js")  # missing, hashed-looking, under /assets/
        self.assertStatus(r, 404)
        self.assertHeader(r, "cache-control", "no-store")
        r = self.get("/assets/index-Ab3dE5fG.js", headers=[("Range", "bytes=0-3")])
        self.assertStatus(r, 206)
        self.assertHeader(r, "cache-control", et.IMMUTABLE)

    def test_directory_redirect_to_slash(self):
        r = et.curl(self.url("/docs"))
        self.assertEqual(r.status, 301, r)
        self.assertEqual(location_path(r.header("location")), "/docs/")

    def test_directory_redirect_keeps_query(self):
        r = self.get("/docs?x=1&y=%2F")
        self.assertStatus(r, 301)
        self.assertEqual(location_path(r.header("location")), "/docs/?x=1&y=%2F")

    def test_directory_redirect_nested_and_symlinked_dir(self):
        r = self.get("/linkdir-inside")
        self.assertStatus(r, 301)
        self.assertEqual(location_path(r.header("location")), "/linkdir-inside/")

    def test_directory_index(self):
        r = et.curl(self.url("/docs/"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, et.DOCS_INDEX_HTML)
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(r.header("cache-control"), "no-cache")

    def test_file_in_subdir(self):
        r = self.get("/docs/page.txt")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"EDGETEST-DOCS-PAGE\n")

    def test_no_spa_fallback_when_disabled(self):
        r = self.get("/readings/42", host="nospa.test")
        self.assertStatus(r, 404)
        self.assertNotIn(b"EDGETEST-INDEX", r.body)

    def test_host_route_serves_files(self):
        r = self.get("/logo.svg", host="NoSpa.Test")
        self.assertStatus(r, 200)
        # only the SPA route configures X-Edge-Route: its absence proves the host route was chosen
        self.assertIsNone(r.header("x-edge-route"), r)
        r = self.get("/logo.svg")
        self.assertHeader(r, "x-edge-route", "spa")


class Routes(et.EdgeTestCase):
    def test_redirect_with_capture(self):
        r = self.get("/old/some/page")
        self.assertStatus(r, 301)
        self.assertEqual(location_path(r.header("location")), "/new/some/page")

    def test_redirect_status_308(self):
        r = self.get("/moved/x")
        self.assertStatus(r, 308)
        self.assertEqual(location_path(r.header("location")), "/elsewhere/x")

    def test_rewrite_with_capture(self):
        r = self.get("/app/logo.svg")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, self.site.files["/logo.svg"])

    def test_first_match_wins(self):
        # /health is an exact route listed before the catch-all static route
        r = self.get("/health")
        self.assertStatus(r, 200)
        self.assertEqual(r.media_type(), "application/json")
        # /healthz is not /health: it falls to the SPA route
        r = self.get("/healthz")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, et.INDEX_HTML)


if __name__ == "__main__":
    unittest.main()
