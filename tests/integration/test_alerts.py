"""Prometheus alerting rules (conf/alerts.yml) and the example scrape config, checked by promtool.

`promtool check rules`, `promtool check config` and the rule unit tests of tests/alerts_test.yml
(`promtool test rules`: each alert fires on a failing synthetic series and not on a healthy one).
Needs `promtool` (env PROMTOOL, else on PATH; Debian: apt-get install prometheus); skipped without it.
Does not start edge.
"""
import os
import shutil
import subprocess
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")


@unittest.skipUnless(PROMTOOL, "promtool not found: install Debian's `prometheus` package "
                               "(apt-get install -y --no-install-recommends prometheus) or set PROMTOOL")
class Alerts(unittest.TestCase):
    def promtool(self, *args):
        """Runs promtool from the repository root; fails with its whole output."""
        try:
            r = subprocess.run([PROMTOOL, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as e:
            self.fail(f"promtool {' '.join(args)} timed out after {e.timeout} s")
        out = f"$ promtool {' '.join(args)}  (exit {r.returncode})\n{r.stdout}{r.stderr}"
        self.assertEqual(r.returncode, 0, out)
        return out

    def test_check_rules(self):
        out = self.promtool("check", "rules", "conf/alerts.yml")
        self.assertIn("SUCCESS: 6 rules found", out)

    def test_rule_unit_tests(self):
        out = self.promtool("test", "rules", "tests/alerts_test.yml")
        self.assertIn("SUCCESS", out)
        self.assertNotIn("FAILED", out)

    def test_example_config(self):
        # Also loads the rule files it names (alerts.yml, relative to the config).
        out = self.promtool("check", "config", "conf/prometheus.example.yml")
        self.assertIn("SUCCESS", out)



class AlertsCovered(unittest.TestCase):
    def test_every_alert_is_unit_tested(self):
        with open(os.path.join(REPO, "conf", "alerts.yml"), encoding="utf-8") as f:
            alerts = {line.split(":", 1)[1].strip() for line in f if line.strip().startswith("- alert:")}
        with open(os.path.join(REPO, "tests", "alerts_test.yml"), encoding="utf-8") as f:
            tested = {line.split(":", 1)[1].strip() for line in f if line.strip().startswith("alertname:")}
        self.assertEqual(alerts, {"EdgeHighErrorRate", "EdgeSlowResponses", "EdgeDown", "EdgeUptime",
                                  "EdgeUpstreamDown", "EdgeConfigReloadFailed"})
        self.assertEqual(alerts - tested, set(), "alerts without a promtool unit test")


if __name__ == "__main__":
    unittest.main()
