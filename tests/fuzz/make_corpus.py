#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (run from anywhere; idempotent).

Seeds are small, valid-looking inputs that reach deep into each parser; libFuzzer mutates from
there. The files are committed; re-run this after changing it.
"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode("latin-1")
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- HTTP/1.1 requests ---------------------------------------------------------------------
H = "Host: samia.example\r\n"
HTTP1 = [
    "GET / HTTP/1.1\r\n" + H + "\r\n",
    "GET /reading/today HTTP/1.1\r\n" + H + "Accept: text/html\r\n\r\n",
    "GET /assets/app-3f2a1b.js HTTP/1.1\r\n" + H + "Accept-Encoding: br, gzip;q=0.8\r\n\r\n",
    "GET /assets/app-3f2a1b.js HTTP/1.1\r\n" + H + "Range: bytes=0-99,200-\r\n\r\n",
    "GET /assets/app-3f2a1b.js HTTP/1.1\r\n" + H + "If-None-Match: W/\"x\", \"y\"\r\nIf-Range: \"y\"\r\nRange: bytes=-5\r\n\r\n",
    "GET /assets/missing.js HTTP/1.1\r\n" + H + "\r\n",
    "GET /robots.txt HTTP/1.1\r\n" + H + "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
    "HEAD / HTTP/1.1\r\n" + H + "\r\nGET /robots.txt HTTP/1.1\r\n" + H + "Connection: close\r\n\r\n",
    "GET /health HTTP/1.1\r\n" + H + "\r\n",
    "GET /api/cards?limit=3 HTTP/1.1\r\n" + H + "X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nX-Request-Id: abc-123\r\n\r\n",
    "GET /api/cards HTTP/1.1\r\n" + H + "Cache-Control: no-cache\r\nAccept-Encoding: gzip\r\n\r\n",
    "POST /api/readings HTTP/1.1\r\n" + H + "Content-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"card\":\"Star\"}\n",
    "POST /api/readings HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    "PUT /api/readings/1 HTTP/1.1\r\n" + H + "Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "GET /api/socket HTTP/1.1\r\n" + H + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
    "OPTIONS * HTTP/1.1\r\n" + H + "\r\n",
    "CONNECT samia.example:443 HTTP/1.1\r\n" + H + "\r\n",
    "GET http://samia.example/assets/app-3f2a1b.js HTTP/1.1\r\n" + H + "\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n" + H + "\r\n",
    "GET /assets/..%2f..%2fedge.toml HTTP/1.1\r\n" + H + "\r\n",
    "GET /a//b/./c/../d?x=1&y=%20 HTTP/1.1\r\n" + H + "\r\n",
    "GET / HTTP/1.1\r\n" + H + "X-Folded: a\r\n b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "POST /api/x HTTP/1.1\r\n" + H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "GET / HTTP/1.1\n" + H.replace("\r\n", "\n") + "\n",
    "GET / HTTP/1.1\r\n" + H + "Cookie: a=1\r\nCookie: b=2\r\nAuthorization: Bearer x\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "GET /" + "a" * 300 + " HTTP/1.1\r\n" + H + "X-Long: " + "v" * 600 + "\r\n\r\n",
]

# --- HTTP/2 frames (after the client preface, which the target adds) ------------------------


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    s = s.encode() if isinstance(s, str) else s
    return hpack_int(len(s), 7) + s


def literal(name, value, index=False):
    # 0x40: with incremental indexing (new name); 0x00: without indexing
    return (b"\x40" if index else b"\x00") + hpack_str(name) + hpack_str(value)


def headers_block(method, path, extra=(), index=False):
    b = b""
    b += b"\x82" if method == "GET" else (b"\x83" if method == "POST" else literal(":method", method))
    b += b"\x86"  # :scheme http
    b += literal(":path", path, index)
    b += literal(":authority", "samia.example", index)
    for n, v in extra:
        b += literal(n, v, index)
    return b


