"""Log files and SIGUSR1 (issue 8, /work/notes/issue8-contract.md).

- access and error logs written to files; both moved away (as logrotate does); SIGUSR1: new files
  are created at the configured paths and get the new lines, the moved files keep only the old
  ones; "SIGUSR1: logs reopened" is logged; 2 workers (each buffers its own access-log lines)
- the access log's new fields: `route` (the route's label: name, pattern, `~regex`, `host/pattern`,
  "-" when none), `upstream` ("127.0.0.1:PORT" or ""), `upstream_ms` (number or null), `cache`
  ("miss", "hit", or "" without cache), `rate_limit` ("allowed", "limited", or "" without a limit)
"""
import json
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import opstest as ops  # noqa: E402
import upstreamtest as ut  # noqa: E402

PUBLIC = "cc=public,max-age=60"
NEW_FIELDS = ("route", "upstream", "upstream_ms", "cache", "rate_limit")


def read_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()


def read_docs(path):
    return [json.loads(ln) for ln in read_lines(path) if ln.strip()]


class FileLogCase(ops.OpsCase):
    file_logs = True
    has_admin = False
    upstream_specs = {"U": ("normal", {})}

    @classmethod
    def prepare_site(cls, site):
        site.write("/limited/a.txt", b"EDGETEST-LIMITED\n")
        site.write("/named.txt", b"EDGETEST-NAMED\n")
        site.write("/h/x.txt", b"EDGETEST-HOSTED\n")
        site.write("/re/x.txt", b"EDGETEST-REGEX\n")

    @classmethod
    def config_text(cls, ups):
        cls.up = ups["U"]
        return (ut.pool_toml("api", [cls.up.address])
                + ops.HEALTH_ROUTE
                + ut.proxy_route("/api/", "api", strip_prefix="/api")
                + ut.proxy_route("/cached/", "api", strip_prefix="/cached", cache={"ttl": "2h"})
                + ops.static_route(prefix="/limited/", rate_limit={"requests": 1, "window": "60s"})
                + ops.static_route(path="/named.txt", name="named")
                + ops.static_route(host="api.test", prefix="/h/")
                + ops.static_route(regex="^/re/")
                + ops.static_route(prefix="/", spa_fallback="/index.html"))

    def req(self, path, rid, host="localhost"):
        return self.get(path, headers=[("X-Request-Id", rid)], host=host)

    def find(self, rid, path=None, timeout=3.0):
        path = path or self.access_log
        found = ops.wait_until(lambda: [d for d in read_docs(path) if d.get("request_id") == rid], timeout)
        if not found:
            self.fail(f"no access-log line with request_id {rid!r} in {path}; tail:\n"
                      + "\n".join(read_lines(path)[-5:]))
        self.assertEqual(len(found), 1, found)
        return found[0]


class AccessLogFields(FileLogCase):
    def check(self, doc, route, upstream, cache="", rate_limit=""):
        for k in NEW_FIELDS:
            self.assertIn(k, doc, f"field {k} missing: {doc}")
        self.assertEqual(doc["route"], route, doc)
        self.assertEqual(doc["cache"], cache, doc)
        self.assertEqual(doc["rate_limit"], rate_limit, doc)
        if upstream is None:
            self.assertEqual(doc["upstream"], "", doc)
            self.assertIsNone(doc["upstream_ms"], doc)
        else:
            self.assertEqual(doc["upstream"], upstream, doc)
            self.assertIsInstance(doc["upstream_ms"], (int, float), doc)
            self.assertNotIsInstance(doc["upstream_ms"], bool, doc)
            self.assertGreaterEqual(doc["upstream_ms"], 0, doc)
            self.assertLessEqual(doc["upstream_ms"], doc["duration_ms"] + 1, doc)

    def test_static(self):
        self.assertEqual(self.req("/logo.svg", "f-static").status, 200)
        self.check(self.find("f-static"), "/", None)

    def test_spa_404(self):
        self.assertEqual(self.req("/nope.png", "f-404").status, 404)
        doc = self.find("f-404")
        self.assertEqual(doc["status"], 404)
        self.check(doc, "/", None)

    def test_proxied(self):
        r = self.req("/api/json", "f-proxy")
        self.assertEqual((r.status, r.header("x-upstream")), (200, "U"))
        self.check(self.find("f-proxy"), "/api/", self.up.address)

    def test_proxied_slow_upstream_ms(self):
        self.assertEqual(self.req("/api/slow?ms=300", "f-slow").status, 200)
        doc = self.find("f-slow")
        self.check(doc, "/api/", self.up.address)
        self.assertGreaterEqual(doc["upstream_ms"], 250, "time to the upstream's response head, in ms")
        self.assertLess(doc["upstream_ms"], 5000, doc)

    def test_cache_miss_then_hit(self):
        path = f"/cached/text?bytes=100&{PUBLIC}&case=log"
        a = self.req(path, "f-miss")
        b = self.req(path, "f-hit")
        self.assertEqual(a.header("cache-status"), "edge; fwd=miss; stored")
        self.assertTrue(b.header("cache-status").startswith("edge; hit"), b)
        self.check(self.find("f-miss"), "/cached/", self.up.address, cache="miss")
        self.check(self.find("f-hit"), "/cached/", None, cache="hit")

    def test_rate_limited(self):
        self.assertEqual(self.req("/limited/a.txt", "f-allowed").status, 200)
        self.assertEqual(self.req("/limited/a.txt", "f-limited").status, 429)
        self.check(self.find("f-allowed"), "/limited/", None, rate_limit="allowed")
        doc = self.find("f-limited")
        self.assertEqual(doc["status"], 429)
        self.check(doc, "/limited/", None, rate_limit="limited")

    def test_route_labels(self):
        self.assertEqual(self.req("/named.txt", "f-named").status, 200)
        self.check(self.find("f-named"), "named", None)
        r = self.req("/h/x.txt", "f-host", host="api.test")
        self.assertEqual((r.status, r.body), (200, b"EDGETEST-HOSTED\n"))
        doc = self.find("f-host")
        # `host/pattern`: the contract leaves open whether the pattern's own leading slash stays
        self.assertIn(doc["route"], ("api.test/h/", "api.test//h/"), doc)
        self.check(doc, doc["route"], None)
        r = self.req("/re/x.txt", "f-regex")
        self.assertEqual((r.status, r.body), (200, b"EDGETEST-REGEX\n"))
        self.check(self.find("f-regex"), "~^/re/", None)
        self.assertEqual(self.req("/health", "f-health").status, 200)
        self.check(self.find("f-health"), "/health", None)
        self.assertEqual(self.req("/%00", "f-noroute").status, 400)
        doc = self.find("f-noroute")
        self.assertEqual(doc["status"], 400)
        self.check(doc, "-", None)

    def test_every_line_has_the_fields(self):
        self.req("/logo.svg", "f-every")
        self.find("f-every")
        for doc in read_docs(self.access_log):
            for k in NEW_FIELDS:
                self.assertIn(k, doc, doc)


