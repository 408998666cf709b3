"""Configuration reload (issue 8, /work/notes/issue8-contract.md): SIGHUP and `edge --reload`.

- a changed route (a header value, a new static route, a pool's servers) serves new requests,
  also the next request of a keep-alive connection opened before; a request in flight (a slow
  upstream answer) completes with 200 on the old snapshot
- a bad file (a TOML syntax error, a semantic error) is refused with
  `SIGHUP: configuration not reloaded: FILE:LINE: problem`, the old config keeps serving,
  edge_config_reloads_total{result="failed"} +1; a fixed file then reloads
- listeners: an added one answers, a removed one refuses, a kept one never refuses a connection
  (a client connecting in a tight loop through 5 reloads)
- rate-limit counters and the cache store survive a reload; `[cache] size` changed drops the store;
  `[server] workers` and `[log] access` need a restart (warning, old value kept); the admin token
- `edge --reload --config FILE` signals the pid in `[server] pid_file`; exit 1 with a message
  when the file is invalid (nothing is signalled) or the pid file is missing or stale
- the proof: wrk (8 connections each on a static and a proxied route, ~12 s) through 20 reloads
  alternating two configs: 0 socket errors, 0 non-2xx/3xx, 20 "configuration reloaded" lines

Every listener uses a fixed free port found at setup (an ephemeral `:0` listener would be ambiguous
across reloads).  Needs `node` for the upstream; `wrk` (else a Python keep-alive load).
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import opstest as ops  # noqa: E402
import upstreamtest as ut  # noqa: E402

WRK = os.environ.get("WRK_BIN") or shutil.which("wrk")
RELOAD_OK = r"SIGHUP: configuration reloaded \(generation (\d+)\)"
RELOAD_ANY = r"SIGHUP: configuration (not )?reloaded"
PUBLIC = "cc=public,max-age=60"


class ReloadCase(unittest.TestCase):
    """One edge per test (setUp/tearDown), its config rewritten by the test."""

    maxDiff = 4000
    upstream_names = []

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="edgetest-reload-")
        self.site = et.Site(self.tmp)
        self.site.write("/limited/a.txt", b"EDGETEST-LIMITED\n")
        newroot = os.path.join(self.tmp, "newroot")  # the route /new/ maps /new/x.txt to newroot/new/x.txt
        os.makedirs(os.path.join(newroot, "new"))
        with open(os.path.join(newroot, "new", "x.txt"), "wb") as f:
            f.write(b"EDGETEST-NEW-ROUTE\n")
        self.conf = os.path.join(self.tmp, "edge.toml")
        self.p1 = ops.free_port()
        self.admin_p = ops.free_port()
        self.edge = None
        self.ups = {}
        try:
            for n in self.upstream_names:
                self.ups[n] = ut.Upstream(n).start()
        except BaseException:
            ut.stop_all(self.ups.values())
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

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
            ut.stop_all(self.ups.values())
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- config ----------------------------------------------------------------------------------
    def cfg(self, gen="a", listen=None, routes="", pools="", server=None, token=None, access="off",
            cache_size=None, limit=None, admin=True):
        """Edge's config: [admin] on admin_p, optional pools, /health, `routes`, a rate-limited
        static /limited/ (when `limit`), the SPA at / with `X-Edge-Gen: <gen>`."""
        srv = {"workers": "2"}
        srv.update(server or {})
        text = ""
        if admin:
            text += ops.admin_toml(f"127.0.0.1:{self.admin_p}", token)
        if cache_size:
            text += f'\n[cache]\nsize = "{cache_size}"\n'
        text += pools + ops.HEALTH_ROUTE + routes
        if limit:
            text += ops.static_route(prefix="/limited/", rate_limit=limit)
        text += ops.static_route(prefix="/", spa_fallback="/index.html", headers={"X-Edge-Gen": gen})
        listen = listen or [f"127.0.0.1:{self.p1}"]
        return et.make_config(self.site, access, server=srv, listen=listen, routes=text)

    def write(self, text, path=None):
        path = path or self.conf
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def start(self, text, n_listen=1):
        self.write(text)
        self.edge = ops.OpsEdge(self.conf, expect_hosts={"127.0.0.1"}, expect_count=n_listen).start()
        self.edge.wait_admin()
        return self.edge

    def sighup(self, text=None, expect="ok", timeout=5.0):
        """Writes `text` (when given), sends SIGHUP, waits for the reload's log line; returns it."""
        if text is not None:
            self.write(text)
        n = self.edge.line_count()
        self.edge.signal(signal.SIGHUP)
        hits = self.edge.wait_log(RELOAD_ANY, 1, since=n, timeout=timeout)
        self.assertTrue(hits, f"no 'SIGHUP: configuration ... reloaded' line within {timeout}s; since SIGHUP:\n"
                        + "\n".join(self.edge.lines_since(n)))
        line = hits[0]
        if expect == "ok":
            self.assertRegex(line, RELOAD_OK, "\n".join(self.edge.lines_since(n)))
        elif expect == "failed":
            self.assertIn("configuration not reloaded", line)
        return line

    # -- requests --------------------------------------------------------------------------------
    def get(self, path, port=None, **kw):
        return ops.http(port or self.p1, path, **kw)

    def gen(self, port=None):
        r = self.get("/", port)
        self.assertEqual(r.status, 200, r)
        return r.header("x-edge-gen")

    def metrics(self, token=None):
        r = ops.http(self.edge.admin_port, "/metrics", token=token)
        self.assertEqual(r.status, 200, r)
        return ops.parse_metrics(r.body.decode())

    def status_json(self, token=None):
        r = ops.http(self.edge.admin_port, "/status.json", token=token)
        self.assertEqual(r.status, 200, r)
        return json.loads(r.body)

    def line_of(self, text, needle):
        """1-based line number of the first line of `text` containing `needle`."""
        for i, ln in enumerate(text.split("\n"), 1):
            if needle in ln:
                return i
        raise AssertionError(f"{needle!r} not in the config")


