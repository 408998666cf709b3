"""Per-client rate limiting (issue 7, /work/notes/ratelimit_spec.md) end to end: the real edge, a
real Node upstream (upstream.js) behind proxy routes, and a real `redis-server` for the shared store.

- a route's `rate_limit` (GCRA): the burst allowed, the next one 429 JSON with Retry-After and the
  IETF RateLimit / RateLimit-Policy headers, never reaching the upstream; one more allowed every
  window/requests, the whole burst after the window, no double burst
- routes without a limit never limited; keys ip / header:<Name> / cookie:<name> (absent: the IP);
  several limits on one route (the one that refuses is named); trusted_proxies (X-Forwarded-For
  names the client, IPv6 grouped by /56); allowlist; `headers = false`; a custom message
- `[[listen]] max_conns_per_ip`
- `store = "redis://..."`: two edge processes enforce one combined limit; Redis SIGKILLed: no crash,
  `on_store_error` local / deny / allow, logged once; Redis restarted: sharing resumes by itself
- `--check` errors with `file:line:`

Windows are short (1-2 s) or long (30 s, where only the burst matters); sleeps are aimed at the
middle of the interval where the expected answer holds, so a loaded machine has margin both ways.
Needs `node` and, for the Redis cases, `redis-server` (Debian package `redis-server`; skipped with a
message when absent).  Every process is started and stopped by its own PID.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgetest as et  # noqa: E402
import test_proxy as tp  # noqa: E402  (ProxyCase; its own tests are not collected here)
import upstreamtest as ut  # noqa: E402

REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")

# ---------------------------------------------------------------------------------------------
# Header parsing

_ITEM_RE = re.compile(r'^\s*"([^"]*)"\s*((?:;\s*[A-Za-z][A-Za-z0-9_-]*\s*=\s*[^;,\s]+\s*)*)$')


def parse_item(value):
    """`"name";r=4;t=1` -> ("name", {"r": 4, "t": 1}) (integers where they are), or None."""
    if value is None:
        return None
    m = _ITEM_RE.match(value)
    if not m:
        return None
    params = {}
    for p in m.group(2).split(";"):
        if "=" in p:
            k, v = (x.strip() for x in p.split("=", 1))
            params[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
    return m.group(1), params


def fresh_ip(_n=[0]):
    """A new documentation-range client address (TEST-NET-3) for each call: a fresh budget."""
    _n[0] += 1
    return f"203.0.113.{_n[0] % 250 + 1}" if _n[0] < 250 else f"192.0.2.{_n[0] % 250 + 1}"


class RateLimitMixin:
    """Helpers shared by the classes below (they need self.json_body-like behaviour)."""

    def rl(self, r):
        """(name, params) of the RateLimit header of r (asserting it parses)."""
        v = r.header("ratelimit")
        item = parse_item(v)
        self.assertIsNotNone(item, f"RateLimit header missing or malformed ({v!r}) in {r!r}")
        return item

    def policy(self, r):
        v = r.header("ratelimit-policy")
        item = parse_item(v)
        self.assertIsNotNone(item, f"RateLimit-Policy header missing or malformed ({v!r}) in {r!r}")
        return item

    def assert429(self, r, policy=None, name=None, max_retry=None, message=None):
        """A refusal exactly as the spec says; returns the JSON document."""
        self.assertEqual(r.status, 429, f"expected 429: {r!r}")
        self.assertNotIn(b"EDGETEST-INDEX", r.body)
        self.assertIsNone(r.header("x-upstream"), f"the refused request reached the upstream: {r!r}")
        self.assertEqual(r.media_type(), "application/json", r)
        self.assertIn("no-store", (r.header("cache-control") or "").lower(), r)
        try:
            doc = json.loads(r.body)
        except ValueError:
            self.fail(f"429 body is not JSON: {r!r}")
        self.assertIsInstance(doc.get("error"), str, doc)
        if message is None:
            self.assertTrue(doc["error"].startswith("Too many requests"), doc)
        else:
            self.assertEqual(doc["error"], message, doc)
        ra = r.header("retry-after")
        self.assertIsNotNone(ra, f"no Retry-After: {r!r}")
        self.assertRegex(ra, r"^\d+$", "Retry-After must be whole seconds")
        ra = int(ra)
        self.assertGreaterEqual(ra, 1, r)
        if max_retry is not None:
            self.assertLessEqual(ra, max_retry, r)
        self.assertIsInstance(doc.get("retry_after"), int, doc)
        self.assertEqual(doc["retry_after"], ra, f"body retry_after vs Retry-After: {doc} {r!r}")
        rid = r.header("x-request-id")
        self.assertIsNotNone(rid, r)
        self.assertEqual(doc.get("request_id"), rid, doc)
        if policy is not None:
            self.assertEqual(r.header("ratelimit-policy"), policy, r)
        n, p = self.rl(r)
        if name is not None:
            self.assertEqual(n, name, f"the refusing limit's name in RateLimit: {r!r}")
        self.assertEqual(p.get("r"), 0, r)
        self.assertIsInstance(p.get("t"), int, r)
        self.assertGreaterEqual(p["t"], 1, r)
        if max_retry is not None:
            self.assertLessEqual(p["t"], max_retry, r)
        return doc

    def assertNoRateLimitHeaders(self, r):
        for h in ("ratelimit", "ratelimit-policy", "retry-after"):
            self.assertIsNone(r.header(h), f"{h} on {r!r}")


def xff(ip):
    return [("X-Forwarded-For", ip)]


# ---------------------------------------------------------------------------------------------
# One edge (2 workers: the counters are shared by the process), local counters


class RLCase(tp.ProxyCase, RateLimitMixin):
    """ProxyCase with a `[rate_limit]` table (rate_limit_toml) before the pools and routes."""

    rate_limit_toml = ""
    upstream_specs = {"R": ("normal", {})}

    @classmethod
    def route_limits(cls):
        """[(prefix, rate_limit value or None)]: proxy routes to the upstream, prefix stripped."""
        return []

    @classmethod
    def proxy_config(cls, ups):
        cls.up = ups["R"]
        proxies = []
        for prefix, lim in cls.route_limits():
            opts = {"strip_prefix": prefix.rstrip("/")}
            if lim is not None:
                opts["rate_limit"] = lim
            proxies.append(ut.proxy_route(prefix, "api", **opts))
        return [cls.rate_limit_toml, ut.pool_toml("api", [cls.up.address])], proxies

    def upstream_urls(self):
        return [e["url"] for e in self.up.log()]


class RateLimitLocal(RLCase):
    server_opts = {"workers": "2", "trusted_proxies": '["127.0.0.1"]'}
    rate_limit_toml = '\n[rate_limit]\nallowlist = ["198.51.100.0/24"]\n'

    @classmethod
    def route_limits(cls):
        return [
            ("/api/", {"requests": 5, "window": "2s"}),
            ("/free/", None),
            ("/keyed/", {"requests": 3, "window": "30s", "key": "header:X-Api-Key"}),
            ("/cookie/", {"requests": 3, "window": "30s", "key": "cookie:sid"}),
            ("/multi/", [{"requests": 3, "window": "1s", "name": "burst"},
                         {"requests": 5, "window": "10s", "name": "slow"}]),
            ("/tp/", {"requests": 2, "window": "30s"}),
            ("/tight/", {"requests": 2, "window": "30s"}),
        ]

    def burst(self, path, n, headers=None):
        return [self.get(path, headers=headers) for _ in range(n)]

    def within(self, t0, limit, what):
        """Timing-dependent steps: skip (saying so) rather than guess when the machine was too slow
        to send them inside the interval where the expected answer holds."""
        late = time.monotonic() - t0
        if late >= limit:
            self.skipTest(f"machine too slow: {what} took {late:.2f} s (must be < {limit} s to judge)")

    # -- 1. the basic limit ------------------------------------------------------------------
    def test_burst_then_429_then_gcra_refill(self):
        policy = '"5-in-2s";q=5;w=2'
        t0 = time.monotonic()
        rs = [self.get(f"/api/json?burst1={i}") for i in range(5)]
        for i, r in enumerate(rs):
            self.assertEqual(r.status, 200, f"request {i + 1} of 5: {r!r}")
            self.assertEqual(r.header("x-upstream"), "R", r)
            self.assertEqual(r.header("ratelimit-policy"), policy, r)
        names_r = [self.rl(r) for r in rs]
        self.assertEqual([n for n, _ in names_r], ["5-in-2s"] * 5)
        self.assertEqual([p.get("r") for _, p in names_r], [4, 3, 2, 1, 0], "remaining must count down")
        for _, p in names_r:
            self.assertIsInstance(p.get("t"), int)
            self.assertTrue(0 <= p["t"] <= 2, p)

        r = self.get("/api/json?refused=1")
        self.within(t0, 0.38, "6 requests")  # the first refill is at t0 + 0.4
        self.assert429(r, policy=policy, name="5-in-2s", max_retry=2)
        urls = self.upstream_urls()
        self.assertFalse([u for u in urls if "refused=1" in u], f"the upstream saw the refused request: {urls}")
        self.assertEqual(len([u for u in urls if "burst1=" in u]), 5, urls)

        # One more every window/requests = 0.4 s.  At t0 + 0.6 exactly one is allowed (a second one
        # would need t0 + 0.8): no double burst.
        time.sleep(max(0.0, t0 + 0.6 - time.monotonic()))
        rs = [self.get(f"/api/json?refill={i}") for i in range(5)]
        self.within(t0, 0.78, "the sleep and 5 more requests")
        self.assertEqual(rs[0].status, 200, f"GCRA: one request allowed again after window/requests: {rs[0]!r}")
        self.assertEqual(self.rl(rs[0])[1].get("r"), 0, rs[0])
        self.assertEqual([r.status for r in rs], [200, 429, 429, 429, 429], f"double burst: {rs}")
        self.assert429(rs[1], policy=policy, name="5-in-2s", max_retry=2)
        urls = self.upstream_urls()
        self.assertEqual(len([u for u in urls if "refill=" in u]), 1, urls)

        # After the whole window (the allowed refill moved it to t0 + 2.4): the full burst again,
        # and not more.
        time.sleep(max(0.0, t0 + 2.9 - time.monotonic()))
        t1 = time.monotonic()
        rs = [self.get(f"/api/json?burst2={i}") for i in range(6)]
        self.assertEqual([r.status for r in rs[:5]], [200] * 5, f"the full burst after the window: {rs}")
        self.assertEqual([self.rl(r)[1].get("r") for r in rs[:5]], [4, 3, 2, 1, 0])
        self.within(t1, 0.38, "6 requests")
        self.assert429(rs[5], policy=policy, name="5-in-2s", max_retry=2)

    # -- 2. routes without a limit -------------------------------------------------------------
    def test_routes_without_rate_limit_never_limited(self):
        for path in ("/", "/health", "/free/json", "/index.html"):
            with self.subTest(path=path):
                for i in range(25):
                    r = self.get(path)
                    self.assertEqual(r.status, 200, f"{path} #{i + 1}: {r!r}")
                    self.assertNoRateLimitHeaders(r)

    # -- 3. keys ---------------------------------------------------------------------------------
    def test_key_header(self):
        a, b = [("X-Api-Key", "key-aaa")], [("X-Api-Key", "key-bbb")]
        self.assertEqual([r.status for r in self.burst("/keyed/json", 3, a)], [200] * 3)
        self.assert429(self.get("/keyed/json", headers=a))
        # another key from the same IP: its own budget
        self.assertEqual([r.status for r in self.burst("/keyed/json", 3, b)], [200] * 3)
        self.assert429(self.get("/keyed/json", headers=b))
        # the key is the budget, whatever the client IP (trusted XFF)
        self.assert429(self.get("/keyed/json", headers=a + xff("192.0.2.200")))
        # no header: limited by the IP (127.0.0.1 here), separately from the keys
        self.assertEqual([r.status for r in self.burst("/keyed/json", 3)], [200] * 3)
        self.assert429(self.get("/keyed/json"))
        # no header from another client IP: its own budget
        self.assertEqual(self.get("/keyed/json", headers=xff("192.0.2.201")).status, 200)
        self.assertEqual(self.get("/keyed/json", headers=[("X-Api-Key", "key-ccc")]).status, 200)

    def test_key_cookie(self):
        s1 = [("Cookie", "theme=dark; sid=s-one")]
        s2 = [("Cookie", "sid=s-two; theme=dark")]
        self.assertEqual([r.status for r in self.burst("/cookie/json", 3, s1)], [200] * 3)
        self.assert429(self.get("/cookie/json", headers=s1))
        self.assertEqual([r.status for r in self.burst("/cookie/json", 3, s2)], [200] * 3)
        self.assert429(self.get("/cookie/json", headers=s2))
        self.assert429(self.get("/cookie/json", headers=[("Cookie", "sid=s-one")]))  # same value, alone
        # no sid cookie (none at all, or only other cookies): the IP
        self.assertEqual([r.status for r in self.burst("/cookie/json", 3)], [200] * 3)
        self.assert429(self.get("/cookie/json", headers=[("Cookie", "theme=dark")]))
        self.assertEqual(self.get("/cookie/json", headers=[("Cookie", "sid=s-three")]).status, 200)

    # -- 4. several limits ---------------------------------------------------------------------
    def test_several_limits_on_one_route(self):
        t0 = time.monotonic()
        rs = self.burst("/multi/json", 3)
        self.assertEqual([r.status for r in rs], [200] * 3, rs)
        # the limit with the fewest remaining is the one shown: burst (2, 1, 0 left; slow 4, 3, 2)
        self.assertEqual([self.rl(r)[0] for r in rs], ["burst"] * 3, rs)
        self.assertEqual([self.rl(r)[1].get("r") for r in rs], [2, 1, 0], rs)
        self.assertEqual(rs[0].header("ratelimit-policy"), '"burst";q=3;w=1')
        r = self.get("/multi/json")
        self.within(t0, 0.32, "4 requests")  # burst gives one back every 1/3 s
        self.assert429(r, policy='"burst";q=3;w=1', name="burst", max_retry=1)

        # burst refilled after 1 s; slow has 2 left (5 in 10 s: one back every 2 s, none yet)
        time.sleep(max(0.0, t0 + 1.25 - time.monotonic()))
        rs = self.burst("/multi/json", 3)
        self.within(t0, 1.95, "the second burst")  # slow gives one back at t0 + 2
        self.assertEqual([r.status for r in rs[:2]], [200, 200],
                         "after 1 s the burst limit allows again; slow allows 5 in all "
                         f"(a request refused by burst must not use slow's budget): {rs}")
        self.assertEqual([self.rl(r)[0] for r in rs[:2]], ["slow", "slow"], rs)
        self.assertEqual([self.rl(r)[1].get("r") for r in rs[:2]], [1, 0], rs)
        self.assertEqual(rs[1].header("ratelimit-policy"), '"slow";q=5;w=10')
        self.assert429(rs[2], policy='"slow";q=5;w=10', name="slow", max_retry=10)

    # -- 5. trusted proxies, IPv6 /56 ------------------------------------------------------------
    def test_trusted_proxy_client_addresses_and_ipv6_prefix(self):
        def statuses(ip, n):
            return [self.get("/tp/json", headers=xff(ip)).status for _ in range(n)]

        self.assertEqual(statuses("203.0.113.210", 3), [200, 200, 429])
        self.assertEqual(statuses("203.0.113.211", 3), [200, 200, 429], "another client: its own budget")
        # the right-most entry that is not a trusted proxy is the client
        self.assertEqual(statuses("198.18.0.1, 203.0.113.210, 127.0.0.1", 1), [429])
        self.assertEqual(statuses("203.0.113.210, 198.18.0.9", 1), [200])
        # 127.0.0.1 itself (no XFF) is yet another client
        self.assertEqual(self.get("/tp/json").status, 200)

        # IPv6: grouped by /56 (the default ipv6_prefix)
        self.assertEqual(statuses("2001:db8:0:1::1", 1), [200])
        self.assertEqual(statuses("2001:db8:0:1::2", 1), [200])
        self.assertEqual(statuses("2001:db8:0:2::1", 1), [429], "2001:db8:0:1::/64 and :2::/64 share the /56")
        self.assertEqual(statuses("2001:db8:0:ff:1:2:3:4", 1), [429], "still 2001:db8:0::/56")
        self.assertEqual(statuses("2001:db8:0:100::1", 3), [200, 200, 429], "2001:db8:0:100::/56 is another")
        self.assertEqual(statuses("2001:db8:1::1", 2), [200, 200], "another /56")
        # IPv4-mapped IPv6 (as Node proxies write it) is the IPv4 client, not one shared ::/56
        self.assertEqual(statuses("::ffff:203.0.113.220", 3), [200, 200, 429])
        self.assertEqual(statuses("203.0.113.220", 1), [429], "::ffff:203.0.113.220 is 203.0.113.220")
        self.assertEqual(statuses("::ffff:203.0.113.221", 1), [200], "all IPv4-mapped clients in one budget")

    # -- 6. allowlist ----------------------------------------------------------------------------
    def test_allowlist(self):
        for ip in ("198.51.100.7", "198.51.100.255"):
            for i in range(10):
                r = self.get("/tight/json", headers=xff(ip))
                self.assertEqual(r.status, 200, f"allowlisted {ip} limited at #{i + 1}: {r!r}")
        self.assertEqual([self.get("/tight/json", headers=xff("198.51.101.7")).status for _ in range(3)],
                         [200, 200, 429], "just outside the allowlisted /24")


# ---------------------------------------------------------------------------------------------
# headers = false, a custom message, no trusted proxies


class RateLimitNoHeaders(RLCase):
    rate_limit_toml = '\n[rate_limit]\nheaders = false\nmessage = "Slow down, please."\n'

    @classmethod
    def route_limits(cls):
        return [("/api/", {"requests": 2, "window": "30s"}),
                ("/spoof/", {"requests": 2, "window": "30s"})]

    def test_allowed_responses_carry_no_headers(self):
        for i in range(2):
            r = self.get("/api/json")
            self.assertEqual(r.status, 200, r)
            self.assertNoRateLimitHeaders(r)
        r = self.get("/api/json")
        self.assert429(r, policy='"2-in-30s";q=2;w=30', message="Slow down, please.", max_retry=30)

    def test_forwarded_for_ignored_from_untrusted_peer(self):
        rs = [self.get("/spoof/json", headers=xff(f"203.0.113.{50 + i}")) for i in range(3)]
        self.assertEqual([r.status for r in rs], [200, 200, 429],
                         "X-Forwarded-For from an untrusted peer must not buy a fresh budget")


# ---------------------------------------------------------------------------------------------
# 8. max_conns_per_ip


class ConnLimitPerIP(et.EdgeTestCase):
    listen = [{"address": "127.0.0.1:0", "max_conns_per_ip": "3"}]

    def served(self, c):
        c.send(et.request("/"))
        r = c.read_response()
        self.assertEqual(r.status, 200, r)

    def refused(self, c):
        """The connection is closed without being served (nothing, or a 429 then the close)."""
        try:
            c.send(et.request("/"))
        except (BrokenPipeError, ConnectionResetError):
            return
        data, closed = c.read_until_close(timeout=3.0)
        self.assertTrue(closed, f"an over-limit connection was left open; got {data[:200]!r}")
        if data:
            rs, _ = et.parse_all(data, closed=True)
            self.assertTrue(rs, data[:200])
            self.assertEqual(rs[0].status, 429, f"an over-limit connection was served: {rs[0]!r}")

    def open_served(self, deadline):
        """A new connection that is served, retried until the deadline (the close of another one
        reaches edge asynchronously)."""
        last = None
        while time.monotonic() < deadline:
            c = et.Conn(self.port)
            try:
                c.send(et.request("/"))
                r = c.read_response(timeout=2.0)
                if r.status == 200:
                    return c
                last = r
            except (et.ProtocolError, OSError) as e:
                last = e
            c.close()
            time.sleep(0.1)
        self.fail(f"no connection served after one of 3 was closed: {last!r}")

    def test_fourth_connection_closed_at_once(self):
        conns = []
        try:
            for _ in range(3):
                conns.append(et.Conn(self.port))
                self.served(conns[-1])
            c4 = et.Conn(self.port)
            t = time.monotonic()
            self.refused(c4)
            self.assertLess(time.monotonic() - t, 2.0, "not closed at once")
            c4.close()
            for c in conns:  # the three still work
                self.served(c)
            conns.pop(0).close()
            conns.append(self.open_served(time.monotonic() + 3.0))
            # full again: the next one is refused again (the slot count did not drift)
            c5 = et.Conn(self.port)
            self.refused(c5)
            c5.close()
        finally:
            for c in conns:
                c.close()


# ---------------------------------------------------------------------------------------------
# 9. Redis: two edge processes, one limit; Redis killed and restarted


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def resp_command(port, *args, timeout=2.0):
    """One Redis command over RESP; returns the raw reply bytes.  Strings go as latin-1, so a key
    read back (bulk strings are decoded as latin-1) is sent back byte for byte."""
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        a = str(a).encode("latin-1")
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if _resp_complete(buf):
                break
        return buf


def _resp_complete(buf):
    try:
        return _resp_parse(buf, 0) is not None
    except ValueError:
        return True


def _resp_parse(buf, i):
    """-> (value, next index) or None if incomplete."""
    e = buf.find(b"\r\n", i)
    if e < 0:
        return None
    t, line = buf[i:i + 1], buf[i + 1:e]
    if t in (b"+", b"-"):
        return line.decode(), e + 2
    if t == b":":
        return int(line), e + 2
    if t == b"$":
        n = int(line)
        if n < 0:
            return None, e + 2
        if len(buf) < e + 2 + n + 2:
            return None
        return buf[e + 2:e + 2 + n].decode("latin-1"), e + 2 + n + 2
    if t == b"*":
        n = int(line)
        out, j = [], e + 2
        for _ in range(max(n, 0)):
            r = _resp_parse(buf, j)
            if r is None:
                return None
            v, j = r
            out.append(v)
        return out, j
    raise ValueError(buf[i:i + 40])


def resp(port, *args):
    r = _resp_parse(resp_command(port, *args), 0)
    return None if r is None else r[0]


class Redis:
    """One `redis-server` on 127.0.0.1:<port>, no persistence, stopped by its PID."""

    def __init__(self, port, workdir):
        self.port = port
        self.workdir = workdir
        self.proc = None
        self.log_path = os.path.join(workdir, f"redis-{port}.log")

    def start(self, timeout=10.0):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.workdir, "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if resp(self.port, "PING") == "PONG":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING; log:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class RateLimitRedis(unittest.TestCase, RateLimitMixin):
    """Edges A and B (one config file, on_store_error left at its default, "local"), C ("deny")
    and D ("allow"), all on one Redis; the client address comes from a trusted X-Forwarded-For so
    each step has fresh keys."""

    LIMIT = 6
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        if not REDIS_SERVER:
            raise unittest.SkipTest("redis-server is not installed (Debian package `redis-server`; "
                                    "or set REDIS_SERVER_BIN): the Redis store cases are skipped")
        if not os.path.exists(et.EDGE_BIN):
            raise et.EdgeError(f"edge binary not found at {et.EDGE_BIN} (set EDGE_BIN)")
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-rl-redis-")
        cls.redis = None
        cls.up = None
        cls.edges = {}
        try:
            cls.site = et.Site(cls.tmp)
            cls.redis_port = free_port()
            cls.redis = Redis(cls.redis_port, cls.tmp).start()
            cls.up = ut.Upstream("R").start()
            for name, policy in (("AB", None), ("C", "deny"), ("D", "allow")):
                rl = f'\n[rate_limit]\nstore = "redis://127.0.0.1:{cls.redis_port}"\n'
                if policy:
                    rl += f'on_store_error = "{policy}"\n'
                routes = ut.routes_toml([rl, ut.pool_toml("api", [cls.up.address])],
                                        [ut.proxy_route("/api/", "api", strip_prefix="/api",
                                                        rate_limit={"requests": cls.LIMIT, "window": "30s"})])
                text = et.make_config(cls.site, "off", server={"trusted_proxies": '["127.0.0.1"]'},
                                      listen=["127.0.0.1:0"], routes=routes)
                path = os.path.join(cls.tmp, f"edge-{name}.toml")
                with open(path, "w") as f:
                    f.write(text)
                for e in (("A", "B") if name == "AB" else (name,)):
                    cls.edges[e] = et.Edge(path, expect_hosts={"127.0.0.1"}, expect_count=1).start()
        except BaseException:
            cls._cleanup()
            raise

    @classmethod
    def _cleanup(cls):
        for e in cls.edges.values():
            e.kill()
        if cls.up is not None:
            cls.up.stop()
        if cls.redis is not None:
            cls.redis.kill()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        try:
            bad = {}
            for n, e in cls.edges.items():
                e.settle()
                rc = e.stop()
                if rc != 0:
                    bad[n] = (rc, "\n".join(e.stderr_lines[-30:]))
            if bad:
                raise AssertionError(f"edges did not exit 0 on SIGTERM: {bad}")
        finally:
            cls._cleanup()

    # -- helpers -----------------------------------------------------------------------------------
    def get(self, edge, ip, tag="", timeout=5.0):
        e = self.edges[edge]
        self.assertTrue(e.running(), f"edge {edge} died; stderr:\n{e.stderr_text()[-3000:]}")
        t = time.monotonic()
        r = et.raw_one(e.port, et.request(f"/api/json?{tag}", headers=xff(ip)), timeout=timeout)
        self.assertLess(time.monotonic() - t, 2.0, f"edge {edge} took long to answer (a blocked loop?)")
        return r

    def statuses(self, edge, ip, n, tag=""):
        return [self.get(edge, ip, tag).status for _ in range(n)]

    def assert_all_running(self):
        for n, e in self.edges.items():
            self.assertTrue(e.running(), f"edge {n} exited ({e.proc.returncode}); stderr:\n{e.stderr_text()[-3000:]}")

    def assert_combined(self, ip, what):
        half = self.LIMIT // 2
        self.assertEqual(self.statuses("A", ip, half), [200] * half, what)
        self.assertEqual(self.statuses("B", ip, half), [200] * half, what)
        self.assert429(self.get("A", ip), policy=f'"{self.LIMIT}-in-30s";q={self.LIMIT};w=30', max_retry=30)
        self.assert429(self.get("B", ip), max_retry=30)

    def shared_now(self):
        """True once A's decisions are visible to B (both connected): the limit used up through A,
        then one through B refused."""
        ip = fresh_ip()
        if self.statuses("A", ip, self.LIMIT) != [200] * self.LIMIT:
            return False
        return self.get("B", ip).status == 429

    def lines(self, edge, *needles):
        return [ln for ln in self.edges[edge].stderr_lines
                if all(n in ln.lower() for n in needles)]

    # -- the tests, in this order: 1 leaves Redis up, 2 kills and restarts it, 3 hangs it (SIGSTOP) ---
    def test_1_two_edges_one_limit(self):
        ip = fresh_ip()
        seen0 = len(self.up.log())
        self.assert_combined(ip, "two edges on one Redis: one limit")
        self.assertEqual(len(self.up.log()) - seen0, self.LIMIT, "refused requests reached the upstream")
        # keys edge:rl:... each with an expiry no longer than the window
        keys = resp(self.redis_port, "KEYS", "edge:rl:*")
        self.assertTrue(keys, f"no edge:rl:* keys in Redis: {keys!r}")
        # readable: edge:rl:<route pattern>:<limit name>:ip:<address> (an operator can find one)
        want = f":{self.LIMIT}-in-".encode()
        self.assertTrue(any(want in (k if isinstance(k, bytes) else k.encode()) and
                            (b":ip:" + ip.encode()) in (k if isinstance(k, bytes) else k.encode())
                            for k in resp(self.redis_port, "KEYS", "edge:rl:*")),
                        f"no readable key for {ip}: {keys!r}")
        for k in keys:
            ttl = resp(self.redis_port, "PTTL", k)
            self.assertIsInstance(ttl, int, k)
            self.assertGreater(ttl, 0, f"key {k!r} has no expiry (PTTL {ttl})")
            self.assertLessEqual(ttl, 31000, f"key {k!r} expires later than the window")
        # the deny / allow edges are on the same Redis and work while it is up
        ip = fresh_ip()
        self.assertEqual(self.statuses("C", ip, self.LIMIT), [200] * self.LIMIT)
        self.assertEqual(self.get("C", ip).status, 429)
        ip = fresh_ip()
        self.assertEqual(self.statuses("D", ip, self.LIMIT), [200] * self.LIMIT)
        self.assertEqual(self.get("D", ip).status, 429)

    def test_2_redis_killed_then_restarted(self):
        self.redis.kill(signal.SIGKILL)

        # A and B keep answering, on local counters (a fresh budget per process): the limit still
        # applies within each process
        for edge in ("A", "B"):
            ip = fresh_ip()
            self.assertEqual(self.statuses(edge, ip, self.LIMIT, "outage=1"), [200] * self.LIMIT,
                             f"edge {edge} with Redis down (on_store_error = local)")
            self.assert429(self.get(edge, ip), max_retry=30)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not self.lines("A", "rate limit store", "unreachable"):
            time.sleep(0.1)
        self.assertTrue(self.lines("A", "rate limit store", "unreachable"),
                        "no 'rate limit store ... unreachable' in edge A's error log:\n"
                        + self.edges["A"].stderr_text()[-2000:])

        # deny: 503 JSON
        r = self.get("C", fresh_ip())
        self.assertNotEqual(r.status, 200, r)
        self.assertEqual(r.status, 503, f"on_store_error = deny with Redis down: {r!r}")
        self.assertEqual(r.media_type(), "application/json", r)
        self.assertIsInstance(json.loads(r.body).get("error"), str, r)
        self.assertIsNone(r.header("x-upstream"), "a denied request reached the upstream")
        # allow: never limited while the store is down
        ip = fresh_ip()
        self.assertEqual(self.statuses("D", ip, self.LIMIT + 3), [200] * (self.LIMIT + 3),
                         "on_store_error = allow with Redis down")

        # more requests and a reconnect attempt or two during the outage: still logged once
        time.sleep(1.5)
        self.statuses("A", fresh_ip(), 3)
        self.assert_all_running()
        self.assertEqual(len(self.lines("A", "rate limit store", "unreachable")), 1,
                         "the outage must be logged once:\n" + "\n".join(self.lines("A", "store")))

        # Redis back on the same port: sharing resumes by itself within a few seconds
        self.redis.start()
        deadline = time.monotonic() + 8
        while not self.shared_now():
            if time.monotonic() > deadline:
                self.fail("edges A and B did not share the limit again within 8 s of Redis restarting; "
                          "A stderr:\n" + self.edges["A"].stderr_text()[-2000:])
            time.sleep(0.3)
        self.assert_combined(fresh_ip(), "after Redis restarted")
        deadline = time.monotonic() + 8
        while self.get("C", fresh_ip()).status != 200:
            if time.monotonic() > deadline:
                self.fail("the deny edge still refuses 8 s after Redis restarted")
            time.sleep(0.3)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not self.back_logged("A"):
            time.sleep(0.1)
        self.assertTrue(self.back_logged("A"), "no 'back' line after the outage in edge A's log:\n"
                        + self.edges["A"].stderr_text()[-2000:])
        self.assert_all_running()

    def test_3_redis_hung(self):
        # Redis alive but not answering (SIGSTOP: the kernel still completes TCP handshakes):
        # detected once, requests go on local counters without stalling again and again, and the
        # store is not taken back before it really answers.
        def downs():
            return len(self.lines("A", "rate limit store", "unreachable"))

        downs0 = downs()
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            t_stop = time.monotonic()
            slow, n = [], 0
            while time.monotonic() - t_stop < 5.0:
                n += 1
                t0 = time.monotonic()
                r = et.raw_one(self.edges["A"].port,
                               et.request("/api/json", headers=xff(f"198.18.{n // 250}.{n % 250 + 1}")), timeout=5)
                took = time.monotonic() - t0
                self.assertEqual(r.status, 200, r)
                if took > 0.5:
                    slow.append((round(t0 - t_stop, 2), round(took, 2)))
                time.sleep(0.05)
            self.assertTrue(slow, "a request sent to a hung Redis should wait for the 1 s bound once")
            first_slow = slow[0]
            self.assertLessEqual(first_slow[1], 2.0, f"the hung store held a request {first_slow[1]} s")
            self.assertEqual(slow[1:], [], f"requests stalled again while Redis stayed hung (at s, took s): {slow}")
            after = self.edges["A"].stderr_lines
            self.assertEqual(downs() - downs0, 1, "a hung Redis must be logged once per outage:\n"
                             + "\n".join(ln for ln in after if "rate limit store" in ln))
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while not self.shared_now():
            if time.monotonic() > deadline:
                self.fail("sharing did not resume within 5 s of Redis answering again")
            time.sleep(0.3)
        self.assert_all_running()

    def back_logged(self, edge):
        """A line after the outage's saying the store is back (wording free: "back" or "again")."""
        lines = [ln.lower() for ln in self.edges[edge].stderr_lines]
        idx = [i for i, ln in enumerate(lines) if "rate limit store" in ln and "unreachable" in ln]
        return bool(idx) and any("rate limit store" in ln and "unreachable" not in ln
                                 and ("back" in ln or "again" in ln) for ln in lines[idx[0] + 1:])


