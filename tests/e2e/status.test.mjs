// End-to-end tests of the admin status page (server/admin/status.html) in headless Chromium via playwright-core.
// Run by run.sh:  node --test-reporter=spec status.test.mjs [EDGE_BINARY]
//  - The page alone, served by a fake admin server in this process (the contract's CSP with the page's own
//    sha256 hashes, a synthetic /status.json): exact numbers, the token, the disconnected state, the CSP.
//  - The page served by the real edge's admin listener (skipped when no EDGE_BINARY is given): the test
//    starts edge itself with a temporary config ([admin] listen = "127.0.0.1:0", a token, a static route,
//    a proxy route to a Node upstream and to a closed port), drives traffic, and reads the page.
// Screenshots go to tests/e2e/out/ (status.png is the real edge's page).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const PAGE_FILE = new URL('../../server/admin/status.html', import.meta.url);
const OUT = new URL('./out/', import.meta.url);
const EDGE = process.argv[2] ? realpathSync(process.argv[2]) : '';
const TIMEOUT = { timeout: 60_000 };
const NUMBER = /^\d+(\.\d+)?$/;
const DASH = '\u2013';

// ---------- the page's CSP: what edge must send with /status ----------

// The exact text between <script> and </script> (and <style> and </style>): what the hashes cover.
function inlineBlocks(html, tag) {
  return [...html.matchAll(new RegExp(`<${tag}(\\s[^>]*)?>([\\s\\S]*?)</${tag}>`, 'gi'))].map((m) => ({ attrs: m[1] || '', text: m[2] }));
}
const sha256 = (text) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
function cspFor(html) {
  const [script] = inlineBlocks(html, 'script');
  const [style] = inlineBlocks(html, 'style');
  return `default-src 'none'; script-src ${sha256(script.text)}; style-src ${sha256(style.text)}; connect-src 'self'; ` +
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

// ---------- browser helpers ----------

let browser;
before(async () => {
  mkdirSync(OUT, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    timeout: 30_000,
  });
});
after(async () => { await browser?.close(); });

async function openPage(t, { colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 820 }, colorScheme, serviceWorkers: 'block' });
  context.setDefaultTimeout(15_000);
  t.after(() => context.close());
  const page = await context.newPage();
  const log = { console: [], pageErrors: [], failed: [], offsite: [] };
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content.Security.Policy/i.test(m.text())) log.console.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => log.pageErrors.push(String(e)));
  page.on('requestfailed', (r) => log.failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on('request', (r) => {
    if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(r.url()) && !r.url().startsWith('data:')) log.offsite.push(r.url());
  });
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  return { page, log };
}

async function assertClean(page, log) {
  assert.deepEqual(log.pageErrors, [], 'uncaught page errors');
  assert.deepEqual(log.console, [], 'console errors (a CSP violation is one)');
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], 'CSP violations (securitypolicyviolation)');
  assert.deepEqual(log.failed, [], 'failed requests');
  assert.deepEqual(log.offsite, [], 'requests that left 127.0.0.1');
}

const text = (page, sel) => page.textContent(sel).then((s) => (s || '').trim());
const waitText = (page, sel, re, timeout = 15_000) => page.waitForFunction(
  ([s, src]) => new RegExp(src).test((document.querySelector(s)?.textContent || '').trim()), [sel, re.source], { timeout });

// ---------- the page file itself ----------