# ---------------------------------------------------------------------------------------------


class Reload(ReloadCase):
    upstream_names = ["A", "B"]

    def pool(self, name):
        return ut.pool_toml("api", [self.ups[name].address])

    def proxy(self, gen):
        return ut.proxy_route("/api/", "api", strip_prefix="/api", headers={"X-Edge-Gen": gen})

    def test_new_header_and_route_also_on_an_open_keepalive_connection(self):
        self.start(self.cfg("a"))
        m0 = self.metrics()
        self.assertEqual(self.gen(), "a")
        self.assertEqual(self.get("/new/x.txt").status, 404)
        with et.Conn(self.p1) as c:
            c.send(et.request("/"))
            r = c.read_response()
            self.assertEqual(r.header("x-edge-gen"), "a")
            t_before = time.time()
            line = self.sighup(self.cfg("b", routes=ops.static_route("newroot", prefix="/new/")))
            g1 = int(re.search(RELOAD_OK, line).group(1))
            c.send(et.request("/"))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("x-edge-gen"), "b", "the next request of a connection opened before")
            c.send(et.request("/new/x.txt"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"EDGETEST-NEW-ROUTE\n"), r)
        self.assertEqual(self.gen(), "b")
        r = self.get("/new/x.txt")
        self.assertEqual((r.status, r.body), (200, b"EDGETEST-NEW-ROUTE\n"), r)
        m1 = self.metrics()
        self.assertEqual(m1.get("edge_config_reloads_total", {"result": "ok"}), 1, m1.find("edge_config_reloads_total"))
        self.assertEqual(m1.sum("edge_config_reloads_total", {"result": "failed"}), 0)
        self.assertEqual(m1.get("edge_config_last_reload_success"), 1)
        ts = m1.get("edge_config_last_reload_timestamp_seconds")
        self.assertGreater(ts, m0.get("edge_config_last_reload_timestamp_seconds"))
        self.assertTrue(t_before - 1 <= ts <= time.time() + 1, ts)
        self.assertEqual(self.status_json()["reloads"], {"ok": 1, "failed": 0, "last": "ok"})
        new2xx = {"route": "/new/", "class": "2xx"}
        self.assertTrue(ops.wait_until(lambda: self.metrics().sum("edge_http_requests_total", new2xx) == 2, 3),
                        f"the new route's requests: {self.metrics().find('edge_http_requests_total', new2xx)}")
        # a second reload: the generation grows
        line = self.sighup(self.cfg("c"))
        self.assertGreater(int(re.search(RELOAD_OK, line).group(1)), g1)
        self.assertEqual(self.gen(), "c")
        self.assertEqual(self.get("/new/x.txt").status, 404, "a route removed by reload is gone")

    def test_bad_config_refused_old_keeps_serving_then_fixed(self):
        self.start(self.cfg("a"))
        ts0 = self.metrics().get("edge_config_last_reload_timestamp_seconds")
        with et.Conn(self.p1) as c:
            # 1. a TOML syntax error
            good = self.cfg("b")
            lines = good.split("\n")
            at = self.line_of(good, "[[route]]")
            bad = "\n".join(lines[:at - 1] + ["[[route"] + lines[at:])
            line = self.sighup(bad, expect="failed")
            self.assertRegex(line, re.escape(f"SIGHUP: configuration not reloaded: {self.conf}:{at}:") + r" \S")
            self.assertEqual(self.gen(), "a", "the old config keeps serving")
            c.send(et.request("/"))
            self.assertEqual(c.read_response().header("x-edge-gen"), "a")
            m = self.metrics()
            self.assertEqual(m.get("edge_config_reloads_total", {"result": "failed"}), 1, m.find("edge_config_reloads_total"))
            self.assertEqual(m.sum("edge_config_reloads_total", {"result": "ok"}), 0)
            self.assertEqual(m.get("edge_config_last_reload_success"), 0)
            self.assertEqual(m.get("edge_config_last_reload_timestamp_seconds"), ts0,
                             "the timestamp is the last SUCCESSFUL reload's (the start time before any)")
            self.assertEqual(self.status_json()["reloads"], {"ok": 0, "failed": 1, "last": "failed"})
            # 2. a semantic error: a redirect status that does not exist
            bad = self.cfg("b", routes='\n[[route]]\npath = "/x"\nredirect = "/y"\nstatus = 299\n')
            line = self.sighup(bad, expect="failed")
            at = self.line_of(bad, "status = 299")
            self.assertRegex(line, re.escape(f"SIGHUP: configuration not reloaded: {self.conf}:{at}:") + r" \S")
            self.assertEqual(self.gen(), "a")
            self.assertEqual(self.get("/x").status, 200, "no /x redirect: the SPA shell")
            # 3. a proxy route naming no pool
            bad = self.cfg("b", routes=self.proxy("b"))
            line = self.sighup(bad, expect="failed")
            at = self.line_of(bad, 'proxy = "api"')
            self.assertRegex(line, re.escape(f"SIGHUP: configuration not reloaded: {self.conf}:{at}:") + r" \S")
            m = self.metrics()
            self.assertEqual(m.get("edge_config_reloads_total", {"result": "failed"}), 3)
            self.assertEqual(m.get("edge_config_last_reload_success"), 0)
            c.send(et.request("/"))
            self.assertEqual(c.read_response().header("x-edge-gen"), "a")
            # 4. fixed
            self.sighup(self.cfg("c", pools=self.pool("A"), routes=self.proxy("c")))
            c.send(et.request("/"))
            self.assertEqual(c.read_response().header("x-edge-gen"), "c")
        self.assertEqual(self.gen(), "c")
        r = self.get("/api/json")
        self.assertEqual((r.status, r.header("x-upstream")), (200, "A"), r)
        m = self.metrics()
        self.assertEqual(m.get("edge_config_reloads_total", {"result": "ok"}), 1)
        self.assertEqual(m.get("edge_config_reloads_total", {"result": "failed"}), 3)
        self.assertEqual(m.get("edge_config_last_reload_success"), 1)
        self.assertEqual(self.status_json()["reloads"], {"ok": 1, "failed": 3, "last": "ok"})

    def test_request_in_flight_completes_and_pool_changes(self):
        A, B = self.ups["A"], self.ups["B"]
        self.start(self.cfg("a", pools=self.pool("A"), routes=self.proxy("a")))
        result = {}
        conn = et.Conn(self.p1, timeout=15)

        def slow():
            try:
                conn.send(et.request("/api/slow?ms=2000"))
                result["r"] = conn.read_response(timeout=15)
            except Exception as e:  # noqa: BLE001
                result["e"] = e

        t = threading.Thread(target=slow, daemon=True)
        t.start()
        try:
            self.assertTrue(ops.wait_until(lambda: A.count()["active"] >= 1, 3), "the slow request never reached A")
            self.sighup(self.cfg("b", pools=self.pool("B"), routes=self.proxy("b")))
            self.assertTrue(t.is_alive(), "the slow request ended before the reload")
            r = self.get("/api/echo")
            self.assertEqual((r.status, r.header("x-upstream"), r.header("x-edge-gen")), (200, "B", "b"), r)
            t.join(15)
            self.assertNotIn("e", result, result)
            r = result["r"]
            self.assertEqual(r.status, 200, r)
            self.assertEqual(json.loads(r.body), {"instance": "A", "slept_ms": 2000})
            self.assertEqual(r.header("x-upstream"), "A")
            self.assertEqual(r.header("x-edge-gen"), "a", "a request in flight finishes on the old snapshot")
            # the same connection's next request is on the new config
            conn.send(et.request("/api/echo"))
            r = conn.read_response()
            self.assertEqual((r.status, r.header("x-upstream"), r.header("x-edge-gen")), (200, "B", "b"), r)
        finally:
            conn.close()
        self.assertEqual(A.count()["requests"], 1, "nothing new went to the server removed from the pool")
        m = self.metrics()
        self.assertEqual(m.find("edge_upstream_up", {"server": A.address}), [],
                         "the removed server's series are gone")
        self.assertEqual(m.get("edge_upstream_up", {"pool": "api", "server": B.address}), 1)

    def test_rate_limit_counters_and_cache_survive_reload(self):
        limit = {"requests": 2, "window": "60s"}
        cached = ut.proxy_route("/cached/", "api", strip_prefix="/cached", cache={"ttl": "2h"})
        self.start(self.cfg("a", pools=self.pool("A"), routes=cached, limit=limit))
        self.assertEqual([self.get("/limited/a.txt").status for _ in range(2)], [200, 200])
        path = f"/cached/text?bytes=200&{PUBLIC}&case=reload"
        self.assertEqual(self.get(path).header("cache-status"), "edge; fwd=miss; stored")
        self.assertTrue(self.get(path).header("cache-status").startswith("edge; hit"))
        self.sighup(self.cfg("b", pools=self.pool("A"), routes=cached, limit=limit))
        self.assertEqual(self.gen(), "b")
        self.assertEqual(self.get("/limited/a.txt").status, 429, "the limiter's counters are carried over")
        self.assertTrue(self.get(path).header("cache-status").startswith("edge; hit"), "the store is kept")
        # [cache] size changed: a new store
        self.sighup(self.cfg("c", pools=self.pool("A"), routes=cached, limit=limit, cache_size="32m"))
        self.assertEqual(self.gen(), "c")
        self.assertEqual(self.get(path).header("cache-status"), "edge; fwd=miss; stored",
                         "a new [cache] size: a new store")
        self.assertEqual(self.metrics().get("edge_cache_capacity_bytes"), 32 * 1024 * 1024)

    def test_restart_only_settings_warn_and_keep_old_values(self):
        log1 = os.path.join(self.tmp, "access1.log")
        log2 = os.path.join(self.tmp, "access2.log")
        self.start(self.cfg("a", server={"workers": "1"}, access=log1))
        self.assertEqual(self.status_json()["workers"], 1)
        n = self.edge.line_count()
        self.sighup(self.cfg("b", server={"workers": "2"}, access=log2))
        self.assertEqual(self.gen(), "b", "the rest of the file is reloaded")
        self.assertEqual(self.status_json()["workers"], 1, "workers needs a restart")
        after = "\n".join(self.edge.lines_since(n))
        self.assertRegex(after, r"workers", "a warning names [server] workers")
        self.assertRegex(after, r"access", "a warning names [log] access")
        self.get("/logo.svg", headers=[("X-Request-Id", "after-reload-1")])
        def logged():
            try:
                with open(log1, "rb") as f:
                    return b"after-reload-1" in f.read()
            except FileNotFoundError:
                return False

        self.assertTrue(ops.wait_until(logged, 3),
                        "the access log keeps its destination until a restart")
        self.assertFalse(os.path.exists(log2), "no new access log before a restart")

    def test_fewer_workers_in_the_new_file_keeps_every_worker_serving(self):
        # Regression (review): handlers sized their per-worker state by the new file's count
        # while the running workers stayed; a worker past the new count crashed on its next
        # static request.
        self.start(self.cfg("a", server={"workers": "4"}))
        self.sighup(self.cfg("b", server={"workers": "1"}))
        for i in range(40):  # new connections land on every worker (SO_REUSEPORT)
            r = self.get(f"/logo.svg?i={i}")
            self.assertEqual(r.status, 200, r)
        self.assertTrue(self.edge.running())
        self.assertEqual(self.status_json()["workers"], 4)

    def test_admin_token_reloaded(self):
        self.start(self.cfg("a", token="first-token"))
        self.assertEqual(ops.http(self.edge.admin_port, "/metrics", token="first-token").status, 200)
        self.sighup(self.cfg("a", token="second-token"))
        self.assertEqual(ops.http(self.edge.admin_port, "/metrics", token="first-token").status, 401)
        self.assertEqual(ops.http(self.edge.admin_port, "/metrics", token="second-token").status, 200)
        self.sighup(self.cfg("a"))
        self.assertEqual(ops.http(self.edge.admin_port, "/metrics").status, 200, "no token: open again")