# ---------------------------------------------------------------------------------------------
# 10. --check errors


CHECK_TEMPLATE = """\
[server]
workers = 1

[log]
access = "off"

[rate_limit]
{rate_limit}

[[listen]]
address = "127.0.0.1:0"
{listen}

[[upstream]]
name = "api"
servers = ["127.0.0.1:9"]

[[route]]
prefix = "/api/"
proxy = "api"
{route}

[[route]]
prefix = "/"
root = "site"
"""


class RateLimitConfigCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(et.EDGE_BIN):
            raise et.EdgeError(f"edge binary not found at {et.EDGE_BIN} (set EDGE_BIN)")
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-rl-check-")
        os.makedirs(os.path.join(cls.tmp, "site"))
        with open(os.path.join(cls.tmp, "site", "index.html"), "w") as f:
            f.write("x\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, name, rate_limit="", listen="", route=""):
        text = CHECK_TEMPLATE.format(rate_limit=rate_limit, listen=listen, route=route)
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        r = subprocess.run([et.EDGE_BIN, "--check", "--config", p], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10)
        return p, text, r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")

    def assert_bad(self, name, needle, **kw):
        p, text, rc, out = self.check(name, **kw)
        line = next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)
        self.assertEqual(rc, 1, f"{name}: exit {rc}; output:\n{out}")
        self.assertIn(f"{p}:{line}: ", out, f"{name}: expected '{p}:{line}: ...' in:\n{out}")

    def test_good_config(self):
        _, _, rc, out = self.check(
            "good.toml",
            rate_limit='store = "redis://127.0.0.1:1"\non_store_error = "deny"\nmax_keys = 1000\n'
                       'ipv6_prefix = 48\nallowlist = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]\n'
                       'headers = false\nmessage = "no"',
            listen="max_conns_per_ip = 50",
            route='rate_limit = [ { requests = 10, window = "1s", name = "burst" }, '
                  '{ requests = 100, window = "15m", key = "header:X-Api-Key" }, '
                  '{ requests = 100, window = "1h", key = "cookie:sid" } ]')
        self.assertEqual(rc, 0, f"a valid config (Redis unreachable: --check must not need it):\n{out}")

    def test_errors(self):
        cases = {
            "requests0.toml": ("requests = 0", {"route": 'rate_limit = { requests = 0, window = "1s" }'}),
            "badkey.toml": ('key = "body"', {"route": 'rate_limit = { requests = 5, window = "1s", key = "body" }'}),
            "mysql.toml": ("mysql://", {"rate_limit": 'store = "mysql://x"'}),
            "prefix.toml": ("ipv6_prefix", {"rate_limit": "ipv6_prefix = 200"}),
            "window.toml": ("soon", {"route": 'rate_limit = { requests = 5, window = "soon" }'}),
            "policy.toml": ("maybe", {"rate_limit": 'on_store_error = "maybe"'}),
            "allowlist.toml": ("not-an-ip", {"rate_limit": 'allowlist = ["not-an-ip"]'}),
            "unknown.toml": ("burts", {"route": 'rate_limit = { requests = 5, window = "1s", burts = 2 }'}),
        }
        for name, (needle, kw) in cases.items():
            with self.subTest(name):
                self.assert_bad(name, needle, **kw)


if __name__ == "__main__":
    unittest.main()
