// End-to-end tests of the SAMIA TAROT SPA (public/) served by Samia Edge, in headless Chromium via playwright-core.
// Run by run.sh, which starts the edge: node --test-reporter=spec spa.test.mjs http://127.0.0.1:PORT
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium, request } from 'playwright-core';

const BASE = (process.argv[2] || process.env.BASE_URL || '').replace(/\/+$/, '');
if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(BASE)) {
  console.error('usage: node spa.test.mjs http://127.0.0.1:PORT   (tests only run against 127.0.0.1)');
  process.exit(2);
}

// The policy the production edge will send (a later issue adds the header); pass 2 injects it.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; " +
  "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; connect-src 'self' https://api.stripe.com";
const IMMUTABLE = 'public, max-age=31536000, immutable';
const OUT = new URL('./out/', import.meta.url);
const TIMEOUT = { timeout: 45_000 };

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json', '.txt': 'text/plain',
};
const mediaType = (ct) => (ct || '').split(';')[0].trim().toLowerCase();
// What Content-Type a same-origin URL must have: by extension; app routes (no extension) get the SPA's HTML.
function expectedType(url) {
  const { pathname } = new URL(url);
  if (pathname === '/health') return 'application/json';
  const ext = /\.[A-Za-z0-9]+$/.exec(pathname)?.[0].toLowerCase();
  return ext ? TYPES[ext] : 'text/html';
}

let browser;
let api; // plain HTTP client (no browser) for header-level checks

before(async () => {
  mkdirSync(OUT, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    timeout: 30_000,
  });
  api = await request.newContext({ baseURL: BASE, timeout: 10_000 });
});

after(async () => {
  await api?.dispose();
  await browser?.close();
});

// A fresh browser context + page that records everything that could go wrong.
async function openPage(t, { csp = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 720 }, serviceWorkers: 'block' });
  context.setDefaultTimeout(10_000);
  t.after(() => context.close());
  const page = await context.newPage();
  const log = { console: [], pageErrors: [], failed: [], offsite: [], responses: [] };
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content.Security.Policy/i.test(m.text())) log.console.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => log.pageErrors.push(String(e)));
  page.on('requestfailed', (r) => {
    // The browser itself cancels the favicon fetch when a navigation (back/forward) starts while
    // it is in flight: that is the client's doing, not a failed response.
    const aborted = r.failure()?.errorText === 'net::ERR_ABORTED';
    if (aborted && r.resourceType() !== 'document' && new URL(r.url()).pathname === '/favicon.svg') return;
    log.failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(`${BASE}/`) && !r.url().startsWith('data:')) log.offsite.push(r.url());
  });
  page.on('response', (r) => log.responses.push(r));
  // Runs before the app in every document (CDP-injected, so the CSP does not apply to it).
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  if (csp) {
    await page.route((url) => url.href.startsWith(`${BASE}/`), async (route) => {
      if (route.request().resourceType() !== 'document') return route.fallback();
      const response = await route.fetch();
      await route.fulfill({ response, headers: { ...response.headers(), 'content-security-policy': CSP } });
    });
  }
  return { context, page, log };
}

async function waitReady(page, route) {
  await page.waitForSelector('html[data-ready="1"]');
  if (route) await page.waitForSelector(`#view[data-route="${route}"]`);
}

// Nothing went wrong on this page: no errors, no CSP violations, no failed or off-site requests,
// and every response had an OK status and the right Content-Type.
async function assertClean(page, log) {
  assert.deepEqual(log.pageErrors, [], 'uncaught page errors');
  assert.deepEqual(log.console, [], 'console errors');
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], 'CSP violations (securitypolicyviolation)');
  assert.deepEqual(log.failed, [], 'failed requests');
  assert.deepEqual(log.offsite, [], 'requests that left 127.0.0.1');
  for (const r of log.responses) {
    const what = `${r.request().method()} ${r.url()} (${r.request().resourceType()})`;
    assert.ok([200, 304].includes(r.status()), `${what}: status ${r.status()}, expected 200 or 304`);
    const ct = r.headers()['content-type'];
    if (r.status() === 304 && !ct) continue;
    assert.equal(mediaType(ct), expectedType(r.url()), `${what}: Content-Type ${JSON.stringify(ct)}`);
  }
}

const paths = (log, type) => log.responses.filter((r) => r.request().resourceType() === type).map((r) => new URL(r.url()).pathname);

