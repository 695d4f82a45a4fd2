// A Temporary Access Pass in Chromium, as issue 14's walk asks: the administrator creates
// ruth without a password and gives her a pass from the command line; ruth signs in with it,
// lands on My security info, adds the Sesame Authenticator app (the real binary), sets an app
// PIN and turns phone sign-in on; then a fresh browser signs her in with her phone alone.
//
// Needs: built binaries (SESAME_BIN, SESAME_AUTHENTICATOR_BIN) and /usr/bin/chromium.
// Run: cd tests/browser && npm ci && node --test access_pass.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { AUTHENTICATOR_BIN, CHROMIUM, CHROMIUM_ARGS, SESAME_BIN, delay, run, serverEnv, startSesame } from './lib.mjs';

const PIN = '482913';
const TIMEOUT = 30_000;
const SCREENS = process.env.SESAME_SCREENS || '/tmp/screens';

describe('a user without a password, a Temporary Access Pass, then phone sign-in, in Chromium', { timeout: 300_000 }, () => {
  let tmp;
  let dataDir;
  let vault;
  let server;
  let browser;
  let pass;

  const sesame = (...args) => run(SESAME_BIN, ['--data-dir', dataDir, ...args]);
  function app(args, { allowFail = false } = {}) {
    const r = spawnSync(AUTHENTICATOR_BIN, ['--vault', vault, ...args], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...serverEnv(), SESAME_AUTHENTICATOR_PIN: PIN },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    if (r.status !== 0 && !allowFail) throw new Error(`sesame-authenticator ${args.join(' ')}: ${r.stdout}\n${r.stderr}`);
    return r;
  }

  async function look(page, name) {
    for (const width of [390, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scroll <= width, `${name} scrolls sideways at ${width} px (${scroll} px wide)`);
      await page.screenshot({ path: path.join(SCREENS, `${name}-${width}.png`), fullPage: true });
    }
  }

  before(async () => {
    mkdirSync(SCREENS, { recursive: true });
    tmp = mkdtempSync(path.join(os.tmpdir(), 'sesame-access-pass-'));
    dataDir = path.join(tmp, 'data');
    vault = path.join(tmp, 'ruth-vault');
    sesame('init');
    sesame('user', 'add', 'ruth', '--no-password');
    const made = JSON.parse(sesame('--json', 'user', 'access-pass', 'create', 'ruth', '--lifetime', '1h').stdout);
    pass = made.pass;
    assert.match(pass, /^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    server = await startSesame(dataDir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    server?.child.kill('SIGTERM');
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('ruth signs in with the pass, adds the app and turns phone sign-in on; then her phone signs her in', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(TIMEOUT);
    const page = await context.newPage();
    await page.goto(`${server.url}/login`);
    await page.getByLabel('Username').fill('ruth');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('heading', { name: 'Enter password' }).waitFor();
    await page.getByRole('link', { name: 'Other ways to sign in' }).click();
    await page.getByRole('link', { name: 'Use a Temporary Access Pass' }).click();
    await page.getByRole('heading', { name: 'Enter Temporary Access Pass' }).waitFor();
    await look(page, 'access-pass');
    await page.getByLabel('Temporary Access Pass').fill(pass.toLowerCase());
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${server.url}/security-info`);

    // The app, from My security info: no "sign in again", the pass was enough.
    await page.getByRole('link', { name: 'Add method' }).click();
    await page.getByRole('link', { name: /Sesame Authenticator app/ }).click();
    const link = (await page.locator('#activation-link').innerText()).trim();
    app(['add', link, '--device-name', 'Ruth phone']);
    await page.locator('#activation-status', { hasText: 'Ruth phone was added' }).waitFor();
    app(['pin', 'set']);
    const enabling = spawn(AUTHENTICATOR_BIN, ['--vault', vault, 'phone-sign-in', 'enable', 'ruth'], {
      env: { ...serverEnv(), SESAME_AUTHENTICATOR_PIN: PIN },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    enabling.stdout.on('data', (d) => { out += d; });
    enabling.stderr.on('data', (d) => { out += d; });
    const exited = new Promise((resolve) => enabling.on('exit', resolve));
    const deadline = Date.now() + TIMEOUT;
    while (!/only if it shows code \d{4}-\d{4}/.test(out)) {
      assert.ok(Date.now() < deadline, `the app asks to confirm on My security info:\n${out}`);
      await delay(100);
    }
    await page.goto(`${server.url}/security-info`);
    await page.getByRole('button', { name: 'Turn on phone sign-in' }).click();
    await page.getByText('Phone sign-in is on for that device').waitFor();
    assert.equal(await Promise.race([exited, delay(TIMEOUT).then(() => 'timeout')]), 0, out);
    await context.close();

    // A fresh browser: the username, then the phone; no password, no pass.
    const fresh = await browser.newContext();
    fresh.setDefaultTimeout(TIMEOUT);
    const p2 = await fresh.newPage();
    await p2.goto(`${server.url}/login`);
    await p2.getByLabel('Username').fill('ruth');
    await p2.getByRole('button', { name: 'Next' }).click();
    await p2.locator('#push-number').waitFor();
    const number = (await p2.locator('#push-number').innerText()).trim();
    const list = JSON.parse(app(['--json', 'pending']).stdout);
    assert.equal(list.length, 1, JSON.stringify(list));
    app(['respond', list[0].request, '--number', number, '--approve']);
    await p2.waitForURL(`${server.url}/account`);
    await fresh.close();

    // The pass was one-time: it signs nobody in again, and the log has it all.
    const log = JSON.parse(sesame('--json', 'log', '--user', 'ruth').stdout);
    const events = log.map((l) => `${l.event}/${l.method ?? ''}/${l.result}`);
    assert.ok(events.includes('sign_in/access_pass/success'), events.join('\n'));
    assert.ok(events.includes('admin_access_pass_created//success'), events.join('\n'));
    assert.ok(events.includes('sign_in/phone_sign_in/success'), events.join('\n'));
    const shown = sesame('user', 'access-pass', 'show', 'ruth').stdout;
    assert.match(shown, /has no Temporary Access Pass/);
  });
});