SETTINGS = frame(4, 0, 0, struct.pack(">HI", 3, 100) + struct.pack(">HI", 4, 65535))
SETTINGS_ACK = frame(4, 1, 0)
END_STREAM, END_HEADERS, PADDED, PRIORITY = 1, 4, 8, 32
HTTP2 = [
    SETTINGS + frame(1, END_STREAM | END_HEADERS, 1, headers_block("GET", "/")),
    SETTINGS + SETTINGS_ACK + frame(1, END_STREAM | END_HEADERS, 1, headers_block("GET", "/assets/app-3f2a1b.js", [("accept-encoding", "br, gzip")], index=True))
    + frame(1, END_STREAM | END_HEADERS, 3, b"\x82\x86\xbe\xbf"),  # the indexed fields again
    SETTINGS + frame(1, END_HEADERS, 1, headers_block("POST", "/api/readings", [("content-type", "application/json"), ("content-length", "5")]))
    + frame(0, 0, 1, b"hel") + frame(0, END_STREAM, 1, b"lo"),
    SETTINGS + frame(1, END_STREAM, 1, headers_block("GET", "/api/cards")[:9]) + frame(9, END_HEADERS, 1, headers_block("GET", "/api/cards")[9:]),
    SETTINGS + frame(1, END_STREAM | END_HEADERS | PRIORITY, 1, struct.pack(">IB", 0, 15) + headers_block("GET", "/health"))
    + frame(2, 0, 3, struct.pack(">IB", 1, 200)) + frame(8, 0, 0, struct.pack(">I", 1 << 20)) + frame(6, 0, 0, b"12345678"),
    SETTINGS + frame(1, END_STREAM | END_HEADERS, 1, headers_block("GET", "/reading/today", [("cookie", "a=1"), ("cookie", "b=2")]))
    + frame(3, 0, 1, struct.pack(">I", 8)) + frame(7, 0, 0, struct.pack(">II", 1, 0)),
    SETTINGS + frame(1, END_STREAM | END_HEADERS | PADDED, 1, b"\x03" + headers_block("GET", "/robots.txt", [("range", "bytes=0-3")]) + b"\0\0\0"),
    SETTINGS + frame(1, END_HEADERS, 1, b"\x3f\xe1\x1f" + headers_block("GET", "/api/stream")) + frame(8, 0, 1, struct.pack(">I", 100)) + frame(3, 0, 1, struct.pack(">I", 0)),
    frame(4, 0, 0, struct.pack(">HI", 4, 0)) + frame(1, END_STREAM | END_HEADERS, 1, headers_block("GET", "/assets/app-3f2a1b.js")),
]

