#!/usr/bin/env node
// A real upstream for the reverse-proxy integration tests (tests/integration/test_proxy.py).
//
// Node built-ins only (http, crypto): no npm.  It stands in for the platform's Express API servers.
//
//   node upstream.js --port 0 --name A [--mode normal|slow|malformed|reset|close] [--delay-ms 3000]
//                    [--host 127.0.0.1] [--keepalive-ms 65000]
//                    [--tls-cert cert.pem --tls-key key.pem [--tls-ca-for-clients ca.pem]
//                     [--tls-handshake-delay-ms N]]
//
// With --tls-cert/--tls-key it serves HTTPS (Node's `https`, same routes, admin API included);
// --tls-ca-for-clients also requires a client certificate signed by that CA (the handshake of a
// client without one fails).  --tls-handshake-delay-ms holds each handshake that much (between the
// ClientHello, when it carries SNI, and the ServerHello), like an upstream far away.
// Prints exactly one line, `listening <port>`, on stdout once it accepts connections (port 0 =
// ephemeral).  Every response carries `X-Upstream: <name>`.
//
// --mode applies to every path except /__admin/*:
//   normal     the routes below
//   slow       waits --delay-ms before handling each request normally
//   malformed  answers every request with a garbage status line on the raw socket, then closes
//   reset      resets the connection (RST) as soon as the request head arrives, never answers
//   close      closes the connection (FIN) as soon as the request head arrives, never answers
//
// Routes (normal mode):
//   /health              200 {"status":"OK"}; 503 after /__admin/health?ok=0 (ok=1 restores)
//   /echo                JSON: method, url, http_version, headers, raw_headers, body_bytes,
//                        body_sha256, instance, remote_address, remote_port, socket_id, socket_requests,
//                        tls (null over plain HTTP, else {servername: SNI or null, protocol,
//                        authorized, peer_cn: the client certificate's CN or null})
//   /json                small JSON with ETag "json-v1" (304 on a matching If-None-Match), Cache-Control
//   /slow?ms=N           waits N ms, then answers JSON
//   /sse?n=5&ms=200      text/event-stream, one event every ms ms, each written (flushed) on its own;
//                        &pause_at=K&pause_ms=P: after event K-1 (K events sent), waits P ms more
//   /upload              streams the request body (never buffered), answers {bytes, sha256, ...};
//                        ?stall_ms=N stops reading for N ms first (backpressure)
//   /chunked?n=5&ms=20   Transfer-Encoding: chunked response written in n pieces
//   /big?bytes=N         streams N bytes of the pattern bigBlock() (Content-Length; &chunked=1 without)
//   /malformed?kind=K    K: status (default) | header | length | truncated | headcut (the head cut by
//                        the close) | fold (obs-fold) — a bad response, then close; 304cl | 204cl:
//                        a bodiless status with Content-Length: 100, the connection left open 5 s
//   /reset               resets the connection without answering
//   /powered             sets X-Powered-By, Server and X-Custom-Resp
//   /status?code=N       answers status N (JSON body unless the status forbids one)
//   /text?bytes=N//   /text?bytes=N&type=T&cc=C&ce=gzip&etag=E&vary=Htype=T//   /text?bytes=N&type=T&cc=C&ce=gzip&etag=E&vary=Hcc=C//   /text?bytes=N&type=T&cc=C&ce=gzip&etag=E&vary=Hce=gzip//   /text?bytes=N&type=T&cc=C&ce=gzip&etag=E&vary=Hetag=E[//   /text?bytes=N&type=T&cc=C&ce=gzip&etag=E&vary=Hetag2=E2]//   /text?bytes=N&type=T&cc=C&ce=gzip&etag=E&vary=Hvary=H&cookie=K&tag=T&ms=D   N bytes of repetitive
//                        JSON-ish text (default 4000), Content-Type T (default application/json),
//                        optional Cache-Control, ETag, Vary (the body is then prefixed with that
//                        request header's value), Set-Cookie, Cache-Tag; with ce=gzip a body really
//                        gzipped by Node's zlib; answered after D ms. X-Served: the instance's
//                        request count then.
//   /ws                  WebSocket echo (text, binary, ping -> pong, close); 426 without Upgrade
//   anything else        404 JSON {error, url, method, instance}
// Admin (never affected by --mode, not counted):
//   /__admin/count       {requests, completed, aborted, connections, active, upgrades, by_path, methods}
//   /__admin/log         last 1000 requests [{seq, method, url, socket_id, completed}] (seq = requests count)
//   /__admin/reset       zeroes the counters and the log
//   /__admin/health?ok=0|1
"use strict";

