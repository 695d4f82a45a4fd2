// The page that waits for the phone, in Chromium (issue 14): its "The request expires in N
// seconds" counts down by itself and says when the request has expired, and when 10 wrong PINs
// in the app turn phone sign-in off, the page says so at once and offers the password instead
// of waiting for an approval that cannot come. erin adds the Sesame Authenticator app from My
// security info, sets an app PIN and turns phone sign-in on; the real `sesame-authenticator`
// binary answers the requests.
//
// Needs: built binaries (SESAME_BIN, SESAME_AUTHENTICATOR_BIN) and /usr/bin/chromium.
// Run: cd tests/browser && npm ci && node --test waiting.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { AUTHENTICATOR_BIN, CHROMIUM, CHROMIUM_ARGS, SESAME_BIN, delay, run, serverEnv, startSesame } from './lib.mjs';

const PASSWORD = 'Correct-Horse-Battery-5';
const PIN = '482913';
const WRONG_PIN = '111222';
const TIMEOUT = 30_000;
const PHONE_HEADING = 'Approve sign-in request';
const TURNED_OFF = 'Phone sign-in was turned off after too many wrong PINs. Use your password instead.';

describe('the waiting page counts down and learns when phone sign-in is turned off, in Chromium', { timeout: 300_000 }, () => {
  let tmp;
  let dataDir;
  let vault;
  let server;
  let browser;
  const contexts = new Set();

  const sesame = (...args) => run(SESAME_BIN, ['--data-dir', dataDir, ...args]);

  // The app with erin's vault. lib.mjs's run() drops every SESAME_* variable, so the PIN
  // needs this; `allowFail` returns a failure instead of throwing.
  function app(args, { pin, allowFail = false } = {}) {
    const full = ['--vault', vault, ...args];
    const env = { ...serverEnv(), ...(pin ? { SESAME_AUTHENTICATOR_PIN: pin } : {}) };
    const r = spawnSync(AUTHENTICATOR_BIN, full, {
      encoding: 'utf8',
      timeout: 60_000,
      env,
      stdio: ['pipe', 'pipe', 'pipe'], // stdin is not a terminal: the app never prompts
    });
    if (r.error) throw new Error(`sesame-authenticator ${full.join(' ')}: ${r.error.message}`);
    if (r.status !== 0 && !allowFail) {
      throw new Error(`sesame-authenticator ${full.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
    }
    return r;
  }

  // The one waiting request, answered with `number` and unlocked with `pin`.
  function respond(number, pin, opts) {
    const list = JSON.parse(app(['--json', 'pending']).stdout);
    assert.equal(list.length, 1, `one request waits: ${JSON.stringify(list)}`);
    return app(['respond', list[0].request, '--number', number, '--approve'], { pin, ...opts });
  }

  async function freshPage() {
    const context = await browser.newContext();
    context.setDefaultTimeout(TIMEOUT);
    contexts.add(context);
    return context.newPage();
  }

  async function closePage(page) {
    contexts.delete(page.context());
    await page.context().close();
  }

  async function usernameStep(page) {
    await page.goto(`${server.url}/login`);
    await page.getByLabel('Username').fill('erin');
    await page.getByRole('button', { name: 'Next' }).click();
  }

  // Password (and, once the app is added, its approval): a signed-in page.
  async function signInWithPassword(page) {
    await usernameStep(page);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/(account|login\/verify)$/);
    if (new URL(page.url()).pathname === '/login/verify') {
      const number = (await page.locator('#push-number').innerText()).trim();
      respond(number, PIN);
      await page.waitForURL(`${server.url}/account`);
    }
  }

  // The seconds the page says are left.
  async function secondsLeft(page) {
    const text = await page.locator('#push-expiry').innerText();
    const m = text.match(/^The request expires in (\d+) seconds?\.$/);
    assert.ok(m, `the page says when the request expires: ${JSON.stringify(text)}`);
    return Number(m[1]);
  }

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'sesame-waiting-browser-'));
    dataDir = path.join(tmp, 'data');
    vault = path.join(tmp, 'erin-vault');
    run(SESAME_BIN, ['--data-dir', dataDir, 'init']);
    run(SESAME_BIN, ['--data-dir', dataDir, 'user', 'add', 'erin', '--password-stdin'], { input: `${PASSWORD}\n` });
    server = await startSesame(dataDir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    server?.child.kill('SIGTERM');
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('erin adds the app, sets a PIN and turns phone sign-in on', async () => {
    const page = await freshPage();
    await signInWithPassword(page);
    await page.goto(`${server.url}/security-info/add/app`);
    const link = (await page.locator('#activation-link').innerText()).trim();
    assert.match(link, /^sesame:\/\/activate\?server=/);
    app(['add', link, '--device-name', 'Erin phone']);
    await page.locator('#activation-status', { hasText: 'Erin phone was added' }).waitFor();
    await closePage(page);

    app(['pin', 'set'], { pin: PIN });
    app(['phone-sign-in', 'enable', 'erin', '--no-wait'], { pin: PIN });
    const confirm = await freshPage();
    await signInWithPassword(confirm);
    await confirm.goto(`${server.url}/security-info`);
    await confirm.getByRole('button', { name: 'Turn on phone sign-in' }).click();
    await confirm.getByText('Phone sign-in is on for that device').waitFor();
    await closePage(confirm);
  });

  test('the expiry counts down each second and says when the request has expired', async () => {
    // Requests live 10 seconds (the shortest the policy allows) for this test.
    sesame('policy', 'set', '--lifetime', '10');
    const page = await freshPage();
    // The page's status poll is held: the page would reload the moment the server says the
    // request expired, and this test looks at what the countdown itself shows.
    const held = [];
    await page.route('**/login/push/status', (route) => held.push(route));
    await usernameStep(page);
    await page.getByRole('heading', { name: PHONE_HEADING }).waitFor();
    assert.equal((await page.locator('#push-status').innerText()).trim(), 'Waiting for your phone…');
    const first = await secondsLeft(page);
    assert.ok(first <= 10 && first >= 7, `a fresh 10-second request: ${first}`);
    await delay(2_200);
    const later = await secondsLeft(page);
    assert.ok(later < first && later >= first - 4, `counted down from ${first} to ${later} in 2.2 s`);
    await page.getByText('The request has expired.', { exact: true }).waitFor({ timeout: 15_000 });
    // The server agrees: let the poll through, and the page says the request timed out.
    await page.unroute('**/login/push/status');
    for (const r of held) await r.continue().catch(() => {});
    await page.getByText('The request timed out before it was approved.').waitFor();
    await page.getByRole('button', { name: 'Send another request' }).waitFor();
    await closePage(page);
    sesame('policy', 'set', '--lifetime', '120');
  });

  test('10 wrong PINs: the waiting page says phone sign-in was turned off and offers the password', async () => {
    const page = await freshPage();
    await usernameStep(page);
    await page.getByRole('heading', { name: PHONE_HEADING }).waitFor();
    const number = (await page.locator('#push-number').innerText()).trim();
    const first = await secondsLeft(page);
    assert.ok(first > 100, `the default 120-second request: ${first}`);
    await delay(2_200);
    assert.ok((await secondsLeft(page)) < first, 'the countdown runs');

    for (let i = 1; i <= 10; i++) {
      const r = respond(number, WRONG_PIN, { allowFail: true });
      assert.notEqual(r.status, 0, `wrong PIN ${i} is refused`);
      if (i === 10) assert.match(r.stderr, /after 10 wrong PINs/);
    }
    // No click: the waiting poll is woken and the page changes by itself.
    await page.getByText(TURNED_OFF).waitFor();
    assert.equal(await page.locator('#push-number').count(), 0, 'no number to type any more');
    assert.equal(await page.getByRole('button', { name: 'Send another request' }).count(), 0);
    await page.getByRole('button', { name: 'Use your password instead' }).click();
    await page.getByLabel('Password').waitFor();
    assert.equal(new URL(page.url()).pathname, '/login/password');
    await closePage(page);
  });
});
