// Sign-in approved on the phone, in Chromium: the page shows the number and waits; the real
// `sesame-authenticator` binary answers; the page reacts by itself (long-poll + auto-submit).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { AUTHENTICATOR_BIN, CHROMIUM, CHROMIUM_ARGS, SESAME_BIN, delay, run, startSesame } from './lib.mjs';

const USERNAME = 'bob';
const PASSWORD = 'Correct-Horse-Battery-7';
const TIMEOUT = 30_000;

describe('sign-in approved in the authenticator app, in Chromium', { timeout: 300_000 }, () => {
  let tmp;
  let server;
  let browser;
  let vault;

  const app = (...args) => run(AUTHENTICATOR_BIN, ['--vault', vault, ...args]);

  async function newPage() {
    const context = await browser.newContext();
    context.setDefaultTimeout(TIMEOUT);
    return context.newPage();
  }

  async function passwordStep(page) {
    await page.goto(`${server.url}/login`);
    await page.getByLabel('Username').fill(USERNAME);
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'sesame-push-browser-'));
    vault = path.join(tmp, 'vault');
    const dataDir = path.join(tmp, 'data');
    // A new installation: admin commands never create one by themselves.
    run(SESAME_BIN, ['--data-dir', dataDir, 'init']);
    run(SESAME_BIN, ['--data-dir', dataDir, 'user', 'add', USERNAME, '--password-stdin'], { input: `${PASSWORD}\n` });
    server = await startSesame(dataDir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    server?.child.kill('SIGTERM');
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('adds the app with the activation link; the page notices by itself', async () => {
    const page = await newPage();
    await passwordStep(page);
    await page.getByRole('link', { name: 'My security info' }).click();
    await page.getByRole('link', { name: 'Add method' }).click();
    await page.getByRole('link', { name: /Sesame Authenticator app/ }).click();
    const link = (await page.locator('#activation-link').innerText()).trim();
    assert.match(link, /^sesame:\/\/activate\?server=/);
    await page.locator('#activation-status', { hasText: 'Waiting for the app' }).waitFor();
    app('add', link, '--device-name', 'Test phone');
    await page.locator('#activation-status', { hasText: 'Test phone was added' }).waitFor();
    await page.goto(`${server.url}/security-info`);
    await page.getByRole('cell', { name: 'Test phone', exact: true }).waitFor();
    await page.context().close();
  });

  test('the page signs in by itself once the phone approves with the right number', async () => {
    const page = await newPage();
    await passwordStep(page);
    await page.getByRole('heading', { name: 'Approve sign-in request' }).waitFor();
    const number = (await page.locator('#push-number').innerText()).trim();
    assert.match(number, /^\d{2}$/);
    const pending = JSON.parse(app('--json', 'pending').stdout);
    assert.equal(pending.length, 1);
    assert.ok(!JSON.stringify(pending).includes(`"${number}"`), 'the number is not sent to the phone');
    app('respond', pending[0].request, '--number', number, '--approve');
    // No click: the page's own long-poll sees the approval and completes the sign-in.
    await page.waitForURL(`${server.url}/account`);
    await page.getByRole('heading', { name: 'My account' }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.context().close();
  });

  test('approved in the full-screen app (watch, in an 80x24 terminal) while the page waits', async () => {
    const session = `sesame-browser-watch-${process.pid}`;
    const tmux = (...args) => spawnSync('tmux', args, { encoding: 'utf8' });
    const screen = () => tmux('capture-pane', '-p', '-t', session).stdout || '';
    const waitScreen = async (text) => {
      for (let i = 0; i < 150; i++) {
        if (screen().includes(text)) return;
        await delay(100);
      }
      throw new Error(`"${text}" never appeared in watch:\n${screen()}`);
    };
    const started = tmux('new-session', '-d', '-s', session, '-x', '80', '-y', '24', `${AUTHENTICATOR_BIN} --vault ${vault} watch`);
    assert.equal(started.status, 0, `tmux is needed: ${started.stderr}`);
    try {
      await waitScreen('No sign-in requests');
      const page = await newPage();
      await passwordStep(page);
      await page.getByRole('heading', { name: 'Approve sign-in request' }).waitFor();
      const number = (await page.locator('#push-number').innerText()).trim();
      await waitScreen('Approve sign-in?');
      tmux('send-keys', '-t', session, 'Enter');
      await waitScreen('Enter number');
      tmux('send-keys', '-t', session, number, 'Enter');
      await waitScreen('[a] Approve');
      tmux('send-keys', '-t', session, 'a');
      await page.waitForURL(`${server.url}/account`);
      await waitScreen('Approved');
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.context().close();
    } finally {
      tmux('kill-session', '-t', session);
    }
  });

  test('a denial shows on the waiting page at once, and no session is made', async () => {
    const page = await newPage();
    await passwordStep(page);
    await page.getByRole('heading', { name: 'Approve sign-in request' }).waitFor();
    const pending = JSON.parse(app('--json', 'pending').stdout);
    app('respond', pending[0].request, '--deny');
    await page.getByRole('heading', { name: 'Request not approved' }).waitFor();
    assert.match(await page.locator('main').innerText(), /denied on your phone/);
    await page.goto(`${server.url}/account`);
    assert.equal(new URL(page.url()).pathname, '/login', 'not signed in');
    await page.context().close();
  });
});
