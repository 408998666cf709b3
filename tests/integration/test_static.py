"""Static files: bodies, MIME table, validators (ETag / Last-Modified / 304), HEAD."""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402


class StaticFiles(et.EdgeTestCase):
    def test_index_html_body_and_type(self):
        r = et.curl(self.url("/index.html"))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, et.INDEX_HTML)
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(r.header("content-length"), str(len(et.INDEX_HTML)))
        self.assertEqual(r.header("accept-ranges"), "bytes")

    def test_root_serves_index(self):
        r = et.curl(self.url("/"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, et.INDEX_HTML)
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")

    def test_binary_file_exact(self):
        r = et.curl(self.url("/blob.bin"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), et.BLOB_SIZE)
        self.assertEqual(r.body, et.blob_bytes())
        self.assertEqual(r.header("content-length"), str(et.BLOB_SIZE))
        self.assertEqual(r.media_type(), "application/octet-stream")

    def test_svg_1k(self):
        r = et.curl(self.url("/logo.svg"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), 1024)
        self.assertEqual(r.body, self.site.files["/logo.svg"])
        self.assertEqual(r.media_type(), "image/svg+xml")

    def test_empty_file(self):
        r = self.get("/empty.txt")
        self.assertStatus(r, 200)
        self.assertHeader(r, "content-length", "0")
        self.assertEqual(r.body, b"")

    def test_percent_encoded_names(self):
        r = self.get("/hello%20world.txt")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"EDGETEST-SPACE\n")
        r = self.get("/caf%C3%A9.txt")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"EDGETEST-CAFE\n")

    def test_mime_table(self):
        expected = {
            "/mime/data.json": "application/json",
            "/mime/app.wasm": "application/wasm",
            "/mime/site.webmanifest": "application/manifest+json",
            "/mime/font.woff2": "font/woff2",
            "/mime/img.avif": "image/avif",
            "/mime/app.js.map": "application/json",
            "/mime/mod.mjs": "text/javascript",
            "/mime/app.js": "text/javascript",
            "/mime/notes.txt": "text/plain",
            "/mime/pic.png": "image/png",
            "/mime/style.css": "text/css",
            "/mime/page.html": "text/html",
            "/assets/index-Ab3dE5fG.js": "text/javascript",
            "/assets/app-Xy12Ab34.css": "text/css",
        }
        got = {p: self.get(p).media_type() for p in expected}
        self.assertEqual(got, expected)

    def test_text_types_have_utf8_charset(self):
        for p in ("/mime/notes.txt", "/mime/style.css", "/mime/page.html", "/index.html"):
            r = self.get(p)
            ct = (r.header("content-type") or "").replace(" ", "").lower()
            self.assertTrue(ct.endswith(";charset=utf-8"), f"{p}: Content-Type {r.header('content-type')!r}")

    def test_binary_types_have_no_charset(self):
        for p in ("/mime/pic.png", "/mime/app.wasm", "/blob.bin"):
            ct = self.get(p).header("content-type") or ""
            self.assertNotIn("charset", ct, f"{p}: {ct!r}")

    def test_route_extra_headers(self):
        r = self.get("/logo.svg")
        self.assertHeader(r, "x-frame-options", "DENY")

    # -- validators ------------------------------------------------------------------------
    def test_etag_strong_and_last_modified(self):
        r = self.get("/logo.svg")
        etag = r.header("etag")
        self.assertIsNotNone(etag, r)
        self.assertRegex(etag, r'^"[^"\s]+"$', "ETag must be strong and quoted")
        lm = r.header("last-modified")
        self.assertIsNotNone(lm, r)
        self.assertEqual(et.parse_http_date(lm), et.SITE_MTIME)
        self.assertTrue(lm.endswith(" GMT"), lm)
        # stable across requests
        self.assertEqual(self.get("/logo.svg").header("etag"), etag)
        # differs between files
        self.assertNotEqual(self.get("/blob.bin").header("etag"), etag)

    def test_if_none_match_304(self):
        etag = self.get("/logo.svg").header("etag")
        r = self.get("/logo.svg", headers=[("If-None-Match", etag)])
        self.assertStatus(r, 304)
        self.assertEqual(r.body, b"")
        self.assertHeader(r, "etag", etag)
        # RFC 9110 15.4.5: Content-Length on a 304 is absent or the 200's value
        self.assertIn(r.header("content-length"), (None, "1024"), r)

    def test_304_keeps_cache_headers(self):
        # RFC 9110 15.4.5: a 304 carries the Cache-Control, ETag (and Date) a 200 would have
        for path, cc in (("/assets/index-Ab3dE5fG.js", et.IMMUTABLE), ("/logo.svg", "public, max-age=60"),
                         ("/index.html", "no-cache")):
            etag = self.get(path).header("etag")
            r = self.get(path, headers=[("If-None-Match", etag)])
            self.assertEqual(r.status, 304, path)
            self.assertEqual(r.header("cache-control"), cc, path)
            self.assertEqual(r.header("etag"), etag, path)
            self.assertIsNotNone(r.header("date"), path)

    def test_head_conditional_304(self):
        etag = self.get("/logo.svg").header("etag")
        r = self.get("/logo.svg", method="HEAD", headers=[("If-None-Match", etag)])
        self.assertStatus(r, 304)

    def test_if_none_match_list_and_star(self):
        etag = self.get("/logo.svg").header("etag")
        r = self.get("/logo.svg", headers=[("If-None-Match", f'"nope", {etag}')])
        self.assertStatus(r, 304)
        r = self.get("/logo.svg", headers=[("If-None-Match", "*")])
        self.assertStatus(r, 304)
        r = self.get("/logo.svg", headers=[("If-None-Match", f"W/{etag}")])
        self.assertStatus(r, 304)  # If-None-Match uses the weak comparison

    def test_if_none_match_mismatch_200(self):
        r = self.get("/logo.svg", headers=[("If-None-Match", '"not-the-etag"')])
        self.assertStatus(r, 200)
        self.assertEqual(len(r.body), 1024)

    def test_if_modified_since(self):
        lm = self.get("/logo.svg").header("last-modified")
        r = self.get("/logo.svg", headers=[("If-Modified-Since", lm)])
        self.assertStatus(r, 304)
        self.assertEqual(r.body, b"")
        later = et.http_date(et.SITE_MTIME + 3600)
        self.assertStatus(self.get("/logo.svg", headers=[("If-Modified-Since", later)]), 304)
        earlier = et.http_date(et.SITE_MTIME - 1)
        r = self.get("/logo.svg", headers=[("If-Modified-Since", earlier)])
        self.assertStatus(r, 200)
        self.assertEqual(len(r.body), 1024)

    def test_if_modified_since_garbage_ignored(self):
        r = self.get("/logo.svg", headers=[("If-Modified-Since", "yesterday-ish")])
        self.assertStatus(r, 200)

    def test_if_none_match_wins_over_if_modified_since(self):
        etag = self.get("/logo.svg").header("etag")
        lm = et.http_date(et.SITE_MTIME)
        # INM does not match, IMS would say "not modified": INM wins -> 200
        r = self.get("/logo.svg", headers=[("If-None-Match", '"other"'), ("If-Modified-Since", lm)])
        self.assertStatus(r, 200)
        self.assertEqual(len(r.body), 1024)
        # INM matches, IMS would say "modified": INM wins -> 304
        old = et.http_date(et.SITE_MTIME - 86400)
        r = self.get("/logo.svg", headers=[("If-None-Match", etag), ("If-Modified-Since", old)])
        self.assertStatus(r, 304)

    def test_304_via_curl(self):
        etag = et.curl(self.url("/assets/app-Xy12Ab34.css")).header("etag")
        r = et.curl(self.url("/assets/app-Xy12Ab34.css"), headers=[("If-None-Match", etag)])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.status, 304, r)
        self.assertEqual(r.body, b"")

    def test_validators_follow_file_changes(self):
        self.site.write("/mutable.txt", b"version one\n", mtime=et.SITE_MTIME)
        r1 = self.get("/mutable.txt")
        self.assertStatus(r1, 200)
        self.assertEqual(r1.body, b"version one\n")
        etag1 = r1.header("etag")
        self.site.write("/mutable.txt", b"version two, longer\n", mtime=et.SITE_MTIME + 100)
        deadline = time.monotonic() + 3.0
        while True:
            r2 = self.get("/mutable.txt", headers=[("If-None-Match", etag1)])
            if r2.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertStatus(r2, 200)
        self.assertEqual(r2.body, b"version two, longer\n")
        self.assertNotEqual(r2.header("etag"), etag1)
        self.assertEqual(et.parse_http_date(r2.header("last-modified")), et.SITE_MTIME + 100)

    # -- HEAD ------------------------------------------------------------------------------
    def test_head_same_headers_no_body(self):
        for path in ("/blob.bin", "/index.html", "/logo.svg", "/readings/42"):
            g = self.get(path)
            # pipeline HEAD then GET on one connection: a body after HEAD would corrupt the 2nd
            with et.Conn(self.port) as c:
                c.send(et.request(path, "HEAD") + et.request("/empty.txt"))
                h = c.read_response("HEAD")
                after = c.read_response("GET")
            self.assertStatus(h, 200)
            self.assertEqual(h.body, b"")
            for name in ("content-length", "content-type", "etag", "last-modified", "cache-control",
                         "accept-ranges"):
                self.assertEqual(h.header(name), g.header(name), f"HEAD {path}: {name}")
            self.assertEqual(after.status, 200, f"response after HEAD {path}: {after!r}")
            self.assertEqual(after.body, b"")
            self.assertEqual(after.header("content-length"), "0")

    def test_head_via_curl(self):
        r = et.curl(self.url("/blob.bin"), head=True)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-length"), str(et.BLOB_SIZE))


if __name__ == "__main__":
    unittest.main()
