"""Faults under load (issue 10): wrk keeps 8-16 connections busy on edge for a bounded time (at most
12 s) while one thing goes wrong, then: 0 socket errors and 0 non-2xx responses wherever a healthy
path existed, and edge's memory (VmRSS) back near the steady state measured after a warm-up run.

1. a pool of two upstream.js (tries = 2, passive health): one SIGKILLed under load, restarted on
   the same port 3 s later; it takes traffic again (its fresh counters move)
2. a pool member that turns into a black hole (accepts, never reads or answers) beside a healthy
   one: upstream header_timeout 1 s, tries = 2
3. a member that starts cutting its responses mid-body (head with Content-Length, half the body,
   FIN): the cut must reach the client as a connection closed short of Content-Length (never a
   complete-looking body), and stop once passive health took the member out;
   3b. the same failure before anything reached the client (a head cut by the close, FIN before
   any byte): an idempotent GET must then go to the healthy member
4. a 1 MiB static file replaced every 50 ms while wrk and two checking clients fetch it: by
   atomic rename (every body entirely the old or the new content, its ETag naming that version);
   4b. by in-place truncate + rewrite (reported: what clients see then)
5. a full cache ([cache] size = 1m, every request a new URL): 0 errors, edge_cache_bytes never above
   the capacity (sampled every 100 ms), constant evictions, RSS bounded

On edge as of 04395dc, 2 and 3b fail: a GET whose server never answered (header_timeout)
or cut its response head is answered 504 / 502 instead of going to the healthy member (about 16
and 4 requests per run; see the assertion messages for the lines of server/proxy_session.cpp).

Each case prints a `[faults]` line to stderr with its numbers.  Needs `wrk` (WRK_BIN) and `node`
(NODE_BIN); only 127.0.0.1.  Every process is stopped by its own PID.

    EDGE_BIN=build/edge python3 -m unittest -v tests/hardening/test_faults.py
"""
import collections
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import edgetest as et  # noqa: E402
import opstest as ops  # noqa: E402
import upstreamtest as ut  # noqa: E402

WRK = os.environ.get("WRK_BIN") or shutil.which("wrk")
HAVE_NODE = bool(shutil.which(ut.NODE) or os.path.exists(ut.NODE))

# Memory: edge's VmRSS once the fault is over, against the steady state measured the same way
# after a warm-up run of the same load.  8 MiB of slack: glibc keeps freed chunks in its per-thread
# arenas (edge has a thread per worker) instead of returning them, the upstream layer keeps up to
# 256 closed connections' 16 KiB objects per worker for reuse, and connection buffers come and go
# with wrk's 16 connections.  A real leak is far bigger: every case runs 10,000+ requests, so
# 1 KiB kept per request (or per failed attempt in a run of thousands) is 10+ MiB.
RSS_SLACK_KB = 8 * 1024
SETTLE_S = 2.5  # idle upstream connections above `keepalive` close 2 s after a burst
WARMUP_S = 3
FAULT_S = 8  # each wrk run under a fault (issue 10: bounded; at most 12 s)
WRK_TIMEOUT = "5s"  # a response slower than this is a wrk "timeout" socket error


def big_block():
    """The 64 KiB block upstream.js repeats for /big (same formula)."""
    return bytes(((i * 7 + 13 + (i >> 9)) & 0xFF) for i in range(65536))


BIG = big_block()



def file_etag(st):
    """edge's validator for a file (routes/static_files.cpp: mtime seconds, nanoseconds, size)."""
    ns = st.st_mtime_ns
    return f'"{ns // 10**9:x}{ns % 10**9:08x}-{st.st_size:x}"'


# ---------------------------------------------------------------------------------------------
# wrk with a Lua script that counts what wrk itself does not: non-2xx, and bodies shorter or longer
# than WANT_LEN.  (wrk 4.1 does not empty its body buffer when it reconnects after a read error: the
# next response on that connection carries the cut body's bytes in front, so a connection closed
# mid-body shows as one read error and then one "long" body.  A "short" one is a response that
# looked complete with too few bytes.)

LUA = r"""
-- written by tests/hardening/test_faults.py
local threads = {}
local count = 0
WANT_LEN = %(want_len)d   -- -1: any length
function setup(thread)
  count = count + 1
  thread:set("tid", count)
  table.insert(threads, thread)
end
function init(args)
  n, non2xx, short, long, i = 0, 0, 0, 0, 0
end
%(request)s
function response(status, headers, body)
  n = n + 1
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  if WANT_LEN >= 0 and #body < WANT_LEN then short = short + 1 end
  if WANT_LEN >= 0 and #body > WANT_LEN then long = long + 1 end
end
function done(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("n"); b = b + t:get("non2xx"); c = c + t:get("short"); d = d + t:get("long")
  end
  io.write(string.format("FAULTS responses=%%d non2xx=%%d short=%%d long=%%d\n", a, b, c, d))
end
"""