const http = require("http");
const https = require("https");
const tls = require("tls");
const fs = require("fs");
const crypto = require("crypto");
const zlib = require("zlib");

// ---------------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const o = { port: 0, name: "upstream", mode: "normal", host: "127.0.0.1", delayMs: 3000, keepaliveMs: 65000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) die(`missing value after ${a}`);
      return argv[++i];
    };
    if (a === "--port") o.port = Number(next());
    else if (a === "--name") o.name = next();
    else if (a === "--mode") o.mode = next();
    else if (a === "--host") o.host = next();
    else if (a === "--delay-ms") o.delayMs = Number(next());
    else if (a === "--keepalive-ms") o.keepaliveMs = Number(next());
    else if (a === "--tls-cert") o.tlsCert = next();
    else if (a === "--tls-key") o.tlsKey = next();
    else if (a === "--tls-ca-for-clients") o.tlsCaForClients = next();
    else if (a === "--tls-handshake-delay-ms") o.tlsHandshakeDelayMs = Number(next());
    else die(`unknown argument ${a}`);
  }
  if (!["normal", "slow", "malformed", "reset", "close"].includes(o.mode)) die(`unknown mode ${o.mode}`);
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) die("bad --port");
  if (!o.tlsCert !== !o.tlsKey) die("--tls-cert and --tls-key go together");
  if (o.tlsCaForClients && !o.tlsCert) die("--tls-ca-for-clients needs --tls-cert and --tls-key");
  return o;
}