test('deep link /readings/42 renders reading 42 with every asset OK', TIMEOUT, async (t) => {
  const { page, log } = await openPage(t);
  const res = await page.goto(`${BASE}/readings/42`, { waitUntil: 'load' });
  assert.equal(res.status(), 200, 'document status');
  assert.equal(mediaType(res.headers()['content-type']), 'text/html');
  assert.equal(res.headers()['cache-control'], 'no-cache', 'SPA fallback Cache-Control');
  await waitReady(page, '/readings/:id');

  assert.equal(await page.textContent('#view h1'), 'Reading #42');
  assert.equal(await page.getAttribute('#view .card', 'data-card'), 'Judgement'); // 42 % 22 = 20
  assert.equal(await page.title(), 'Reading #42: Judgement · SAMIA TAROT');
  assert.equal(await page.evaluate(() => document.compatMode), 'CSS1Compat', 'standards mode');
  // The stylesheet applied (background is not the UA default) and the logo decoded.
  assert.notEqual(await page.evaluate(() => getComputedStyle(document.documentElement).backgroundImage), 'none');
  assert.ok(await page.$eval('header img', (img) => img.complete && img.naturalWidth > 0), 'logo image loaded');

  await page.waitForFunction(() => document.getElementById('health')?.dataset.status !== 'pending');
  assert.equal(await page.getAttribute('#health', 'data-status'), 'OK', 'app read /health');

  assert.deepEqual(paths(log, 'document'), ['/readings/42']);
  assert.equal(paths(log, 'script').filter((p) => /^\/assets\/index-[\w-]{8}\.js$/.test(p)).length, 1, 'entry script');
  assert.equal(paths(log, 'stylesheet').filter((p) => /^\/assets\/index-[\w-]{8}\.css$/.test(p)).length, 1, 'stylesheet');
  assert.ok(paths(log, 'image').some((p) => p.endsWith('.svg')), 'an SVG image was loaded');
  await page.screenshot({ path: new URL('reading-42.png', OUT).pathname, fullPage: true });
  await assertClean(page, log);
});

test('every URL the page references is served with the right status, type and caching', TIMEOUT, async (t) => {
  const { page } = await openPage(t);
  await page.goto(`${BASE}/`);
  await waitReady(page, '/');
  const refs = await page.evaluate(() => [...new Set(
    [...document.querySelectorAll('script[src], link[href], img[src]')].map((el) => new URL(el.src || el.href).pathname),
  )]);
  for (const want of ['/favicon.svg', '.js', '.css', '.svg']) {
    assert.ok(refs.some((p) => p.endsWith(want)), `page references a ${want}: ${refs}`);
  }
  for (const p of [...refs, '/robots.txt']) {
    const r = await api.get(p);
    assert.equal(r.status(), 200, `GET ${p}`);
    assert.equal(mediaType(r.headers()['content-type']), expectedType(`${BASE}${p}`), `GET ${p} Content-Type`);
    const cc = r.headers()['cache-control'];
    if (p.startsWith('/assets/')) assert.equal(cc, IMMUTABLE, `GET ${p} Cache-Control`);
    else assert.ok(!/immutable/.test(cc || ''), `GET ${p} must not be immutable, got ${cc}`);
    const etag = r.headers().etag;
    assert.match(etag || '', /^"[^"]+"$/, `GET ${p} has a strong ETag`);
    const again = await api.get(p, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status(), 304, `GET ${p} with If-None-Match: ${etag}`);
  }
  const html = await api.get('/');
  assert.equal(html.headers()['cache-control'], 'no-cache', 'GET / Cache-Control');
});

test('links navigate client-side without a reload; back and forward work', TIMEOUT, async (t) => {
  const { page, log } = await openPage(t);
  await page.goto(`${BASE}/`);
  await waitReady(page, '/');
  assert.equal(await page.title(), 'SAMIA TAROT');
  await page.evaluate(() => { window.__samePage = 'yes'; });

  await page.click('a[href="/readings/42"]');
  await page.waitForSelector('#view[data-route="/readings/:id"]');
  assert.equal(new URL(page.url()).pathname, '/readings/42');
  assert.equal(await page.getAttribute('#view .card', 'data-card'), 'Judgement');
  assert.equal(await page.title(), 'Reading #42: Judgement · SAMIA TAROT');

  await page.click('nav a[href="/about"]');
  await page.waitForSelector('#view[data-route="/about"]');
  assert.equal(new URL(page.url()).pathname, '/about');
  assert.equal(await page.getAttribute('nav a[href="/about"]', 'aria-current'), 'page');

  await page.goBack();
  await page.waitForSelector('#view[data-route="/readings/:id"]');
  await page.goBack();
  await page.waitForSelector('#view[data-route="/"]');
  await page.goForward();
  await page.waitForSelector('#view[data-route="/readings/:id"]');
  assert.equal(new URL(page.url()).pathname, '/readings/42');

  assert.equal(await page.evaluate(() => window.__samePage), 'yes', 'the page was never reloaded');
  assert.deepEqual(paths(log, 'document'), ['/'], 'only the first load fetched a document');
  await page.goto(`${BASE}/`);
  await waitReady(page, '/');
  await page.screenshot({ path: new URL('home.png', OUT).pathname, fullPage: true });
  await assertClean(page, log);
});

