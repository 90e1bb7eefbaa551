// End-to-end test of the web UI in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser download). It drives a running server as a person would: an admin
// and a user in separate browsers, signing in, creating, deleting and revoking tokens, and reading
// the audit log; every key read from a page is also tried against the JSON API.
//
//   node ui.mjs BASE_URL ADMIN_USERNAME ADMIN_PASSWORD SCREENSHOT_DIR
//
// or the same through MULTITOKEN_E2E_BASE_URL, MULTITOKEN_E2E_ADMIN_USERNAME,
// MULTITOKEN_E2E_ADMIN_PASSWORD and MULTITOKEN_E2E_SCREENSHOTS. MULTITOKEN_E2E_CHROMIUM overrides
// the browser. Prints one line per passed check; stops with a non-zero status at the first failure.
// `cargo test --test api browser` runs it against a fresh server (tests/api/browser.rs).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [argBase, argAdmin, argPassword, argShots] = process.argv.slice(2);
const base = (argBase ?? process.env.MULTITOKEN_E2E_BASE_URL ?? '').replace(/\/+$/, '');
const adminName = argAdmin ?? process.env.MULTITOKEN_E2E_ADMIN_USERNAME ?? 'admin';
const adminPassword = argPassword ?? process.env.MULTITOKEN_E2E_ADMIN_PASSWORD;
const shots = path.resolve(argShots ?? process.env.MULTITOKEN_E2E_SCREENSHOTS ?? 'screenshots');
const executablePath = process.env.MULTITOKEN_E2E_CHROMIUM ?? '/usr/bin/chromium';
if (!base || !adminPassword) {
  console.error('usage: node ui.mjs BASE_URL ADMIN_USERNAME ADMIN_PASSWORD SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const started = Date.now();
const suffix = Math.random().toString(36).slice(2, 8);
const userName = `e2e-${suffix}`;
const userPassword = 'first password of e2e';
const newPassword = 'second password of e2e';
const xssName = '<script>alert(1)</script>';

// ---- reporting ------------------------------------------------------------------------------

let passed = 0;
let current = '(start-up)';
/** Runs one named check; prints `ok N - name` when it passes. */
async function check(name, body) {
  current = name;
  await body();
  passed += 1;
  console.log(`ok ${passed} - ${name}`);
}

/** Problems seen by the page listeners (script errors, dialogs, 5xx); any one fails the run. */
const problems = [];
function noProblems() {
  assert.deepEqual(problems, [], 'the browser saw problems');
}

// ---- helpers --------------------------------------------------------------------------------

/** A time as the pages print it (`2026-12-10 00:00:00 UTC`), in milliseconds. */
function parseTime(text) {
  const ms = Date.parse(text.replace(' ', 'T').replace(/ UTC$/, 'Z'));
  assert.ok(!Number.isNaN(ms), `a time expected, got ${JSON.stringify(text)}`);
  return ms;
}

function pathOf(page) {
  return new URL(page.url()).pathname;
}

async function screenshot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
  console.log(`   screenshot ${file}`);
}

/** The texts of the flash messages on the page, success or error. */
async function flashes(page) {
  return (await page.locator('.flash').allTextContents()).map((t) => t.trim());
}

async function expectFlash(page, kind, pattern) {
  const texts = await flashes(page);
  const found = await page.locator(`.flash.flash-${kind}`).allTextContents();
  assert.ok(
    found.some((t) => pattern.test(t.trim())),
    `a ${kind} flash matching ${pattern} expected, flashes on ${page.url()}: ${JSON.stringify(texts)}`,
  );
}

/**
 * Clicks a submit button and waits for the page the form leads to (after any redirect) to load;
 * then checks that it is `expectedPath`, with the page's flash messages in the failure message.
 */
async function submitAndWait(page, button, expectedPath) {
  const navigated = page.waitForEvent('framenavigated', { predicate: (frame) => frame === page.mainFrame() });
  await button.click();
  await navigated;
  await page.waitForLoadState('load');
  assert.equal(
    pathOf(page),
    expectedPath,
    `the form should have led to ${expectedPath}, but the browser is at ${page.url()}; flashes: ${JSON.stringify(await flashes(page))}`,
  );
}

async function signIn(page, username, password, { expectPath = '/tokens' } = {}) {
  await page.goto(`${base}/login`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await submitAndWait(page, page.getByRole('button', { name: 'Sign in' }), expectPath);
}

/** A link of the main navigation by its exact text. */
function navLink(page, name) {
  return page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });
}

/** `GET /api/me/` with a key, from Node: the status and the JSON body. */
async function me(key) {
  const response = await fetch(`${base}/api/me/`, { headers: { Authorization: `Token ${key}` } });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: response.status, body };
}

