"""/health: JSON shape."""
import json
import os
import re
import sys
import time
import unittest
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


class Health(et.EdgeTestCase):
    def fetch(self):
        r = et.curl(self.url("/health"))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.status, 200, r)
        return r, json.loads(r.body)

    def test_shape(self):
        r, doc = self.fetch()
        self.assertEqual(r.media_type(), "application/json")
        self.assertEqual(set(doc), {"status", "timestamp", "uptime", "version", "checks"}, doc)
        self.assertEqual(doc["status"], "OK")
        self.assertRegex(doc["timestamp"], ISO_RE)
        self.assertIsInstance(doc["uptime"], (int, float))
        self.assertNotIsInstance(doc["uptime"], bool)
        self.assertGreaterEqual(doc["uptime"], 0)
        self.assertLess(doc["uptime"], 600)
        self.assertRegex(doc["version"], r"^\d+\.\d+\.\d+")
        self.assertIsInstance(doc["checks"], dict)

    def test_timestamp_is_now(self):
        _, doc = self.fetch()
        ts = doc["timestamp"].replace("Z", "+00:00")
        t = datetime.fromisoformat(ts)
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        self.assertLess(abs(t.timestamp() - time.time()), 5, doc["timestamp"])

    def test_uptime_grows(self):
        _, a = self.fetch()
        time.sleep(1.1)
        _, b = self.fetch()
        self.assertGreater(b["uptime"], a["uptime"])

    def test_content_length_and_request_id(self):
        r, _ = self.fetch()
        self.assertEqual(r.header("content-length"), str(len(r.body)))
        self.assertIsNotNone(r.header("x-request-id"))

    def test_head(self):
        h = self.get("/health", method="HEAD")
        self.assertStatus(h, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.media_type(), "application/json")

    def test_version_matches_cli(self):
        import subprocess
        out = subprocess.run([et.EDGE_BIN, "--version"], capture_output=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        _, doc = self.fetch()
        self.assertIn(doc["version"], (out.stdout + out.stderr).decode())


if __name__ == "__main__":
    unittest.main()
