"""Compression: Accept-Encoding negotiation, br / zstd / gzip variants (curl and the CLI tools
decode them to the file exactly), Vary, per-variant ETag / 304 / HEAD, Range from the identity,
precompressed siblings (and older ones ignored), in-memory variants compressed once, per-route
`compress` options, bad `compress` values in --check, files changing on disk.

Variants edge makes itself may be produced in the background: the first request for a coding can
get the identity, so tests that need a variant poll (up to POLL seconds) until it appears.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

ENCODINGS = ("br", "zstd", "gzip")
DECODE = {"br": ["brotli", "-d", "-c"], "zstd": ["zstd", "-d", "-c", "-q"], "gzip": ["gzip", "-d", "-c"]}
ENCODE = {"br": ["brotli", "-c", "-q", "11"], "zstd": ["zstd", "-c", "-q", "-19"], "gzip": ["gzip", "-c", "-9", "-n"]}
SUFFIX = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}
POLL = 5.0  # seconds to wait for a background-compressed variant
QUIET = 1.0  # seconds a "never compressed" path is watched
JS_TYPE = "text/javascript; charset=utf-8"


def _cli(cmd, data):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed (rc={p.returncode}): {p.stderr.decode(errors='replace')}"
                             f"; input[{len(data)}]={data[:40]!r}")
    return p.stdout


def decode(enc, data):
    """Decompress with the real CLI tool (brotli / zstd / gzip)."""
    return _cli(DECODE[enc], data)


def encode(enc, data):
    return _cli(ENCODE[enc], data)


def js_text(size, tag):
    """Deterministic JavaScript-looking text of exactly `size` bytes (compressible, not trivially)."""
    out = []
    total = 0
    x = 12345 + sum(tag.encode())
    i = 0
    while total < size:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        line = (f"export function {tag}_{i}(a, b) {{ return a * {x % 9973} + b - "
                f"\"{tag}-{x % 100000:05d}\".length; }}\n")
        out.append(line)
        total += len(line)
        i += 1
    return "".join(out).encode()[:size]


def repetitive(size, tag="edgetest"):
    """Highly compressible text of exactly `size` bytes."""
    unit = f"/* {tag} {tag} {tag} */\n".encode()
    return (unit * (size // len(unit) + 1))[:size]


def vary_tokens(resp):
    toks = []
    for v in resp.header_all("vary"):
        toks += [t.strip().lower() for t in v.split(",") if t.strip()]
    return toks


def ae(accept):
    return [] if accept is None else [("Accept-Encoding", accept)]


ORIG = js_text(40 * 1024, "enc")           # /enc/app.js (in the 64 KiB body cache)
BIG = js_text(150 * 1024, "big")           # /enc/big.js (beyond it), like the bench's 150 KB JS
NEG = js_text(4 * 1024, "neg")             # /neg/app.js, negotiation table
MEM = js_text(30 * 1024, "mem")            # /mem/app.js, in-memory variant
SIB = js_text(8 * 1024, "sib")             # /sib/app.js, with fresh siblings
SIB_SRC = b"/* sibling */\n" + SIB         # what the siblings decompress to
OLD = js_text(8 * 1024, "old")             # /old/app.js, with siblings older than the file
OLD_SRC = b"/* sibling */\n" + OLD
CHG1 = js_text(10 * 1024, "chg1")          # /change/app.js before
CHG2 = js_text(12 * 1024, "chg2")          # after (replaced by rename, new size and mtime)
INPL1 = js_text(10 * 1024, "inpl")         # /change/inplace.js before
INPL2 = js_text(10 * 1024, "INPL")         # after (same size, rewritten in place, new mtime)
assert len(INPL1) == len(INPL2) and INPL1 != INPL2
EVIL = b"EDGETEST-OUTSIDE-SECRET via a sibling symlink\n" * 20
SIBCHG2 = js_text(9 * 1024, "sibchg")     # /sibchg/app.js after a deploy that left app.js.br behind

COMPRESSIBLE = {  # main route, default types: each must come back as br
    "/types/style.css": "text/css",
    "/types/data.json": "application/json",
    "/types/page.html": "text/html",
    "/types/logo.svg": "image/svg+xml",
    "/types/mod.wasm": "application/wasm",
    "/types/notes.txt": "text/plain",
    "/types/mod.mjs": "text/javascript",
}
NEVER = ("/types/pic.png", "/types/photo.jpg", "/types/font.woff2", "/types/font.woff", "/types/pic.webp")

ROUTES = """
[[route]]
prefix = "/off/"
root = "site"
compress = false