async function apiLogin(username, password) {
  const response = await fetch(`${base}/api/token/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  return { status: response.status, body: await response.json() };
}

/** The row of a token in `#tokens` (or `#all-tokens`) by its exact name. */
function tokenRow(page, table, name) {
  return page
    .locator(`table${table} tbody tr[data-token-id]`)
    .filter({ has: page.locator('td[data-label="Name"]', { hasText: name }) });
}

async function cell(row, label) {
  // The text people read: a sparkline's words (its SVG title) are its own, not the cell's.
  return row.locator(`td[data-label="${label}"]`).evaluate((td) =>
    [...td.childNodes].filter((n) => n.nodeName.toLowerCase() !== 'svg').map((n) => n.textContent).join('').trim());
}

/** Creates a device token through the form on /tokens and returns the key the page reveals. */
async function createToken(page, name, expires, expiresOn) {
  await page.goto(`${base}/tokens`);
  await page.locator('#name').fill(name);
  await page.locator('#expires').selectOption(expires);
  if (expiresOn) {
    await page.locator('#expires_on').fill(expiresOn);
  }
  await submitAndWait(page, page.getByRole('button', { name: 'Create token' }), '/tokens');
  const key = page.locator('code#new-key');
  assert.equal(await key.count(), 1, `the new key is shown after creating "${name}": ${await flashes(page)}`);
  return (await key.textContent()).trim();
}

function watch(page, who) {
  page.on('pageerror', (error) => problems.push(`${who}: script error on ${page.url()}: ${error.message}`));
  page.on('console', (message) => {
    // A failed resource load is reported by the response listener below, with its status.
    if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) {
      problems.push(`${who}: console error on ${page.url()}: ${message.text()}`);
    }
  });
  page.on('dialog', async (dialog) => {
    problems.push(`${who}: a ${dialog.type()} dialog opened on ${page.url()}: ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
  page.on('response', (response) => {
    if (response.status() >= 500) {
      problems.push(`${who}: ${response.status()} from ${response.request().method()} ${response.url()}`);
    }
  });
}

// ---- the run --------------------------------------------------------------------------------

const profile = mkdtempSync(path.join(tmpdir(), 'multitoken-e2e-'));
let browser;
/** Every browser page, to photograph where each one stood when a check fails. */
const openPages = [];

async function newSession(who, viewport = { width: 1024, height: 768 }) {
  const context = await browser.newContext({
    viewport,
    locale: 'en-US',
    timezoneId: 'UTC',
    baseURL: base,
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(20_000);
  const page = await context.newPage();
  watch(page, who);
  openPages.push({ who, page });
  return { context, page };
}

async function run() {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      // Playwright makes a fresh temporary profile for each launch; keep its crash dumps and
      // caches out of $HOME as well.
      `--disk-cache-dir=${path.join(profile, 'cache')}`,
      `--crash-dumps-dir=${path.join(profile, 'crashes')}`,
    ],
  });
  console.log(`# ${browser.browserType().name()} ${browser.version()} against ${base}; screenshots in ${shots}`);

  // (a) Signed out.
  const anon = await newSession('anonymous');
  await check('signed out: / and /tokens lead to the sign-in page', async () => {
    await anon.page.goto(`${base}/`);
    assert.equal(pathOf(anon.page), '/login');
    await anon.page.goto(`${base}/tokens`);
    assert.equal(pathOf(anon.page), '/login');
    assert.equal(new URL(anon.page.url()).searchParams.get('next'), '/tokens');
    await assert.doesNotReject(anon.page.getByRole('heading', { name: 'Sign in' }).waitFor());
    assert.equal(await anon.page.locator('nav[aria-label="Main"]').count(), 0, 'no navigation when signed out');
    await screenshot(anon.page, '01-login');
  });

  await check('signed out: an unknown page is an HTML 404 page', async () => {
    const response = await anon.page.goto(`${base}/no-such-page`);
    assert.equal(response.status(), 404);
    assert.match(response.headers()['content-type'], /text\/html/);
    assert.match(await anon.page.locator('h1').textContent(), /404/);
    await screenshot(anon.page, '02-not-found');
  });

  await check('signed out: the admin API refuses without a key', async () => {
    const response = await fetch(`${base}/api/admin/users`);
    assert.equal(response.status, 401);
    assert.match(response.headers.get('content-type'), /application\/json/, 'JSON stays JSON under /api');
  });

  // (b) The admin signs in and creates a user through the form.
  const admin = await newSession('admin');
  await check('admin signs in and lands on /tokens with "this browser" on its session', async () => {
    await signIn(admin.page, adminName, adminPassword);
    await expectFlash(admin.page, 'success', new RegExp(`Signed in as ${adminName}`));
    const mine = admin.page.locator('#tokens tr[data-token-id]').filter({ hasText: 'this browser' });
    assert.equal(await mine.count(), 1, 'exactly one row is marked "this browser"');
    assert.equal(await cell(mine, 'Kind'), 'session');
    await assert.doesNotReject(navLink(admin.page, 'Users').waitFor());
  });

  await check(`admin creates the user ${userName} in /admin/users`, async () => {
    await navLink(admin.page, 'Users').click();
    await admin.page.waitForURL((url) => url.pathname === '/admin/users');
    await admin.page.locator('#new-username').fill(userName);
    await admin.page.locator('#new-password').fill(userPassword);
    assert.equal(await admin.page.locator('#new-is-admin').isChecked(), false);
    await submitAndWait(admin.page, admin.page.getByRole('button', { name: 'Create user' }), '/admin/users');
    await expectFlash(admin.page, 'success', new RegExp(`User ${userName} created`));
    const row = admin.page.locator(`#users tr[data-username="${userName}"]`);
    assert.equal(await row.count(), 1);
    assert.equal(await cell(row, 'Role'), 'user');
    assert.equal(await cell(row, 'Status'), 'active');
    assert.equal(await cell(row, 'Tokens'), '0');
  });

  // (c) The user, in a browser of their own.
  const user = await newSession('user');
  await check('a wrong password is refused with a message and no sign-in', async () => {
    await signIn(user.page, userName, 'not the password', { expectPath: '/login' });
    await expectFlash(user.page, 'error', /./);
    await user.page.goto(`${base}/tokens`);
    assert.equal(pathOf(user.page), '/login');
  });

  await check('the user signs in, coming back to the page asked for', async () => {
    await user.page.goto(`${base}/account/password`);
    assert.equal(pathOf(user.page), '/login');
    await user.page.getByLabel('Username').fill(userName);
    await user.page.getByLabel('Password').fill(userPassword);
    await submitAndWait(user.page, user.page.getByRole('button', { name: 'Sign in' }), '/account/password');
    assert.equal(await navLink(user.page, 'Users').count(), 0, 'no admin links for a user');
  });

  let thermostatKey;
  await check('the user creates a device token expiring in 30 days; the key is shown once with a warning', async () => {
    thermostatKey = await createToken(user.page, 'kitchen thermostat', '30');
    assert.match(thermostatKey, /^mt_[A-Za-z0-9_]+$/);
    await expectFlash(user.page, 'success', /kitchen thermostat.*created/);
    assert.match(await user.page.locator('.reveal .warning').textContent(), /will not be shown again/);
    const row = tokenRow(user.page, '#tokens', 'kitchen thermostat');
    assert.equal(await row.count(), 1);
    assert.equal(await cell(row, 'Kind'), 'device');
    assert.match(await cell(row, 'Expires'), /in 30 days/);
    assert.equal(await cell(row, 'Last used'), 'never');
    const prefix = (await cell(row, 'Key')).replace(/…$/, '');
    assert.ok(prefix.length >= 6 && thermostatKey.startsWith(prefix), `prefix ${prefix} of ${thermostatKey}`);
    await screenshot(user.page, '03-tokens-key-shown');
  });

  await check('the Copy button copies the key to the clipboard', async () => {
    const copy = user.page.getByRole('button', { name: 'Copy' });
    await copy.click();
    await user.page.getByRole('button', { name: 'Copied' }).waitFor();
    assert.equal(await user.page.evaluate(() => navigator.clipboard.readText()), thermostatKey);
  });

  await check('the key from the page works against GET /api/me/', async () => {
    const { status, body } = await me(thermostatKey);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.user, userName, JSON.stringify(body));
    assert.equal(body.token.name, 'kitchen thermostat');
    assert.equal(body.token.kind, 'device');
  });

  await check('visiting /tokens again does not show the key, and the use is recorded', async () => {
    // The key came in the answer to the form; a later visit has no way to show it.
    await user.page.goto(`${base}/tokens`);
    assert.equal(pathOf(user.page), '/tokens');
    assert.equal(await user.page.locator('code#new-key').count(), 0);
    assert.ok(!(await user.page.content()).includes(thermostatKey), 'the key is nowhere in the page');
    const row = tokenRow(user.page, '#tokens', 'kitchen thermostat');
    assert.notEqual(await cell(row, 'Last used'), 'never');
  });

  await check('deleting the token goes through a confirmation page', async () => {
    const row = tokenRow(user.page, '#tokens', 'kitchen thermostat');
    const id = await row.getAttribute('data-token-id');
    await row.getByRole('link', { name: /Delete/ }).click();
    await user.page.waitForURL((url) => url.pathname === `/tokens/${id}/delete`);
    assert.match(await user.page.locator('.question').textContent(), /kitchen thermostat/);
    await screenshot(user.page, '04-confirm-delete');
    await submitAndWait(user.page, user.page.getByRole('button', { name: 'Delete token' }), '/tokens');
    await expectFlash(user.page, 'success', /kitchen thermostat.*deleted/);
    assert.equal(await tokenRow(user.page, '#tokens', 'kitchen thermostat').count(), 0);
  });

  await check('the deleted key is refused by GET /api/me/ (401)', async () => {
    const { status, body } = await me(thermostatKey);
    assert.equal(status, 401, JSON.stringify(body));
  });

  let garageKey;
  const day = (offset) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
  const until = day(10);
  await check(`the user creates a second token valid until a date (${until}, end of day UTC)`, async () => {
    garageKey = await createToken(user.page, 'garage door', 'date', until);
    const row = tokenRow(user.page, '#tokens', 'garage door');
    assert.match(await cell(row, 'Expires'), /in (10|11) days/);
    const exact = await row.locator('td[data-label="Expires"] time').getAttribute('datetime');
    assert.equal(parseTime(exact), Date.parse(`${day(11)}T00:00:00Z`), `expires at the end of ${until}: ${exact}`);
    assert.equal((await me(garageKey)).status, 200);
  });

  await check('the user changes the password, signing out everywhere else; device tokens keep working', async () => {
    const phone = await apiLogin(userName, userPassword);
    assert.equal(phone.status, 200, 'an app session to be signed out');
    await navLink(user.page, 'Password').click();
    await user.page.waitForURL((url) => url.pathname === '/account/password');
    await user.page.locator('#current_password').fill(userPassword);
    await user.page.locator('#new_password').fill(newPassword);
    await user.page.locator('#confirm_password').fill(newPassword);
    await user.page.locator('#sign_out_everywhere').check();
    await screenshot(user.page, '05-password');
    await submitAndWait(user.page, user.page.getByRole('button', { name: 'Change password' }), '/tokens');
    await expectFlash(user.page, 'success', /Password changed; 1 other session signed out/);
    assert.equal((await me(phone.body.id_token)).status, 401, 'the app session is signed out');
    assert.equal((await me(garageKey)).status, 200, 'device tokens survive "sign out everywhere"');
    assert.equal(await user.page.locator('#tokens .badge:not(.mark)').count(), 1, 'this browser stays signed in');
    assert.equal((await apiLogin(userName, newPassword)).status, 200, 'the new password logs in');
    assert.equal((await apiLogin(userName, userPassword)).status, 400, 'the old one does not');
  });

  await check('a token named <script>alert(1)</script> is shown as text, never run', async () => {
    const key = await createToken(user.page, xssName, 'never');
    const row = tokenRow(user.page, '#tokens', xssName);
    assert.equal(await row.count(), 1, 'the row shows the name as text');
    assert.equal(await cell(row, 'Expires'), 'never');
    assert.match(await user.page.locator('#reveal-heading').textContent(), /<script>alert\(1\)<\/script>/);
    await expectFlash(user.page, 'success', /<script>alert\(1\)<\/script>/);
    const scripts = await user.page.locator('script').evaluateAll((all) => all.map((s) => s.src || s.textContent));
    assert.deepEqual(scripts, [`${base}/static/app.js`], 'only the page\'s own script');
    assert.ok(!(await user.page.content()).includes(xssName), 'the markup holds the name only escaped');
    // Its confirmation page escapes it as well.
    await row.getByRole('link', { name: /Delete/ }).click();
    await user.page.waitForURL((url) => /\/tokens\/[^/]+\/delete$/.test(url.pathname));
    assert.match(await user.page.locator('.question').textContent(), /<script>alert\(1\)<\/script>/);
    assert.equal(await user.page.locator('script').count(), 1);
    await user.page.getByRole('link', { name: 'Cancel' }).click();
    await user.page.waitForURL((url) => url.pathname === '/tokens');
    assert.equal((await me(key)).status, 200);
    noProblems();
  });

  let stationKey;
  let stationId;
  await check('the user creates a read-only token bound to 127.0.0.1/32; the list marks it', async () => {
    await user.page.goto(`${base}/tokens`);
    await user.page.locator('#name').fill('weather station');
    await user.page.locator('input[name="access"][value="read_only"]').check();
    await user.page.getByLabel('Allowed networks').fill('127.0.0.1/32');
    await user.page.getByLabel('Scopes').fill('weather');
    await user.page.getByLabel('Description').fill('on the shed');
    await submitAndWait(user.page, user.page.getByRole('button', { name: 'Create token' }), '/tokens');
    stationKey = (await user.page.locator('code#new-key').textContent()).trim();
    const row = tokenRow(user.page, '#tokens', 'weather station');
    stationId = await row.getAttribute('data-token-id');
    const marks = (await row.locator('.badge.mark').allTextContents()).map((t) => t.trim());
    assert.deepEqual(marks, ['read-only', 'scoped', 'network-bound'], 'the list marks its limits');
    const { status, body } = await me(stationKey);
    assert.equal(status, 200, `it reads from 127.0.0.1: ${JSON.stringify(body)}`);
    assert.equal(body.token.read_only, true);
    assert.deepEqual(body.token.allowed_ips, ['127.0.0.1/32']);
  });

  await check('the read-only token is refused a write (403)', async () => {
    const response = await fetch(`${base}/api/tokens/`, {
      method: 'POST',
      headers: { Authorization: `Token ${stationKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'written by a reader' }),
    });
    assert.equal(response.status, 403);
    assert.equal((await response.json()).error, 'This token is read-only');
  });

  await check("the token's page shows its policy and its edit form changes it", async () => {
    await tokenRow(user.page, '#tokens', 'weather station').getByRole('link', { name: 'weather station', exact: true }).click();
    await user.page.waitForURL((url) => url.pathname === `/tokens/${stationId}`);
    const fact = async (name) => (await user.page.locator(`dd[data-fact="${name}"]`).textContent()).trim();
    assert.match(await fact('access'), /only read/);
    assert.equal(await fact('networks'), '127.0.0.1/32');
    assert.equal(await fact('scopes'), 'weather');
    assert.equal(await fact('description'), 'on the shed');
    assert.match(await fact('last-used'), /ago|just now/, 'the use from the last check is shown');
    await user.page.getByLabel('Scopes').fill('weather alerts');
    await user.page.getByLabel('Description').fill('on the roof');
    await submitAndWait(user.page, user.page.getByRole('button', { name: 'Save changes' }), `/tokens/${stationId}`);
    await expectFlash(user.page, 'success', /weather station.*saved/);
    assert.equal(await fact('scopes'), 'weather alerts');
    assert.equal(await fact('description'), 'on the roof');
    assert.match(await fact('access'), /only read/, 'what was not touched stays');
    const { status, body } = await me(stationKey);
    assert.equal(status, 200);
    assert.deepEqual(body.token.scopes, ['weather', 'alerts'], 'the change applies to the key at once');
  });

  await check("the refused write appears on the token's page", async () => {
    // Refused attempts are written in batches (every few seconds), never one write per request.
    const deadline = Date.now() + 30_000;
    let reasons = [];
    while (Date.now() < deadline) {
      await user.page.goto(`${base}/tokens/${stationId}`);
      reasons = (await user.page.locator('#refused td[data-label="Reason"]').allTextContents()).map((t) => t.trim());
      if (reasons.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.deepEqual(reasons, ['read-only token, a write'], 'one refused attempt, the write');
    const from = (await user.page.locator('#refused td[data-label="From"]').textContent()).trim();
    assert.equal(from, '127.0.0.1');
    await screenshot(user.page, '06a-token-page');
    noProblems();
  });

  await check('rotating the key on the token page shows the new key once; the old one works through the grace, marked rotated', async () => {
    await user.page.goto(`${base}/tokens/${stationId}`);
    await user.page.getByLabel('The previous key stops').selectOption({ label: 'In 1 hour' });
    await submitAndWait(user.page, user.page.getByRole('button', { name: 'Rotate key' }), `/tokens/${stationId}/rotate`);
    const newKey = (await user.page.locator('#new-key').textContent()).trim();
    assert.notEqual(newKey, stationKey, 'a new key');
    const until = (await user.page.locator('[data-fact="previous-key"]').textContent()).trim();
    assert.match(until, /previous key works until/);
    const fresh = await me(newKey);
    assert.equal(fresh.status, 200, 'the new key works');
    const response = await fetch(`${base}/api/me/`, { headers: { Authorization: `Token ${stationKey}` } });
    assert.equal(response.status, 200, 'the old key works through the grace');
    assert.equal(response.headers.get('x-token-rotated'), 'true', 'and says it was replaced');
    stationKey = newKey;
    await user.page.goto(`${base}/tokens/${stationId}`);
    assert.equal(await user.page.locator('#new-key').count(), 0, 'the key is not shown again');
    noProblems();
  });

  await check("the token's page charts its uses and refusals, and the chart's numbers are the API's", async () => {
    const login = await apiLogin(userName, newPassword);
    assert.equal(login.status, 200);
    const apiKey = login.body.id_token;
    // Counts are written in batches: read the API and the page until both have settled on the
    // same numbers (a batch landing between the two reads makes them differ for a moment).
    const deadline = Date.now() + 30_000;
    let totals = { uses: 0, refused: 0 };
    let shown = {};
    const chart = user.page.locator('#usage-chart');
    while (Date.now() < deadline) {
      const answer = await fetch(`${base}/api/tokens/${stationId}/usage/?days=7`, { headers: { Authorization: `Token ${apiKey}` } });
      assert.equal(answer.status, 200);
      const hours = await answer.json();
      totals = hours.reduce((sum, h) => ({ uses: sum.uses + h.uses, refused: sum.refused + h.refused }), { uses: 0, refused: 0 });
      await user.page.goto(`${base}/tokens/${stationId}`);
      shown = { uses: Number(await chart.getAttribute('data-uses')), refused: Number(await chart.getAttribute('data-refused')) };
      if (totals.uses > 0 && totals.refused > 0 && shown.uses === totals.uses && shown.refused === totals.refused) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.ok(totals.uses > 0 && totals.refused > 0, `the station was used and refused: ${JSON.stringify(totals)}`);
    assert.deepEqual(shown, totals, "the chart's numbers are the API's");
    assert.ok(await chart.locator('svg[role="img"] rect.bar-uses').count() >= 1, 'drawn as bars');
    assert.match(await chart.locator('figcaption').textContent(), new RegExp(`${totals.uses}\\s+uses, ${totals.refused}\\s+refused`));
    await chart.scrollIntoViewIfNeeded();
    await screenshot(user.page, '06c-token-usage');
    noProblems();
  });

  await check("the admin overview charts every token's use and the logins, and its numbers are the API's", async () => {
    const login = await apiLogin(adminName, adminPassword);
    assert.equal(login.status, 200);
    const adminKey = login.body.id_token;
    const answer = await fetch(`${base}/api/admin/usage/?days=7`, { headers: { Authorization: `Token ${adminKey}` } });
    assert.equal(answer.status, 200);
    const hours = await answer.json();
    const uses = hours.reduce((sum, h) => sum + h.uses, 0);
    const refused = hours.reduce((sum, h) => sum + h.refused, 0);
    await admin.page.goto(`${base}/admin`);
    assert.equal(await navLink(admin.page, 'Overview').getAttribute('aria-current'), 'page');
    const chart = admin.page.locator('#usage-chart');
    // Counts still being written may only grow the page's numbers past the API's of a moment ago.
    assert.ok(Number(await chart.getAttribute('data-uses')) >= uses, 'the chart has the API\'s uses');
    assert.ok(Number(await chart.getAttribute('data-refused')) >= refused, 'and its refusals');
    assert.ok(uses > 0, 'tokens were used in this run');
    const logins = admin.page.locator('#logins-chart');
    assert.ok(Number(await logins.getAttribute('data-uses')) >= 2, 'the logins of this run');
    assert.ok(Number(await logins.getAttribute('data-refused')) >= 1, 'and the wrong password of check 6');
    assert.ok(await admin.page.locator('#busiest tbody tr').count() >= 1, 'the busiest tokens');
    await screenshot(admin.page, '11b-admin-overview');
    noProblems();
  });

  await check('a device pairs: it polls while the user approves its code in the browser', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const startAnswer = await fetch(`${base}/api/pair/`, { method: 'POST', headers: form, body: 'name=hall+display&client_id=e2e' });
    assert.equal(startAnswer.status, 200);
    const pairing = await startAnswer.json();
    assert.match(pairing.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    const grant = 'urn:ietf:params:oauth:grant-type:device_code';
    const pollOnce = async () => {
      const body = `grant_type=${encodeURIComponent(grant)}&device_code=${pairing.device_code}`;
      const answer = await fetch(`${base}/api/pair/token/`, { method: 'POST', headers: form, body });
      return { status: answer.status, json: await answer.json() };
    };
    // The device polls once before anyone approves, then at the interval it was given (longer
    // when told to slow down) while the person approves in the browser.
    const first = await pollOnce();
    assert.equal(first.json.error, 'authorization_pending', 'not approved yet');
    const device = (async () => {
      const seen = [first.json.error];
      let interval = pairing.interval;
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, interval * 1000));
        const { status, json } = await pollOnce();
        if (status === 200) return { seen, token: json };
        seen.push(json.error);
        if (json.error === 'slow_down') interval = json.interval;
        else if (json.error !== 'authorization_pending') throw new Error(`pairing failed: ${JSON.stringify(json)}`);
      }
      throw new Error(`no token within a minute; polls answered ${JSON.stringify(seen)}`);
    })();
    await user.page.goto(pairing.verification_uri_complete);
    assert.equal(pathOf(user.page), '/pair');
    assert.equal(await user.page.getByLabel('Code', { exact: true }).inputValue(), pairing.user_code, 'the link fills the code in');
    await submitAndWait(user.page, user.page.getByRole('button', { name: 'Continue' }), '/pair');
    assert.match(await user.page.locator('[data-fact="suggested-name"]').textContent(), /hall display/);
    assert.equal(await user.page.getByLabel('Name', { exact: true }).inputValue(), 'hall display', "the device's name is suggested");
    await user.page.locator('input[name="access"][value="read_only"]').check();
    await screenshot(user.page, '06b-pair-approve');
    await user.page.getByRole('button', { name: 'Approve' }).click();
    await user.page.waitForURL((url) => url.pathname.startsWith('/tokens/'));
    await expectFlash(user.page, 'success', /Device paired as .hall display./);
    const { seen, token } = await device;
    assert.ok(!seen.includes('slow_down'), `the device kept to its interval: ${JSON.stringify(seen)}`);
    assert.equal(token.token_type, 'Bearer');
    assert.equal(token.token_name, 'hall display');
    assert.equal(pathOf(user.page), `/tokens/${token.token_id}`, "the approval leads to the paired token's page");
    const { status, body } = await me(token.access_token);
    assert.equal(status, 200, 'the paired key works');
    assert.equal(body.user, userName);
    assert.equal(body.token.read_only, true, 'with the access chosen in the browser');
    noProblems();
  });

  await check('the tokens page fits a 375×700 phone screen', async () => {
    await user.page.setViewportSize({ width: 375, height: 700 });
    await user.page.reload();
    const overflow = await user.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone's screen`);
    await assert.doesNotReject(user.page.locator('#name').waitFor({ state: 'visible' }));
    await screenshot(user.page, '06-tokens-phone');
    await user.page.setViewportSize({ width: 1024, height: 768 });
  });

  await check('a user who opens /admin/users gets the 403 page', async () => {
    for (const adminPage of ['/admin/users', '/admin/tokens', '/admin/audit']) {
      const response = await user.page.goto(`${base}${adminPage}`);
      assert.equal(response.status(), 403, adminPage);
      assert.match(await user.page.locator('h1').textContent(), /403/);
      assert.equal(pathOf(user.page), adminPage);
    }
    await user.page.goto(`${base}/admin/users`);
    await screenshot(user.page, '07-forbidden');
  });

  await check('Sign out ends the session and shows the sign-in page', async () => {
    await user.page.goto(`${base}/tokens`);
    await submitAndWait(user.page, user.page.getByRole('button', { name: 'Sign out' }), '/login');
    await expectFlash(user.page, 'success', /signed out/);
    await user.page.goto(`${base}/tokens`);
    assert.equal(pathOf(user.page), '/login');
  });

  await check('the user signs in again with the new password', async () => {
    await signIn(user.page, userName, newPassword);
    assert.equal(await user.page.locator('#tokens tr[data-token-id] .badge:not(.mark)').count(), 1);
  });

  // (d) The admin revokes the user's token and reads the audit log.
  await check(`admin filters /admin/tokens by ${userName} and revokes "garage door"`, async () => {
    await navLink(admin.page, 'All tokens').click();
    await admin.page.waitForURL((url) => url.pathname === '/admin/tokens');
    await admin.page.locator('#filter-user').fill(userName);
    await admin.page.locator('#filter-kind').selectOption('device');
    await submitAndWait(admin.page, admin.page.getByRole('button', { name: 'Filter' }), '/admin/tokens');
    assert.equal(new URL(admin.page.url()).searchParams.get('user'), userName);
    const rows = admin.page.locator('#all-tokens tbody tr[data-token-id]');
    const owners = await rows.locator('td[data-label="Owner"]').allTextContents();
    const kinds = await rows.locator('td[data-label="Kind"]').allTextContents();
    assert.ok(owners.length >= 2, `the user's device tokens are listed: ${owners}`);
    assert.ok(owners.every((o) => o.trim() === userName), `only the user's tokens: ${owners}`);
    assert.ok(kinds.every((k) => k.trim() === 'device'), `only device tokens: ${kinds}`);
    await screenshot(admin.page, '08-admin-tokens');
    const row = tokenRow(admin.page, '#all-tokens', 'garage door');
    const id = await row.getAttribute('data-token-id');
    await row.getByRole('link', { name: /Revoke/ }).click();
    await admin.page.waitForURL((url) => url.pathname === `/admin/tokens/${id}/revoke`);
    assert.match(await admin.page.locator('.question').textContent(), new RegExp(`garage door.*of ${userName}`));
    await screenshot(admin.page, '09-confirm-revoke');
    await submitAndWait(admin.page, admin.page.getByRole('button', { name: 'Revoke token' }), '/admin/tokens');
    await expectFlash(admin.page, 'success', /Token revoked/);
    assert.equal(await admin.page.locator(`tr[data-token-id="${id}"]`).count(), 0);
  });

  await check('the revoked key is refused by GET /api/me/ (401)', async () => {
    assert.equal((await me(garageKey)).status, 401);
  });

  await check('the audit log shows who did what, newest first', async () => {
    await navLink(admin.page, 'Audit log').click();
    await admin.page.waitForURL((url) => url.pathname === '/admin/audit');
    const rows = admin.page.locator('#audit tbody tr');
    const events = await rows.evaluateAll((all) =>
      all.map((tr) => {
        const text = (label) => tr.querySelector(`td[data-label="${label}"]`).textContent.trim();
        return {
          code: tr.dataset.action,
          when: tr.querySelector('time').getAttribute('datetime'),
          action: text('Action'),
          actor: text('Actor'),
          target: text('Target'),
          address: text('Client address'),
          detail: text('Detail'),
        };
      }),
    );
    const find = (predicate, what) => {
      const found = events.find(predicate);
      assert.ok(found, `${what} expected in the audit log: ${JSON.stringify(events, null, 1)}`);
      return found;
    };
    const revoked = find(
      (e) => e.code === 'token.revoked' && e.actor === adminName && e.target.includes('garage door') && e.target.includes(userName),
      `token.revoked by ${adminName} of "garage door"`,
    );
    assert.equal(revoked.action, 'Token revoked');
    assert.match(revoked.address, /127\.0\.0\.1/);
    const garageCreated = find(
      (e) => e.code === 'token.created' && e.actor === userName && e.target.includes('garage door'),
      'token.created of "garage door"',
    );
    assert.ok(events.indexOf(revoked) < events.indexOf(garageCreated), 'the revocation is listed above the creation');
    find((e) => e.code === 'token.created' && e.actor === userName && e.target.includes('kitchen thermostat'), 'token.created of "kitchen thermostat"');
    find((e) => e.code === 'token.revoked' && e.actor === userName && e.target.includes('kitchen thermostat'), 'the user\'s own deletion');
    find((e) => e.code === 'token.created' && e.target.includes(xssName), 'token.created of the <script> name, as text');
    find((e) => e.code === 'user.created' && e.actor === adminName && e.target.includes(userName), `user.created of ${userName} by ${adminName}`);
    find((e) => e.code === 'password.changed' && e.actor === userName, `password.changed by ${userName}`);
    find((e) => e.code === 'login.failed' && e.target.includes(userName) && /wrong password/.test(e.detail), `login.failed for ${userName}`);
    const times = events.map((e) => parseTime(e.when));
    assert.deepEqual(times, [...times].sort((a, b) => b - a), 'newest first');
    assert.equal(await admin.page.locator('#audit script').count(), 0);
    await screenshot(admin.page, '10-audit');
  });

  await check('admin deactivates the user; their open browser is signed out on its next request', async () => {
    await navLink(admin.page, 'Users').click();
    await admin.page.waitForURL((url) => url.pathname === '/admin/users');
    const row = admin.page.locator(`#users tr[data-username="${userName}"]`);
    await submitAndWait(admin.page, row.getByRole('button', { name: `Deactivate ${userName}` }), '/admin/users');
    await expectFlash(admin.page, 'success', new RegExp(`User ${userName} deactivated`));
    assert.equal(await cell(row, 'Status'), 'deactivated');
    await row.getByRole('button', { name: `Activate ${userName}` }).waitFor();
    await screenshot(admin.page, '11-admin-users');

    await user.page.goto(`${base}/tokens`);
    assert.equal(pathOf(user.page), '/login');
    await expectFlash(user.page, 'error', /session has ended/);
    await signIn(user.page, userName, newPassword, { expectPath: '/login' });
    await expectFlash(user.page, 'error', /./);
  });

  await check('admin activates the user again and revokes all their tokens after a confirmation', async () => {
    const row = admin.page.locator(`#users tr[data-username="${userName}"]`);
    await submitAndWait(admin.page, row.getByRole('button', { name: `Activate ${userName}` }), '/admin/users');
    await expectFlash(admin.page, 'success', new RegExp(`User ${userName} activated`));
    assert.equal(await cell(row, 'Status'), 'active');
    await signIn(user.page, userName, newPassword);
    const login = await apiLogin(userName, newPassword);
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const apiKey = login.body.id_token;
    assert.equal((await me(apiKey)).status, 200, 'the reactivated user works again');

    await row.getByRole('link', { name: `Revoke all tokens of ${userName}` }).click();
    await admin.page.waitForURL((url) => /\/admin\/users\/[^/]+\/revoke-all$/.test(url.pathname));
    await admin.page.getByText(`Revoke every token of ${userName}?`).waitFor();
    await screenshot(admin.page, '13-confirm-revoke-all');
    await submitAndWait(admin.page, admin.page.getByRole('button', { name: 'Revoke all tokens' }), '/admin/users');
    await expectFlash(admin.page, 'success', new RegExp(`Revoked \\d+ token\\(s\\) of ${userName}`));
    assert.equal((await me(apiKey)).status, 401, 'their API session is revoked');
    await user.page.goto(`${base}/tokens`);
    assert.equal(pathOf(user.page), '/login', 'their browser session is revoked too');
    await navLink(admin.page, 'Password').click();
    await admin.page.waitForURL((url) => url.pathname === '/account/password');
    await screenshot(admin.page, '14-admin-password');
  });

  await check('the admin pages work on a phone screen too', async () => {
    await admin.page.setViewportSize({ width: 375, height: 700 });
    await admin.page.goto(`${base}/admin/audit`);
    const overflow = await admin.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the audit page is ${overflow}px wider than the phone's screen`);
    await screenshot(admin.page, '12-audit-phone');
  });

  await check('no script errors, dialogs or server errors anywhere', async () => {
    noProblems();
  });
}

// A hung page must not hang CI: give up after a few minutes whatever happens.
const watchdog = setTimeout(() => {
  console.error(`FAILED (timeout) in: ${current}`);
  process.exit(1);
}, Number(process.env.MULTITOKEN_E2E_TIMEOUT_MS ?? 240_000));

let status = 0;
try {
  await run();
  console.log(`# all ${passed} checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  status = 1;
  console.error(`FAILED: ${current}`);
  console.error(error instanceof assert.AssertionError ? error.message : error?.stack ?? String(error));
  if (problems.length > 0) {
    console.error(`browser problems seen:\n  ${problems.join('\n  ')}`);
  }
  for (const { who, page } of openPages) {
    const file = path.join(shots, `FAILED-${who}.png`);
    await page
      .screenshot({ path: file, fullPage: true, timeout: 5_000 })
      .then(() => console.error(`the ${who} browser at ${page.url()}: ${file}`))
      .catch(() => {});
  }
  console.error(`(${passed} checks passed before this one; screenshots in ${shots})`);
} finally {
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(status);