# --- upstream replies (first byte: which client request; see fuzz_upstream.cpp) -------------
J = '{"card":"The Star"}'
UP = [
    (0, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nCache-Control: public, max-age=60\r\n\r\n%s" % (len(J), J)),
    (2, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nVary: Accept-Encoding\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\nX-T: 1\r\n\r\n"),
    (0, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nclose-delimited body"),
    (3, "HTTP/1.1 304 Not Modified\r\nETag: \"u1\"\r\nCache-Control: max-age=5\r\n\r\n"),
    (3, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/10\r\nContent-Length: 4\r\n\r\nabcd"),
    (4, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"),
    (5, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"),
    (1, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: W/\"z\"\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"),
    (0, "HTTP/1.1 204 No Content\r\nSet-Cookie: sid=1; HttpOnly\r\nCache-Control: public, s-maxage=10, stale-while-revalidate=30, stale-if-error=60\r\n\r\n"),
    (0, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n"),
    (2, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\nVary: *\r\nExpires: Thu, 01 Dec 2094 16:00:00 GMT\r\nAge: 100\r\n\r\nabc"),
    (0, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
    (0, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    (0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\nffffffffffffffff\r\n"),
    (1, "HTTP/1.1 999 Whatever\r\nServer: x\r\nDate: Fri, 27 Nov 2026 14:00:00 GMT\r\nCache-Control: max-age=99999999999999999999\r\n\r\n"),
]

# --- config files ----------------------------------------------------------------------------
CONFIGS = []
for rel in ("conf/edge.toml", "conf/production.example.toml", "deploy/container.toml"):
    p = os.path.join(ROOT, rel)
    if os.path.exists(p):
        text = open(p, encoding="utf-8").read()
        # (self_signed inputs are skipped by the target: it would write certificates)
        CONFIGS.append(text.replace("self_signed = true", 'cert = "c.pem", key = "k.pem"'))
CONFIGS += [
    '[[listen]]\naddress = "127.0.0.1:8080"\n[[route]]\nprefix = "/"\nroot = "."\n',
    '[server]\nworkers = 2\nheader_timeout = "5s"\n[[listen]]\naddress = "[::1]:0"\nh2c = true\nmax_conns_per_ip = 10\n'
    '[[upstream]]\nname = "a"\nservers = ["127.0.0.1:1", { address = "127.0.0.1:2", weight = 3 }]\nbalance = "least_conn"\n'
    '[upstream.health]\npath = "/h"\ninterval = "1s"\n[[route]]\nprefix = "/api/"\nproxy = "a"\n'
    'rate_limit = [{ name = "burst", requests = 5, window = "1s", key = "header:X-Key" }]\ncache = { ttl = "1h", grace = "1d" }\n',
    '[[listen]]\naddress = "0.0.0.0:8080"\nhttps_redirect = true\n[[route]]\npath = "/x"\nredirect = "https://example.com/"\n'
    '[security_headers]\ncsp = "default-src \'self\'"\nhsts = "max-age=63072000"\n[rate_limit]\nstore = "redis://127.0.0.1:6379"\n',
    '[[listen]]\naddress = "${EDGE_LISTEN:-127.0.0.1:0}"\n[admin]\nlisten = "127.0.0.1:0"\ntoken = "t"\n[http2]\nmax_concurrent_streams = 64\n'
    '[[route]]\nprefix = "/"\nroot = "."\ncompress = { types = ["text/html"], min_size = 10 }\n',
]

# --- Range: 8 bytes of size, then the field ---------------------------------------------------
RANGE = [(10000, "bytes=0-99"), (10000, "bytes=-500"), (10000, "bytes=9500-"), (10000, "bytes=0-0,-1"),
         (100, "bytes=0-10,5-20,50-60,61-70"), (0, "bytes=0-"), (10, "items=0-1"), (10, "bytes= 1 - 2 , 3-4"),
         (1 << 40, "bytes=18446744073709551615-"), (10, "bytes=" + ",".join("%d-%d" % (i, i) for i in range(20)))]

# --- Accept-Encoding: a byte of available codings, then the field -----------------------------
AE = [(0x0f, "gzip, deflate, br, zstd"), (0x02, "br;q=1.0, gzip;q=0.8, *;q=0.1"), (0x0e, "identity;q=0, *;q=0"),
      (0x08, "x-gzip"), (0x0f, "*"), (0x06, "br;q=0.5, zstd;q=0.5"), (0x0f, "gzip;q=1.001, br;q=0.")]

# --- Cache-Control: a byte of facts, then the field -------------------------------------------
CC = [(0xff, "public, max-age=3600"), (0x13, "private, no-cache=\"Set-Cookie\""), (0x02, "s-maxage=60, must-revalidate"),
      (0x46, "max-age=0, stale-while-revalidate=30, stale-if-error=86400"), (0x01, "no-store"),
      (0x7f, "max-age=99999999999999999999"), (0x01, "max-age=\"60\", immutable"), (0x01, "max-stale, min-fresh=10, only-if-cached"),
      (0x22, "max-age=-1")]

# --- other header grammars: a selector byte (see fuzz_headers.cpp), then the text -------------
HDR = [(0, "Sun, 06 Nov 1994 08:49:37 GMT"), (0, "Sunday, 06-Nov-94 08:49:37 GMT"), (0, "Sun Nov  6 08:49:37 1994"),
       (0, "Fri, 31 Dec 9999 23:59:59 GMT"),
       (1, "\"abc\", W/\"def\"\n*\nSun, 06 Nov 1994 08:49:37 GMT\nSat, 29 Feb 2020 00:00:00 GMT"),
       (2, "203.0.113.7, 10.0.0.2\nC2001:db8::1"), (2, "unknown, [2001:db8::1]:443\n198.51.100.1"),
       (3, "10.0.0.0/8"), (3, "2400:cb00::/32"), (3, "::ffff:1.2.3.4"), (3, "[::1]"),
       (4, "/a/b/../c/./d//e?x=%2F"), (4, "/%2e%2e/x"), (4, "/assets/app.min.js"), (4, "*"), (4, "http://h/x"),
       (5, "15m"), (5, "500ms"), (5, "64k"), (5, "1g")]


def main():
    for x in HTTP1:
        put("fuzz_http1", x)
    for x in HTTP2:
        put("fuzz_http2", x)
    for sel, x in UP:
        put("fuzz_upstream", bytes([sel]) + x.encode("latin-1"))
    for x in CONFIGS:
        put("fuzz_config", x.encode())
    for size, x in RANGE:
        put("fuzz_range", struct.pack("<Q", size) + x.encode())
    for b, x in AE:
        put("fuzz_accept_encoding", bytes([b]) + x.encode())
    for b, x in CC:
        put("fuzz_cache_control", bytes([b]) + x.encode())
    for b, x in HDR:
        put("fuzz_headers", bytes([b]) + x.encode())


if __name__ == "__main__":
    main()