test('status.html: one inline <style>, one inline <script>, nothing a hash-only CSP would block', () => {
  const html = readFileSync(PAGE_FILE, 'utf8');
  assert.match(html, /^<!doctype html>/i, 'standards mode doctype');
  const scripts = inlineBlocks(html, 'script');
  const styles = inlineBlocks(html, 'style');
  assert.equal(scripts.length, 1, 'exactly one <script>');
  assert.equal(styles.length, 1, 'exactly one <style>');
  assert.equal(scripts[0].attrs.trim(), '', 'the <script> is inline (no src, no attributes)');
  assert.equal(styles[0].attrs.trim(), '', 'the <style> has no attributes');
  const markup = html.replace(/<script>[\s\S]*?<\/script>/i, '').replace(/<style>[\s\S]*?<\/style>/i, '');
  assert.doesNotMatch(markup, /\sstyle\s*=/i, 'no style="" attributes');
  assert.doesNotMatch(markup, /\son[a-z]+\s*=/i, 'no inline event handlers');
  assert.doesNotMatch(html, /javascript:/i, 'no javascript: URLs');
  assert.doesNotMatch(scripts[0].text, /\beval\s*\(|new\s+Function\b|setAttribute\(\s*['"]style|\.innerHTML\b|document\.write/,
    'no eval, new Function, style attributes, innerHTML or document.write in the script');
  assert.doesNotMatch(html, /\b(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i, 'no external resources');
  assert.doesNotMatch(scripts[0].text, /<\/script/i);
  for (const id of ['rps', 'error-rate', 'p50', 'p90', 'p99', 'hit-ratio', 'upstreams', 'state', 'version']) {
    assert.match(markup, new RegExp(`id="${id}"`), `element #${id}`);
  }
});

// ---------- the page under the contract's CSP, served by a fake admin server ----------

// The page takes rates from the difference of the polls' own uptime_s, so a fake that advances it
// by exactly 2 s a poll makes every number exact whatever the real timing.
function fakeDoc(n) {
  return {
    version: '0.8.0-fake', time: new Date(Date.UTC(2026, 10, 27, 12, 0, 0) + n * 2000).toISOString(),
    uptime_s: 3600 + n * 2, workers: 2,
    requests: 1000 + n * 50,
    responses: { '1xx': 0, '2xx': 900 + n * 47, '3xx': 4, '4xx': 20 + n * 2, '5xx': 10 + n },
    latency_ms: { p50: 0.4, p90: 1.2, p99: 7.5 },
    bytes_in: 1000 + n * 2048, bytes_out: 5000 + n * 1024 * 1024 * 3,
    connections_open: 3,
    cache: { hit: 10 + n * 3, stale: 1, revalidated: 0, miss: 5 + n, bypass: 2, bytes: 1024, objects: 3, capacity: 67108864, evictions: 0 },
    rate_limited: 4 + n,
    upstreams: [
      { pool: 'api', server: '127.0.0.1:5000', up: true, in_flight: 1, requests: 100 + n * 10, errors: 2 },
      { pool: 'api', server: '127.0.0.1:5001', up: false, in_flight: 0, requests: 7, errors: 30 + n },
    ],
    reloads: { ok: 3, failed: 1, last: 'failed' },
  };
}

async function startFake(t) {
  const fake = { polls: 0, mode: 'ok', token: '', auth: [], holdAfter: Infinity };
  // Polls after the first holdAfter ones wait until release(), so the page holds still while read.
  let open;
  const gate = new Promise((resolve) => { open = resolve; });
  fake.release = () => { fake.holdAfter = Infinity; open(); };
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/status') {
      const html = readFileSync(PAGE_FILE, 'utf8'); // read per request: the test checks the file as it is now
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': cspFor(html),
        'x-content-type-options': 'nosniff' });
      return res.end(html);
    }
    if (path === '/status.json') {
      fake.auth.push(req.headers.authorization || '');
      if (fake.mode === 'reset') return req.socket.destroy();
      if (fake.mode === '503') {
        res.writeHead(503, { 'content-type': 'application/json' });
        return res.end('{"error":"Service Unavailable"}');
      }
      if (fake.token && req.headers.authorization !== `Bearer ${fake.token}`) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
        return res.end('{"error":"Unauthorized"}');
      }
      if (fake.polls >= fake.holdAfter) await gate;
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      return res.end(JSON.stringify(fakeDoc(fake.polls++)));
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"Not Found"}');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  fake.base = `http://127.0.0.1:${server.address().port}`;
  return fake;
}

