"""Helpers for the operations tests (issue 8: /work/notes/issue8-contract.md): the admin listener,
Prometheus metrics, reloads and log reopening.  Used by test_admin.py, test_reload.py and
test_log_reopen.py; nothing here is a test itself.  Stdlib only.

- OpsEdge: edgetest.Edge that tells the admin listener's line (`admin listening on http://...`)
  apart from the ordinary listeners (`admin_port`), can tail an error-log FILE instead of stderr
  (`error_file=`), and waits for log lines (`wait_log`).
- parse_metrics(text) -> Metrics: a small parser of the Prometheus text format (0.0.4).
- listening_ports(pid): the TCP ports a process listens on (from /proc).
- OpsCase: one edge (+ upstream.js instances) per test class, with [admin] and extra sections.
"""
import base64
import hashlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import upstreamtest as ut  # noqa: E402

ADMIN_RE = re.compile(r"admin listening on http://127\.0\.0\.1:(\d+)")
METRICS_CT = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = ["0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2", "5", "10",
           "+Inf"]
PROMTOOL = os.environ.get("PROMTOOL_BIN") or shutil.which("promtool")


def q(s):
    return json.dumps(s)


def wait_until(pred, timeout=5.0, interval=0.05):
    """Polls pred() until it returns something truthy (returned) or timeout (the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        last = pred()
        if last or time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def free_port():
    """A loopback port nothing listens on right now (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# The process


class OpsEdge(et.Edge):
    """An Edge whose admin listener's line is not mistaken for an ordinary listener.

    error_file: the `[log] error` path; its lines are tailed (following a rename: the old file is
    read to its end, then the new one at that path) and parsed like stderr's."""

    def __init__(self, config_path, error_file=None, **kw):
        super().__init__(config_path, **kw)
        self.admin_port = None
        self.admin_ports = []  # every admin line seen (a reload may open it again)
        self.error_file = error_file
        self._tail_stop = threading.Event()
        self._tail = None

    def _feed(self, line):
        with self._cond:
            self.stderr_lines.append(line)
            m = ADMIN_RE.search(line)
            if m:
                self.admin_port = int(m.group(1))
                self.admin_ports.append(self.admin_port)
            else:
                m = et.LISTEN_RE.search(line)
                if m:
                    self.listening.append((m.group(2), int(m.group(3))))
                    self.listeners.append((m.group(1), m.group(2), int(m.group(3))))
            self._cond.notify_all()

    def _read_stderr(self):
        for raw_line in self.proc.stderr:
            self._feed(raw_line.decode("utf-8", "replace").rstrip("\n"))

    def _tail_file(self):
        fh, ino, pending = None, None, b""
        while True:
            stopping = self._tail_stop.is_set()
            if fh is None:
                try:
                    fh = open(self.error_file, "rb")
                    ino = os.fstat(fh.fileno()).st_ino
                except FileNotFoundError:
                    fh = None
            if fh is not None:
                data = fh.read()
                if data:
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for ln in lines:
                        self._feed(ln.decode("utf-8", "replace"))
                else:
                    try:
                        now = os.stat(self.error_file).st_ino
                    except FileNotFoundError:
                        now = None
                    if now is not None and now != ino:  # renamed away and a new file created
                        fh.close()
                        fh, pending = None, b""
                        continue
            if stopping:
                break
            time.sleep(0.02)
        if fh is not None:
            fh.close()

    def start(self, timeout=10.0):
        if self.error_file and self._tail is None:
            self._tail = threading.Thread(target=self._tail_file, daemon=True)
            self._tail.start()
        return super().start(timeout)

    def _close(self):
        if self._tail is not None and not self.running():
            self._tail_stop.set()
            self._tail.join(2)
        super()._close()

    def wait_admin(self, timeout=5.0):
        with self._cond:
            deadline = time.monotonic() + timeout
            while self.admin_port is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
        return self.admin_port

    def line_count(self):
        with self._lock:
            return len(self.stderr_lines)

    def lines_since(self, n=0):
        with self._lock:
            return list(self.stderr_lines[n:])

    def wait_log(self, pattern, count=1, since=0, timeout=5.0):
        """Waits until `count` lines after index `since` match the regex; returns the matching lines
        (fewer on timeout)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [ln for ln in self.stderr_lines[since:] if rx.search(ln)]
                left = deadline - time.monotonic()
                if len(hits) >= count or left <= 0:
                    return hits
                self._cond.wait(min(left, 0.1))


def proc_status_kb(pid, field="VmRSS"):
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def rss_kb(pid):
    return proc_status_kb(pid, "VmRSS")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    """User + system CPU time of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Peak VmRSS (kB) of `pid` while the block runs (sampled every 10 ms, plus VmHWM if it rose)."""

    def __init__(self, pid):
        self.pid = pid
        self.base = proc_status_kb(pid, "VmRSS")
        self.hwm0 = proc_status_kb(pid, "VmHWM")
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, proc_status_kb(self.pid, "VmRSS"))
            except (OSError, AssertionError):
                return
            time.sleep(0.01)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(2)
        try:
            hwm = proc_status_kb(self.pid, "VmHWM")
        except (OSError, AssertionError):
            return
        if hwm > self.hwm0:
            self.peak = max(self.peak, hwm)

    @property
    def growth_kb(self):
        return self.peak - self.base


def listening_ports(pid):
    """The set of TCP ports the process `pid` has sockets listening on (IPv4 and IPv6)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            t = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# ---------------------------------------------------------------------------------------------
# HTTP to the admin listener


def http(port, path, method="GET", headers=None, token=None, body=b"", host="localhost", timeout=5.0):
    """One request on a fresh connection (Connection: close); returns an edgetest.Response."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if token is not None:
        hs.append(("Authorization", f"Bearer {token}"))
    if body:
        hs.append(("Content-Length", str(len(body))))
    hs.append(("Connection", "close"))
    return et.raw_one(port, et.request(path, method, hs, host, body=body), method, timeout)


# ---------------------------------------------------------------------------------------------
# Prometheus text format

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MetricsError(ValueError):
    pass


class Metrics:
    """Parsed exposition: samples [(name, labels dict, value)], types {family: type}, helps."""

    def __init__(self):
        self.samples = []
        self.types = {}
        self.helps = {}
        self.text = ""

    def find(self, name, labels=None):
        """[(labels, value)] of the samples named `name` whose labels include `labels`."""
        want = labels or {}
        return [(ls, v) for n, ls, v in self.samples
                if n == name and all(ls.get(k) == x for k, x in want.items())]

    def get(self, name, labels=None):
        """The value of the one sample with exactly these labels, or None."""
        want = labels or {}
        for n, ls, v in self.samples:
            if n == name and ls == want:
                return v
        return None

    def sum(self, name, labels=None):
        return sum(v for _, v in self.find(name, labels))

    def label_values(self, name, label):
        return sorted({ls.get(label) for ls, _ in self.find(name)})

    def family(self, sample_name):
        """The family a sample belongs to (histogram/summary suffixes stripped when typed so)."""
        for suf in ("_bucket", "_sum", "_count", "_created"):
            if sample_name.endswith(suf):
                base = sample_name[: -len(suf)]
                if self.types.get(base) in ("histogram", "summary"):
                    return base
        return sample_name

    def histogram(self, name, labels=None):
        """{"buckets": [(le string, cumulative count)] in file order, "sum", "count"} of one series."""
        want = dict(labels or {})
        buckets = [(ls["le"], v) for ls, v in self.find(name + "_bucket", want)
                   if {k: x for k, x in ls.items() if k != "le"} == want]
        return {"buckets": buckets, "sum": self.get(name + "_sum", want), "count": self.get(name + "_count", want)}


def _parse_labels(line, i, lineno):
    labels = {}
    assert line[i] == "{"
    i += 1
    while True:
        while i < len(line) and line[i] == " ":
            i += 1
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        m = _LABEL_RE.match(line, i)
        if not m:
            raise MetricsError(f"line {lineno}: bad label name at {line[i:i + 20]!r}")
        lname = m.group(0)
        i = m.end()
        if line[i:i + 2] != '="':
            raise MetricsError(f"line {lineno}: expected =\" after label {lname}")
        i += 2
        val = []
        while True:
            if i >= len(line):
                raise MetricsError(f"line {lineno}: unterminated label value")
            c = line[i]
            if c == "\\":
                nxt = line[i + 1:i + 2]
                if nxt == "n":
                    val.append("\n")
                elif nxt in ("\\", '"'):
                    val.append(nxt)
                else:
                    raise MetricsError(f"line {lineno}: bad escape \\{nxt}")
                i += 2
                continue
            if c == '"':
                i += 1
                break
            val.append(c)
            i += 1
        if lname in labels:
            raise MetricsError(f"line {lineno}: label {lname} twice")
        labels[lname] = "".join(val)
        while i < len(line) and line[i] == " ":
            i += 1
        if i < len(line) and line[i] == ",":
            i += 1
        elif i < len(line) and line[i] == "}":
            return labels, i + 1
        else:
            raise MetricsError(f"line {lineno}: expected , or }} after label {lname}")


def _parse_value(tok, lineno):
    if tok in ("+Inf", "-Inf", "NaN"):
        return float(tok)
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", tok):
        raise MetricsError(f"line {lineno}: bad value {tok!r}")
    return float(tok)


def parse_metrics(text):
    """Parses the text format strictly enough for the tests; raises MetricsError on a bad line,
    a sample before/without its family's TYPE, a TYPE after the family's samples, duplicates."""
    m = Metrics()
    m.text = text
    seen = set()
    sampled_families = set()
    if text and not text.endswith("\n"):
        raise MetricsError("the exposition does not end with a newline")
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                fam = parts[2]
                if not _NAME_RE.fullmatch(fam):
                    raise MetricsError(f"line {lineno}: bad metric name {fam!r}")
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "TYPE":
                    if fam in m.types:
                        raise MetricsError(f"line {lineno}: second TYPE for {fam}")
                    if fam in sampled_families:
                        raise MetricsError(f"line {lineno}: TYPE for {fam} after its samples")
                    if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                        raise MetricsError(f"line {lineno}: bad type {rest!r}")
                    m.types[fam] = rest
                else:
                    if fam in m.helps:
                        raise MetricsError(f"line {lineno}: second HELP for {fam}")
                    m.helps[fam] = rest
            continue
        nm = _NAME_RE.match(line)
        if not nm:
            raise MetricsError(f"line {lineno}: bad sample line {line!r}")
        name = nm.group(0)
        i = nm.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i, lineno)
        rest = line[i:].split()
        if not rest or len(rest) > 2 or (i < len(line) and line[i] not in " \t"):
            raise MetricsError(f"line {lineno}: bad sample line {line!r}")
        value = _parse_value(rest[0], lineno)
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise MetricsError(f"line {lineno}: duplicate sample {line!r}")
        seen.add(key)
        m.samples.append((name, labels, value))
        sampled_families.add(m.family(name))
    return m


def check_histogram(tc, m, name, labels=None, bounds=None):
    """Asserts one histogram series is well formed (bucket bounds ascending and ending with +Inf,
    or exactly `bounds` when given); returns its (count, sum)."""
    h = m.histogram(name, labels)
    what = f"{name}{labels or {}}"
    les = [le for le, _ in h["buckets"]]
    if bounds is not None:
        tc.assertEqual(les, bounds, f"{what}: bucket bounds")
    tc.assertTrue(les and les[-1] == "+Inf", f"{what}: the last bucket is +Inf: {les}")
    tc.assertEqual([float(x) for x in les], sorted(float(x) for x in les), f"{what}: bounds ascending")
    counts = [v for _, v in h["buckets"]]
    tc.assertEqual(counts, sorted(counts), f"{what}: buckets not cumulative/monotone: {h['buckets']}")
    tc.assertIsNotNone(h["count"], f"{what}: no _count")
    tc.assertIsNotNone(h["sum"], f"{what}: no _sum")
    tc.assertEqual(counts[-1], h["count"], f"{what}: +Inf bucket != _count")
    tc.assertGreaterEqual(h["sum"], 0, what)
    return h["count"], h["sum"]


def promtool_check(text):
    """(returncode, output) of `promtool check metrics` on the text, or None without promtool."""
    if not PROMTOOL:
        return None
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def csp_hash(data):
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


# ---------------------------------------------------------------------------------------------
# Config pieces


def admin_toml(listen="127.0.0.1:0", token=None):
    out = ["", "[admin]", f"listen = {q(listen)}"]
    if token is not None:
        out.append(f"token = {q(token)}")
    return "\n".join(out) + "\n"


def static_route(root="site", headers=None, **keys):
    """A [[route]] serving `root`; keys: raw Python values (strings quoted, dicts inline)."""
    out = ["", "[[route]]"]
    for k, v in keys.items():
        out.append(f"{k} = {ut._val(v)}")
    out.append(f"root = {q(root)}")
    if headers:
        out.append(f"headers = {ut._val(headers)}")
    return "\n".join(out) + "\n"


HEALTH_ROUTE = '\n[[route]]\npath = "/health"\nhealth = true\n'


# ---------------------------------------------------------------------------------------------
# One edge per class


class OpsCase(unittest.TestCase):
    """Starts `upstream_specs` (name -> (mode, kwargs)), writes edgetest's config with the text of
    `config_text(ups)` after the listeners (sections and routes), starts OpsEdge; stops it all by
    PID afterwards (edge must exit 0 on SIGTERM)."""

    server_opts = {"workers": "2"}
    log_opts = {}
    listen = ["127.0.0.1:0"]
    upstream_specs = {}
    has_admin = True
    file_logs = False  # True: [log] access and error to files in <tmp>/logs/ (error tailed)
    maxDiff = 6000

    @classmethod
    def prepare_site(cls, site):
        pass

    @classmethod
    def config_text(cls, ups):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-ops-")
        cls.ups = {}
        try:
            cls.site = et.Site(cls.tmp)
            cls.prepare_site(cls.site)
            for name, (mode, kw) in cls.upstream_specs.items():
                cls.ups[name] = ut.Upstream(name, mode, **kw).start()
            cls.access_log = os.path.join(cls.tmp, "access.log")
            cls.error_log = None
            log = dict(cls.log_opts)
            if cls.file_logs:
                os.makedirs(os.path.join(cls.tmp, "logs"))
                cls.access_log = os.path.join(cls.tmp, "logs", "access.log")
                cls.error_log = os.path.join(cls.tmp, "logs", "error.log")
                log["error"] = q(cls.error_log)
            cls.config_path = os.path.join(cls.tmp, "edge.toml")
            text = et.make_config(cls.site, cls.access_log, server=cls.server_opts, listen=cls.listen,
                                  routes=cls.config_text(cls.ups), log=log)
            with open(cls.config_path, "w") as f:
                f.write(text)
            cls.edge = OpsEdge(cls.config_path, error_file=cls.error_log,
                               expect_hosts={et.listen_host(a) for a in cls.listen},
                               expect_count=len(cls.listen)).start()
            cls.port = cls.edge.port
            if cls.has_admin:
                if cls.edge.wait_admin() is None:
                    raise et.EdgeError("no 'admin listening on http://127.0.0.1:PORT' line; stderr:\n"
                                       + cls.edge.stderr_text())
            cls.admin_port = cls.edge.admin_port
        except BaseException:
            try:
                if getattr(cls, "edge", None) is not None:
                    cls.edge.kill()
            finally:
                ut.stop_all(cls.ups.values())
                shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.edge.settle()
            rc = cls.edge.stop()
            if rc != 0:
                raise AssertionError(f"edge did not exit 0 on SIGTERM (rc={rc}); stderr tail:\n"
                                     + "\n".join(cls.edge.stderr_lines[-30:]))
        finally:
            ut.stop_all(cls.ups.values())
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------
    token = None

    def get(self, path, method="GET", headers=None, host="localhost", body=b""):
        return http(self.port, path, method, headers, body=body, host=host)

    def admin(self, path, method="GET", token="default", headers=None):
        tok = self.token if token == "default" else token
        return http(self.admin_port, path, method, headers, token=tok)

    def metrics(self):
        r = self.admin("/metrics")
        self.assertEqual(r.status, 200, f"/metrics: {r!r}")
        try:
            return parse_metrics(r.body.decode("utf-8"))
        except MetricsError as e:
            self.fail(f"/metrics does not parse: {e}\n{r.body.decode('utf-8', 'replace')[:3000]}")

    def status_json(self):
        r = self.admin("/status.json")
        self.assertEqual(r.status, 200, f"/status.json: {r!r}")
        return json.loads(r.body)

    def wait_metric(self, name, labels, target, timeout=3.0):
        """Polls /metrics until sum(name{labels}) >= target (counters are updated once the last
        byte went to the kernel, a moment after the client may have read it); then waits a little
        more so a value going past the target would be seen too.  Returns the last Metrics."""
        wait_until(lambda: self.metrics().sum(name, labels) >= target, timeout)
        time.sleep(0.15)
        return self.metrics()