function die(msg) {
  process.stderr.write(`upstream.js: ${msg}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------------------------------------
// State

const state = {
  healthy: true,
  requests: 0, // request heads received (upgrades included), admin excluded
  completed: 0, // requests whose body was read to the end
  aborted: 0, // requests whose connection went away before the body ended
  connections: 0, // TCP connections that carried at least one counted (non-admin) request
  active: 0, // requests in flight
  upgrades: 0, // WebSocket handshakes answered with 101
  clientErrors: 0, // requests Node's own parser refused
  byPath: {},
  methods: {},
  log: [],
};
const LOG_MAX = 1000;
let nextSocketId = 1;

function resetState() {
  Object.assign(state, {
    requests: 0, completed: 0, aborted: 0, connections: 0, upgrades: 0, clientErrors: 0,
    byPath: {}, methods: {}, log: [],
  });
}

function record(req) {
  state.requests++;
  if (req.socket.__requests === 1) state.connections++; // sockets that carried a counted request
  const path = req.url.split("?")[0];
  state.byPath[path] = (state.byPath[path] || 0) + 1;
  state.methods[req.method] = (state.methods[req.method] || 0) + 1;
  const entry = { seq: state.requests, method: req.method, url: req.url, socket_id: req.socket.__id, completed: false };
  state.log.push(entry);
  if (state.log.length > LOG_MAX) state.log.shift();
  return entry;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function query(req) {
  const u = new URL(req.url, "http://x");
  return u.searchParams;
}

function intParam(q, name, dflt, max) {
  const v = q.get(name);
  if (v === null || v === "") return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) return dflt;
  return Math.min(Math.floor(n), max);
}

function sendJson(res, status, obj, extra) {
  const body = Buffer.from(JSON.stringify(obj) + "\n");
  res.writeHead(status, Object.assign({
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": body.length,
    "X-Upstream": opts.name,
  }, extra || {}));
  res.end(body);
}

// Deterministic body for /big: a 64 KiB block repeated; test_proxy.py has the same function.
const BIG_BLOCK = (() => {
  const b = Buffer.alloc(65536);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + 13 + (i >> 9)) & 0xff;
  return b;
})();

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Reads the request body as a stream: counts and hashes, never keeps it.  cb(bytes, sha256hex)
function consume(req, entry, cb, stallMs) {
  const h = crypto.createHash("sha256");
  let n = 0;
  let done = false;
  req.on("data", (c) => {
    n += c.length;
    h.update(c);
  });
  req.on("end", () => {
    done = true;
    entry.completed = true;
    state.completed++;
    cb(n, h.digest("hex"));
  });
  req.on("close", () => {
    if (!done && !req.complete) state.aborted++;
  });
  if (stallMs > 0) {
    req.pause();
    setTimeout(() => req.resume(), stallMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Routes

function tlsInfo(sock) {
  if (!sock.encrypted) return null;
  const peer = sock.getPeerCertificate ? sock.getPeerCertificate() : null;
  return {
    servername: sock.servername || null,
    protocol: sock.getProtocol ? sock.getProtocol() : null,
    authorized: !!sock.authorized,
    peer_cn: peer && peer.subject && peer.subject.CN ? peer.subject.CN : null,
  };
}

function echo(req, res, entry) {
  const sock = req.socket;
  consume(req, entry, (n, sha) => {
    const rawHeaders = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) rawHeaders.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    sendJson(res, 200, {
      instance: opts.name,
      method: req.method,
      url: req.url,
      http_version: req.httpVersion,
      headers: req.headers,
      raw_headers: rawHeaders,
      body_bytes: n,
      body_sha256: sha,
      remote_address: sock.remoteAddress,
      remote_port: sock.remotePort,
      socket_id: sock.__id,
      socket_requests: sock.__requests,
      tls: tlsInfo(sock),
    });
  });
}

const JSON_DOC = { service: "edgetest-upstream", readings: [1, 2, 3], ok: true };
const JSON_ETAG = '"json-v1"';

function jsonRoute(req, res, entry) {
  consume(req, entry, () => {
    const inm = req.headers["if-none-match"];
    const common = { ETag: JSON_ETAG, "Cache-Control": "private, max-age=0, must-revalidate", "X-Upstream": opts.name };
    if (inm && inm.split(",").map((s) => s.trim()).some((t) => t === JSON_ETAG || t === "W/" + JSON_ETAG || t === "*")) {
      res.writeHead(304, common);
      res.end();
      return;
    }
    const body = Buffer.from(JSON.stringify(Object.assign({ instance: opts.name }, JSON_DOC)) + "\n");
    res.writeHead(200, Object.assign({ "Content-Type": "application/json; charset=utf-8", "Content-Length": body.length }, common));
    res.end(body); // Node sends no body for HEAD, keeps Content-Length
  });
}

function slowRoute(req, res, entry) {
  const ms = intParam(query(req), "ms", 1000, 600000);
  consume(req, entry, async () => {
    await sleep(ms);
    if (!res.destroyed) sendJson(res, 200, { instance: opts.name, slept_ms: ms });
  });
}

function sseRoute(req, res, entry) {
  const q = query(req);
  const n = intParam(q, "n", 5, 10000);
  const ms = intParam(q, "ms", 200, 60000);
  const pauseAt = intParam(q, "pause_at", -1, 10000);
  const pauseMs = intParam(q, "pause_ms", 0, 600000);
  consume(req, entry, () => {
    res.writeHead(200, {
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      "X-Upstream": opts.name,
    });
    res.flushHeaders();
    let i = 0;
    const tick = () => {
      if (res.destroyed) return;
      res.write(`id: ${i}\nevent: reading\ndata: {"i":${i},"t":${Date.now()}}\n\n`);
      i++;
      if (i < n) setTimeout(tick, i === pauseAt ? ms + pauseMs : ms);
      else res.end();
    };
    setTimeout(tick, ms);
  });
}

function uploadRoute(req, res, entry) {
  const stall = intParam(query(req), "stall_ms", 0, 60000);
  const t0 = Date.now();
  consume(req, entry, (n, sha) => {
    sendJson(res, 200, {
      instance: opts.name,
      bytes: n,
      sha256: sha,
      content_length: req.headers["content-length"] === undefined ? null : req.headers["content-length"],
      transfer_encoding: req.headers["transfer-encoding"] === undefined ? null : req.headers["transfer-encoding"],
      ms: Date.now() - t0,
    });
  }, stall);
}

function chunkedRoute(req, res, entry) {
  const q = query(req);
  const n = intParam(q, "n", 5, 1000);
  const ms = intParam(q, "ms", 20, 10000);
  consume(req, entry, async () => {
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8", "X-Upstream": opts.name });
    // no Content-Length: Node frames it with Transfer-Encoding: chunked (HTTP/1.1 requests)
    for (let i = 0; i < n; i++) {
      if (res.destroyed) return;
      res.write(`chunk ${i} of ${n}\n`);
      if (ms) await sleep(ms);
    }
    res.end("end\n");
  });
}

function bigRoute(req, res, entry) {
  const q = query(req);
  const total = intParam(q, "bytes", 1024 * 1024, 4 * 1024 * 1024 * 1024);
  const chunked = q.get("chunked") === "1";
  consume(req, entry, () => {
    const h = { "Content-Type": "application/octet-stream", "X-Upstream": opts.name };
    if (!chunked) h["Content-Length"] = total;
    res.writeHead(200, h);
    if (req.method === "HEAD") return res.end();
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(BIG_BLOCK.length, total - sent);
        const ok = res.write(n === BIG_BLOCK.length ? BIG_BLOCK : BIG_BLOCK.subarray(0, n));
        sent += n;
        if (!ok) return res.once("drain", pump); // backpressure: wait for the socket
      }
      res.end();
    };
    res.on("close", () => { sent = total; });
    pump();
  });
}

function malformedRoute(req, res, entry, kind) {
  const s = req.socket;
  const k = kind || query(req).get("kind") || "status";
  const garbage = {
    status: "HTTP/1.1 2x0 WHAT\r\nthis is not http at all\r\n\r\n",
    header: "HTTP/1.1 200 OK\r\nX-Upstream: " + opts.name + "\r\nBad Header Name: x\r\nContent-Length: 2\r\n\r\nok",
    length: "HTTP/1.1 200 OK\r\nX-Upstream: " + opts.name + "\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    truncated: "HTTP/1.1 200 OK\r\nX-Upstream: " + opts.name + "\r\nContent-Length: 100\r\n\r\nonly this",
    headcut: "HTTP/1.1 200 OK\r\nX-Upstream: " + opts.name + "\r\nX-Half: b",
    fold: "HTTP/1.1 200 OK\r\nX-Upstream: " + opts.name + "\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
  }[k];
  if (res) res.on("error", () => {});
  if (k === "304cl" || k === "204cl") {
    // A bodiless status announcing a length, connection left open: nothing more may be read.
    const code = k === "304cl" ? "304 Not Modified" : "204 No Content";
    // (Connection: close: Node still counts the request as unanswered, so this socket is done)
    s.write("HTTP/1.1 " + code + "\r\nX-Upstream: " + opts.name + "\r\nConnection: close\r\nContent-Length: 100\r\n\r\n");
    setTimeout(() => s.destroy(), 5000);
    return;
  }
  s.end(garbage || "garbage\r\n\r\n");
  setTimeout(() => s.destroy(), 50);
}

function resetSocket(req) {
  const s = req.socket;
  // a TLSSocket has no RST of its own (its handle is the TLS layer): plain destroy there
  if (typeof s.resetAndDestroy === "function" && !s.encrypted) s.resetAndDestroy();
  else s.destroy();
}

function poweredRoute(req, res, entry) {
  consume(req, entry, () => {
    const body = Buffer.from('{"powered":true}\n');
    res.writeHead(200, {
      "Content-Type": "application/json",
      "Content-Length": body.length,
      "X-Powered-By": "Express",
      Server: "node-upstream/1.0",
      "X-Custom-Resp": "yes",
      "X-Upstream": opts.name,
    });
    res.end(body);
  });
}

function statusRoute(req, res, entry) {
  const code = intParam(query(req), "code", 200, 599);
  consume(req, entry, () => {
    if (code < 200 || code > 599) return sendJson(res, 400, { error: "code must be 200..599" });
    if (code === 204 || code === 304) {
      res.writeHead(code, { "X-Upstream": opts.name });
      return res.end();
    }
    sendJson(res, code, { instance: opts.name, status: code });
  });
}

function healthRoute(req, res, entry) {
  consume(req, entry, () => {
    if (state.healthy) sendJson(res, 200, { status: "OK", instance: opts.name });
    else sendJson(res, 503, { status: "ERROR", instance: opts.name });
  });
}

function admin(req, res) {
  const path = req.url.split("?")[0];
  req.resume();
  if (path === "/__admin/count") {
    return sendJson(res, 200, {
      instance: opts.name,
      requests: state.requests,
      completed: state.completed,
      aborted: state.aborted,
      connections: state.connections,
      active: state.active,
      upgrades: state.upgrades,
      client_errors: state.clientErrors,
      not_modified: state.not_modified || 0,
      by_path: state.byPath,
      methods: state.methods,
    });
  }
  if (path === "/__admin/log") return sendJson(res, 200, state.log);
  if (path === "/__admin/reset") {
    resetState();
    return sendJson(res, 200, { ok: true });
  }
  if (path === "/__admin/health") {
    const ok = query(req).get("ok");
    if (ok === "0" || ok === "1") state.healthy = ok === "1";
    return sendJson(res, 200, { healthy: state.healthy });
  }
  sendJson(res, 404, { error: "no such admin route" });
}

function textRoute(req, res, entry) {
  const q = query(req);
  const n = intParam(q, "bytes", 4000, 64 * 1024 * 1024);
  const delay = intParam(q, "ms", 0, 60000);
  consume(req, entry, () => (delay ? setTimeout(() => textAnswer(req, res, q, n), delay) : textAnswer(req, res, q, n)));
}

function textAnswer(req, res, q, n) {
  {
    const unit = '{"card":"The Star","meaning":"hope, renewal","reversed":false},\n';
    let body = Buffer.from(unit.repeat(Math.ceil(n / unit.length)).slice(0, n));
    const headers = { "Content-Type": q.get("type") || "application/json", "X-Upstream": opts.name };
    if (q.get("cc")) headers["Cache-Control"] = q.get("cc");
    if (q.get("etag")) headers["ETag"] = q.get("etag");
    if (q.get("etag2")) headers["ETag"] = [q.get("etag"), q.get("etag2")];  // two ETag lines
    if (q.get("vary")) headers["Vary"] = q.get("vary");
    if (q.get("cookie")) headers["Set-Cookie"] = q.get("cookie");
    if (q.get("tag")) headers["Cache-Tag"] = q.get("tag");
    if (q.get("lm")) headers["Last-Modified"] = q.get("lm");
    // X-Served: which request of this instance made the body (a cached copy keeps the old one);
    // with vary=X-Lang the body also starts with that request header's value
    headers["X-Served"] = String(state.requests);
    if (q.get("vary") && req.headers[q.get("vary").toLowerCase()])
      body = Buffer.concat([Buffer.from(req.headers[q.get("vary").toLowerCase()] + ":"), body]);
    if (q.get("ce") === "gzip") {
      body = zlib.gzipSync(body);
      headers["Content-Encoding"] = "gzip";
    }
    headers["Content-Length"] = body.length;
    const inm = req.headers["if-none-match"];
    if (q.get("etag") && inm && inm.split(",").map((t) => t.trim()).includes(q.get("etag"))) {
      delete headers["Content-Length"];
      if (q.get("cookie304")) headers["Set-Cookie"] = q.get("cookie304");  // a rolling session
      state.not_modified = (state.not_modified || 0) + 1;
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, headers);
    res.end(body);
  }
}

const ROUTES = {
  "/text": textRoute,
  "/health": healthRoute,
  "/echo": echo,
  "/json": jsonRoute,
  "/slow": slowRoute,
  "/sse": sseRoute,
  "/upload": uploadRoute,
  "/chunked": chunkedRoute,
  "/big": bigRoute,
  "/malformed": (req, res, entry) => malformedRoute(req, res, entry),
  "/reset": (req) => resetSocket(req),
  "/powered": poweredRoute,
  "/status": statusRoute,
  "/ws": (req, res, entry) => consume(req, entry, () => sendJson(res, 426, { error: "Upgrade Required" }, { Upgrade: "websocket", Connection: "Upgrade" })),
};

function handle(req, res, entry) {
  const path = req.url.split("?")[0];
  const route = ROUTES[path];
  if (route) return route(req, res, entry);
  consume(req, entry, () => sendJson(res, 404, { error: "Not Found", url: req.url, method: req.method, instance: opts.name }));
}

// ---------------------------------------------------------------------------------------------
// Server

const serverOptions = { keepAliveTimeout: opts.keepaliveMs, requestTimeout: 0 };
if (opts.tlsCert) {
  serverOptions.cert = fs.readFileSync(opts.tlsCert);
  serverOptions.key = fs.readFileSync(opts.tlsKey);
  if (opts.tlsCaForClients) {
    serverOptions.ca = fs.readFileSync(opts.tlsCaForClients);
    serverOptions.requestCert = true;
    serverOptions.rejectUnauthorized = true;
  }
  if (opts.tlsHandshakeDelayMs > 0) {
    const ctx = tls.createSecureContext({ cert: serverOptions.cert, key: serverOptions.key, ca: serverOptions.ca });
    serverOptions.SNICallback = (name, cb) => setTimeout(() => cb(null, ctx), opts.tlsHandshakeDelayMs);
  }
}
const server = opts.tlsCert ? https.createServer(serverOptions) : http.createServer(serverOptions);
server.keepAliveTimeout = opts.keepaliveMs;
server.headersTimeout = opts.keepaliveMs + 5000;
server.requestTimeout = 0;

// Over TLS, requests arrive on the TLSSocket of "secureConnection" (not the TCP socket).
server.on(opts.tlsCert ? "secureConnection" : "connection", (sock) => {
  sock.__id = nextSocketId++;
  sock.__requests = 0;
  sock.setNoDelay(true);
});

server.on("clientError", (err, sock) => {
  state.clientErrors++;
  if (sock.writable) sock.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  else sock.destroy();
});

server.on("request", (req, res) => {
  if (req.url.startsWith("/__admin/")) return admin(req, res);
  req.socket.__requests++;
  const entry = record(req);
  state.active++;
  let finished = false;
  const done = () => {
    if (!finished) {
      finished = true;
      state.active--;
    }
  };
  res.on("finish", done);
  res.on("close", done);
  res.setHeader("X-Upstream", opts.name);
  if (opts.mode === "malformed") return malformedRoute(req, res, entry, "status");
  if (opts.mode === "reset") return resetSocket(req);
  if (opts.mode === "close") {
    req.socket.end();
    return;
  }
  if (opts.mode === "slow") {
    setTimeout(() => {
      if (!res.destroyed) handle(req, res, entry);
    }, opts.delayMs);
    return;
  }
  handle(req, res, entry);
});

// --- WebSocket echo (RFC 6455, server side: client frames are masked, ours are not) ----------

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function wsFrame(opcode, payload) {
  const len = payload.length;
  let head;
  if (len < 126) {
    head = Buffer.from([0x80 | opcode, len]);
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

function wsEcho(socket, head) {
  let buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
  let closed = false;
  let fragOpcode = 0;
  let frags = [];
  const onData = (chunk) => {
    if (chunk) buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const fin = (buf[0] & 0x80) !== 0;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        const big = buf.readBigUInt64BE(2);
        if (big > BigInt(64 * 1024 * 1024)) return fail(1009);
        len = Number(big);
        off = 10;
      }
      if (!masked) return fail(1002); // clients must mask
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      buf = buf.subarray(off + 4 + len);
      if (opcode === 0x8) {
        // close: answer with the same code, then end
        if (!closed) {
          closed = true;
          socket.end(wsFrame(0x8, payload.subarray(0, 2)));
        }
        return;
      } else if (opcode === 0x9) {
        socket.write(wsFrame(0xa, payload));
      } else if (opcode === 0xa) {
        // pong: ignore
      } else if (opcode === 0x1 || opcode === 0x2 || opcode === 0x0) {
        if (opcode !== 0x0) {
          fragOpcode = opcode;
          frags = [];
        }
        frags.push(payload);
        if (fin) {
          socket.write(wsFrame(fragOpcode, Buffer.concat(frags)));
          frags = [];
        }
      } else {
        return fail(1002);
      }
    }
  };
  const fail = (code) => {
    if (closed) return;
    closed = true;
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code, 0);
    socket.end(wsFrame(0x8, p));
  };
  socket.on("data", onData);
  socket.on("error", () => {});
  if (buf.length) onData(null);
}

server.on("upgrade", (req, socket, head) => {
  if (req.url.startsWith("/__admin/")) return socket.destroy();
  req.socket.__requests++;
  const entry = record(req);
  entry.completed = true;
  state.completed++;
  socket.on("error", () => {});
  if (opts.mode === "reset") return resetSocket(req);
  if (opts.mode === "malformed") return malformedRoute(req, null, entry, "status");
  const path = req.url.split("?")[0];
  const key = req.headers["sec-websocket-key"];
  const isWs = (req.headers.upgrade || "").toLowerCase() === "websocket";
  if (path !== "/ws" || !isWs || !key || req.headers["sec-websocket-version"] !== "13") {
    socket.end("HTTP/1.1 400 Bad Request\r\nX-Upstream: " + opts.name + "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  const accept = crypto.createHash("sha1").update(key + WS_GUID).digest("base64");
  state.upgrades++;
  socket.setNoDelay(true);
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\n" +
    "Upgrade: websocket\r\n" +
    "Connection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${accept}\r\n` +
    `X-Upstream: ${opts.name}\r\n\r\n`);
  wsEcho(socket, head);
});

server.on("error", (err) => die(`server error: ${err.message}`));
server.on("tlsClientError", () => {}); // a refused handshake (no client certificate...): the client sees it

server.listen(opts.port, opts.host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

const stop = () => {
  server.close();
  server.closeAllConnections && server.closeAllConnections();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