test('fake admin: the page runs under its hash-only CSP and shows exact rates from two polls', TIMEOUT, async (t) => {
  const fake = await startFake(t);
  fake.holdAfter = 2;
  const { page, log } = await openPage(t);
  const res = await page.goto(`${fake.base}/status`);
  assert.equal(res.status(), 200);
  await waitText(page, '#state', /^live$/);
  // First poll: counters but no rates yet.
  assert.equal(await text(page, '#version'), '0.8.0-fake');
  assert.equal(await text(page, '#p99'), '7.50 ms');
  assert.equal(await text(page, '#p50'), '0.40 ms');
  // Second poll: rates from the difference (uptime advances 2 s a poll).
  await waitText(page, '#rps', NUMBER, 8_000);
  assert.equal(await text(page, '#rps'), '25.0', '50 requests in 2 s');
  assert.equal(await text(page, '#error-rate'), '2.00', '1 5xx in 50 requests');
  assert.equal(await text(page, '#hit-ratio'), '75.0', '3 hits in 4 lookups');
  assert.equal(await text(page, '#rate-limited'), '0.5');
  assert.equal(await text(page, '#bytes-out-rate'), '1.5 MiB/s');
  assert.equal(await text(page, '#bytes-in-rate'), '1.0 KiB/s');
  assert.equal(await text(page, '#connections'), '3');
  assert.equal(await text(page, '#uptime'), '1h 0m 2s');
  assert.equal(await text(page, '#reload-last'), 'failed');
  assert.equal(await text(page, '#reloads-ok'), '3');
  const rows = await page.$$eval('#upstreams tbody tr[data-server]', (trs) => trs.map((tr) => ({
    pool: tr.dataset.pool, server: tr.dataset.server, state: tr.querySelector('.badge')?.textContent,
    cells: [...tr.querySelectorAll('td.num')].map((td) => td.textContent),
  })));
  assert.deepEqual(rows[0], { pool: 'api', server: '127.0.0.1:5000', state: 'up', cells: ['1', '110', '2'] });
  assert.equal(rows[1].state, 'down');
  assert.equal(rows.length, 2);
  fake.release();
  // Sparkline: an SVG built with DOM APIs, one point per rate so far (the third poll adds the second).
  await page.waitForFunction(() => document.querySelector('#spark svg polyline')?.getAttribute('points').split(' ').length >= 2);
  const spark = await page.$eval('#spark svg polyline', (p) => p.getAttribute('points'));
  assert.ok(spark && spark.split(' ').length >= 2, `sparkline points: ${spark}`);
  assert.deepEqual(fake.auth.filter(Boolean), [], 'no Authorization header without #token=');
  await page.screenshot({ path: new URL('status-fake.png', OUT).pathname, fullPage: true });
  await assertClean(page, log);

  // Control: the policy really is enforced, so "no violations" above means something.
  const ran = await page.evaluate(async () => {
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true';
    document.head.append(s);
    await new Promise((resolve) => setTimeout(resolve, 100));
    return window.__inlineRan === true;
  });
  assert.equal(ran, false, 'an inline script without the hash must be blocked');
  assert.match((await page.evaluate(() => window.__cspViolations))[0] || '', /^script-src/);
});

test('fake admin: #token=T sends Authorization: Bearer T; a 401 without it shows disconnected', TIMEOUT, async (t) => {
  const fake = await startFake(t);
  fake.token = 'tok+en/=1';
  const { page, log } = await openPage(t, { colorScheme: 'dark' });
  await page.goto(`${fake.base}/status`);
  await waitText(page, '#state', /^disconnected$/);
  assert.match(await text(page, '#state-detail'), /HTTP 401/);
  await page.goto(`${fake.base}/status#token=${encodeURIComponent(fake.token)}`);
  await waitText(page, '#state', /^live$/);
  await waitText(page, '#rps', NUMBER, 8_000);
  assert.ok(fake.auth.includes(`Bearer ${fake.token}`), `Authorization headers seen: ${fake.auth}`);
  await page.screenshot({ path: new URL('status-fake-dark.png', OUT).pathname, fullPage: true });
  // The 401s logged "Failed to load resource" on the first page; nothing else may have gone wrong.
  assert.deepEqual(log.console.filter((m) => !/status of 401/.test(m)), []);
  assert.deepEqual(log.pageErrors, []);
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
});

test('fake admin: a failing /status.json shows "disconnected", polling goes on, and it recovers', TIMEOUT, async (t) => {
  const fake = await startFake(t);
  const { page, log } = await openPage(t);
  await page.goto(`${fake.base}/status`);
  await waitText(page, '#rps', NUMBER, 8_000);
  for (const mode of ['503', 'reset']) {
    fake.mode = mode;
    await waitText(page, '#state', /^disconnected$/, 6_000);
    assert.match(await text(page, '#state-detail'), mode === '503' ? /HTTP 503/ : /fetch|network|failed/i);
    assert.ok(await page.$eval('#main', (m) => m.classList.contains('stale')), 'numbers are marked stale');
    await page.screenshot({ path: new URL(`status-fake-${mode}.png`, OUT).pathname, fullPage: true });
    const seen = fake.auth.length;
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    assert.ok(fake.auth.length >= seen + 1, 'it kept polling while disconnected');
    fake.mode = 'ok';
    await waitText(page, '#state', /^live$/, 6_000);
  }
  assert.deepEqual(log.pageErrors, []);
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
  assert.deepEqual(log.console.filter((m) => !/Failed to load resource|ERR_EMPTY_RESPONSE|ERR_CONNECTION/.test(m)), []);
});