class Listeners(ReloadCase):
    def test_listener_added_and_removed(self):
        p2, p3 = ops.free_port(), ops.free_port()
        self.start(self.cfg("a", listen=[f"127.0.0.1:{self.p1}", f"127.0.0.1:{p2}"]), n_listen=2)
        self.assertEqual(self.gen(self.p1), "a")
        self.assertEqual(self.gen(p2), "a")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", p3), timeout=2).close()
        self.sighup(self.cfg("b", listen=[f"127.0.0.1:{self.p1}", f"127.0.0.1:{p3}"]))

        def answers(port):
            try:
                return self.get("/", port).header("x-edge-gen") == "b"
            except OSError:
                return False

        def refuses(port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return False
            except ConnectionRefusedError:
                return True

        self.assertTrue(ops.wait_until(lambda: answers(p3), 3), "the added listener does not answer")
        self.assertTrue(ops.wait_until(lambda: refuses(p2), 3), "the removed listener still accepts")
        self.assertEqual(self.gen(self.p1), "b", "the kept listener")
        self.assertEqual(ops.listening_ports(self.edge.proc.pid), {self.p1, p3, self.edge.admin_port})

    def test_admin_and_public_ephemeral_listeners_never_swap(self):
        # Regression (review): with the public and the admin listener both on 127.0.0.1:0, a
        # reload adding a second public :0 gave it the admin's socket (and the reverse).
        self.write(et.make_config(self.site, "off", server={"workers": "2"}, listen=["127.0.0.1:0"],
                                  routes=ops.admin_toml("127.0.0.1:0") + ops.static_route(prefix="/")))
        self.edge = ops.OpsEdge(self.conf, expect_hosts={"127.0.0.1"}, expect_count=1).start()
        admin = self.edge.wait_admin()
        public = self.edge.port
        self.sighup(et.make_config(self.site, "off", server={"workers": "2"},
                                   listen=["127.0.0.1:0", "127.0.0.1:0"],
                                   routes=ops.admin_toml("127.0.0.1:0") + ops.static_route(prefix="/")))
        r = ops.http(admin, "/metrics")
        self.assertEqual(r.status, 200, "the admin socket still serves the admin routes")
        self.assertIn(b"edge_http_requests_total", r.body)
        r = self.get("/metrics", public)
        self.assertNotIn(b"edge_http_requests_total", r.body, "the public socket never serves metrics")
        self.sighup(et.make_config(self.site, "off", server={"workers": "2"}, listen=["127.0.0.1:0"],
                                   routes=ops.admin_toml("127.0.0.1:0") + ops.static_route(prefix="/")))
        self.assertEqual(ops.http(admin, "/metrics").status, 200)
        self.assertNotIn(b"edge_http_requests_total", self.get("/metrics", public).body)

    def test_kept_listener_never_refuses_during_reloads(self):
        self.start(self.cfg("a"))
        stop = threading.Event()
        stats = {"ok": 0, "refused": 0, "other": []}

        def hammer():
            while not stop.is_set():
                try:
                    s = socket.create_connection(("127.0.0.1", self.p1), timeout=5)
                except ConnectionRefusedError:
                    stats["refused"] += 1
                    continue
                except OSError as e:
                    stats["other"].append(repr(e))
                    continue
                try:
                    s.sendall(b"GET /logo.svg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    buf = b""
                    while True:
                        b = s.recv(65536)
                        if not b:
                            break
                        buf += b
                    if buf.startswith(b"HTTP/1.1 200"):
                        stats["ok"] += 1
                    else:
                        stats["other"].append(buf[:60])
                except OSError as e:
                    stats["other"].append(repr(e))
                finally:
                    s.close()

        t = threading.Thread(target=hammer, daemon=True)
        t.start()
        try:
            time.sleep(0.3)
            for i in range(5):
                self.sighup(self.cfg("b" if i % 2 == 0 else "a"))
                time.sleep(0.15)
            time.sleep(0.3)
        finally:
            stop.set()
            t.join(10)
        self.assertEqual(stats["refused"], 0, f"connections refused during reloads: {stats['refused']} "
                                              f"(ok {stats['ok']})")
        self.assertEqual(stats["other"], [], "other failures")
        self.assertGreater(stats["ok"], 20, "the loop did run")
        self.assertEqual(self.gen(), "b")


class ReloadCommand(ReloadCase):
    def cfg_pid(self, gen="a", pid_file=None):
        return self.cfg(gen, server={"pid_file": ops.q(pid_file or self.pid_file)})

    def run_reload(self, conf):
        return subprocess.run([et.EDGE_BIN, "--reload", "--config", conf], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=15)

    def assert_no_reload_logged(self, since, seconds=1.0):
        time.sleep(seconds)
        lines = [ln for ln in self.edge.lines_since(since) if "SIGHUP" in ln or "reload" in ln.lower()]
        self.assertEqual(lines, [], "the running edge was signalled")

    def test_reload_command(self):
        self.pid_file = os.path.join(self.tmp, "run", "edge.pid")
        os.makedirs(os.path.dirname(self.pid_file))
        self.start(self.cfg_pid("a"))
        self.assertTrue(ops.wait_until(lambda: os.path.exists(self.pid_file), 3), "no pid file written")
        with open(self.pid_file) as f:
            self.assertEqual(f.read().strip(), str(self.edge.proc.pid))

        # 1. a valid file: SIGHUP sent, the running edge reloads
        self.write(self.cfg_pid("b"))
        n = self.edge.line_count()
        p = self.run_reload(self.conf)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn(f"reload signalled to pid {self.edge.proc.pid}", (p.stdout + p.stderr).decode(), p)
        hits = self.edge.wait_log(RELOAD_OK, 1, since=n, timeout=5)
        self.assertTrue(hits, "edge --reload: no reload logged:\n" + "\n".join(self.edge.lines_since(n)))
        self.assertEqual(self.gen(), "b")

        # 2. an invalid file: exit 1 with FILE:LINE, nothing sent
        good = self.cfg_pid("c")
        lines = good.split("\n")
        at = self.line_of(good, "[[route]]")
        self.write("\n".join(lines[:at - 1] + ["[[route"] + lines[at:]))
        n = self.edge.line_count()
        p = self.run_reload(self.conf)
        self.assertEqual(p.returncode, 1, p)
        out = (p.stdout + p.stderr).decode()
        self.assertIn(f"{self.conf}:{at}:", out, "the problem is named as FILE:LINE")
        self.assert_no_reload_logged(n)
        self.assertEqual(self.gen(), "b")

        # 3. the pid file is missing: exit 1 with a message
        other = os.path.join(self.tmp, "other.toml")
        missing = os.path.join(self.tmp, "run", "missing.pid")
        self.write(self.cfg_pid("c", missing), other)
        n = self.edge.line_count()
        p = self.run_reload(other)
        self.assertEqual(p.returncode, 1, p)
        self.assertTrue((p.stdout + p.stderr).strip(), "a message")
        self.assertIn("missing.pid", (p.stdout + p.stderr).decode(), "the message names the pid file")
        # 4. a stale pid file (a process that has exited): exit 1
        dead = subprocess.Popen(["true"])
        dead.wait(5)
        stale = os.path.join(self.tmp, "run", "stale.pid")
        with open(stale, "w") as f:
            f.write(f"{dead.pid}\n")
        self.write(self.cfg_pid("c", stale), other)
        p = self.run_reload(other)
        self.assertEqual(p.returncode, 1, p)
        self.assertTrue((p.stdout + p.stderr).strip(), "a message")
        self.assert_no_reload_logged(n)
        self.assertEqual(self.gen(), "b")

        # 5. the pid file goes with the process
        self.write(self.cfg_pid("b"))
        self.edge.settle()
        self.assertEqual(self.edge.stop(), 0)
        self.assertFalse(os.path.exists(self.pid_file), "pid file left after a clean stop")


# ---------------------------------------------------------------------------------------------
# The load test


def parse_wrk(out):
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if not m:
        raise AssertionError(f"unexpected wrk output:\n{out}")
    res = {"requests": int(m.group(1)), "socket_errors": 0, "non2xx3xx": 0}
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if s:
        res["socket_errors"] = sum(int(x) for x in s.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if n:
        res["non2xx3xx"] = int(n.group(1))
    return res


class PyLoad:
    """wrk's stand-in: `conns` threads, each a keep-alive http.client loop for `seconds`."""

    def __init__(self, port, path, conns, seconds):
        self.port, self.path, self.conns, self.seconds = port, path, conns, seconds
        self.res = {"requests": 0, "socket_errors": 0, "non2xx3xx": 0}
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(conns)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self):
        end = time.monotonic() + self.seconds
        c = None
        while time.monotonic() < end:
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", self.path)
                r = c.getresponse()
                r.read()
                with self.lock:
                    self.res["requests"] += 1
                    if not 200 <= r.status < 400:
                        self.res["non2xx3xx"] += 1
                if r.will_close:
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.res["socket_errors"] += 1
                    self.errors.append(repr(e))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    def wait(self, timeout):
        for t in self.threads:
            t.join(timeout)
        return self.res


class LoadThroughReloads(ReloadCase):
    upstream_names = ["L"]
    DURATION = 12
    RELOADS = 20

    def config(self, gen):
        return self.cfg(gen, pools=ut.pool_toml("api", [self.ups["L"].address]),
                        routes=ut.proxy_route("/api/", "api", strip_prefix="/api", headers={"X-Edge-Gen": gen}))

    def test_20_reloads_under_load_zero_failures(self):
        self.start(self.config("a"))
        targets = [f"http://127.0.0.1:{self.p1}/logo.svg", f"http://127.0.0.1:{self.p1}/api/json"]
        for u in targets:
            self.assertEqual(et.curl(u).status, 200)
        # Steady state: the same load for 3 s without reloads, then edge's RSS.
        if WRK:
            warm = [subprocess.Popen([WRK, "-t2", "-c8", "-d3s", u], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL) for u in targets]
            for p in warm:
                p.wait(30)
        time.sleep(0.5)
        steady_kb = ops.rss_kb(self.edge.proc.pid)
        n0 = self.edge.line_count()
        t0 = time.monotonic()
        if WRK:
            procs = [subprocess.Popen([WRK, "-t2", "-c8", f"-d{self.DURATION}s", "--timeout", "5s", u],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for u in targets]
        else:
            loads = [PyLoad(self.p1, "/logo.svg", 8, self.DURATION).start(),
                     PyLoad(self.p1, "/api/json", 8, self.DURATION).start()]
        try:
            for i in range(self.RELOADS):  # one every 0.4 s from t0 + 1 s (the last at ~8.6 s)
                time.sleep(max(0.0, t0 + 1.0 + 0.4 * i - time.monotonic()))
                self.sighup(self.config("b" if i % 2 == 0 else "a"), timeout=5)
            reloads_done = time.monotonic() - t0
            if WRK:
                outs = []
                for p in procs:
                    out, _ = p.communicate(timeout=self.DURATION + 20)
                    outs.append(out.decode("utf-8", "replace"))
                results = [parse_wrk(o) for o in outs]
            else:
                results = [ld.wait(self.DURATION + 20) for ld in loads]
                outs = [json.dumps(ld.res) + " " + "; ".join(ld.errors[:5]) for ld in loads]
        finally:
            if WRK:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait(5)
        report = "\n".join(f"--- {u}\n{o}" for u, o in zip(targets, outs))
        sys.stderr.write("\n[load] " + "; ".join(f"{u}: {r}" for u, r in zip(targets, results))
                         + f"; {self.RELOADS} reloads in {reloads_done:.1f} s\n")
        self.assertLess(reloads_done, self.DURATION, f"the reloads did not all happen under load\n{report}")
        ok_lines = [ln for ln in self.edge.lines_since(n0) if re.search(RELOAD_OK, ln)]
        self.assertEqual(len(ok_lines), self.RELOADS, "\n".join(self.edge.lines_since(n0)))
        for u, res in zip(targets, results):
            self.assertEqual(res["socket_errors"], 0, f"{u}: socket errors\n{report}")
            self.assertEqual(res["non2xx3xx"], 0, f"{u}: non-2xx/3xx responses\n{report}")
            self.assertGreater(res["requests"], 200, f"{u}: too few requests to prove anything\n{report}")
        self.assertEqual(self.gen(), "a" if self.RELOADS % 2 == 0 else "b")
        m = self.metrics()
        self.assertEqual(m.get("edge_config_reloads_total", {"result": "ok"}), self.RELOADS)
        self.assertEqual(m.sum("edge_http_requests_total", {"class": "5xx"}), 0)
        # Memory back to its steady state: 20 snapshots came and went (each connection drops its
        # old one at its next request or its close). Allocator slack allowed, not a growth per
        # reload of what a config holds.
        time.sleep(1.0)
        after_kb = ops.rss_kb(self.edge.proc.pid)
        sys.stderr.write(f"[load] edge RSS steady {steady_kb} kB, after the reloads {after_kb} kB\n")
        self.assertLess(after_kb - steady_kb, 8 * 1024, "edge's memory grew through the reloads")


if __name__ == "__main__":
    unittest.main()
