"""Integration-test harness for Samia Edge.

Starts the REAL `edge` binary (env EDGE_BIN, default /work/main/build/edge) on ephemeral loopback
ports with a temporary site and config, and talks to it with curl and raw sockets.

Stdlib only.  Every test file does `sys.path.insert(0, <this folder>)` and `import edgetest`, so
`python3 -m unittest -v tests/integration/test_X.py` works from the repository root.
"""
import email.utils
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
EDGE_BIN = os.environ.get("EDGE_BIN", "/work/main/build/edge")

# ---------------------------------------------------------------------------------------------
# Environment probes


def have_ipv6():
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


HAVE_IPV6 = have_ipv6()

# ---------------------------------------------------------------------------------------------
# The temporary site

INDEX_HTML = (
    b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>edgetest SPA</title>\n"
    b"<script type=\"module\" src=\"/assets/index-Ab3dE5fG.js\"></script>\n"
    b"<link rel=\"stylesheet\" href=\"/assets/app-Xy12Ab34.css\"></head>\n"
    b"<body><div id=\"app\">EDGETEST-INDEX</div></body></html>\n"
)
DOCS_INDEX_HTML = b"<!doctype html><title>docs</title><p>EDGETEST-DOCS-INDEX</p>\n"
OUTSIDE_SECRET = b"EDGETEST-OUTSIDE-SECRET do not serve me\n"
DOTENV_SECRET = b"SECRET_ENV=EDGETEST-DOTENV-SECRET\n"
GIT_SECRET = b"[core]\n\trepositoryformatversion = 0 ; EDGETEST-GIT-SECRET\n"

BLOB_SIZE = 200 * 1024
# Old, fixed mtime for the site files so date validators are unambiguous (a whole second apart
# from "now", strong for If-Range, in the past for If-Modified-Since).
SITE_MTIME = 1700000000  # 2023-11-14T22:13:20Z


@functools.lru_cache(maxsize=4)
def blob_bytes(n=BLOB_SIZE):
    """Deterministic, non-periodic-at-small-scale content, so wrong offsets are detected."""
    return bytes(((i * 31) ^ (i >> 8) ^ (i >> 16)) & 0xFF for i in range(n))


def svg_1k():
    head = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10"/>\n<!-- '
    tail = b" -->\n</svg>\n"
    pad = 1024 - len(head) - len(tail)
    return head + b"x" * pad + tail


class Site:
    """A temporary SPA-like site laid out like a Vite build, plus traps for the safety tests."""

    def __init__(self, base):
        self.base = base
        self.root = os.path.join(base, "site")
        self.outside = os.path.join(base, "outside")
        self.files = {}  # url path -> bytes
        os.makedirs(self.root)
        os.makedirs(self.outside)
        self.secret_path = os.path.join(self.outside, "secret.txt")
        with open(self.secret_path, "wb") as f:
            f.write(OUTSIDE_SECRET)

        w = self.write
        w("/index.html", INDEX_HTML)
        w("/assets/index-Ab3dE5fG.js", b'console.log("EDGETEST-JS");\nexport const x = 1;\n')
        w("/assets/app-Xy12Ab34.css", b"body { color: #123456; } /* EDGETEST-CSS */\n")
        w("/assets/plain.js", b"/* EDGETEST-PLAIN-ASSET */\n")  # immutable by prefix only
        w("/logo.svg", svg_1k())
        w("/blob.bin", blob_bytes())
        w("/docs/index.html", DOCS_INDEX_HTML)
        w("/docs/page.txt", b"EDGETEST-DOCS-PAGE\n")
        w("/.env", DOTENV_SECRET)
        w("/.git/config", GIT_SECRET)
        w("/assets/.hidden.js", b"/* EDGETEST-DOTENV-SECRET hidden */\n")
        w("/.well-known/security.txt", b"Contact: mailto:security@example.test\n")
        w("/chunk-Zz98Yy76.js", b"/* EDGETEST-HASHED-AT-ROOT */\n")  # hashed outside /assets/
        w("/plain.js", b"/* EDGETEST-PLAIN-JS */\n")  # neither hashed nor under /assets/
        w("/empty.txt", b"")
        w("/hello world.txt", b"EDGETEST-SPACE\n")
        w("/caf\u00e9.txt", b"EDGETEST-CAFE\n")
        # MIME table samples
        w("/mime/data.json", b'{"edgetest": true}\n')
        w("/mime/app.wasm", b"\x00asm\x01\x00\x00\x00")
        w("/mime/site.webmanifest", b'{"name": "edgetest"}\n')
        w("/mime/font.woff2", b"wOF2\x00\x01\x00\x00")
        w("/mime/img.avif", b"\x00\x00\x00\x1cftypavif")
        w("/mime/app.js.map", b'{"version": 3}\n')
        w("/mime/mod.mjs", b"export default 1;\n")
        w("/mime/notes.txt", b"plain text\n")
        w("/mime/pic.png", b"\x89PNG\r\n\x1a\n")
        w("/mime/style.css", b"a{}\n")
        w("/mime/page.html", b"<p>x</p>\n")
        w("/mime/app.js", b"1;\n")
        # symlinks
        os.symlink("docs/page.txt", os.path.join(self.root, "link-inside.txt"))
        os.symlink(self.secret_path, os.path.join(self.root, "link-outside.txt"))
        os.symlink(self.outside, os.path.join(self.root, "linkdir-outside"))
        os.symlink("docs", os.path.join(self.root, "linkdir-inside"))
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in filenames:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    os.utime(p, (SITE_MTIME, SITE_MTIME))

    def write(self, urlpath, data, mtime=None):
        p = self.path(urlpath)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
        self.files[urlpath] = data
        return p

    def path(self, urlpath):
        return os.path.join(self.root, urlpath.lstrip("/"))