class LogReopen(FileLogCase):
    def batch(self, prefix, n=6):
        rids = [f"{prefix}-{i}" for i in range(n)]
        for rid in rids:  # each on its own connection: both workers serve some
            self.assertEqual(self.req("/logo.svg" if rid[-1] in "02468" else "/api/json", rid).status, 200)
        return rids

    def test_sigusr1_reopens_moved_logs(self):
        acc, err = self.access_log, self.error_log
        acc_old, err_old = acc + ".1", err + ".1"
        before = self.batch("before")
        for rid in before:
            self.find(rid)
        self.assertTrue(any("listening on" in ln for ln in read_lines(err)), "the error log is the file")
        os.rename(acc, acc_old)
        os.rename(err, err_old)
        between = self.batch("between", 2)  # still written to the moved files (the same open files)
        for rid in between:
            self.find(rid, acc_old)
        self.edge.settle()
        self.edge.signal(signal.SIGUSR1)
        reopened = ops.wait_until(
            lambda: any("SIGUSR1: logs reopened" in ln for ln in read_lines(err) + read_lines(err_old)), 5)
        self.assertTrue(reopened, "no 'SIGUSR1: logs reopened' line; new error log:\n" + "\n".join(read_lines(err))
                        + "\nmoved error log tail:\n" + "\n".join(read_lines(err_old)[-5:]))
        self.assertTrue(ops.wait_until(lambda: os.path.exists(err), 3), "no new error log after SIGUSR1")
        after = self.batch("after")
        for rid in after:
            self.find(rid, acc)
        # an error-log line after the reopen goes to the new file
        n = self.edge.line_count()
        self.edge.signal(signal.SIGHUP)
        self.assertTrue(self.edge.wait_log(r"SIGHUP: configuration reloaded", 1, since=n, timeout=5),
                        "no reload line after SIGHUP:\n" + "\n".join(self.edge.lines_since(n)))
        time.sleep(0.3)
        new_ids = {d.get("request_id") for d in read_docs(acc)}
        old_ids = {d.get("request_id") for d in read_docs(acc_old)}
        self.assertTrue(set(after) <= new_ids, (after, new_ids))
        self.assertFalse(set(before + between) & new_ids, "old lines in the new access log")
        self.assertTrue(set(before + between) <= old_ids, (before + between, old_ids))
        self.assertFalse(set(after) & old_ids, "new lines in the moved access log")
        new_err, old_err = read_lines(err), read_lines(err_old)
        self.assertTrue(any("SIGHUP: configuration reloaded" in ln for ln in new_err),
                        "the reload line is not in the new error log:\n" + "\n".join(new_err))
        self.assertFalse(any("SIGHUP" in ln for ln in old_err), "a line after the reopen went to the moved file")
        self.assertTrue(any("listening on" in ln for ln in old_err))
        self.assertFalse(any("listening on" in ln for ln in new_err), "the new error log starts empty")
        self.assertTrue(any("SIGUSR1: logs reopened" in ln for ln in new_err),
                        "'SIGUSR1: logs reopened' is written to the reopened (new) error log")
        for path in (acc, acc_old):
            for ln in read_lines(path):
                json.loads(ln)  # every line whole: nothing cut between the files


if __name__ == "__main__":
    unittest.main()
