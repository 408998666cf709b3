"""The shared cache in front of the proxy (issue 6, its first part): what is stored and served
(Cache-Status, Age), what never is (private, no-store, Set-Cookie, requests with credentials), Vary
on a request header, compressed variants kept apart, HEAD and 304 answered from a stored GET, and
an unsafe method invalidating its URL. Against a real Node upstream that counts its requests.
"""
import os
import time
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import test_proxy as tp  # noqa: E402  (ProxyCase; its own tests are not collected here)
import upstreamtest as ut  # noqa: E402

PUBLIC = "cc=public,max-age=60"


class Cache(tp.ProxyCase):
    listen = ["127.0.0.1:0"]
    server_opts = {"workers": "2"}  # the store is shared by the workers
    upstream_specs = {"C": ("normal", {})}

    @classmethod
    def proxy_config(cls, ups):
        cls.up = ups["C"]
        return ([ut.pool_toml("api", [cls.up.address])],
                [ut.proxy_route("/small/", "api", strip_prefix="/small",
                                cache={"ttl": "2h", "max_object": "1k"}),
                 ut.proxy_route("/api/", "api", strip_prefix="/api", cache={"ttl": "2h"}),
                 '\n[[route]]\npath = "/__edge/purge"\ncache_purge = true\n',
                 '\n[[route]]\npath = "/__edge/purge-token"\ncache_purge = { token = "s3cret" }\n'])

    def get(self, path, headers=(), head=False, method=None):
        args = ["-X", method] if method else []
        return et.curl(f"http://127.0.0.1:{self.edge.port}{path}", *args, headers=list(headers),
                       head=head)

    def upstream_hits(self, path_prefix="/text"):
        return self.up.count()["by_path"].get(path_prefix, 0)

    def test_miss_then_hits_with_age_and_status(self):
        path = f"/api/text?bytes=3000&{PUBLIC}&n=1"
        before = self.upstream_hits()
        r = self.get(path)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("cache-status"), "edge; fwd=miss; stored")
        served = r.header("x-served")
        for _ in range(10):  # both workers
            r = self.get(path)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.header("cache-status").startswith("edge; hit; ttl="), r)
            self.assertIsNotNone(r.header("age"))
            self.assertEqual(r.header("x-served"), served)
            self.assertEqual(len(r.body), 3000)
        self.assertEqual(self.upstream_hits() - before, 1)

    def test_never_shared(self):
        cases = {
            "private": "cc=private,max-age=60",
            "no-store": "cc=no-store",
            "set-cookie": f"{PUBLIC}&cookie=sid%3D1",
            "no lifetime": "cc=must-revalidate",
        }
        for name, q in cases.items():
            with self.subTest(name):
                path = f"/api/text?bytes=500&{q}&case={name.replace(' ', '')}"
                before = self.upstream_hits()
                a = self.get(path)
                b = self.get(path)
                self.assertEqual(b.header("cache-status"), "edge; fwd=miss", b)
                self.assertNotEqual(a.header("x-served"), b.header("x-served"))
                self.assertEqual(self.upstream_hits() - before, 2)

    def test_credentials_bypass_unless_public(self):
        # a stored public response may be served to a request with a cookie…
        path = f"/api/text?bytes=500&{PUBLIC}&case=cred"
        self.get(path)
        r = self.get(path, headers=[("Cookie", "sid=2")])
        self.assertTrue(r.header("cache-status").startswith("edge; hit"), r)
        # …but a response without public/s-maxage is not shared between users with credentials
        path = "/api/text?bytes=500&cc=max-age=60&case=cred2"
        first = self.get(path, headers=[("Authorization", "Bearer a")])
        self.assertEqual(first.header("cache-status"), "edge; fwd=miss")
        again = self.get(path, headers=[("Authorization", "Bearer b")])
        self.assertNotEqual(first.header("x-served"), again.header("x-served"))

    def test_vary_on_a_request_header(self):
        path = f"/api/text?bytes=200&{PUBLIC}&vary=X-Lang&case=vary"
        en = self.get(path, headers=[("X-Lang", "en")])
        fr = self.get(path, headers=[("X-Lang", "fr")])
        self.assertTrue(en.body.startswith(b"en:"))
        self.assertTrue(fr.body.startswith(b"fr:"))
        en2 = self.get(path, headers=[("X-Lang", "en")])
        fr2 = self.get(path, headers=[("X-Lang", "fr")])
        self.assertTrue(en2.header("cache-status").startswith("edge; hit"))
        self.assertTrue(en2.body.startswith(b"en:"))
        self.assertTrue(fr2.header("cache-status").startswith("edge; hit"))
        self.assertTrue(fr2.body.startswith(b"fr:"))

    def test_compressed_variant_stored_apart(self):
        path = f"/api/text?bytes=5000&{PUBLIC}&case=br"
        plain = self.get(path)
        br = self.get(path, headers=[("Accept-Encoding", "br")])
        self.assertEqual(br.header("content-encoding"), "br")
        self.assertEqual(br.header("cache-status"), "edge; fwd=miss; stored")
        br2 = self.get(path, headers=[("Accept-Encoding", "br")])
        self.assertTrue(br2.header("cache-status").startswith("edge; hit"))
        self.assertEqual(br2.header("content-encoding"), "br")
        self.assertEqual(br2.body, br.body)
        plain2 = self.get(path)
        self.assertIsNone(plain2.header("content-encoding"))
        self.assertEqual(plain2.body, plain.body)

    def test_head_and_304_from_the_stored_get(self):
        path = f"/api/text?bytes=700&{PUBLIC}&etag=%22t1%22&case=cond"
        self.get(path)
        before = self.upstream_hits()
        h = self.get(path, head=True)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("content-length"), "700")
        self.assertTrue(h.header("cache-status").startswith("edge; hit"))
        c = self.get(path, headers=[("If-None-Match", '"t1"')])
        self.assertEqual(c.status, 304)
        self.assertEqual(self.upstream_hits(), before)

    def test_unsafe_method_invalidates(self):
        path = f"/api/text?bytes=300&{PUBLIC}&case=inval"
        self.get(path)
        self.assertTrue(self.get(path).header("cache-status").startswith("edge; hit"))
        r = self.get(path, method="POST")
        self.assertEqual(r.status, 200)
        after = self.get(path)
        self.assertEqual(after.header("cache-status"), "edge; fwd=miss; stored", after)

    def test_max_object(self):
        path = f"/small/text?bytes=5000&{PUBLIC}&case=big"
        self.get(path)
        r = self.get(path)
        self.assertFalse((r.header("cache-status") or "").startswith("edge; hit"), r)
        self.assertEqual(len(r.body), 5000)

    def test_purge_by_url_prefix_and_tag(self):
        host = f"127.0.0.1:{self.edge.port}"
        paths = {
            "a": f"/api/text?bytes=100&{PUBLIC}&case=pa",
            "b": f"/api/text?bytes=100&{PUBLIC}&case=pb&tag=cards,user-7",
        }
        for p in paths.values():
            self.get(p)
            self.assertTrue(self.get(p).header("cache-status").startswith("edge; hit"))

        def purge(query, route="/__edge/purge", headers=()):
            return et.curl(f"http://{host}{route}?{query}", "-X", "POST", headers=list(headers))

        import urllib.parse
        r = purge("url=" + urllib.parse.quote(f"http://{host}{paths['a']}", safe=""))
        self.assertEqual(r.status, 200, r)
        self.assertIn(b'"purged":1', r.body)
        self.assertEqual(self.get(paths["a"]).header("cache-status"), "edge; fwd=miss; stored")
        r = purge("tag=user-7")
        self.assertIn(b'"purged":1', r.body)
        self.assertEqual(self.get(paths["b"]).header("cache-status"), "edge; fwd=miss; stored")
        r = purge("prefix=" + urllib.parse.quote(f"http://{host}/api/", safe=""))
        self.assertEqual(r.status, 200)
        self.assertNotIn(b'"purged":0', r.body)
        for p in paths.values():
            self.assertEqual(self.get(p).header("cache-status"), "edge; fwd=miss; stored")
        # the token route: without the token 403, with it 200; GET is refused
        self.assertEqual(purge("tag=x", "/__edge/purge-token").status, 403)
        ok = purge("tag=x", "/__edge/purge-token", headers=[("Authorization", "Bearer s3cret")])
        self.assertEqual(ok.status, 200, ok)
        self.assertEqual(et.curl(f"http://{host}/__edge/purge?tag=x").status, 405)
        self.assertEqual(purge("nothing=1").status, 400)

    def test_concurrent_misses_coalesce(self):
        # 100 clients at once for a URL the upstream takes 400 ms to answer: one fetch for the
        # whole edge (the workers share the lead), the others wait for it and get the stored copy.
        import http.client
        import threading
        path = f"/api/text?bytes=1000&{PUBLIC}&ms=400&case=coalesce"
        before = self.upstream_hits()
        results = []
        lock = threading.Lock()

        def one():
            c = http.client.HTTPConnection("127.0.0.1", self.edge.port, timeout=15)
            try:
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
                with lock:
                    results.append((r.status, len(body), r.getheader("Cache-Status")))
            finally:
                c.close()

        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        self.assertEqual(len(results), 100)
        self.assertTrue(all(st == 200 and n == 1000 for st, n, _ in results), results[:3])
        self.assertEqual(self.upstream_hits() - before, 1)
        self.assertEqual(sum(1 for *_, cs in results if cs == "edge; fwd=miss; stored"), 1)

    def test_status_on_every_response_and_if_modified_since(self):
        r = self.get(f"/api/text?bytes=10&{PUBLIC}&case=post", method="POST")
        self.assertEqual(r.header("cache-status"), "edge; fwd=method")
        r = self.get(f"/api/text?bytes=10&{PUBLIC}&case=rq", headers=[("Cache-Control", "no-store")])
        self.assertEqual(r.header("cache-status"), "edge; fwd=request")
        # If-Modified-Since against the stored Last-Modified
        path = f"/api/text?bytes=10&{PUBLIC}&case=ims&lm=Wed%2C%2021%20Oct%202015%2007%3A28%3A00%20GMT"
        self.get(path)
        r = self.get(path, headers=[("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT")])
        self.assertEqual(r.status, 304, r)
        self.assertTrue(r.header("cache-status").startswith("edge; hit"))
        r = self.get(path, headers=[("If-Modified-Since", "Tue, 20 Oct 2015 07:28:00 GMT")])
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), 10)

    def test_stale_while_revalidate(self):
        # max-age=2, stale-while-revalidate=30, the upstream takes 600 ms: once stale, the next
        # request gets the stale copy at once and one background fetch refreshes it.
        path = f"/api/text?bytes=300&cc=public,max-age=2,stale-while-revalidate=30&ms=600&case=swr"
        first = self.get(path)
        self.assertEqual(first.header("cache-status"), "edge; fwd=miss; stored")
        time.sleep(2.3)
        before = self.upstream_hits()
        t0 = time.monotonic()
        stale = self.get(path)
        took = time.monotonic() - t0
        self.assertEqual(stale.status, 200)
        self.assertIn("detail=stale-while-revalidate", stale.header("cache-status"), stale)
        self.assertEqual(stale.header("x-served"), first.header("x-served"))
        self.assertLess(took, 0.6, "the client waited for the refresh")
        # the refresh lands within the upstream's 600 ms; then a fresh hit with the new copy
        deadline = time.monotonic() + 5
        fresh = None
        while time.monotonic() < deadline:
            time.sleep(0.2)
            fresh = self.get(path)
            if fresh.header("x-served") != first.header("x-served"):
                break
        self.assertNotEqual(fresh.header("x-served"), first.header("x-served"), fresh)
        self.assertTrue(fresh.header("cache-status").startswith("edge; hit"), fresh)
        self.assertEqual(self.upstream_hits() - before, 1)

    def test_review_cases(self):
        """Each once a bug found in review."""
        import socket
        # %3F in the path is not the query: two different keys
        a = self.get(f"/api/text%3Fbytes=1?bytes=100&{PUBLIC}&case=q3f")
        b = self.get(f"/api/text?bytes=100&{PUBLIC}&case=q3f")
        self.assertEqual(b.header("cache-status"), "edge; fwd=miss; stored", b)
        self.assertNotEqual(a.status, 0)
        # the Host's port is part of the key (absolute links built from Host differ)
        path = f"/api/text?bytes=100&{PUBLIC}&case=port"
        self.get(path, headers=[("Host", "samia.example")])
        r = self.get(path, headers=[("Host", "samia.example:1337")])
        self.assertEqual(r.header("cache-status"), "edge; fwd=miss; stored", r)
        # a body the upstream gzipped itself never reaches a client that did not accept gzip
        path = f"/api/text?bytes=3000&{PUBLIC}&ce=gzip&case=upgz"
        self.get(path, headers=[("Accept-Encoding", "gzip")])
        plain = self.get(path)
        self.assertFalse((plain.header("cache-status") or "").startswith("edge; hit"), plain)
        # one Age on a hit even when the upstream sent its own
        # (the /text route sends none: checked on the stored copy's headers instead)
        path = f"/api/text?bytes=100&{PUBLIC}&case=age"
        self.get(path)
        raw = socket.create_connection(("127.0.0.1", self.edge.port), timeout=5)
        try:
            raw.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.edge.port}\r\n"
                        "Connection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = raw.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            raw.close()
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        self.assertEqual(head.count(b"\r\nage:"), 1, head)

    def test_unstorable_responses_are_not_serialised(self):
        # 20 clients at once for a URL whose response is never stored (no lifetime) and takes
        # 300 ms: each goes upstream without queueing behind the others.
        import threading
        path = "/api/text?bytes=100&cc=must-revalidate&ms=300&case=nostore-burst"
        before = self.upstream_hits()
        t0 = time.monotonic()
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.get(path))) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        took = time.monotonic() - t0
        self.assertEqual(len(results), 20)
        self.assertTrue(all(r.status == 200 for r in results))
        self.assertEqual(self.upstream_hits() - before, 20)
        self.assertLess(took, 3.0, "requests for an unstorable URL went one at a time")

    def test_request_no_cache_goes_upstream(self):
        path = f"/api/text?bytes=300&{PUBLIC}&case=reqnc"
        self.get(path)
        r = self.get(path, headers=[("Cache-Control", "no-cache")])
        self.assertFalse(r.header("cache-status").startswith("edge; hit"), r)