# ---------------------------------------------------------------------------------------------
# Config generation


def q(s):
    """A TOML basic string (JSON escaping is a subset of TOML's)."""
    return json.dumps(s)


def default_routes(root):
    r = q(root)
    return f"""
[[route]]
path = "/health"
health = true

[[route]]
regex = "^/old/(.*)$"
redirect = "/new/$1"
status = 301

[[route]]
regex = "^/moved/(.*)$"
redirect = "/elsewhere/$1"
status = 308

[[route]]
regex = "^/app/(.*)$"
rewrite = "/$1"
root = {r}
spa_fallback = false

[[route]]
prefix = "/docs/"
root = {r}
max_body = 1024

[[route]]
host = "nospa.test"
prefix = "/"
root = {r}
spa_fallback = false

[[route]]
prefix = "/"
root = {r}
index = "index.html"
spa_fallback = "/index.html"
immutable = ["/assets/"]
hashed_assets = true
cache_control = "public, max-age=60"
dotfiles = "deny"
symlinks = "inside"
max_body = 0
headers = {{ "X-Frame-Options" = "DENY", "X-Edge-Route" = "spa" }}
"""


def make_config(site, access_log, server=None, listen=None, routes=None, log=None):
    """Return TOML text.  `server` / `log` are dicts of raw TOML values (already quoted)."""
    srv = {
        "workers": "1",
        "grace_period": q("10s"),
        "header_timeout": q("10s"),
        "keepalive_timeout": q("75s"),
    }
    srv.update(server or {})
    lg = {"access": q(access_log), "error": q("stderr"), "level": q("info")}
    lg.update(log or {})
    if listen is None:
        listen = ["127.0.0.1:0"] + (["[::1]:0"] if HAVE_IPV6 else [])
    out = ["# generated by tests/integration/edgetest.py", "[server]"]
    out += [f"{k} = {v}" for k, v in srv.items()]
    out += ["", "[log]"]
    out += [f"{k} = {v}" for k, v in lg.items()]
    for a in listen:
        # a listener is an address string, or a dict: {"address": "...", key: raw TOML value}
        if isinstance(a, dict):
            out += ["", "[[listen]]", f"address = {q(a['address'])}"]
            out += [f"{k} = {v}" for k, v in a.items() if k != "address"]
        else:
            out += ["", "[[listen]]", f"address = {q(a)}"]
    out.append(routes if routes is not None else default_routes(site.root))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The server process

LISTEN_RE = re.compile(r"listening on (https?)://(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):(\d+)")