// ---------- the page served by the real edge ----------

function closedPort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function startUpstream(t) {
  const server = createServer((req, res) => {
    if (req.url === '/health') { res.writeHead(200, { 'content-type': 'text/plain' }); return res.end('ok'); }
    if (req.url.startsWith('/fail')) { res.writeHead(500, { 'content-type': 'text/plain' }); return res.end('boom'); }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  return server.address().port;
}

const toml = (s) => JSON.stringify(s); // a JSON string is a valid TOML basic string for these paths

async function startEdge(t, { upPort, deadPort, token }) {
  const dir = mkdtempSync(join(tmpdir(), 'edge-status-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'www'));
  writeFileSync(join(dir, 'www', 'index.html'), '<!doctype html><title>e2e</title><p>hello</p>\n');
  const config = join(dir, 'edge.toml');
  writeFileSync(config, `# Generated by tests/e2e/status.test.mjs
[server]
workers = 1
grace_period = "2s"

[log]
access = "off"
error = "stderr"
level = "info"

[[listen]]
address = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
token = ${toml(token)}

[[upstream]]
name = "api"
servers = ["127.0.0.1:${upPort}", "127.0.0.1:${deadPort}"]

[upstream.health]
path = "/health"
interval = "1s"
timeout = "1s"
fall = 1
rise = 1

[[route]]
path = "/health"
health = true

[[route]]
prefix = "/api/"
proxy = "api"
strip_prefix = "/api"

[[route]]
prefix = "/"
root = ${toml(join(dir, 'www'))}
index = "index.html"
`);
  const check = spawnSync(EDGE, ['--check', '--config', config], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(check.status, 0, `edge --check rejected the config:\n${check.stdout}${check.stderr}`);

  const child = spawn(EDGE, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const ports = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening lines from edge within 10 s:\n${stderr}`)), 10_000);
    const look = () => {
      const admin = /admin listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1];
      const pub = stderr.split('\n').map((l) => (/admin listening/.test(l) ? null : /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(l)?.[1]))
        .find(Boolean);
      if (admin && pub) { clearTimeout(timer); resolve({ admin, pub }); }
    };
    child.stderr.on('data', (chunk) => { stderr += chunk; look(); });
    exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`edge exited (${code ?? signal}) before listening:\n${stderr}`)); });
  });
  return {
    admin: `http://127.0.0.1:${ports.admin}`, pub: `http://127.0.0.1:${ports.pub}`, stderr: () => stderr,
    async stop() { // the contract: SIGTERM -> exit 0 after the requests in flight
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

test('real edge: /status on the admin listener is live under its CSP with traffic, upstreams and version', { timeout: 90_000, skip: EDGE ? false : 'no EDGE_BINARY argument' }, async (t) => {
  const token = 'e2e-admin-token';
  const upPort = await startUpstream(t);
  const deadPort = await closedPort();
  const edge = await startEdge(t, { upPort, deadPort, token });
  t.diagnostic(`edge public ${edge.pub}, admin ${edge.admin}`);
  try {
    await checkEdgeStatus(t, edge, { token, upPort, deadPort });
  } catch (e) {
    e.message += `\nedge stderr (last 30 lines):\n${edge.stderr().trimEnd().split('\n').slice(-30).join('\n')}`;
    throw e;
  }
});

async function checkEdgeStatus(t, edge, { token, upPort, deadPort }) {
  // Some traffic: 200s, 404s and a few 500s through the proxy.
  const get = async (path) => { const r = await fetch(edge.pub + path); await r.arrayBuffer(); return r.status; };
  const statuses = [];
  for (let i = 0; i < 20; i++) statuses.push(await get('/'));
  for (let i = 0; i < 10; i++) statuses.push(await get('/nope-' + i));
  for (let i = 0; i < 10; i++) statuses.push(await get('/api/item/' + i));
  for (let i = 0; i < 3; i++) statuses.push(await get('/api/fail'));
  assert.equal(statuses.filter((s) => s === 200).length, 30, `statuses: ${statuses}`);
  assert.equal(statuses.filter((s) => s === 404).length, 10, `statuses: ${statuses}`);
  assert.equal(statuses.filter((s) => s === 500).length, 3, `statuses: ${statuses}`);

  // The documents themselves.
  const pageRes = await fetch(`${edge.admin}/status`);
  assert.equal(pageRes.status, 200, 'GET /status without a token');
  assert.match(pageRes.headers.get('content-type') || '', /^text\/html; charset=utf-8$/i);
  const served = await pageRes.text();
  assert.equal(pageRes.headers.get('content-security-policy'), cspFor(served), 'CSP: the served page\'s own hashes');
  const file = readFileSync(PAGE_FILE, 'utf8');
  // STATUS_PAGE_FROM_TREE=1: for a binary built before the page last changed, the browser gets this
  // tree's page (with the CSP edge computes for it) while /status.json still comes from the real edge.
  const fromTree = process.env.STATUS_PAGE_FROM_TREE === '1';
  if (fromTree) t.diagnostic('STATUS_PAGE_FROM_TREE=1: the browser gets server/admin/status.html of this tree');
  else assert.equal(served, file, 'edge serves server/admin/status.html of this tree (rebuild edge?)');
  const noToken = await fetch(`${edge.admin}/status.json`);
  assert.equal(noToken.status, 401, 'GET /status.json without the token');
  await noToken.arrayBuffer();
  const json = await fetch(`${edge.admin}/status.json`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(json.status, 200);
  assert.match(json.headers.get('content-type') || '', /^application\/json/);
  assert.equal(json.headers.get('cache-control'), 'no-store');
  const doc = await json.json();
  assert.ok(doc.requests >= 43, `requests counted: ${doc.requests}`);
  assert.ok(doc.responses['5xx'] >= 3 && doc.responses['4xx'] >= 10, `responses: ${JSON.stringify(doc.responses)}`);
  assert.equal((await fetch(`${edge.pub}/status`)).status, 404, '/status is not on the public listener');

  // Traffic while the page polls, so the rate is above zero: bounded (at most 30 s, every 100 ms).
  let stopTraffic = false;
  const traffic = (async () => {
    const until = Date.now() + 30_000;
    for (let i = 0; !stopTraffic && Date.now() < until; i++) {
      await get(i % 5 === 4 ? '/missing' : '/').catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  t.after(async () => { stopTraffic = true; await traffic; });

  const { page, log } = await openPage(t);
  if (fromTree) {
    await page.route((url) => url.href.startsWith(`${edge.admin}/status`) && url.pathname === '/status', (route) => route.fulfill({
      status: 200, body: file, headers: { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': cspFor(file) } }));
  }
  const res = await page.goto(`${edge.admin}/status#token=${token}`);
  assert.equal(res.status(), 200);
  await waitText(page, '#state', /^live$/, 10_000);
  assert.notEqual(await text(page, '#version'), DASH);
  assert.notEqual(await text(page, '#version'), '');
  assert.equal(await text(page, '#version'), String(doc.version));
  await waitText(page, '#rps', NUMBER, 10_000); // after the second poll
  await page.waitForFunction(() => Number(document.getElementById('rps').textContent) > 0, null, { timeout: 10_000 });
  assert.match(await text(page, '#p99'), /^\d+(\.\d+)? m?s$/);
  assert.match(await text(page, '#error-rate'), NUMBER);
  const upRow = `#upstreams tbody tr[data-server="127.0.0.1:${upPort}"]`;
  const deadRow = `#upstreams tbody tr[data-server="127.0.0.1:${deadPort}"]`;
  assert.equal(await text(page, `${upRow} .badge`), 'up');
  await waitText(page, `${deadRow} .badge`, /^down$/, 10_000); // health checks every 1 s, fall = 1
  assert.equal(await page.getAttribute(upRow, 'data-pool'), 'api');
  assert.equal(await text(page, '#reload-last'), 'none');
  await page.screenshot({ path: new URL('status.png', OUT).pathname, fullPage: true });
  await assertClean(page, log);

  stopTraffic = true;
  await traffic;
  const { code, signal } = await edge.stop();
  assert.equal(code, 0, `edge exit after SIGTERM (signal ${signal})`);
}
