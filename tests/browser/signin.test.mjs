// Browser test of Sesame's sign-in with an authenticator app, as a person would do it:
// headless Chromium (Debian's), fields found by their labels, buttons by their names, the QR
// code read from the screen with zbarimg, and codes computed by oathtool, an RFC 6238
// implementation independent of Sesame's.
//
// Needs: a built server (SESAME_BIN, default ../../target/debug/sesame), /usr/bin/chromium,
// zbarimg (zbar-tools) and oathtool. Run: cd tests/browser && npm ci && node --test

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, SESAME_BIN, delay, freePort, run, serverEnv } from './lib.mjs';

const USERNAME = 'alice';
const PASSWORD = 'Correct-Horse-Battery-9';
const STEP = 30; // seconds per TOTP step (RFC 6238 default, as the setup page says)
const MARGIN = 3; // never compute a code with fewer than this many seconds left in its step
const ACTION_TIMEOUT = 30_000;
const TEST_TIMEOUT = 180_000;
const QR_PAGE_SCREENSHOT = '/tmp/sesame-qr-page.png';

// ---------------------------------------------------------------------------------------------
// Helpers: processes, time, codes.




const nowSecs = () => Math.floor(Date.now() / 1000);
const stepOf = (t) => Math.floor(t / STEP);

// A moment (unix seconds) at least MARGIN seconds before the end of its 30-s step; waits for
// the next step when the current one is about to end, so a code computed now is still the
// server's current one when it is submitted.
async function safeNow() {
  for (;;) {
    const ms = Date.now();
    const left = STEP * 1000 - (ms % (STEP * 1000));
    if (left >= MARGIN * 1000) return Math.floor(ms / 1000);
    await delay(left + 100);
  }
}

// The TOTP code for the step containing unix time `t`, computed by oathtool.
function totpAt(secret, t) {
  const r = run('oathtool', ['--totp', '-b', `--now=@${t}`, secret]);
  const code = r.stdout.trim();
  assert.match(code, /^\d{6}$/, `oathtool printed ${JSON.stringify(r.stdout)}`);
  return code;
}

// A 6-digit code that is none of the codes the server may accept around time t.
function wrongCodeAt(secret, t) {
  const near = new Set();
  for (let d = -3; d <= 3; d++) near.add(totpAt(secret, t + d * STEP));
  for (const c of ['000000', '123456', '999999', '424242']) {
    if (!near.has(c)) return c;
  }
  throw new Error('no wrong code found (astonishing)');
}

function auditLog(dataDir) {
  const r = run(SESAME_BIN, ['--data-dir', dataDir, 'log', '--json', '--limit', '500']);
  const entries = JSON.parse(r.stdout);
  assert.ok(Array.isArray(entries), `sesame log --json printed ${r.stdout.slice(0, 200)}`);
  return entries;
}

// ---------------------------------------------------------------------------------------------
// Helpers: the browser, used as a person would.

// Clicks a button or link that submits or navigates, and waits until the next page has loaded.
async function clickAndLoad(page, locator) {
  await Promise.all([page.waitForEvent('load', { timeout: ACTION_TIMEOUT }), locator.click()]);
}

async function mainText(page) {
  return (await page.locator('main').innerText()).replace(/\s+/g, ' ');
}

async function signInWithPassword(page, baseUrl) {
  await page.goto(`${baseUrl}/login`);
  await page.getByLabel('Username').fill(USERNAME);
  await clickAndLoad(page, page.getByRole('button', { name: 'Next' }));
  assert.equal(new URL(page.url()).pathname, '/login/password', 'after the username');
  await page.getByLabel('Password').fill(PASSWORD);
  await clickAndLoad(page, page.getByRole('button', { name: 'Sign in' }));
}

async function enterCode(page, code) {
  const field = page.getByLabel('Code');
  await field.fill(code);
  await clickAndLoad(page, page.getByRole('button', { name: 'Verify' }));
}

async function expectAccountPage(page) {
  assert.equal(new URL(page.url()).pathname, '/account', `landed on ${page.url()}`);
  await page.getByRole('heading', { name: 'My account' }).waitFor();
}

async function signOut(page) {
  await clickAndLoad(page, page.getByRole('button', { name: 'Sign out' }));
  assert.notEqual(new URL(page.url()).pathname, '/account', 'still on My account after signing out');
}

// ---------------------------------------------------------------------------------------------