def listen_address(a):
    """The address of a `listen` entry (a string or a dict with "address")."""
    return a["address"] if isinstance(a, dict) else a


def listen_host(a):
    """"127.0.0.1:0" -> "127.0.0.1", "[::1]:0" -> "[::1]" (as in the 'listening on' line)."""
    a = listen_address(a)
    if a.startswith("["):
        return "[" + a.rsplit(":", 1)[0].strip("[]") + "]"
    return a.rsplit(":", 1)[0]


class EdgeError(Exception):
    pass


class Edge:
    """One running `edge` process."""

    def __init__(self, config_path, env=None, expect_hosts=None, cwd="/", expect_count=None):
        self.config_path = config_path
        self.cwd = cwd  # not the config folder: paths must resolve against the config file
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        self.expect_hosts = expect_hosts  # e.g. {"127.0.0.1", "[::1]"}
        self.proc = None
        self.stderr_lines = []
        self.listening = []  # (host, port) in order of appearance
        self.listeners = []  # (scheme, host, port) in order of appearance
        self.expect_count = expect_count  # wait for at least this many 'listening on' lines
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._reader = None
        self.returncode = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout=10.0):
        if not os.path.exists(EDGE_BIN):
            raise EdgeError(f"edge binary not found at {EDGE_BIN} (set EDGE_BIN)")
        self.stdout_path = self.config_path + ".stdout"
        self._stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(
            [EDGE_BIN, "--config", self.config_path],
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )
        _register(self)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hosts = {h for h, _ in self.listening}
                enough = self.expect_count is None or len(self.listening) >= self.expect_count
                if enough and self.expect_hosts is not None and self.expect_hosts <= hosts:
                    break
                if enough and self.expect_hosts is None and hosts:
                    break
                if self.proc.poll() is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
        self.started_at = time.monotonic()
        hosts = {h for h, _ in self.listening}
        if self.proc.poll() is not None:
            self._reader.join(2)
            raise EdgeError(
                f"edge exited with {self.proc.returncode} before listening; stderr:\n" + self.stderr_text()
            )
        if ((self.expect_hosts is not None and not self.expect_hosts <= hosts) or not hosts
                or (self.expect_count is not None and len(self.listening) < self.expect_count)):
            self.kill()
            raise EdgeError(
                f"no 'listening on' line for {self.expect_hosts} within {timeout}s; stderr:\n" + self.stderr_text()
            )
        return self

    def _read_stderr(self):
        for raw_line in self.proc.stderr:
            line = raw_line.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.stderr_lines.append(line)
                m = LISTEN_RE.search(line)
                if m:
                    self.listening.append((m.group(2), int(m.group(3))))
                    self.listeners.append((m.group(1), m.group(2), int(m.group(3))))
                self._cond.notify_all()

    def stderr_text(self):
        with self._lock:
            return "\n".join(self.stderr_lines)

    def settle(self, seconds=0.3):
        """Make sure edge has been up `seconds` before it is signalled.  Used by tests that are
        about something else: SIGTERM right after start has its own test (test_graceful)."""
        left = self.started_at + seconds - time.monotonic()
        if left > 0:
            time.sleep(left)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig=signal.SIGTERM):
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=15.0):
        """SIGTERM by PID, wait; returns the exit code (SIGKILLs and returns None on timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
        self._close()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close()

    def _close(self):
        if self._reader is not None:
            self._reader.join(2)
        for f in (getattr(self, "_stdout", None), self.proc.stderr if self.proc else None):
            try:
                if f is not None and not self.running():
                    f.close()
            except Exception:
                pass
        _unregister(self)

    # -- addresses ---------------------------------------------------------------------------
    def port_for(self, host, scheme=None):
        """The first listener on `host` (of `scheme`, "http" or "https", when given)."""
        for s, h, p in self.listeners:
            if h == host and (scheme is None or s == scheme):
                return p
        raise EdgeError(f"no {scheme or ''} listener for {host}: {self.listeners}")

    @property
    def port(self):
        return self.port_for("127.0.0.1")

    @property
    def port6(self):
        return self.port_for("[::1]")

    def url(self, path, v6=False):
        if v6:
            return f"http://[::1]:{self.port6}{path}"
        return f"http://127.0.0.1:{self.port}{path}"


_live = set()


def _register(e):
    _live.add(e)


def _unregister(e):
    _live.discard(e)


import atexit  # noqa: E402


@atexit.register
def _kill_leftovers():
    for e in list(_live):
        try:
            e.kill()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# HTTP response parsing


class ProtocolError(Exception):
    pass


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) in order
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        """Last value of a header (case-insensitive), or None."""
        name = name.lower()
        v = None
        for k, val in self.headers:
            if k.lower() == name:
                v = val
        return v

    def header_all(self, name):
        name = name.lower()
        return [val for k, val in self.headers if k.lower() == name]

    def count(self, name):
        return len(self.header_all(name))

    def media_type(self):
        ct = self.header("content-type")
        return None if ct is None else ct.split(";")[0].strip().lower()

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} headers={self.headers!r} body[{len(self.body)}]={self.body[:80]!r}>"


def _parse_head(head):
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    m = re.match(r"^(HTTP/\d(?:\.\d)?) (\d{3})(?: (.*))?$", lines[0])  # (curl: "HTTP/2 200 ")
    if not m:
        raise ProtocolError(f"bad status line {lines[0]!r}")
    headers = []
    for ln in lines[1:]:
        if not ln:
            continue
        if ":" not in ln:
            raise ProtocolError(f"bad header line {ln!r}")
        k, v = ln.split(":", 1)
        headers.append((k, v.strip(" \t")))
    return m.group(1), int(m.group(2)), m.group(3) or "", headers


def parse_one(buf, head_only=False, closed=False):
    """Parse one response from the start of buf.

    Returns (Response, rest) or None when more bytes are needed.  `closed` means no more bytes
    will come (so a body without framing ends here)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if closed and buf:
            raise ProtocolError(f"incomplete head at close: {buf[:200]!r}")
        return None
    head = buf[:end]
    version, status, reason, headers = _parse_head(head)
    r = Response(version, status, reason, headers, b"", head)
    pos = end + 4
    if head_only or 100 <= status < 200 or status in (204, 304):
        return r, buf[pos:]
    te = r.header("transfer-encoding")
    if te is not None and "chunked" in te.lower():
        body = bytearray()
        p = pos
        while True:
            le = buf.find(b"\r\n", p)
            if le < 0:
                return None
            size_txt = buf[p:le].split(b";")[0].strip()
            try:
                size = int(size_txt, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_txt!r}")
            p = le + 2
            if size == 0:
                # trailers
                te_end = buf.find(b"\r\n", p)
                while te_end >= 0 and te_end != p:
                    p = te_end + 2
                    te_end = buf.find(b"\r\n", p)
                if te_end < 0:
                    return None
                p = te_end + 2
                r.body = bytes(body)
                return r, buf[p:]
            if len(buf) < p + size + 2:
                return None
            body += buf[p:p + size]
            p += size + 2
    cl = r.header("content-length")
    if cl is not None:
        n = int(cl)
        if len(buf) - pos < n:
            if closed:
                raise ProtocolError(f"body truncated: have {len(buf) - pos} of {n}")
            return None
        r.body = buf[pos:pos + n]
        return r, buf[pos + n:]
    if closed:
        r.body = buf[pos:]
        return r, b""
    return None


