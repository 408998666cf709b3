"""Real upstreams for the reverse-proxy tests: instances of upstream.js (Node, built-ins only).

    ups = upstreamtest.start_many(["A", "B", "C"])       # each prints `listening <port>`
    ups[0].address                                      # "127.0.0.1:<port>"
    ups[0].count()["requests"]; ups[0].log(); ups[0].set_health(False); ups[0].kill()
    text = upstreamtest.pool_toml("api", [ups[0].address, {"address": ..., "weight": 2}],
                                  balance="round_robin", health={"path": "/health", ...})
    upstreamtest.stop_all(ups)                         # SIGTERM by PID, SIGKILL if it lingers

    b = upstreamtest.Upstream("B", port=ups[0].port).start()   # a fixed port: the same one again
                                                        # after ups[0].kill() (a restarted instance)

    # HTTPS: upstream.js --tls-cert/--tls-key [--tls-ca-for-clients]; the admin API and get() then
    # speak TLS too (admin_context: an ssl.SSLContext, default: no verification, no client cert)
    t = upstreamtest.Upstream("T", tls_cert=crt, tls_key=key, tls_ca_for_clients=ca).start()

Every instance is stopped by its own PID, never by name.  Stdlib only.
"""
import atexit
import http.client
import json
import os
import select
import ssl
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
UPSTREAM_JS = os.path.join(HERE, "upstream.js")
NODE = os.environ.get("NODE_BIN") or shutil.which("node") or "node"


class UpstreamError(Exception):
    pass


_live = set()