if __name__ == "__main__":
    unittest.main()


class CacheStale(tp.ProxyCase):
    """A stale copy: revalidated with its ETag (a 304 refreshes it), and served when the upstream
    fails within the route's grace (stale-if-error)."""
    listen = ["127.0.0.1:0"]
    upstream_specs = {"S": ("normal", {})}

    @classmethod
    def proxy_config(cls, ups):
        cls.up = ups["S"]
        return ([ut.pool_toml("api", [cls.up.address], tries=1, passive={"max_fails": 0})],
                [ut.proxy_route("/api/", "api", strip_prefix="/api",
                                cache={"ttl": "2h", "grace": "1h"})])

    def get(self, path, headers=()):
        return et.curl(f"http://127.0.0.1:{self.edge.port}{path}", headers=list(headers))

    def test_1_revalidation_with_a_304(self):
        # max-age=2, not 1: ages are whole seconds (RFC 9111), so a copy with max-age=1 is
        # fresh only until the next second boundary, and `again` below could cross one
        path = "/api/text?bytes=400&cc=public,max-age=2&etag=%22r1%22&case=reval"
        first = self.get(path)
        self.assertEqual(first.header("cache-status"), "edge; fwd=miss; stored")
        time.sleep(3.2)  # stale now (max-age=2)
        before = self.up.count()["not_modified"]
        r = self.get(path)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("cache-status"), "edge; fwd=stale; fwd-status=304; stored", r)
        self.assertEqual(r.body, first.body)
        # the 304's fields update the stored ones (RFC 9111 4.3.4): X-Served is the 304's
        self.assertNotEqual(r.header("x-served"), first.header("x-served"))
        self.assertEqual(self.up.count()["not_modified"], before + 1)
        again = self.get(path)
        self.assertTrue(again.header("cache-status").startswith("edge; hit"), again)

    def test_1b_304_set_cookie_never_shared(self):
        path = "/api/text?bytes=200&cc=public,max-age=1&etag=%22c1%22&case=ck&cookie=sid%3DB"
        # stored from an anonymous request? The response has Set-Cookie: not stored at all
        first = self.get(path)
        self.assertEqual(first.header("cache-status"), "edge; fwd=miss")
        # a public response without Set-Cookie, then a 304 carrying one (user B's rolling
        # session): B gets its cookie, the shared copy never does
        # (max-age=2 for the same reason as test_1: `again` must find the refreshed copy fresh)
        path = "/api/text?bytes=200&cc=public,max-age=2&etag=%22c2%22&case=ck2&cookie304=sid%3DB"
        self.get(path)
        time.sleep(3.2)
        r = self.get(path, headers=[("Cookie", "sid=B")])
        self.assertEqual(r.status, 200)
        self.assertIn("fwd-status=304", r.header("cache-status"))
        self.assertEqual(r.header("set-cookie"), "sid=B")
        again = self.get(path)
        self.assertTrue(again.header("cache-status").startswith("edge; hit"), again)
        self.assertIsNone(again.header("set-cookie"), again)

    def test_2_stale_if_error(self):
        path = "/api/text?bytes=400&cc=public,max-age=1&case=sie"
        first = self.get(path)
        self.assertEqual(first.status, 200)
        time.sleep(2.2)
        self.up.kill()  # SIGKILL by its PID: the pool has no server left
        r = self.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, first.body)
        self.assertIn("detail=stale-if-error", r.header("cache-status"))
        # a URL never stored still gets the JSON error
        r = self.get("/api/text?bytes=10&case=never")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.header("content-type"), "application/json")