def parse_all(buf, methods=None, closed=True):
    """Parse every response in buf.  methods: list of request methods, to know which are HEAD."""
    out = []
    i = 0
    while buf:
        head_only = bool(methods) and i < len(methods) and methods[i] == "HEAD"
        res = parse_one(buf, head_only=head_only, closed=closed)
        if res is None:
            break
        r, buf = res
        out.append(r)
        if not (100 <= r.status < 200):
            i += 1
    return out, buf


# ---------------------------------------------------------------------------------------------
# Raw sockets


def request(path, method="GET", headers=None, host="localhost", version="HTTP/1.1", body=b""):
    """Build a well-formed request.  headers: list of (name, value) or dict."""
    lines = [f"{method} {path} {version}"]
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if host is not None and not any(k.lower() == "host" for k, _ in hs):
        lines.append(f"Host: {host}")
    for k, v in hs:
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Conn:
    """A raw TCP connection to the server."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data):
        self.sock.sendall(data)

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            self.eof = True
            self.reset = True
            return True
        except socket.timeout:
            return False
        if not chunk:
            self.eof = True
        else:
            self.buf += chunk
        return True

    def read_response(self, method="GET", timeout=5.0):
        """Read exactly one response (1xx included). Raises on timeout / premature close."""
        deadline = time.monotonic() + timeout
        while True:
            res = parse_one(self.buf, head_only=(method == "HEAD"), closed=self.eof)
            if res is not None:
                r, self.buf = res
                return r
            if self.eof:
                raise ProtocolError(f"connection closed before a full response; have {self.buf[:300]!r}")
            if not self._recv(deadline):
                raise ProtocolError(f"timeout waiting for a response; have {self.buf[:300]!r}")

    def read_until_close(self, timeout=3.0):
        """Read until EOF or timeout; returns (bytes, closed)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._recv(deadline):
                break
        data, self.buf = self.buf, b""
        return data, self.eof

    def wait_closed(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within timeout; any data is kept in buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._recv(deadline):
                return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class TLSConn(Conn):
    """A TLS connection (python `ssl`): `context` decides what is trusted; the handshake runs in
    the constructor, bounded by `timeout`."""

    def __init__(self, port, context, host="127.0.0.1", timeout=5.0, server_hostname="localhost"):
        super().__init__(port, host, timeout)
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        except BaseException:
            self.sock.close()
            raise

    def _recv(self, deadline):
        import ssl
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if not self.sock.pending():
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            self.eof = True
            self.reset = True
            return True
        except socket.timeout:
            return False
        if not chunk:
            self.eof = True
        else:
            self.buf += chunk
        return True


def raw(port, data, timeout=3.0, host="127.0.0.1"):
    """Send bytes on a fresh connection, read until close or timeout. Returns (bytes, closed)."""
    with Conn(port, host, timeout) as c:
        c.send(data)
        return c.read_until_close(timeout)


def raw_responses(port, data, methods=None, timeout=3.0, host="127.0.0.1"):
    """Send bytes, read until close/timeout, parse. Returns (responses, closed, leftover)."""
    buf, closed = raw(port, data, timeout, host)
    rs, rest = parse_all(buf, methods=methods, closed=closed)
    return rs, closed, rest


def raw_one(port, data, method="GET", timeout=3.0, host="127.0.0.1"):
    """Send bytes, read the first full response (does not wait for close)."""
    with Conn(port, host, timeout) as c:
        c.send(data)
        return c.read_response(method, timeout)


# ---------------------------------------------------------------------------------------------
# curl


class CurlResult:
    def __init__(self, rc, responses, body, stderr):
        self.rc = rc
        self.responses = responses  # every header block curl printed (1xx, final)
        self.final = responses[-1] if responses else None
        self.body = body
        self.stderr = stderr

    @property
    def status(self):
        return self.final.status if self.final else None

    def header(self, name):
        return self.final.header(name) if self.final else None

    def header_all(self, name):
        return self.final.header_all(name) if self.final else []

    def media_type(self):
        return self.final.media_type() if self.final else None

    def __repr__(self):
        return f"<curl rc={self.rc} final={self.final!r} body[{len(self.body)}]={self.body[:80]!r} err={self.stderr!r}>"


def curl(url, *args, headers=None, timeout=5, head=False):
    """curl -sS -D - -o FILE --max-time T [args] URL.  headers: list of (name, value)."""
    fd, body_path = tempfile.mkstemp(prefix="edgetest-curl-")
    os.close(fd)
    try:
        cmd = ["curl", "-sS", "-g", "--path-as-is", "--max-time", str(timeout)]
        if head:
            cmd += ["-I", "-o", body_path]
        else:
            cmd += ["-D", "-", "-o", body_path]
        for k, v in (headers or []):
            cmd += ["-H", f"{k}: {v}"]
        # HTTP/1.1 unless the test asks for another version (HTTPS listeners offer h2 by ALPN).
        if not any(str(x).startswith(("--http1", "--http2", "--http3")) for x in args):
            cmd.append("--http1.1")
        cmd += list(args) + [url]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
        with open(body_path, "rb") as f:
            out = f.read()
        head_bytes = out if head else p.stdout
        body = b"" if head else out
        blocks = []
        for blk in head_bytes.split(b"\r\n\r\n"):
            if blk.startswith(b"HTTP/"):
                v, s, r, h = _parse_head(blk)
                blocks.append(Response(v, s, r, h, b"", blk))
        if blocks:
            blocks[-1].body = body
        return CurlResult(p.returncode, blocks, body, p.stderr.decode("utf-8", "replace"))
    finally:
        os.unlink(body_path)


# ---------------------------------------------------------------------------------------------
# Misc helpers


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(s):
    return email.utils.parsedate_to_datetime(s).timestamp()


IMMUTABLE = "public, max-age=31536000, immutable"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def parse_multipart_byteranges(resp):
    """Returns [(content_range, content_type, data)] for a multipart/byteranges response."""
    ct = resp.header("content-type") or ""
    m = re.search(r'boundary="?([^";]+)"?', ct)
    if not m:
        raise ProtocolError(f"no boundary in {ct!r}")
    boundary = m.group(1).encode()
    body = resp.body
    parts = []
    delim = b"--" + boundary
    pieces = body.split(delim)
    if len(pieces) < 3:
        raise ProtocolError(f"multipart body has {len(pieces) - 1} delimiters")
    if not pieces[-1].startswith(b"--"):
        raise ProtocolError("multipart body has no closing delimiter")
    for piece in pieces[1:-1]:
        if not piece.startswith(b"\r\n"):
            raise ProtocolError(f"part does not start with CRLF: {piece[:40]!r}")
        end = piece.find(b"\r\n\r\n")
        if end < 0:
            raise ProtocolError("part without a head")
        hdrs = {}
        for ln in piece[2:end].decode("latin-1").split("\r\n"):
            if ln:
                k, v = ln.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        data = piece[end + 4:]
        if not data.endswith(b"\r\n"):
            raise ProtocolError("part data not followed by CRLF")
        parts.append((hdrs.get("content-range"), hdrs.get("content-type"), data[:-2]))
    return parts


class EdgeTestCase(unittest.TestCase):
    """Starts one edge per test class with the default site/config; stops it with SIGTERM."""

    server_opts = {}  # raw TOML values for [server]
    log_opts = {}
    listen = None  # default: 127.0.0.1:0 (+ [::1]:0)
    routes = None  # default: default_routes(site.root)
    env = None
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="edgetest-")
        try:
            cls.site = Site(cls.tmp)
            cls.prepare_site(cls.site)
            cls.access_log = os.path.join(cls.tmp, "access.log")
            cls.config_path = os.path.join(cls.tmp, "edge.toml")
            listen = cls.listen
            if listen is None:
                listen = ["127.0.0.1:0"] + (["[::1]:0"] if HAVE_IPV6 else [])
            text = make_config(cls.site, cls.access_log, server=cls.server_opts, listen=listen,
                               routes=cls.routes, log=cls.log_opts)
            with open(cls.config_path, "w") as f:
                f.write(text)
            hosts = {listen_host(a) for a in listen}
            cls.edge = Edge(cls.config_path, env=cls.env, expect_hosts=hosts, expect_count=len(listen)).start()
            cls.port = cls.edge.port
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def prepare_site(cls, site):
        """Hook: add files to the temporary site (site.write) before edge starts."""

    @classmethod
    def tearDownClass(cls):
        try:
            cls.edge.settle()
            rc = cls.edge.stop()
            if rc != 0:
                raise AssertionError(
                    f"edge did not exit 0 on SIGTERM (rc={rc}); stderr tail:\n" + "\n".join(cls.edge.stderr_lines[-30:])
                )
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # convenience
    def url(self, path):
        return self.edge.url(path)

    def get(self, path, method="GET", headers=None, host="localhost", body=b"", version="HTTP/1.1", timeout=5.0):
        """One raw request on a fresh connection; returns the first complete response."""
        return raw_one(self.port, request(path, method, headers, host, version, body), method, timeout)

    def assertHeader(self, resp, name, value):
        self.assertEqual(resp.header(name), value, f"header {name} of {resp!r}")

    def assertStatus(self, resp, status):
        self.assertEqual(resp.status, status, f"status of {resp!r}")
