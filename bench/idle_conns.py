#!/usr/bin/env python3
"""Memory per idle keep-alive connection: edge beside nginx (issue 10's measurement).

Starts each server with one worker on 127.0.0.1 (a plain and a TLS listener, the same self-signed
ECDSA certificate), opens N connections that each make one request (reading the whole answer)
and then stay open and idle, and reports the server's RSS before and after, per connection.

    bench/idle_conns.py [--edge build/edge] [--conns 10000] [--servers edge,nginx] [--tls]

Needs: nginx (Debian's), openssl; `ulimit -n` above N + 100 (the script raises its own soft limit
to the hard limit). Only loopback; the servers are stopped by PID at the end.
"""
import argparse
import os
import resource
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def open_idle(port, n, tls, ctx):
    """n connections, each after one GET answered in full; returns the sockets."""
    req = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("closed before answering")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += s.recv(65536)
        socks.append(s)
        if (i + 1) % 2000 == 0:
            print(f"  {i + 1} open", file=sys.stderr)
    return socks


def start_edge(binary, tmp, site, crt, key, plain, tlsp):
    conf = os.path.join(tmp, "edge.toml")
    with open(conf, "w") as f:
        f.write(f"""[server]
workers = 1
keepalive_timeout = "600s"
[log]
access = "off"
[[listen]]
address = "127.0.0.1:{plain}"
[[listen]]
address = "127.0.0.1:{tlsp}"
tls = {{ cert = "{crt}", key = "{key}" }}
[[route]]
prefix = "/"
root = "{site}"
""")
    p = subprocess.Popen([binary, "--config", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, [p.pid]


def start_nginx(tmp, site, crt, key, plain, tlsp):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 25000; }}
http {{
  access_log off;
  keepalive_timeout 600s;
  keepalive_requests 100000;
  client_body_temp_path {tmp}/ct; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
  uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
  server {{
    listen 127.0.0.1:{plain};
    listen 127.0.0.1:{tlsp} ssl;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    root {site};
  }}
}}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p, [p.pid] + children(p.pid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edge", default=os.path.join(REPO, "build", "edge"))
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--servers", default="edge,nginx")
    ap.add_argument("--tls", action="store_true", help="also measure idle TLS connections")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="edge-idle-")
    site = os.path.join(tmp, "site")
    os.makedirs(site)
    with open(os.path.join(site, "index.html"), "wb") as f:
        f.write(b"<!doctype html><title>idle</title>" + b"x" * 1000)
    crt, key = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    rows = []
    try:
        for name in a.servers.split(","):
            plain, tlsp = free_port(), free_port()
            if name == "edge":
                proc, pids = start_edge(a.edge, tmp, site, crt, key, plain, tlsp)
            else:
                proc, pids = start_nginx(tmp, site, crt, key, plain, tlsp)
            try:
                if not wait_port(plain):
                    raise RuntimeError(f"{name} did not start")
                pids = [proc.pid] + children(proc.pid)
                for kind, port in [("plain", plain)] + ([("tls", tlsp)] if a.tls else []):
                    open_idle(port, 50, kind == "tls", ctx)  # warm (buffers, caches), then closed
                    time.sleep(0.5)
                    before = rss_kb(pids)
                    socks = open_idle(port, a.conns, kind == "tls", ctx)
                    time.sleep(1.0)
                    after = rss_kb(pids)
                    per = (after - before) * 1024 / a.conns
                    rows.append((name, kind, a.conns, before, after, per))
                    print(f"{name} {kind}: {a.conns} idle connections: RSS {before} -> {after} kB, "
                          f"{per:.0f} bytes per connection", file=sys.stderr)
                    for s in socks:
                        s.close()
                    time.sleep(1.0)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("| server | connections | kind | RSS before (kB) | RSS after (kB) | bytes per idle connection |")
    print("|---|---:|---|---:|---:|---:|")
    for name, kind, n, before, after, per in rows:
        print(f"| {name} | {n} | {kind} | {before} | {after} | **{per:.0f}** |")


if __name__ == "__main__":
    main()