describe('sign-in with an authenticator app, in Chromium', { timeout: 600_000 }, () => {
  let tmpDir;
  let dataDir;
  let server;
  let serverOutput = '';
  let baseUrl;
  let browser;
  let secret; // base32, from the QR code
  let enrolTime; // unix seconds at which the enrolment code was computed
  let enrolCode;
  let nextStepCode; // the code accepted at the second sign-in
  let nextStepTime; // a unix time inside the step of nextStepCode
  let expectReusedInLog = false;
  const pageProblems = [];

  async function newPage() {
    const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
    context.setDefaultTimeout(ACTION_TIMEOUT);
    context.setDefaultNavigationTimeout(ACTION_TIMEOUT);
    const page = await context.newPage();
    page.on('pageerror', (e) => pageProblems.push(`page error on ${page.url()}: ${e.message}`));
    page.on('console', (m) => {
      // "Failed to load resource" is also logged for a page's own 4xx status (a wrong code is
      // a 401): failed loads are judged below, by resource.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
        pageProblems.push(`console error on ${page.url()}: ${m.text()}`);
      }
    });
    const isFavicon = (u) => new URL(u).pathname === '/favicon.ico'; // Sesame has none: harmless
    page.on('response', (r) => {
      const req = r.request();
      if (r.status() >= 400 && req.resourceType() !== 'document' && !isFavicon(r.url())) {
        pageProblems.push(`${req.resourceType()} ${r.url()} answered ${r.status()} on ${page.url()}`);
      }
    });
    page.on('requestfailed', (req) => {
      if (req.resourceType() !== 'document' && !isFavicon(req.url())) {
        pageProblems.push(`${req.resourceType()} ${req.url()} failed (${req.failure()?.errorText}) on ${page.url()}`);
      }
    });
    return { context, page };
  }

  async function startServer() {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      serverOutput = '';
      const child = spawn(
        SESAME_BIN,
        ['--data-dir', dataDir, 'serve', '--listen', `127.0.0.1:${port}`],
        { stdio: ['ignore', 'pipe', 'pipe'], env: serverEnv() },
      );
      child.stdout.on('data', (d) => (serverOutput += d));
      child.stderr.on('data', (d) => (serverOutput += d));
      let exited = false;
      child.on('exit', () => (exited = true));
      const url = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 60_000;
      while (!exited && Date.now() < deadline) {
        try {
          const res = await fetch(`${url}/healthz`);
          if (res.ok) {
            assert.match(serverOutput, new RegExp(`Sesame is running at ${url}\\b`));
            return { child, url };
          }
        } catch {
          // not listening yet
        }
        await delay(100);
      }
      if (!exited) child.kill('SIGKILL');
      // Someone else may have taken the port between our probe and the server's bind.
      if (attempt >= 3 || !exited) {
        throw new Error(`sesame serve did not become healthy on ${url}:\n${serverOutput}`);
      }
    }
  }

  before(async () => {
    assert.ok(existsSync(SESAME_BIN), `no sesame binary at ${SESAME_BIN}: build it first (cargo build -p sesame) or set SESAME_BIN`);
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium`);
    for (const tool of ['zbarimg', 'oathtool']) {
      const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
      assert.ok(!r.error, `${tool} is missing: apt-get install zbar-tools oathtool`);
    }
    tmpDir = mkdtempSync(path.join(os.tmpdir(), 'sesame-browser-'));
    dataDir = path.join(tmpDir, 'data');
    // A new installation: admin commands never create one by themselves.
    run(SESAME_BIN, ['--data-dir', dataDir, 'init']);
    const started = await startServer();
    server = started.child;
    baseUrl = started.url;
    // Created while the server runs, through the same data directory.
    const r = run(SESAME_BIN, ['--data-dir', dataDir, 'user', 'add', USERNAME, '--password-stdin'], {
      input: `${PASSWORD}\n`,
    });
    assert.match(r.stdout + r.stderr, /Created user/);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server && server.exitCode === null && server.signalCode === null) {
      const gone = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      const t = setTimeout(() => server.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(t);
    }
    if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
    if (pageProblems.length) console.log(`# problems seen in the pages:\n# ${pageProblems.join('\n# ')}`);
  });

  test('adds an authenticator app by scanning the QR code on the page', { timeout: TEST_TIMEOUT }, async () => {
    const { context, page } = await newPage();
    try {
      await signInWithPassword(page, baseUrl);
      await expectAccountPage(page);

      await clickAndLoad(page, page.getByRole('link', { name: 'My security info' }));
      assert.equal(new URL(page.url()).pathname, '/security-info');
      await page.getByRole('heading', { name: 'My security info' }).waitFor();
      await clickAndLoad(page, page.getByRole('link', { name: 'Add method' }));
      assert.equal(new URL(page.url()).pathname, '/security-info/add');
      await clickAndLoad(page, page.getByRole('link', { name: 'Authenticator app (verification code)' }));
      assert.equal(new URL(page.url()).pathname, '/security-info/add/totp');

      const qr = page.getByRole('img', { name: 'QR code for your authenticator app' });
      await qr.waitFor();
      assert.equal(await qr.getAttribute('id'), 'totp-qr');
      // The image has really been drawn (not a broken image).
      const drawn = await qr.evaluate((img) => img.complete && img.naturalWidth > 0);
      assert.ok(drawn, 'the QR code image did not load');
      await page.screenshot({ path: QR_PAGE_SCREENSHOT, fullPage: true });

      // Read the QR code from the screen, as a phone's camera would.
      const qrPng = path.join(tmpDir, 'qr.png');
      await page.locator('#totp-qr').screenshot({ path: qrPng });
      const scan = run('zbarimg', ['--raw', '-q', qrPng], { allowFail: true });
      assert.equal(scan.status, 0, `zbarimg could not read the QR code (exit ${scan.status}): ${scan.stderr}`);
      const uri = scan.stdout.trim();
      assert.match(uri, /^otpauth:\/\/totp\//, `the QR code holds ${JSON.stringify(uri)}`);
      const parsed = new URL(uri);
      const label = decodeURIComponent(parsed.pathname.replace(/^\/+/, ''));
      assert.ok(label.includes(USERNAME), `the account name in the QR code is ${JSON.stringify(label)}`);
      secret = parsed.searchParams.get('secret');
      assert.match(secret ?? '', /^[A-Z2-7]+=*$/, `secret in the QR code: ${secret}`);
      // oathtool computes SHA-1, 6 digits, 30 s: the URI must not ask for anything else.
      assert.ok(['SHA1', null].includes(parsed.searchParams.get('algorithm')?.toUpperCase() ?? null));
      assert.ok(['6', null].includes(parsed.searchParams.get('digits')));
      assert.ok(['30', null].includes(parsed.searchParams.get('period')));

      // The secret shown as text for typing is the same one.
      const shown = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
      assert.equal(shown, secret, 'the secret shown as text differs from the one in the QR code');

      enrolTime = await safeNow();
      enrolCode = totpAt(secret, enrolTime);
      await enterCode(page, enrolCode);
      assert.equal(new URL(page.url()).pathname, '/security-info', `after the code: ${page.url()}\n${await mainText(page)}`);
      const status = page.getByRole('status');
      await status.waitFor();
      assert.match(await status.innerText(), /Authenticator app added/);
      assert.match(await mainText(page), /Authenticator app/);

      await clickAndLoad(page, page.getByRole('link', { name: 'Back to My account' }));
      await expectAccountPage(page);
      await signOut(page);
    } finally {
      await context.close();
    }
  });

  test('asks for a code at sign-in: refuses a wrong one and the enrolment one, takes the next', { timeout: TEST_TIMEOUT }, async () => {
    assert.ok(secret, 'no authenticator app was added');
    const { context, page } = await newPage();
    try {
      await signInWithPassword(page, baseUrl);
      assert.equal(new URL(page.url()).pathname, '/login/verify', `after the password: ${page.url()}`);
      await page.getByRole('heading', { name: 'Enter code' }).waitFor();
      await page.getByRole('link', { name: 'Use a different verification option' }).waitFor();

      // A wrong code.
      let t = await safeNow();
      await enterCode(page, wrongCodeAt(secret, t));
      assert.equal(new URL(page.url()).pathname, '/login/verify');
      await page.getByRole('alert').waitFor();
      assert.match(await page.getByRole('alert').innerText(), /didn't work/);
      assert.doesNotMatch(await mainText(page), /My account/);

      // The code already used to add the app: the server may still accept its step (one step
      // of clock skew either way), so it must refuse it as used; once that step is out of the
      // window it is simply wrong.
      t = await safeNow();
      const enrolStillInWindow = stepOf(t) <= stepOf(enrolTime) + 1;
      await enterCode(page, enrolCode);
      assert.equal(new URL(page.url()).pathname, '/login/verify', 'the enrolment code was accepted again');
      const refusal = await page.getByRole('alert').innerText();
      if (enrolStillInWindow) {
        assert.match(refusal, /already been used/);
        expectReusedInLog = true;
      } else {
        assert.match(refusal, /didn't work|already been used/);
      }
      assert.doesNotMatch(await mainText(page), /My account/);

      // The code of the next 30-s step: never used, within the allowed skew, so deterministic.
      t = await safeNow();
      nextStepTime = t + STEP;
      nextStepCode = totpAt(secret, nextStepTime);
      await enterCode(page, nextStepCode);
      await expectAccountPage(page);
      await signOut(page);
    } finally {
      await context.close();
    }
  });

  test('"Use a different verification option" lists the methods', { timeout: TEST_TIMEOUT }, async () => {
    assert.ok(secret, 'no authenticator app was added');
    const { context, page } = await newPage();
    try {
      await signInWithPassword(page, baseUrl);
      assert.equal(new URL(page.url()).pathname, '/login/verify');
      await clickAndLoad(page, page.getByRole('link', { name: 'Use a different verification option' }));
      assert.equal(new URL(page.url()).pathname, '/login/methods');
      await page.getByRole('heading', { name: 'Verify your identity' }).waitFor();
      const items = page.getByRole('listitem');
      assert.equal(await items.count(), 1, `options: ${await mainText(page)}`);
      const option = page.getByRole('button', { name: /Authenticator app/ });
      assert.equal(await option.count(), 1);
      // Choosing it leads back to the code page.
      await clickAndLoad(page, option);
      assert.equal(new URL(page.url()).pathname, '/login/verify');
      await page.getByLabel('Code').waitFor();
      // And "Back" from the list also does.
      await clickAndLoad(page, page.getByRole('link', { name: 'Use a different verification option' }));
      await clickAndLoad(page, page.getByRole('link', { name: 'Back' }));
      assert.equal(new URL(page.url()).pathname, '/login/verify');
      await page.getByRole('heading', { name: 'Enter code' }).waitFor();
    } finally {
      await context.close();
    }
  });

  test('refuses a code that has already been used to sign in', { timeout: TEST_TIMEOUT }, async () => {
    assert.ok(nextStepCode, 'the previous sign-in did not happen');
    const { context, page } = await newPage();
    try {
      await signInWithPassword(page, baseUrl);
      assert.equal(new URL(page.url()).pathname, '/login/verify');
      const t = await safeNow();
      // Still within the server's window (one step either way) of the code's step?
      const inWindow = stepOf(t) <= stepOf(nextStepTime) + 1;
      await enterCode(page, nextStepCode);
      assert.equal(new URL(page.url()).pathname, '/login/verify', 'a used code signed in again');
      const refusal = await page.getByRole('alert').innerText();
      if (inWindow) {
        assert.match(refusal, /already been used/);
        expectReusedInLog = true;
      } else {
        assert.match(refusal, /didn't work|already been used/);
      }
      assert.doesNotMatch(await mainText(page), /My account/);
      // Not signed in: My account sends back to sign-in.
      await page.goto(`${baseUrl}/account`);
      assert.notEqual(new URL(page.url()).pathname, '/account', 'the refused sign-in reached My account');
    } finally {
      await context.close();
    }
  });

  test('the audit log records the sign-ins and the refusals', { timeout: TEST_TIMEOUT }, async () => {
    const entries = auditLog(dataDir);
    const mine = entries.filter((e) => e.username === USERNAME);
    const has = (pred) => mine.some(pred);
    const show = () => JSON.stringify(mine, null, 1);
    assert.ok(
      has((e) => e.event === 'sign_in' && e.method === 'totp' && e.result === 'success'),
      `no successful sign-in with totp:\n${show()}`,
    );
    assert.ok(
      has((e) => e.event === 'sign_in' && e.method === 'totp' && e.result === 'failure' && e.reason === 'wrong_code'),
      `no wrong_code failure:\n${show()}`,
    );
    if (expectReusedInLog) {
      assert.ok(
        has((e) => e.event === 'sign_in' && e.method === 'totp' && e.result === 'failure' && e.reason === 'code_reused'),
        `no code_reused failure:\n${show()}`,
      );
    }
    assert.ok(has((e) => e.event === 'method_added' && e.method === 'totp'), `no method_added:\n${show()}`);
  });

  test('the pages showed no script or security-policy errors', () => {
    assert.deepEqual(pageProblems, []);
  });
});