[[route]]
prefix = "/gz/"
root = "site"
compress = { encodings = ["gzip"] }

[[route]]
prefix = "/custom/"
root = "site"
compress = { types = ["text/css", "image/png"], min_size = 1000 }

[[route]]
prefix = "/"
root = "site"
"""


class Compression(et.EdgeTestCase):
    routes = ROUTES

    @classmethod
    def prepare_site(cls, site):
        m = et.SITE_MTIME
        w = site.write
        w("/enc/app.js", ORIG, m)
        w("/enc/big.js", BIG, m)
        w("/neg/app.js", NEG, m)
        w("/mem/app.js", MEM, m)
        w("/range/app.js", ORIG, m)
        w("/etag/app.js", ORIG, m)
        w("/head/app.js", ORIG, m)
        w("/nm/app.js", ORIG, m)
        # fresh siblings: .br and .zst as old as the file (not older), .gz newer
        w("/sib/app.js", SIB, m)
        for enc, dm in (("br", 0), ("zstd", 0), ("gzip", 60)):
            w("/sib/app.js" + SUFFIX[enc], encode(enc, SIB_SRC), m + dm)
        # stale siblings: older than the file, must be ignored
        w("/old/app.js", OLD, m)
        for enc in ENCODINGS:
            w("/old/app.js" + SUFFIX[enc], encode(enc, OLD_SRC), m - 3600)
        for path in COMPRESSIBLE:
            w(path, repetitive(2048, path), m)
        for path in NEVER:
            w(path, repetitive(4096, path), m)
        w("/min/255.js", repetitive(255), m)
        w("/min/256.js", repetitive(256), m)
        w("/off/app.js", ORIG, m)
        w("/gz/app.js", ORIG, m)
        w("/custom/a.css", repetitive(2048, "css"), m)
        w("/custom/a.js", repetitive(2048, "js"), m)
        w("/custom/small.css", repetitive(900, "small"), m)
        w("/custom/pic.png", repetitive(2048, "png"), m)
        w("/change/app.js", CHG1, m)
        # siblings a route must not use: compress = false, a coding the route does not offer
        w("/off/app.js.br", encode("br", SIB_SRC), m)
        w("/gz/app.js.br", encode("br", SIB_SRC), m)
        # a sibling that is a symlink leaving the root (symlinks = "inside" by default)
        w("/safe/app.js", SIB, m)
        evil = os.path.join(site.outside, "evil.br")
        with open(evil, "wb") as f:
            f.write(encode("br", EVIL))
        os.utime(evil, (m + 60, m + 60))
        os.symlink(evil, site.path("/safe/app.js.br"))
        w("/conc/app.js", ORIG, m)
        w("/sibchg/app.js", SIB, m)
        w("/sibchg/app.js.br", encode("br", SIB_SRC), m)
        w("/change/inplace.js", INPL1, m)

    # -- helpers ---------------------------------------------------------------------------
    def req(self, path, accept=None, method="GET", extra=None):
        return self.get(path, method=method, headers=ae(accept) + list(extra or []))

    def poll_encoded(self, path, accept, identity_body=None, timeout=POLL):
        """Request until a response carries Content-Encoding (or time is up); returns
        (last response, responses seen).  Identity answers on the way must be complete and
        correct (body == identity_body when given, Vary: Accept-Encoding)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            r = self.req(path, accept)
            seen.append(r)
            self.assertEqual(r.status, 200, f"GET {path} AE {accept!r}: {r!r}")
            if r.header("content-encoding") is not None:
                return r, seen
            if identity_body is not None:
                self.assertEqual(r.body, identity_body, f"identity answer for {path} while compressing")
                self.assertEqual(vary_tokens(r), ["accept-encoding"],
                                 f"identity answer for {path} (AE {accept!r}) lacks Vary: {r!r}")
            if time.monotonic() > deadline:
                return r, seen
            time.sleep(0.05)

    def variant(self, path, enc, identity_body=None):
        """The `enc` variant of path (polled for); asserts it arrived."""
        r, _ = self.poll_encoded(path, enc, identity_body)
        self.assertEqual(r.header("content-encoding"), enc,
                         f"GET {path} with Accept-Encoding: {enc}: no {enc} variant within {POLL}s: {r!r}")
        return r

    def assert_identity(self, r, body, what):
        self.assertEqual(r.status, 200, f"{what}: {r!r}")
        self.assertIsNone(r.header("content-encoding"), f"{what}: must not be encoded: {r!r}")
        self.assertEqual(r.header("content-length"), str(len(body)), f"{what}: {r!r}")
        self.assertEqual(r.body, body, f"{what}: body differs from the file")

    def assert_never_encoded(self, cases, accept="br, zstd, gzip"):
        """cases: {path: body}.  Requested now and again after QUIET seconds (so background
        compression, if wrongly started, has had time): identity every time."""
        for attempt in range(2):
            for path, body in cases.items():
                self.assert_identity(self.req(path, accept), body, f"GET {path} AE {accept!r} (#{attempt + 1})")
            if attempt == 0:
                time.sleep(QUIET)

    # -- negotiation -----------------------------------------------------------------------
    _warm_neg = False

    def warm_neg(self):
        """Make sure all three variants of /neg/app.js exist, so an identity answer below is a
        negotiation result, not "still compressing"."""
        if not Compression._warm_neg:
            for enc in ENCODINGS:
                self.variant("/neg/app.js", enc, NEG)
            Compression._warm_neg = True

    def check_table(self, table):
        self.warm_neg()
        for accept, want in table:
            with self.subTest(accept=accept):
                r = self.req("/neg/app.js", accept)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("content-encoding"), want,
                                 f"Accept-Encoding: {accept!r} -> expected {want or 'identity'}: {r!r}")
                self.assertEqual(vary_tokens(r), ["accept-encoding"], f"Accept-Encoding: {accept!r}: Vary of {r!r}")
                if want is None:
                    self.assertEqual(r.body, NEG)
                else:
                    self.assertEqual(decode(want, r.body), NEG)

    def test_negotiation_table(self):
        self.check_table([
            ("gzip, deflate, br", "br"),
            ("gzip;q=1, br;q=0.5", "gzip"),
            ("zstd", "zstd"),
            ("gzip", "gzip"),
            ("br", "br"),
            ("*", "br"),
            ("br;q=0, *", "zstd"),
            ("br;q=0, zstd;q=0, *", "gzip"),
            ("identity, gzip;q=0.5", None),
            ("gzip;q=2", None),
            ("g zip", None),
            ("gzip;q=abc", None),
            (None, None),
            ("compress", None),
            ("compress, deflate", None),
            ("identity", None),
            ("br;q=0", None),
        ])

    def test_negotiation_rfc_details(self):
        self.check_table([
            ("gzip;q=0.5, br;q=0.5", "br"),               # equal q: server order breaks the tie
            ("zstd;q=0.9, gzip;q=0.8, br;q=0.1", "zstd"),
            ("GZIP", "gzip"),                             # codings are case-insensitive (RFC 9110 8.4.1)
            ("Br;Q=0.2, gzip;q=0.1", "br"),
            ("br ; q=0.4, gzip;q=0.5", "gzip"),           # OWS around ';'
            ("gzip, identity;q=0", "gzip"),
            ("*;q=0.5, gzip", "gzip"),                    # '*' only covers codings not listed
            ("br;q=1.000, gzip;q=0.999", "br"),
            ("br;q=0.001", "br"),
            ("", None),                                   # empty: no coding acceptable
        ])

    def test_negotiation_header_split_over_lines(self):
        # RFC 9110 5.3: several Accept-Encoding field lines are one comma-separated list
        self.warm_neg()
        for lines in (("zstd", "br;q=0.5"), ("br;q=0.5", "zstd")):
            with self.subTest(lines=lines):
                r = self.get("/neg/app.js", headers=[("Accept-Encoding", v) for v in lines])
                self.assertEqual(r.header("content-encoding"), "zstd", f"Accept-Encoding lines {lines}: {r!r}")
                self.assertEqual(decode("zstd", r.body), NEG)

    # -- per encoding: real clients decode to the file exactly -------------------------------
    def check_encoding(self, enc, path, original):
        ident = self.req(path)
        self.assert_identity(ident, original, f"GET {path} without Accept-Encoding")
        r = self.variant(path, enc, original)
        self.assertEqual(r.header("content-type"), JS_TYPE, r)
        self.assertEqual(r.header("content-type"), ident.header("content-type"))
        cl = r.header("content-length")
        self.assertIsNotNone(cl, f"{enc} variant without Content-Length: {r!r}")
        self.assertEqual(int(cl), len(r.body))
        self.assertLess(len(r.body), len(original), "variant is not smaller than the file")
        self.assertEqual(decode(enc, r.body), original, f"{enc} -d of the raw body != file")
        self.assertEqual(vary_tokens(r), ["accept-encoding"], r)
        # Content-Length frames exactly the body: a second response on the same connection parses
        with et.Conn(self.port) as c:
            c.send(et.request(path, headers=ae(enc)) + et.request(path))
            a = c.read_response()
            b = c.read_response()
        self.assertEqual(a.header("content-encoding"), enc, a)
        self.assertEqual(a.body, r.body, "variant bytes differ between requests")
        self.assert_identity(b, original, "identity response after a variant on one connection")
        # curl decodes it
        cr = et.curl(self.url(path), "--compressed", headers=[("Accept-Encoding", enc)])
        self.assertEqual(cr.rc, 0, cr)
        self.assertEqual(cr.status, 200, cr)
        self.assertEqual(cr.header("content-encoding"), enc, cr)
        self.assertEqual(cr.body, original, f"curl --compressed ({enc}) body != file")

    def test_br_decodes_to_file(self):
        self.check_encoding("br", "/enc/app.js", ORIG)

    def test_zstd_decodes_to_file(self):
        self.check_encoding("zstd", "/enc/app.js", ORIG)

    def test_gzip_decodes_to_file(self):
        self.check_encoding("gzip", "/enc/app.js", ORIG)

    def test_big_file_each_encoding(self):
        for enc in ENCODINGS:
            with self.subTest(enc=enc):
                self.check_encoding(enc, "/enc/big.js", BIG)

    # -- which files ---------------------------------------------------------------------------
    def test_compressible_types(self):
        pending = dict(COMPRESSIBLE)
        got = {}
        deadline = time.monotonic() + POLL
        while pending and time.monotonic() < deadline:
            for path in list(pending):
                r = self.req(path, "br")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(vary_tokens(r), ["accept-encoding"], f"{path}: {r!r}")
                if r.header("content-encoding") is not None:
                    got[path] = r
                    del pending[path]
            time.sleep(0.05)
        self.assertEqual(sorted(pending), [], f"never compressed within {POLL}s")
        for path, mt in COMPRESSIBLE.items():
            r = got[path]
            self.assertEqual(r.header("content-encoding"), "br", r)
            self.assertEqual(r.media_type(), mt, r)
            self.assertEqual(decode("br", r.body), self.site.files[path], path)

    def test_images_and_fonts_never_compressed(self):
        self.assert_never_encoded({p: self.site.files[p] for p in NEVER})

    def test_min_size(self):
        # 255 bytes < min_size 256: as is; 256 is not smaller, so it is compressed
        self.assert_never_encoded({"/min/255.js": self.site.files["/min/255.js"]})
        r = self.variant("/min/256.js", "br", self.site.files["/min/256.js"])
        self.assertEqual(decode("br", r.body), self.site.files["/min/256.js"])

    # -- validators, HEAD, Range ---------------------------------------------------------------
    def test_each_variant_has_its_own_etag(self):
        path = "/etag/app.js"
        ident = self.req(path)
        etags = {"identity": ident.header("etag")}
        for enc in ENCODINGS:
            r = self.variant(path, enc, ORIG)
            etags[enc] = r.header("etag")
            self.assertEqual(r.header("last-modified"), ident.header("last-modified"), r)
            self.assertEqual(self.req(path, enc).header("etag"), etags[enc], "variant ETag not stable")
        for k, v in etags.items():
            self.assertIsNotNone(v, k)
            self.assertRegex(v, r'^"[^"\s]+"$', f"{k}: ETag must be strong and quoted")
        self.assertEqual(len(set(etags.values())), 4, f"ETags not distinct: {etags}")
        self.assertEqual(self.req(path, "identity").header("etag"), etags["identity"])

    def test_if_none_match_variant_304(self):
        path = "/nm/app.js"
        for enc in ENCODINGS:
            with self.subTest(enc=enc):
                etag = self.variant(path, enc, ORIG).header("etag")
                r = self.req(path, enc, extra=[("If-None-Match", etag)])
                self.assertEqual(r.status, 304, f"If-None-Match {etag} + AE {enc}: {r!r}")
                self.assertEqual(r.body, b"")
                self.assertEqual(r.header("etag"), etag, r)
                self.assertEqual(vary_tokens(r), ["accept-encoding"], r)
                # weak comparison, and a list
                r = self.req(path, enc, extra=[("If-None-Match", f'"nope", W/{etag}')])
                self.assertEqual(r.status, 304, f"If-None-Match \"nope\", W/{etag} + AE {enc}: {r!r}")
                self.assertEqual(r.header("etag"), etag, r)

    def test_if_none_match_other_representation_200(self):
        # If-None-Match is compared with the ETag of the representation selected for THIS request
        path = "/nm/app.js"
        br_etag = self.variant(path, "br", ORIG).header("etag")
        id_etag = self.req(path).header("etag")
        r = self.req(path, None, extra=[("If-None-Match", br_etag)])
        self.assert_identity(r, ORIG, "identity request with the br variant's ETag in If-None-Match")
        r = self.req(path, "br", extra=[("If-None-Match", id_etag)])
        self.assertEqual(r.status, 200, f"br request with the identity ETag in If-None-Match: {r!r}")
        self.assertEqual(r.header("content-encoding"), "br", r)
        self.assertEqual(decode("br", r.body), ORIG)

    def test_head_matches_get(self):
        path = "/head/app.js"
        g = self.variant(path, "br", ORIG)
        with et.Conn(self.port) as c:
            c.send(et.request(path, "HEAD", headers=ae("br")))
            h = c.read_response("HEAD")
            # no body after the HEAD: the next response on the connection parses cleanly
            c.send(et.request(path))
            nxt = c.read_response()
        self.assertEqual(h.status, 200, h)
        for name in ("content-encoding", "content-length", "content-type", "etag", "last-modified", "vary"):
            self.assertEqual(h.header(name), g.header(name), f"HEAD vs GET {name}: {h!r} / {g!r}")
        self.assertEqual(h.header("content-length"), str(len(g.body)))
        self.assert_identity(nxt, ORIG, "GET after HEAD on one connection")

    def test_range_from_identity(self):
        path = "/range/app.js"
        self.variant(path, "br", ORIG)  # the variant exists: still, a Range gets identity bytes
        ident = self.req(path)
        n = len(ORIG)
        for spec, first, last in (("bytes=100-1099", 100, 1099), ("bytes=-200", n - 200, n - 1),
                                  ("bytes=0-0", 0, 0), (f"bytes={n - 10}-", n - 10, n - 1)):
            with self.subTest(range=spec):
                r = self.req(path, "br", extra=[("Range", spec)])
                self.assertEqual(r.status, 206, f"Range {spec} + AE br: {r!r}")
                self.assertIsNone(r.header("content-encoding"), f"Range {spec} + AE br: {r!r}")
                self.assertEqual(r.header("content-range"), f"bytes {first}-{last}/{n}", r)
                self.assertEqual(r.header("content-length"), str(last - first + 1), r)
                self.assertEqual(r.body, ORIG[first:last + 1], f"Range {spec}: bytes != slice of the file")
                self.assertEqual(r.header("etag"), ident.header("etag"), "206 must carry the identity ETag")
                # RFC 9110 15.3.7: a 206 carries the Vary a 200 would have
                self.assertEqual(vary_tokens(r), ["accept-encoding"], r)
        r = self.req(path, "br", extra=[("Range", "bytes=10-19"), ("If-Range", ident.header("etag"))])
        self.assertEqual(r.status, 206, f"If-Range with the identity ETag + AE br: {r!r}")
        self.assertEqual(r.body, ORIG[10:20])
        self.assertIsNone(r.header("content-encoding"))
        # If-Range with the br variant's ETag does not match the identity the range would come
        # from: the full representation (200), whichever coding, consistent with its headers
        br_etag = self.req(path, "br").header("etag")
        r = self.req(path, "br", extra=[("Range", "bytes=10-19"), ("If-Range", br_etag)])
        self.assertEqual(r.status, 200,
                         f"If-Range with the br ETag + Range + AE br: {r!r}")
        self.assertIsNone(r.header("content-range"), r)
        enc = r.header("content-encoding")
        self.assertEqual(r.body if enc is None else decode(enc, r.body), ORIG)
        if enc is not None:
            self.assertEqual(r.header("etag"), br_etag, r)

    # -- precompressed siblings ----------------------------------------------------------------
    def test_fresh_siblings_served(self):
        path = "/sib/app.js"
        ident_etag = self.req(path).header("etag")
        first_identity = []
        for enc in ENCODINGS:
            with self.subTest(enc=enc):
                sib = self.site.files[path + SUFFIX[enc]]
                r, seen = self.poll_encoded(path, enc)
                if seen[0].header("content-encoding") is None:
                    first_identity.append(enc)
                self.assertEqual(r.header("content-encoding"), enc, r)
                self.assertEqual(decode(enc, r.body), SIB_SRC,
                                 f"{enc}: not the sibling {path}{SUFFIX[enc]} (edge compressed the file itself?)")
                self.assertEqual(r.body, sib)
                self.assertEqual(r.header("content-length"), str(len(sib)))
                self.assertEqual(r.header("content-type"), JS_TYPE)
                self.assertEqual(vary_tokens(r), ["accept-encoding"], r)
                self.assertNotEqual(r.header("etag"), ident_etag, r)
        self.assertEqual(first_identity, [], "a fresh sibling exists, yet the first request got identity")

    def test_older_siblings_ignored(self):
        path = "/old/app.js"
        for enc in ENCODINGS:
            with self.subTest(enc=enc):
                r, seen = self.poll_encoded(path, enc, OLD)
                for s in seen:
                    if s.header("content-encoding") is not None:
                        self.assertNotEqual(decode(enc, s.body), OLD_SRC,
                                            f"{enc}: served the sibling that is older than the file")
                self.assertEqual(r.header("content-encoding"), enc, r)
                self.assertEqual(decode(enc, r.body), OLD)

    def test_sibling_symlink_outside_root_not_followed(self):
        path = "/safe/app.js"
        deadline = time.monotonic() + 1.5
        while True:
            r = self.req(path, "br")
            self.assertEqual(r.status, 200, r)
            enc = r.header("content-encoding")
            body = r.body if enc is None else decode(enc, r.body)
            self.assertNotEqual(body, EVIL, "served a sibling symlinked from outside the root")
            self.assertEqual(body, SIB, f"enc {enc}")
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)

    def test_range_ignores_sibling(self):
        path = "/sib/app.js"
        r = self.req(path, "br", extra=[("Range", "bytes=0-99")])
        self.assertEqual(r.status, 206, r)
        self.assertIsNone(r.header("content-encoding"), r)
        self.assertEqual(r.header("content-range"), f"bytes 0-99/{len(SIB)}", r)
        self.assertEqual(r.body, SIB[:100])

    def test_sibling_stale_after_file_changes(self):
        # a deploy updates app.js but not app.js.br: the (now older) sibling must stop being used
        path = "/sibchg/app.js"
        r, _ = self.poll_encoded(path, "br")
        self.assertEqual(r.body, self.site.files[path + ".br"], "fresh sibling not served before the change")
        full = self.site.path(path)
        with open(full, "wb") as f:
            f.write(SIBCHG2)
        now = time.time()
        os.utime(full, (now, now))
        deadline = time.monotonic() + POLL + 1.5
        while True:
            r = self.req(path, "br")
            self.assertEqual(r.status, 200, r)
            enc = r.header("content-encoding")
            body = r.body if enc is None else decode(enc, r.body)
            self.assertIn(body, (SIB_SRC, SIBCHG2, SIB), f"{path}: unexpected body (enc {enc})")
            if enc == "br" and body == SIBCHG2:
                return
            if time.monotonic() > deadline:
                self.fail(f"{path}: {POLL + 1.5}s after the file changed, br is still not the new file "
                          f"(enc {enc}, body is {'the old sibling' if body == SIB_SRC else 'other'})")
            time.sleep(0.1)

    # -- in-memory variants ------------------------------------------------------------------
    def test_in_memory_variant_compressed_once(self):
        path = "/mem/app.js"
        r, seen = self.poll_encoded(path, "br", MEM)
        self.assertEqual(r.header("content-encoding"), "br", f"no br variant within {POLL}s: {r!r}")
        self.assertEqual(decode("br", r.body), MEM)
        self.assertEqual(r.header("content-length"), str(len(r.body)))
        for i in range(3):
            again = self.req(path, "br")
            self.assertEqual(again.header("content-encoding"), "br", f"request {i + 2} after the variant: {again!r}")
            self.assertEqual(again.body, r.body, "variant bytes changed between requests")
            self.assertEqual(again.header("etag"), r.header("etag"))

    def test_concurrent_first_requests(self):
        # many clients ask for a cold file at once: every answer is whole and correct, and
        # afterwards one variant (identical bytes) is served
        path = "/conc/app.js"
        results = [None] * 16
        errors = []

        def one(i):
            try:
                results[i] = self.req(path, "br, gzip")
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(errors, [])
        for r in results:
            self.assertEqual(r.status, 200, r)
            enc = r.header("content-encoding")
            self.assertIn(enc, (None, "br", "gzip"), r)
            self.assertEqual(r.header("content-length"), str(len(r.body)), r)
            self.assertEqual(r.body if enc is None else decode(enc, r.body), ORIG)
            self.assertEqual(vary_tokens(r), ["accept-encoding"], r)
        r = self.variant(path, "br", ORIG)
        bodies = {self.req(path, "br").body for _ in range(4)} | {r.body}
        self.assertEqual(len(bodies), 1, "different br bytes for one file")
        self.assertEqual(decode("br", r.body), ORIG)

    # -- route options -----------------------------------------------------------------------
    def test_compress_false(self):
        self.assert_never_encoded({"/off/app.js": ORIG})
        for accept in ("br", "gzip", "*", None):
            r = self.req("/off/app.js", accept)
            self.assertEqual(r.header_all("vary"), [], f"compress = false, AE {accept!r}: Vary on {r!r}")

    def test_gzip_only_route(self):
        r, _ = self.poll_encoded("/gz/app.js", "br, gzip", ORIG)
        self.assertEqual(r.header("content-encoding"), "gzip", f"encodings = [\"gzip\"], AE 'br, gzip': {r!r}")
        self.assertEqual(decode("gzip", r.body), ORIG)
        self.assertEqual(vary_tokens(r), ["accept-encoding"], r)
        self.assert_never_encoded({"/gz/app.js": ORIG}, accept="br, zstd")
        self.assertEqual(vary_tokens(self.req("/gz/app.js", "br, zstd")), ["accept-encoding"])

    def test_custom_types_and_min_size(self):
        # compress = { types = ["text/css", "image/png"], min_size = 1000 }
        r = self.variant("/custom/a.css", "br", self.site.files["/custom/a.css"])
        self.assertEqual(decode("br", r.body), self.site.files["/custom/a.css"])
        self.assert_never_encoded({
            "/custom/a.js": self.site.files["/custom/a.js"],          # type not listed
            "/custom/small.css": self.site.files["/custom/small.css"],  # 900 < min_size 1000
            "/custom/pic.png": self.site.files["/custom/pic.png"],      # images never, whatever types says
        })

    # -- files changing on disk ----------------------------------------------------------------
    def check_change(self, path, old, new, replace):
        r = self.variant(path, "br", old)
        self.assertEqual(decode("br", r.body), old)
        old_etag = r.header("etag")
        replace()
        deadline = time.monotonic() + POLL + 1.5
        while True:
            r = self.req(path, "br")
            self.assertEqual(r.status, 200, r)
            if r.header("content-encoding") is None:
                self.assertIn(r.body, (old, new), "identity body is neither the old nor the new file")
                self.assertEqual(r.header("content-length"), str(len(r.body)))
            else:
                self.assertEqual(r.header("content-encoding"), "br", r)
                body = decode("br", r.body)
                self.assertIn(body, (old, new), "br body decodes to neither the old nor the new file")
                if body == new:
                    self.assertNotEqual(r.header("etag"), old_etag, "new content under the old variant ETag")
                    return
            if time.monotonic() > deadline:
                self.fail(f"{path}: br variant still decodes to the old file {POLL + 1.5}s after the change")
            time.sleep(0.1)

    def test_file_replaced_by_rename(self):
        path = "/change/app.js"
        full = self.site.path(path)

        def replace():
            tmp = full + ".tmp-new"
            with open(tmp, "wb") as f:
                f.write(CHG2)
            now = time.time()
            os.utime(tmp, (now, now))
            os.rename(tmp, full)
        self.check_change(path, CHG1, CHG2, replace)

    def test_file_rewritten_in_place_same_size(self):
        path = "/change/inplace.js"
        full = self.site.path(path)

        def replace():
            with open(full, "r+b") as f:
                f.write(INPL2)
            now = time.time()
            os.utime(full, (now, now))
        self.check_change(path, INPL1, INPL2, replace)