LUA_DISTINCT = r"""
function request()   -- every request a new URL: PREFIX .. "<thread>-<n>"
  i = i + 1
  return wrk.format("GET", "%(prefix)s" .. tid .. "-" .. i)
end
"""


def write_lua(tmp, name, want_len=-1, distinct_prefix=None):
    req = LUA_DISTINCT % {"prefix": distinct_prefix} if distinct_prefix else ""
    path = os.path.join(tmp, name + ".lua")
    with open(path, "w") as f:
        f.write(LUA % {"want_len": want_len, "request": req})
    return path


def parse_wrk(out):
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    f = re.search(r"FAULTS responses=(\d+) non2xx=(\d+) short=(\d+) long=(\d+)", out)
    if not m:
        raise AssertionError(f"unexpected wrk output:\n{out}")
    res = {"requests": int(m.group(1)), "connect": 0, "read": 0, "write": 0, "timeout": 0}
    if f:
        res.update(responses=int(f.group(1)), non2xx=int(f.group(2)), short=int(f.group(3)), long=int(f.group(4)))
    else:  # no script: wrk's own count (non-2xx-or-3xx), lengths unchecked
        n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        res.update(non2xx=int(n.group(1)) if n else 0, short=None, long=None)
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if s:
        res.update(zip(("connect", "read", "write", "timeout"), (int(x) for x in s.groups())))
    res["socket_errors"] = res["connect"] + res["read"] + res["write"] + res["timeout"]
    return res


