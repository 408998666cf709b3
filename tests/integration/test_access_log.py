"""Access log: one JSON object per line, the documented fields, the right status and bytes."""
import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

FIELDS = {"time", "request_id", "client_ip", "method", "path", "status", "bytes", "duration_ms", "user_agent",
          "referer"}


class AccessLog(et.EdgeTestCase):
    def lines(self):
        try:
            with open(self.access_log, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return data.decode("utf-8").splitlines()

    def find(self, request_id, timeout=3.0):
        """The parsed log entry with this request id (polls: the log may be flushed late)."""
        deadline = time.monotonic() + timeout
        while True:
            for ln in self.lines():
                try:
                    doc = json.loads(ln)
                except ValueError:
                    continue
                if doc.get("request_id") == request_id:
                    return doc
            if time.monotonic() > deadline:
                self.fail(f"no access log line with request_id {request_id!r}; log:\n" + "\n".join(self.lines()[-10:]))
            time.sleep(0.1)

    def raw_get(self, path, rid, method="GET", extra=()):
        """Returns (response, total bytes on the wire for this response)."""
        data = et.request(path, method, [("X-Request-Id", rid), ("User-Agent", "edgetest/1.0 (log)"),
                                         ("Referer", "http://ref.example/page?a=1")] + list(extra),
                          version="HTTP/1.1")
        data = data.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        buf, closed = et.raw(self.port, data, timeout=3)
        rs, _ = et.parse_all(buf, methods=[method], closed=True)
        return rs[0], len(buf)

    def test_fields_present(self):
        r, _ = self.raw_get("/logo.svg", "log-fields")
        self.assertStatus(r, 200)
        doc = self.find("log-fields")
        self.assertEqual(set(doc) & FIELDS, FIELDS, f"missing: {FIELDS - set(doc)}")
        self.assertEqual(doc["method"], "GET")
        self.assertEqual(doc["path"], "/logo.svg")
        self.assertEqual(doc["status"], 200)
        self.assertEqual(doc["client_ip"], "127.0.0.1")
        self.assertEqual(doc["user_agent"], "edgetest/1.0 (log)")
        self.assertEqual(doc["referer"], "http://ref.example/page?a=1")
        self.assertIsInstance(doc["duration_ms"], (int, float))
        self.assertGreaterEqual(doc["duration_ms"], 0)
        self.assertLess(doc["duration_ms"], 5000)
        self.assertIsInstance(doc["time"], str)
        self.assertRegex(doc["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")

    def assert_bytes(self, doc, body_len, wire_len):
        # "bytes" is the body size (nginx $body_bytes_sent) or everything sent ($bytes_sent)
        self.assertIsInstance(doc["bytes"], int)
        self.assertIn(doc["bytes"], (body_len, wire_len), doc)

    def test_status_and_bytes_200(self):
        r, wire = self.raw_get("/logo.svg", "log-200")
        doc = self.find("log-200")
        self.assertEqual(doc["status"], 200)
        self.assert_bytes(doc, 1024, wire)

    def test_status_and_bytes_big(self):
        r, wire = self.raw_get("/blob.bin", "log-big")
        self.assertEqual(len(r.body), et.BLOB_SIZE)
        doc = self.find("log-big")
        self.assert_bytes(doc, et.BLOB_SIZE, wire)

    def test_404(self):
        r, wire = self.raw_get("/nope.png", "log-404")
        self.assertStatus(r, 404)
        doc = self.find("log-404")
        self.assertEqual(doc["status"], 404)
        self.assertEqual(doc["path"], "/nope.png")
        self.assert_bytes(doc, len(r.body), wire)

    def test_206(self):
        r, wire = self.raw_get("/blob.bin", "log-206", extra=[("Range", "bytes=0-99")])
        self.assertStatus(r, 206)
        doc = self.find("log-206")
        self.assertEqual(doc["status"], 206)
        self.assert_bytes(doc, 100, wire)

    def test_304(self):
        etag = self.get("/logo.svg").header("etag")
        r, wire = self.raw_get("/logo.svg", "log-304", extra=[("If-None-Match", etag)])
        self.assertStatus(r, 304)
        doc = self.find("log-304")
        self.assertEqual(doc["status"], 304)
        self.assert_bytes(doc, 0, wire)

    def test_head(self):
        r, wire = self.raw_get("/logo.svg", "log-head", method="HEAD")
        doc = self.find("log-head")
        self.assertEqual(doc["method"], "HEAD")
        self.assertEqual(doc["status"], 200)
        self.assert_bytes(doc, 0, wire)

    def test_spa_fallback_logged_with_request_path(self):
        r, wire = self.raw_get("/readings/42", "log-spa")
        doc = self.find("log-spa")
        self.assertEqual(doc["status"], 200)
        self.assertEqual(doc["path"], "/readings/42")
        self.assert_bytes(doc, len(et.INDEX_HTML), wire)

    def test_405(self):
        r, _ = self.raw_get("/index.html", "log-405", method="DELETE")
        self.assertStatus(r, 405)
        self.assertEqual(self.find("log-405")["status"], 405)

    def test_generated_request_id_logged(self):
        r = self.get("/logo.svg")
        rid = r.header("x-request-id")
        doc = self.find(rid)
        self.assertEqual(doc["path"], "/logo.svg")

    def test_every_line_is_json(self):
        self.raw_get("/index.html", "log-json-1")
        self.raw_get("/index.html", "log-json-\"quoted\"")  # malformed id: replaced, not injected
        self.raw_get("/weird%22path%3C%3E%5C.png", "log-json-2")
        self.find("log-json-2")
        lines = self.lines()
        self.assertTrue(lines)
        for ln in lines:
            doc = json.loads(ln)  # raises on a bad line
            self.assertIsInstance(doc, dict)
            self.assertTrue(FIELDS <= set(doc), ln)

    def test_one_line_per_request(self):
        before = len(self.lines())
        with et.Conn(self.port) as c:
            c.send(b"".join(et.request("/logo.svg", headers=[("X-Request-Id", f"log-count-{i}")]) for i in range(5)))
            for _ in range(5):
                c.read_response()
        self.find("log-count-4")
        ids = [json.loads(ln).get("request_id") for ln in self.lines()[before:]]
        self.assertEqual(sorted(i for i in ids if str(i).startswith("log-count-")),
                         [f"log-count-{i}" for i in range(5)])


if __name__ == "__main__":
    unittest.main()