class Upstream:
    """One `node upstream.js` process on 127.0.0.1:<ephemeral>."""

    def __init__(self, name, mode="normal", delay_ms=None, keepalive_ms=None,
                 tls_cert=None, tls_key=None, tls_ca_for_clients=None, tls_handshake_delay_ms=None,
                 admin_context=None, port=0):
        self.name = name
        self.listen_port = port  # 0: ephemeral
        self.mode = mode
        self.delay_ms = delay_ms
        self.keepalive_ms = keepalive_ms
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.tls_ca_for_clients = tls_ca_for_clients
        self.tls_handshake_delay_ms = tls_handshake_delay_ms
        self.admin_context = admin_context
        self.proc = None
        self.port = None
        self.stderr_path = None

    def start(self, timeout=10.0):
        if not shutil.which(NODE) and not os.path.exists(NODE):
            raise UpstreamError(f"node not found ({NODE!r}); set NODE_BIN")
        cmd = [NODE, UPSTREAM_JS, "--port", str(self.listen_port), "--name", self.name, "--mode", self.mode]
        if self.delay_ms is not None:
            cmd += ["--delay-ms", str(self.delay_ms)]
        if self.keepalive_ms is not None:
            cmd += ["--keepalive-ms", str(self.keepalive_ms)]
        if self.tls_cert:
            cmd += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
            if self.tls_ca_for_clients:
                cmd += ["--tls-ca-for-clients", self.tls_ca_for_clients]
            if self.tls_handshake_delay_ms is not None:
                cmd += ["--tls-handshake-delay-ms", str(self.tls_handshake_delay_ms)]
        fd, self.stderr_path = tempfile.mkstemp(prefix=f"upstream-{self.name}-", suffix=".err")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=fd)
        os.close(fd)
        _live.add(self)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                break
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    break
                line += c
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("listening "):
            err = self.stderr()
            self.kill()
            raise UpstreamError(f"upstream {self.name} did not print 'listening <port>' (got {text!r}); stderr:\n{err}")
        self.port = int(text.split()[1])
        return self

    @property
    def pid(self):
        return self.proc.pid

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            with open(self.stderr_path, "r", errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    # -- admin API (direct, never through edge) --------------------------------------------------
    def _http(self, timeout):
        if not self.tls_cert:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        ctx = self.admin_context
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)

    def admin(self, path, timeout=3.0):
        c = self._http(timeout)
        try:
            c.request("GET", "/__admin/" + path)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise UpstreamError(f"{self.name} /__admin/{path}: {r.status} {body!r}")
            return json.loads(body)
        finally:
            c.close()

    def count(self):
        """{requests, completed, aborted, connections, active, upgrades, by_path, methods}"""
        return self.admin("count")

    def log(self):
        """[{seq, method, url, socket_id, completed}] (the last 1000 requests; seq = the `requests`
        count once this one was counted, so `e["seq"] > count()["requests"]` taken earlier means newer)."""
        return self.admin("log")

    def reset(self):
        self.admin("reset")

    def set_health(self, ok):
        self.admin("health?ok=" + ("1" if ok else "0"))

    def get(self, path, timeout=3.0):
        """A direct GET (not through edge): (status, headers dict lower-cased, body bytes)."""
        c = self._http(timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    # -- lifecycle --------------------------------------------------------------------------------
    def stop(self, timeout=5.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._cleanup()

    def kill(self):
        """SIGKILL by PID (the 'instance dies' case) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._cleanup()

    def _cleanup(self):
        try:
            if self.proc.stdout:
                self.proc.stdout.close()
        except OSError:
            pass
        if self.stderr_path and os.path.exists(self.stderr_path) and not self.running():
            os.unlink(self.stderr_path)
            self.stderr_path = None
        _live.discard(self)

    def __repr__(self):
        return f"<Upstream {self.name} {self.mode}{' tls' if self.tls_cert else ''} pid={self.proc.pid if self.proc else None} port={self.port}>"


def start_many(names, mode="normal", **kw):
    """Start one instance per name (same mode); all or nothing."""
    ups = []
    try:
        for n in names:
            ups.append(Upstream(n, mode, **kw).start())
    except BaseException:
        stop_all(ups)
        raise
    return ups


def stop_all(ups):
    for u in ups:
        try:
            u.stop()
        except Exception:
            pass


@atexit.register
def _stop_leftovers():
    for u in list(_live):
        try:
            u.kill()
        except Exception:
            pass


def dead_address():
    """127.0.0.1:<port> where nothing listens (bound, then closed: connect is refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------
# Config text (the [[upstream]] syntax of /work/notes/proxy_spec.md, conf/REFERENCE.md)


def _val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_val(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    raise TypeError(v)


def pool_toml(name, servers, health=None, passive=None, **opts):
    """An [[upstream]] table.  servers: "host:port" strings or dicts ({"address":..., "weight": 2});
    opts: balance, keepalive, connect_timeout, header_timeout, tries, ... (Python values);
    health / passive: dicts for [upstream.health] / [upstream.passive]."""
    out = ["", "[[upstream]]", f"name = {_val(name)}", f"servers = {_val(list(servers))}"]
    out += [f"{k} = {_val(v)}" for k, v in opts.items()]
    if health:
        out += ["", "[upstream.health]"] + [f"{k} = {_val(v)}" for k, v in health.items()]
    if passive:
        out += ["", "[upstream.passive]"] + [f"{k} = {_val(v)}" for k, v in passive.items()]
    return "\n".join(out) + "\n"


def proxy_route(prefix, pool, **opts):
    """A [[route]] proxying `prefix` to `pool` (opts: strip_prefix, max_body, proxy_host, websocket)."""
    out = ["", "[[route]]", f"prefix = {_val(prefix)}", f"proxy = {_val(pool)}"]
    out += [f"{k} = {_val(v)}" for k, v in opts.items()]
    return "\n".join(out) + "\n"


def routes_toml(pools, proxies, root="site"):
    """The `routes` text for edgetest: the [[upstream]] pools, then /health, the proxy routes (in
    order) and the SPA at / (root relative to the config file, as edgetest lays it out)."""
    return "".join(pools) + f"""
[[route]]
path = "/health"
health = true
""" + "".join(proxies) + f"""
[[route]]
prefix = "/"
root = {json.dumps(root)}
spa_fallback = "/index.html"
"""