# ---------------------------------------------------------------------------------------------
# --check: compress values


def run_edge(args, timeout=10):
    p = subprocess.run([et.EDGE_BIN] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


CONFIG = """\
[server]
workers = 1

[log]
access = "off"

[[listen]]
address = "127.0.0.1:0"

[[route]]
prefix = "/"
root = "site"
{compress}
"""

FULL_TABLE = ('compress = { encodings = ["br", "zstd", "gzip"], types = ["text/*", "application/javascript", '
              '"image/svg+xml"], min_size = 256, levels = { br = 5, zstd = 3, gzip = 6 }, '
              'static_levels = { br = 11, zstd = 19, gzip = 9 }, precompressed = true, store_size = "64m" }')


class CompressConfig(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(et.EDGE_BIN):
            raise et.EdgeError(f"edge binary not found at {et.EDGE_BIN}")
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-compress-")
        os.makedirs(os.path.join(cls.tmp, "site"))
        with open(os.path.join(cls.tmp, "site", "index.html"), "wb") as f:
            f.write(et.INDEX_HTML)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write(self, name, compress):
        text = CONFIG.format(compress=compress)
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p, text

    def test_good_values(self):
        for i, compress in enumerate(("compress = true", "compress = false", FULL_TABLE,
                                      'compress = { encodings = ["gzip"] }',
                                      "compress = { enabled = false }",
                                      '[route.compress]\nencodings = ["zstd", "br"]\nmin_size = 1024')):
            with self.subTest(compress=compress):
                p, _ = self.write(f"good-{i}.toml", compress)
                rc, out = run_edge(["--check", "--config", p])
                self.assertEqual(rc, 0, f"{compress}\n{out}")

    def test_bad_values(self):
        for i, (compress, needle) in enumerate((
                ('compress = { encodings = ["lzma"] }', "lzma"),
                ("compress = { levels = { br = 12 } }", "br = 12"),
                ("compress = 5", "compress = 5"),
                ("compress = { static_levels = { zstd = 23 } }", "zstd = 23"),
                ("compress = { levels = { gzip = 10 } }", "gzip = 10"),
                ('compress = "yes"', '"yes"'),
                ("compress = { min_size = \"lots\" }", "lots"),
                ("compress = { colour = 1 }", "colour"),
                ('[route.compress]\nmin_size = 10\nencodings = ["br", "lzma"]', "lzma"))):
            with self.subTest(compress=compress):
                p, text = self.write(f"bad-{i}.toml", compress)
                line = next(n for n, ln in enumerate(text.splitlines(), 1) if needle in ln)
                rc, out = run_edge(["--check", "--config", p])
                self.assertEqual(rc, 1, f"{compress}: exit {rc}\n{out}")
                self.assertIn(f"{p}:{line}: ", out, f"{compress}: expected '{p}:{line}: ' in:\n{out}")


if __name__ == "__main__":
    unittest.main()