class Wrk:
    """`wrk -t1 -cN -dS --timeout 5s [-s script] url`, started at once; result() waits and parses."""

    def __init__(self, url, seconds, conns, script=None):
        self.url, self.seconds = url, seconds
        self.proc = subprocess.Popen([WRK, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", WRK_TIMEOUT]
                                     + (["-s", script] if script else []) + [url],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = ""

    def result(self):
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + 30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()  # by its Popen (PID), never by name
                self.proc.wait(5)
        self.out = out.decode("utf-8", "replace")
        return parse_wrk(self.out)


# ---------------------------------------------------------------------------------------------
# A stand-in upstream whose failure mode is switched while edge is under load


class FaultServer:
    """127.0.0.1:<ephemeral>, a thread per connection.  While `mode` is "ok" it answers GETs as
    upstream.js does (/big?bytes=N: upstream.js's pattern; anything else a small JSON), keep-alive.
    Switched under load to:
      blackhole  never answers: each request that arrives is held unread and unanswered, and new
                 connections are accepted and never read at all
      halfbody   the head (Content-Length: N) and N/2 body bytes, then FIN
      headcut    the first bytes of a head ("HTTP/1.1 200 OK\\r\\nX-Upstream: F\\r\\nContent-Le"),
                 then FIN: nothing a client could be given
      fin        reads the request, then FIN without a byte
    `counts` holds requests per mode ("ok", "halfbody", ...) and "held_connections"."""

    def __init__(self, name):
        self.name = name
        self.mode = "ok"
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.held = []
        self.conns = []
        self.stopping = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def count(self, key):
        with self.lock:
            return self.counts[key]

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
                if self.mode == "blackhole":
                    self.held.append(c)
                    self.counts["held_connections"] += 1
                    continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _finish(self, c):
        """FIN, then wait for edge to close its side (closing with unread bytes would be a RST)."""
        try:
            c.shutdown(socket.SHUT_WR)
            c.settimeout(3)
            while c.recv(65536):
                pass
        except OSError:
            pass
        c.close()

    def _serve(self, c):
        buf = b""
        try:
            while not self.stopping:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        c.close()
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                mode = self.mode
                with self.lock:
                    self.counts[mode] += 1
                    if mode == "blackhole":
                        self.held.append(c)
                if mode == "blackhole":
                    return  # never read, never answered, left open
                if mode == "fin":
                    return self._finish(c)
                if mode == "headcut":
                    c.sendall(b"HTTP/1.1 200 OK\r\nX-Upstream: " + self.name.encode() + b"\r\nContent-Le")
                    return self._finish(c)
                target = head.split(b" ", 2)[1].decode("latin-1")
                m = re.search(r"^/big\?bytes=(\d+)", target)
                if m:
                    n = int(m.group(1))
                    body = (BIG * (n // len(BIG) + 1))[:n]
                    ctype = b"application/octet-stream"
                else:
                    body = b'{"instance":"' + self.name.encode() + b'"}\n'
                    ctype = b"application/json"
                resp = (b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                        + str(len(body)).encode() + b"\r\nX-Upstream: " + self.name.encode() + b"\r\n\r\n")
                if mode == "halfbody":
                    c.sendall(resp + body[:len(body) // 2])
                    return self._finish(c)
                c.sendall(resp + body)
        except OSError:
            c.close()

    def stop(self):
        self.stopping = True
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# A checking client beside wrk: raw keep-alive requests, every response classified and timed


class Probe:
    """`conns` threads, each GETting `path` on a keep-alive connection until stop(); every answer
    goes through classify(status, headers dict, body, complete) -> kind, recorded with its time
    (monotonic) in `events`; `complete` is False when the connection closed before the body's
    Content-Length was reached."""

    def __init__(self, port, path, classify, conns=2):
        self.port, self.path, self.classify = port, path, classify
        self.events = []  # (t, kind)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(conns)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)

    def kinds(self):
        with self.lock:
            return collections.Counter(k for _, k in self.events)

    def times(self, kind):
        with self.lock:
            return [t for t, k in self.events if k == kind]

    def _record(self, kind):
        with self.lock:
            self.events.append((time.monotonic(), kind))

    def _run(self):
        s, buf = None, b""
        req = f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
        while not self.stop_ev.is_set():
            stage, reused, headers = "connect", s is not None, None
            try:
                if s is None:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                    buf = b""
                stage = "send"
                s.sendall(req)
                stage = "head"
                while b"\r\n\r\n" not in buf:
                    d = s.recv(262144)
                    if not d:
                        raise ConnectionError("closed before a response head")
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                headers = {}
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                stage = "body"
                chunks, have = [buf], len(buf)
                complete = True
                while have < n:
                    try:
                        d = s.recv(min(1 << 20, n - have + 65536))
                    except ConnectionResetError:
                        d = b""  # a reset after the head: as visible a cut as a FIN
                    if not d:
                        complete = False
                        break
                    chunks.append(d)
                    have += len(d)
                data = b"".join(chunks)
                body, buf = data[:n], data[n:]
                self._record(self.classify(status, headers, body, complete))
                if not complete or headers.get("connection", "").lower() == "close":
                    s.close()
                    s = None
            except (OSError, ValueError, IndexError) as e:
                # (stage "head" on a reused connection: the request got no answer at all)
                self._record(f"error in {stage}{' (reused)' if reused else ''}: {type(e).__name__}")
                if s is not None:
                    s.close()
                s = None
        if s is not None:
            s.close()


# ---------------------------------------------------------------------------------------------


@unittest.skipUnless(WRK, "needs wrk (or WRK_BIN)")
@unittest.skipUnless(HAVE_NODE, "needs node (or NODE_BIN) for upstream.js")
class FaultCase(unittest.TestCase):
    """One edge per test ([admin] for /metrics, 2 workers, no access log), started by the test."""

    maxDiff = 6000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="edgetest-faults-")
        self.site = et.Site(self.tmp)
        self.conf = os.path.join(self.tmp, "edge.toml")
        self.edge = None
        self.ups = []
        self.fakes = []
        self.t_start = time.monotonic()

    def tearDown(self):
        try:
            if self.edge is not None and self.edge.running():
                self.edge.settle()
                rc = self.edge.stop()
                self.assertEqual(rc, 0, "edge exit code on SIGTERM; stderr tail:\n"
                                 + "\n".join(self.edge.stderr_lines[-30:]))
        finally:
            if self.edge is not None:
                self.edge.kill()
            ut.stop_all(self.ups)
            for f in self.fakes:
                f.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
            sys.stderr.write(f"[faults] {self.id().rsplit('.', 1)[-1]}: {time.monotonic() - self.t_start:.1f} s\n")

    # -- processes -------------------------------------------------------------------------------
    def upstream(self, name, **kw):
        u = ut.Upstream(name, **kw).start()
        self.ups.append(u)
        return u

    def fake(self, name):
        f = FaultServer(name)
        self.fakes.append(f)
        return f

    def start_edge(self, sections="", routes="", root_route=True):
        text = ops.admin_toml("127.0.0.1:0") + sections + ops.HEALTH_ROUTE + routes
        if root_route:
            text += ops.static_route(prefix="/", spa_fallback="/index.html")
        with open(self.conf, "w") as f:
            f.write(et.make_config(self.site, "off", server={"workers": "2"}, listen=["127.0.0.1:0"], routes=text))
        self.edge = ops.OpsEdge(self.conf, expect_hosts={"127.0.0.1"}, expect_count=1).start()
        self.assertIsNotNone(self.edge.wait_admin(), self.edge.stderr_text())
        self.port = self.edge.port
        return self.edge

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics(self):
        r = ops.http(self.edge.admin_port, "/metrics")
        self.assertEqual(r.status, 200, r)
        return ops.parse_metrics(r.body.decode())

    def wait_down(self, pool, server, timeout=6.0):
        """Polls edge_upstream_up{pool, server} until 0 (passive health took it out); True then.
        (The metric, not the log: edge logs "marked down" only for some of the failure kinds.)"""
        return ops.wait_until(lambda: self.metrics().get("edge_upstream_up", {"pool": pool, "server": server}) == 0,
                              timeout, 0.05)

    def up_errors(self, m, server, kind=None):
        labels = {"server": server}
        if kind:
            labels["kind"] = kind
        return m.sum("edge_upstream_errors_total", labels)

    # -- memory ----------------------------------------------------------------------------------
    def rss(self):
        return ops.proc_status_kb(self.edge.proc.pid)

    def settled_rss(self):
        """VmRSS (kB) once the load is over and idle upstream connections closed: the median of 5."""
        time.sleep(SETTLE_S)
        samples = []
        for _ in range(5):
            samples.append(self.rss())
            time.sleep(0.1)
        return int(statistics.median(samples))

    def warm_up(self, path, script, conns=16):
        """The same load, fault-free, so that the steady state is measured with every buffer, pool
        and cache edge keeps already there; returns that steady RSS."""
        w = Wrk(self.url(path), WARMUP_S, conns, script)
        res = w.result()
        if res["socket_errors"] or res["non2xx"] or res["requests"] <= 100:
            self.fail(f"the warm-up already fails: {res}\n{w.out}\n{self.diagnose(path)}")
        return self.settled_rss()

    def diagnose(self, path):
        """What edge does right now: a curl of `path`, its threads' states, its last log lines."""
        r = et.curl(self.url(path), timeout=5)
        states = []
        for tid in sorted(os.listdir(f"/proc/{self.edge.proc.pid}/task")):
            try:
                with open(f"/proc/{self.edge.proc.pid}/task/{tid}/stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"/proc/{self.edge.proc.pid}/task/{tid}/wchan") as f:
                    states.append(f"{tid}:{st}:{f.read()}")
            except OSError:
                pass
        return (f"curl now: rc={r.rc} status={r.status} body={len(r.body)} bytes {r.stderr}\n"
                f"edge threads: {states}\nedge log:\n" + "\n".join(self.edge.stderr_lines[-20:]))

    def rss_back(self, steady):
        """Waits (up to 6 s more) for VmRSS to come back within RSS_SLACK_KB of `steady`."""
        after = self.settled_rss()
        deadline = time.monotonic() + 6
        while after > steady + RSS_SLACK_KB and time.monotonic() < deadline:
            time.sleep(0.5)
            after = self.rss()
        return after

    def check_rss(self, steady, after):
        self.assertTrue(self.edge.running(), "edge died:\n" + "\n".join(self.edge.stderr_lines[-30:]))
        self.assertLessEqual(after, steady + RSS_SLACK_KB,
                             f"edge's RSS did not come back: steady {steady} kB, after the fault {after} kB")

    def at(self, t0, seconds):
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))

    def report(self, **kw):
        sys.stderr.write("\n[faults] " + self.id().rsplit(".", 1)[-1] + ": "
                         + "; ".join(f"{k}={v}" for k, v in kw.items()) + "\n")


# ---------------------------------------------------------------------------------------------


class UpstreamKilledAndRestarted(FaultCase):
    def test_1_upstream_sigkilled_then_restarted_on_the_same_port(self):
        A, B = self.upstream("A"), self.upstream("B")
        # tries = 2: a GET that fails on B (a reset in flight, a refused connect) goes to A.
        # fail_timeout 2 s: B is tried again soon after it is back (passive only: no active check).
        pool = ut.pool_toml("api", [A.address, B.address], tries=2, connect_timeout="1s",
                            passive={"max_fails": 3, "fail_window": "10s", "fail_timeout": "2s"})
        self.start_edge(pool, ut.proxy_route("/api/", "api", strip_prefix="/api"))
        script = write_lua(self.tmp, "json")
        steady = self.warm_up("/api/json", script)
        m0 = self.metrics()
        b_before = B.count()["requests"]

        w = Wrk(self.url("/api/json"), FAULT_S, 16, script)
        t0 = time.monotonic()
        self.at(t0, 2.5)
        b_at_kill = B.count()["requests"]
        B.kill()  # SIGKILL by PID, requests in flight on it
        killed = not B.running()
        self.at(t0, 5.5)
        B2 = self.upstream("B", port=B.port)  # the restart, same address as in the pool
        res = w.result()
        after_restart = B2.count()["requests"]
        m1 = self.metrics()
        a_total = A.count()["requests"]
        after = self.rss_back(steady)
        errs = self.up_errors(m1, B.address) - self.up_errors(m0, B.address)
        self.report(wrk=res, b_before_kill=b_at_kill - b_before, b_after_restart=after_restart,
                    a_requests=a_total, edge_errors_for_B=errs,
                    by_kind={k: self.up_errors(m1, B.address, k) - self.up_errors(m0, B.address, k)
                             for k in ("connect", "reset", "timeout", "bad_response")},
                    rss_steady_kb=steady, rss_after_kb=after)

        self.assertTrue(killed, "B was not killed")
        self.assertGreater(b_at_kill - b_before, 100, "B took no traffic before the kill")
        self.assertGreaterEqual(errs, 1, "edge_upstream_errors_total for B did not move: the kill was not seen")
        self.assertEqual(res["socket_errors"], 0, f"socket errors around the kill\n{w.out}")
        self.assertEqual(res["non2xx"], 0, f"non-2xx responses around the kill\n{w.out}")
        self.assertGreater(res["requests"], 1000, f"too few requests to prove anything\n{w.out}")
        self.assertGreater(after_restart, 50, "the restarted B got (almost) no traffic back")
        self.assertEqual(m1.get("edge_upstream_up", {"pool": "api", "server": B.address}), 1,
                         m1.find("edge_upstream_up"))
        self.check_rss(steady, after)


class BlackHoleMember(FaultCase):
    def test_2_member_accepts_and_never_answers(self):
        A, F = self.upstream("A"), self.fake("F")
        # The clock that bounds a silent upstream before any response byte is header_timeout
        # (read_timeout only runs between two reads of a body: with it alone a black-holed request
        # would wait the default 60 s).  Both 1 s.  tries = 2: the healthy A is there to retry on.
        pool = ut.pool_toml("api", [A.address, F.address], tries=2, connect_timeout="1s",
                            header_timeout="1s", read_timeout="1s",
                            passive={"max_fails": 3, "fail_window": "10s", "fail_timeout": "60s"})
        self.start_edge(pool, ut.proxy_route("/api/", "api", strip_prefix="/api"))
        script = write_lua(self.tmp, "json")
        steady = self.warm_up("/api/json", script)
        m0 = self.metrics()
        f_ok = F.count("ok")
        self.assertGreater(f_ok, 100, "F took no traffic in the warm-up")

        n0 = self.edge.line_count()
        w = Wrk(self.url("/api/json"), FAULT_S, 16, script)
        t0 = time.monotonic()
        self.at(t0, 2.0)
        F.mode = "blackhole"
        t_fault = time.monotonic()
        down = self.wait_down("api", F.address)
        t_down = time.monotonic()
        self.at(t0, 6.0)
        held_mid = F.count("blackhole") + F.count("held_connections")
        res = w.result()
        held_end = F.count("blackhole") + F.count("held_connections")
        m1 = self.metrics()
        # after the load: latency back to normal (F is out, nothing waits for its timeout)
        slow = []
        for _ in range(20):
            t = time.monotonic()
            r = ops.http(self.port, "/api/json")
            slow.append((r.status, round(time.monotonic() - t, 3)))
        after = self.rss_back(steady)
        timeouts = self.up_errors(m1, F.address, "timeout") - self.up_errors(m0, F.address, "timeout")
        e504 = (m1.sum("edge_http_requests_total", {"class": "5xx"})
                - m0.sum("edge_http_requests_total", {"class": "5xx"}))
        self.report(wrk=res, f_requests_unanswered=F.count("blackhole"),
                    f_connections_never_read=F.count("held_connections"),
                    edge_timeouts_for_F=timeouts, edge_5xx=e504,
                    marked_down_after_s=round(t_down - t_fault, 2) if down else None,
                    rss_steady_kb=steady, rss_after_kb=after)

        self.assertGreaterEqual(held_end, 1, "no request reached the black hole")
        self.assertGreaterEqual(timeouts, 1, "edge_upstream_errors_total{kind=timeout} for F did not move")
        self.assertTrue(down, "passive health never took the black hole out:\n"
                        + "\n".join(self.edge.lines_since(n0)[-20:]))
        self.assertEqual(m1.get("edge_upstream_up", {"pool": "api", "server": F.address}), 0)
        self.assertEqual(held_end, held_mid, "requests still went to the black hole after it was marked down")
        self.assertTrue(all(s == 200 and d < 0.9 for s, d in slow), f"latency did not recover: {slow}")
        self.assertEqual(res["socket_errors"], 0, f"socket errors (a wrk timeout is a request held 5 s)\n{w.out}")
        self.assertGreater(res["requests"], 1000, w.out)
        self.check_rss(steady, after)
        # The requirement: 0 failed idempotent requests while a healthy path (A) existed.  With the
        # current edge every request sent to F before passive health took it out (all 16 of wrk's
        # connections end up waiting there within a millisecond: ~16) ends as a 504 after
        # header_timeout; no setting avoids it (an active check with fall = 1, max_fails = 1 and
        # tries = 3 take F out sooner, but the requests already waiting on it still get 504).
        self.assertEqual(res["non2xx"], 0,
                         f"{res['non2xx']} GETs failed (edge: {e504} 5xx, the 504s of header_timeout) although A was "
                         "healthy and tries = 2: a GET whose server never answered is not retried "
                         "(server/proxy_session.cpp ProxySession::on_timer, State::kWaiting: "
                         f"fail_attempt(504, false))\n{w.out}")


class CutMidBody(FaultCase):
    PATH = "/api/big?bytes=65536"

    def pool(self, A, F):
        return ut.pool_toml("api", [A.address, F.address], tries=2, connect_timeout="1s", read_timeout="2s",
                            passive={"max_fails": 3, "fail_window": "10s", "fail_timeout": "60s"})

    @staticmethod
    def classify(status, headers, body, complete):
        if status != 200:
            return f"status {status}"
        if not complete:
            return "truncated"  # visible: closed short of Content-Length
        if len(body) != 65536 or body != BIG:
            return "wrong"  # a complete-looking wrong body: never acceptable
        return "ok"

    def test_3_member_closes_mid_body(self):
        A, F = self.upstream("A"), self.fake("F")
        self.start_edge(self.pool(A, F), ut.proxy_route("/api/", "api", strip_prefix="/api"))
        script = write_lua(self.tmp, "big", want_len=65536)
        steady = self.warm_up(self.PATH, script)
        m0 = self.metrics()
        self.assertGreater(F.count("ok"), 100, "F took no traffic in the warm-up")

        n0 = self.edge.line_count()
        probe = Probe(self.port, self.PATH, self.classify, conns=2).start()
        w = Wrk(self.url(self.PATH), FAULT_S, 16, script)
        t0 = time.monotonic()
        try:
            self.at(t0, 2.0)
            t_fault = time.monotonic()
            F.mode = "halfbody"
            down = self.wait_down("api", F.address)
            t_down = time.monotonic()
            res = w.result()
        finally:
            probe.stop()
        m1 = self.metrics()
        after = self.rss_back(steady)
        cut = F.count("halfbody")
        kinds = probe.kinds()
        late = [round(t - t_down, 3) for t in probe.times("truncated") if t > t_down + 1.0]
        resets = self.up_errors(m1, F.address, "reset") - self.up_errors(m0, F.address, "reset")
        self.report(wrk=res, probe=dict(kinds), f_cut_responses=cut, edge_reset_errors_for_F=resets,
                    marked_down_after_s=round(t_down - t_fault, 2) if down else None,
                    truncations_seen_by_clients=res["read"] + kinds["truncated"],
                    rss_steady_kb=steady, rss_after_kb=after)

        self.assertGreaterEqual(cut, 1, "F never cut a response: the fault did not happen")
        self.assertGreaterEqual(resets, 1, "edge_upstream_errors_total{kind=reset} for F did not move")
        self.assertTrue(down, "passive health never took F out:\n" + "\n".join(self.edge.lines_since(n0)[-20:]))
        # Each cut response reached its client as a connection closed short of Content-Length:
        # wrk counts those as read errors; nothing else may fail.
        self.assertEqual((res["connect"], res["write"], res["timeout"]), (0, 0, 0), w.out)
        self.assertEqual(res["non2xx"], 0, w.out)
        self.assertEqual(res["short"], 0, f"a complete-looking response shorter than 64 KiB\n{w.out}")
        self.assertLessEqual(res["long"], res["read"], f"longer bodies than cuts (see LUA)\n{w.out}")
        self.assertEqual(kinds["wrong"], 0, f"a complete-looking wrong body: {kinds}")
        self.assertEqual(set(kinds) - {"ok", "truncated"}, set(), f"probe: {kinds}")
        self.assertLessEqual(res["read"] + kinds["truncated"], cut,
                             "more clients saw a cut than F cut responses: edge cut healthy ones too")
        # They stop once F is out: the requests in flight (16 + 2) when it was, and those sent to it
        # in the instant before its 3rd failure was noted; without passive health: thousands.
        self.assertLessEqual(cut, 2 * (16 + 2), f"F kept receiving requests after {cut} cuts")
        self.assertEqual(late, [], "truncated responses more than 1 s after F was marked down")
        self.assertGreater(kinds["ok"], 50, kinds)
        self.assertGreater(res["requests"], 500, w.out)
        self.check_rss(steady, after)

    def test_3b_failure_before_anything_reached_the_client_is_retried(self):
        # Two pools, each [A, F*], tries = 2: F1 starts cutting its heads (a few bytes of the status
        # line and fields, then FIN), F2 starts closing without a byte.  Either way nothing has gone
        # to the client yet and A is healthy: an idempotent GET must end 200.
        A, F1, F2 = self.upstream("A"), self.fake("F1"), self.fake("F2")
        pools = (ut.pool_toml("cut", [A.address, F1.address], tries=2, connect_timeout="1s",
                              passive={"max_fails": 3, "fail_window": "10s", "fail_timeout": "60s"})
                 + ut.pool_toml("fin", [A.address, F2.address], tries=2, connect_timeout="1s",
                                passive={"max_fails": 3, "fail_window": "10s", "fail_timeout": "60s"}))
        routes = (ut.proxy_route("/cut/", "cut", strip_prefix="/cut")
                  + ut.proxy_route("/fin/", "fin", strip_prefix="/fin"))
        self.start_edge(pools, routes)
        script = write_lua(self.tmp, "json")
        warm = [Wrk(self.url(p), WARMUP_S, 8, script) for p in ("/cut/json", "/fin/json")]
        for wr in warm:
            r = wr.result()
            self.assertEqual((r["socket_errors"], r["non2xx"]), (0, 0), f"warm-up: {r}")
        steady = self.settled_rss()
        m0 = self.metrics()

        ws = {p: Wrk(self.url(f"/{p}/json"), 6, 8, script) for p in ("cut", "fin")}
        t0 = time.monotonic()
        self.at(t0, 1.5)
        F1.mode, F2.mode = "headcut", "fin"
        res = {p: w.result() for p, w in ws.items()}
        m1 = self.metrics()
        after = self.rss_back(steady)

        def err(F, kind):
            return self.up_errors(m1, F.address, kind) - self.up_errors(m0, F.address, kind)

        self.report(cut=res["cut"], fin=res["fin"], f1_heads_cut=F1.count("headcut"), f2_closed=F2.count("fin"),
                    edge_reset_errors=(err(F1, "reset"), err(F2, "reset")),
                    rss_steady_kb=steady, rss_after_kb=after)
        self.assertGreaterEqual(F1.count("headcut"), 1, "F1 never cut a head")
        self.assertGreaterEqual(F2.count("fin"), 1, "F2 never closed a request")
        for p in ("cut", "fin"):
            self.assertEqual(res[p]["socket_errors"], 0, f"/{p}/: {ws[p].out}")
            self.assertGreater(res[p]["requests"], 1000, f"/{p}/: {ws[p].out}")
        self.check_rss(steady, after)
        self.assertEqual(res["fin"]["non2xx"], 0, f"a GET closed without a byte was not retried on A\n{ws['fin'].out}")
        self.assertEqual(res["cut"]["non2xx"], 0,
                         f"{res['cut']['non2xx']} GETs got 502 although nothing had gone to the client and A was "
                         "healthy: a response head cut by the close is not retried (server/proxy_session.cpp "
                         "ProxySession::on_read, `!head_sent_ && response_started_`: fail_attempt(502, false))\n"
                         + ws["cut"].out)


class FileReplaced(FaultCase):
    SIZE = 1 << 20

    @classmethod
    def setUpClass(cls):
        # two 1 MiB versions that differ in every 32-byte piece (a torn body cannot equal either)
        cls.contents = [b"".join(hashlib.sha256(b"%s%d" % (tag, i)).digest() for i in range(cls.SIZE // 32))
                        for tag in (b"old", b"new")]

    def run_replacing(self, how):
        path = self.site.write("/big.bin", self.contents[0])
        etags = {file_etag(os.stat(path)): 0}  # validator -> the version it names
        self.start_edge()
        # wrk without a script here: its Lua body check slows wrk itself to a crawl on 1 MiB bodies
        # (the responses wait in its socket buffers, edge is not the one behind; seen as 8
        # responses in 8 s on a busy machine).  Its parser still sees a connection closed short of
        # Content-Length (a read error); the probe checks every byte and the ETag.
        steady = self.warm_up("/big.bin", None, conns=8)
        lock = threading.Lock()
        served = set()  # the validators clients got

        def classify(status, headers, body, complete):
            with lock:
                served.add(headers.get("etag"))
            if status != 200:
                return f"status {status}"
            if not complete:
                return "truncated"
            n = int(headers.get("content-length", -1))
            if n != self.SIZE:  # a partial file served as if whole
                return "complete, 0 bytes" if n == 0 else "complete, other length"
            which = [i for i, c in enumerate(self.contents) if body == c]
            if not which:
                return "torn"  # parts of both versions
            with lock:
                named = etags.get(headers.get("etag"))
            return "ok" if named == which[0] else "etag names the other version"

        stop = threading.Event()
        replaced = [0]

        def replacer():
            tmp_path = os.path.join(self.tmp, "big.bin.next")  # same file system, outside the root
            v = 0
            while not stop.is_set():
                v ^= 1
                if how == "rename":
                    with open(tmp_path, "wb") as f:
                        f.write(self.contents[v])
                    with lock:  # known before any client can be served it
                        etags[file_etag(os.stat(tmp_path))] = v
                    os.replace(tmp_path, path)
                else:  # in place: the same inode truncated, then written in 64 KiB pieces (as cp does)
                    with open(path, "r+b") as f:
                        f.truncate(0)
                        for i in range(0, self.SIZE, 65536):
                            f.write(self.contents[v][i:i + 65536])
                    with lock:
                        etags[file_etag(os.stat(path))] = v
                replaced[0] += 1
                stop.wait(0.05)

        probe = Probe(self.port, "/big.bin", classify, conns=2).start()
        w = Wrk(self.url("/big.bin"), 8, 8)
        rt = threading.Thread(target=replacer, daemon=True)
        rt.start()
        try:
            res = w.result()
        finally:
            stop.set()
            rt.join(10)
            probe.stop()
        after = self.rss_back(steady)
        kinds = probe.kinds()
        self.report(how=how, wrk=res, probe=dict(kinds), replacements=replaced[0], versions_served=len(served),
                    rss_steady_kb=steady, rss_after_kb=after)
        self.assertGreater(replaced[0], 40, "the file was hardly replaced")
        # edge looks at the file again once a second: 8 s of load see several versions
        self.assertGreaterEqual(len(served), 4, f"the replacements never reached the clients: {served}")
        self.assertGreater(res["requests"], 100, w.out)
        self.assertEqual((res["connect"], res["timeout"]), (0, 0), f"refused or hung requests\n{w.out}")
        self.check_rss(steady, after)
        return res, kinds, w.out

    def test_4_file_replaced_by_rename_while_served(self):
        res, kinds, out = self.run_replacing("rename")
        self.assertEqual(res["socket_errors"], 0, out)
        self.assertEqual(res["non2xx"], 0, out)
        self.assertEqual(set(kinds), {"ok"}, f"every body entirely one version under its own ETag: {kinds}")
        self.assertGreater(kinds["ok"], 20, kinds)

    def test_4b_file_rewritten_in_place_while_served(self):
        # Not atomic for any server: a client may get a body cut short (edge closes the connection
        # when the file shrinks under sendfile), parts of two versions under one ETag, or a partial
        # file announced as whole.  Reported; edge must stay up, never hang a client, and keep its
        # memory.
        res, kinds, out = self.run_replacing("in-place")
        self.assertGreater(sum(kinds.values()), 20, kinds)
        self.assertFalse([k for k in kinds if k.startswith("status")], f"non-200 answers: {kinds}")


class FullCache(FaultCase):
    def test_5_cache_full_and_evicting_constantly(self):
        A = self.upstream("A")
        pool = ut.pool_toml("api", [A.address], tries=2)
        # 1 MiB for ~8 KiB responses (about 120 of them), each request a new URL: every store evicts
        self.start_edge('\n[cache]\nsize = "1m"\n' + pool,
                        ut.proxy_route("/c/", "api", strip_prefix="/c", cache=True))
        prefix = "/c/text?bytes=8000&cc=public,max-age=60&k="
        r1, r2 = ops.http(self.port, prefix + "probe"), ops.http(self.port, prefix + "probe")
        self.assertEqual((r1.status, r2.status), (200, 200))
        self.assertIn("stored", r1.header("cache-status") or "", r1)
        self.assertIn("hit", r2.header("cache-status") or "", r2)
        script = write_lua(self.tmp, "distinct", want_len=8000, distinct_prefix=prefix)
        steady = self.warm_up("/", script)  # (the script sets every path)
        m0 = self.metrics()
        cap = m0.get("edge_cache_capacity_bytes")
        self.assertEqual(cap, 1 << 20)

        samples, peak_rss, stop = [], [0], threading.Event()

        def sampler():
            while not stop.is_set():
                m = self.metrics()
                samples.append((m.get("edge_cache_bytes"), m.get("edge_cache_objects")))
                peak_rss[0] = max(peak_rss[0], self.rss())
                stop.wait(0.1)

        st = threading.Thread(target=sampler, daemon=True)
        w = Wrk(self.url("/"), FAULT_S, 16, script)
        st.start()
        try:
            res = w.result()
        finally:
            stop.set()
            st.join(5)
        m1 = self.metrics()
        after = self.rss_back(steady)
        evictions = m1.get("edge_cache_evictions_total") - m0.get("edge_cache_evictions_total")
        misses = (m1.sum("edge_cache_requests_total", {"result": "miss"})
                  - m0.sum("edge_cache_requests_total", {"result": "miss"}))
        max_bytes = max(b for b, _ in samples)
        self.report(wrk=res, samples=len(samples), max_cache_bytes=max_bytes, capacity=cap,
                    objects=sorted({o for _, o in samples})[:1] + sorted({o for _, o in samples})[-1:],
                    evictions=evictions, misses=misses, rss_steady_kb=steady, rss_peak_kb=peak_rss[0],
                    rss_after_kb=after)
        self.assertEqual(res["socket_errors"], 0, w.out)
        self.assertEqual(res["non2xx"], 0, w.out)
        self.assertEqual((res["short"], res["long"]), (0, 0), w.out)
        self.assertGreater(res["requests"], 1000, w.out)
        self.assertGreater(len(samples), 20, "too few /metrics samples")
        self.assertLessEqual(max_bytes, cap, f"edge_cache_bytes above [cache] size: {samples}")
        self.assertGreater(max_bytes, cap // 2, "the cache never filled: the case proves nothing")
        self.assertGreater(evictions, res["requests"] // 2, "the cache was not evicting constantly")
        self.assertGreater(misses, res["requests"] // 2)
        # bounded while it runs too: the store is 1 MiB, a burst of misses holds 16 captures at most
        self.assertLessEqual(peak_rss[0], steady + 2 * RSS_SLACK_KB, f"RSS peaked at {peak_rss[0]} kB")
        self.check_rss(steady, after)


if __name__ == "__main__":
    unittest.main()
