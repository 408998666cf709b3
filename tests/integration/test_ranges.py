"""Range requests: 206, suffix, open-ended, 416, If-Range, multipart/byteranges."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

SIZE = et.BLOB_SIZE
BLOB = et.blob_bytes()


class Ranges(et.EdgeTestCase):
    def rng(self, spec, extra=None, path="/blob.bin", method="GET"):
        return self.get(path, method=method, headers=[("Range", spec)] + list(extra or []))

    def assert_206(self, r, first, last):
        self.assertStatus(r, 206)
        self.assertHeader(r, "content-range", f"bytes {first}-{last}/{SIZE}")
        self.assertHeader(r, "content-length", str(last - first + 1))
        self.assertEqual(r.body, BLOB[first:last + 1])

    def test_first_bytes(self):
        self.assert_206(self.rng("bytes=0-99"), 0, 99)

    def test_middle(self):
        self.assert_206(self.rng("bytes=1000-1999"), 1000, 1999)

    def test_single_byte(self):
        self.assert_206(self.rng("bytes=5-5"), 5, 5)

    def test_suffix(self):
        self.assert_206(self.rng("bytes=-500"), SIZE - 500, SIZE - 1)

    def test_suffix_larger_than_file(self):
        self.assert_206(self.rng(f"bytes=-{SIZE * 2}"), 0, SIZE - 1)

    def test_open_ended(self):
        self.assert_206(self.rng("bytes=204000-"), 204000, SIZE - 1)

    def test_last_clamped(self):
        self.assert_206(self.rng("bytes=200000-999999999"), 200000, SIZE - 1)

    def test_range_keeps_validators_and_type(self):
        r = self.rng("bytes=0-9")
        self.assertStatus(r, 206)
        self.assertIsNotNone(r.header("etag"))
        self.assertIsNotNone(r.header("last-modified"))
        self.assertEqual(r.media_type(), "application/octet-stream")

    def test_unsatisfiable_416(self):
        for spec in (f"bytes={SIZE}-", "bytes=300000-400000", "bytes=-0"):
            r = self.rng(spec)
            self.assertEqual(r.status, 416, f"Range: {spec}: {r!r}")
            self.assertEqual(r.header("content-range"), f"bytes */{SIZE}", f"Range: {spec}")

    def test_malformed_range_ignored(self):
        for spec in ("bytes=abc", "bytes=5-1", "items=0-10", "bytes=--1"):
            r = self.rng(spec)
            self.assertEqual(r.status, 200, f"Range: {spec}: {r!r}")
            self.assertEqual(len(r.body), SIZE, f"Range: {spec}")

    def test_head_ignores_range(self):
        # RFC 9110 14.2: GET is the only method with range handling; others MUST ignore Range
        r = self.rng("bytes=0-99", method="HEAD")
        self.assertStatus(r, 200)
        self.assertIsNone(r.header("content-range"))
        self.assertHeader(r, "content-length", str(SIZE))

    def test_if_range_etag_match(self):
        etag = self.get("/blob.bin").header("etag")
        self.assert_206(self.rng("bytes=10-19", [("If-Range", etag)]), 10, 19)

    def test_if_range_etag_mismatch_full(self):
        r = self.rng("bytes=10-19", [("If-Range", '"stale-etag"')])
        self.assertStatus(r, 200)
        self.assertIsNone(r.header("content-range"))
        self.assertEqual(r.body, BLOB)

    def test_if_range_weak_etag_never_matches(self):
        # RFC 9110 13.1.5: If-Range uses the strong comparison; a weak validator never matches
        etag = self.get("/blob.bin").header("etag")
        r = self.rng("bytes=10-19", [("If-Range", "W/" + etag)])
        self.assertStatus(r, 200)
        self.assertEqual(len(r.body), SIZE)

    def test_if_range_date(self):
        lm = self.get("/blob.bin").header("last-modified")
        self.assert_206(self.rng("bytes=10-19", [("If-Range", lm)]), 10, 19)
        r = self.rng("bytes=10-19", [("If-Range", et.http_date(et.SITE_MTIME - 3600))])
        self.assertStatus(r, 200)
        self.assertEqual(len(r.body), SIZE)

    def test_range_with_curl(self):
        r = et.curl(self.url("/blob.bin"), "-r", "100-199")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.status, 206, r)
        self.assertEqual(r.body, BLOB[100:200])

    def test_multiple_ranges_multipart(self):
        r = self.rng("bytes=0-9,100-109,-5")
        self.assertStatus(r, 206)
        self.assertEqual(r.media_type(), "multipart/byteranges")
        self.assertIsNone(r.header("content-range"))
        self.assertEqual(int(r.header("content-length")), len(r.body))
        parts = et.parse_multipart_byteranges(r)
        self.assertEqual(
            [(cr, ct) for cr, ct, _ in parts],
            [(f"bytes 0-9/{SIZE}", "application/octet-stream"),
             (f"bytes 100-109/{SIZE}", "application/octet-stream"),
             (f"bytes {SIZE - 5}-{SIZE - 1}/{SIZE}", "application/octet-stream")],
        )
        self.assertEqual([d for _, _, d in parts], [BLOB[0:10], BLOB[100:110], BLOB[SIZE - 5:]])

    def test_multiple_ranges_with_unsatisfiable_member(self):
        # one satisfiable range left: a plain 206 or a one-part multipart are both fine
        r = self.rng(f"bytes=0-9,{SIZE + 10}-{SIZE + 20}")
        self.assertStatus(r, 206)
        if r.media_type() == "multipart/byteranges":
            parts = et.parse_multipart_byteranges(r)
            self.assertEqual([(cr, d) for cr, _, d in parts], [(f"bytes 0-9/{SIZE}", BLOB[0:10])])
        else:
            self.assert_206(r, 0, 9)

    def test_range_on_text_file(self):
        r = self.get("/index.html", headers=[("Range", "bytes=0-14")])
        self.assertStatus(r, 206)
        self.assertEqual(r.body, et.INDEX_HTML[:15])
        self.assertHeader(r, "content-range", f"bytes 0-14/{len(et.INDEX_HTML)}")
        self.assertHeader(r, "content-type", "text/html; charset=utf-8")


if __name__ == "__main__":
    unittest.main()