test('deep links to /about and to an unknown app route get the app (200) with the right view', TIMEOUT, async (t) => {
  const { page, log } = await openPage(t);
  let res = await page.goto(`${BASE}/about`);
  assert.equal(res.status(), 200);
  await waitReady(page, '/about');
  assert.equal(await page.title(), 'About · SAMIA TAROT');

  res = await page.goto(`${BASE}/no/such/card`);
  assert.equal(res.status(), 200, 'SPA fallback for an unknown app route');
  assert.equal(mediaType(res.headers()['content-type']), 'text/html');
  await waitReady(page, 'not-found');
  assert.equal(await page.title(), 'Not found · SAMIA TAROT');
  await page.screenshot({ path: new URL('not-found.png', OUT).pathname, fullPage: true });
  await assertClean(page, log);
});

test('a missing hashed asset is a 404, never the SPA shell', TIMEOUT, async () => {
  for (const method of ['GET', 'HEAD']) {
    const r = await api.fetch('/assets/nope-Zz9Yy8Xx.js', { method });
    const what = `${method} /assets/nope-Zz9Yy8Xx.js`;
    assert.equal(r.status(), 404, what);
    assert.notEqual(mediaType(r.headers()['content-type']), 'text/html', `${what} Content-Type`);
    assert.equal(r.headers()['cache-control'], 'no-store', `${what} Cache-Control`);
    assert.ok(!/immutable/.test(r.headers()['cache-control'] || ''), `${what} must not be cached as immutable`);
    const body = await r.text();
    assert.ok(!/<html|<!doctype|id="root"/i.test(body), `${what} body looks like HTML: ${body.slice(0, 80)}`);
  }
});

test('under the production CSP the app runs with no violations', TIMEOUT, async (t) => {
  const { page, log } = await openPage(t, { csp: true });
  const res = await page.goto(`${BASE}/readings/42`);
  assert.equal(res.status(), 200);
  assert.equal(res.headers()['content-security-policy'], CSP, 'CSP injected on the document');
  await waitReady(page, '/readings/:id');
  await page.waitForFunction(() => document.getElementById('health')?.dataset.status !== 'pending');
  assert.equal(await page.getAttribute('#health', 'data-status'), 'OK', 'connect-src allows /health');
  await page.click('a[href="/"]');
  await waitReady(page, '/');
  await page.click('nav a[href="/about"]');
  await waitReady(page, '/about');
  await assertClean(page, log);

  // Control: the policy really is enforced, so "no violations" above means something.
  const ran = await page.evaluate(async () => {
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true';
    document.head.append(s);
    await new Promise((resolve) => setTimeout(resolve, 100));
    return window.__inlineRan === true;
  });
  assert.equal(ran, false, 'an inline script must be blocked by the CSP');
  const violations = await page.evaluate(() => window.__cspViolations);
  assert.equal(violations.length, 1, `exactly the control violation: ${violations}`);
  assert.match(violations[0], /^script-src/);
});

test("under edge's own default CSP header the app runs with no violations", TIMEOUT, async (t) => {
  const { page, log } = await openPage(t);
  const res = await page.goto(`${BASE}/readings/42`);
  assert.equal(res.status(), 200);
  const csp = res.headers()['content-security-policy'] || '';
  for (const d of ["default-src 'self'", "script-src 'self'", "connect-src 'self' https://api.stripe.com",
                   "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com"]) {
    assert.ok(csp.includes(d), `edge's CSP has ${d}: ${csp}`);
  }
  assert.equal(res.headers()['x-frame-options'], 'DENY');
  assert.equal(res.headers()['x-content-type-options'], 'nosniff');
  await waitReady(page, '/readings/:id');
  await page.waitForFunction(() => document.getElementById('health')?.dataset.status !== 'pending');
  assert.equal(await page.getAttribute('#health', 'data-status'), 'OK', 'connect-src allows /health');
  await page.click('a[href="/"]');
  await waitReady(page, '/');
  await assertClean(page, log);
  const ran = await page.evaluate(async () => {
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true';
    document.head.append(s);
    await new Promise((resolve) => setTimeout(resolve, 100));
    return window.__inlineRan === true;
  });
  assert.equal(ran, false, "edge's CSP must block an inline script");
});
