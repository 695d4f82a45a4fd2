// Passwordless phone sign-in in Chromium, as a new user does it: the administrator allows it
// for one group; carol (in the group) adds the Sesame Authenticator app from My security info,
// sets an app PIN and turns phone sign-in on; then she signs in with just her username, the
// real `sesame-authenticator` binary approving with the number and the PIN while the page waits
// by itself. Her choice between phone and password is remembered (in this browser and for her
// on the server). dave, outside the group, cannot add the app and keeps the password.
//
// Needs: built binaries (SESAME_BIN, SESAME_AUTHENTICATOR_BIN) and /usr/bin/chromium.
// Run: cd tests/browser && npm ci && node --test phone.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { AUTHENTICATOR_BIN, CHROMIUM, CHROMIUM_ARGS, SESAME_BIN, delay, run, serverEnv, startSesame } from './lib.mjs';

const PASSWORDS = { carol: 'Correct-Horse-Battery-3', dave: 'Correct-Horse-Battery-4' };
const PIN = '482913';
const GROUP = 'pilot';
const TIMEOUT = 30_000;
const PHONE_HEADING = 'Approve sign-in request';
const PASSWORD_HEADING = 'Enter password';

// The app with its own vault; `env` adds variables (the PIN), `allowFail` returns a failure
// instead of throwing. lib.mjs's run() drops every SESAME_* variable, so the PIN needs this.
function authenticator(vault, args, { env = {}, allowFail = false } = {}) {
  const full = ['--vault', vault, ...args];
  const r = spawnSync(AUTHENTICATOR_BIN, full, {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...serverEnv(), ...env },
    stdio: ['pipe', 'pipe', 'pipe'], // stdin is not a terminal: the app never prompts
  });
  if (r.error) throw new Error(`sesame-authenticator ${full.join(' ')}: ${r.error.message}`);
  if (r.status !== 0 && !allowFail) {
    throw new Error(`sesame-authenticator ${full.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  }
  return r;
}

describe('passwordless phone sign-in with the authenticator app, in Chromium', { timeout: 300_000 }, () => {
  let tmp;
  let dataDir;
  let server;
  let browser;
  const vaults = {};
  const contexts = new Set();
  let carolPage; // carol's browser, from her first phone sign-in to her choice of the password

  const sesame = (...args) => run(SESAME_BIN, ['--data-dir', dataDir, ...args]);
  const app = (user, args, opts) => authenticator(vaults[user], args, opts);
  const withPin = { env: { SESAME_AUTHENTICATOR_PIN: PIN } };
  const pending = (user) => {
    const list = JSON.parse(app(user, ['--json', 'pending']).stdout);
    assert.ok(Array.isArray(list), 'pending --json prints a list');
    return list;
  };

  // A browser context of its own: its own cookies, as a new browser would have.
  async function freshContext() {
    const context = await browser.newContext();
    context.setDefaultTimeout(TIMEOUT);
    contexts.add(context);
    return context;
  }

  async function closeContext(context) {
    contexts.delete(context);
    await context.close();
  }

  // /login, the username, Next; returns which page came first: 'phone' or 'password'.
  async function usernameStep(page, username) {
    await page.goto(`${server.url}/login`);
    await page.getByLabel('Username').fill(username);
    await page.getByRole('button', { name: 'Next' }).click();
    const heading = page.getByRole('heading', { name: new RegExp(`^(${PHONE_HEADING}|${PASSWORD_HEADING})$`) });
    await heading.waitFor();
    const text = (await heading.innerText()).trim();
    return text === PHONE_HEADING ? 'phone' : 'password';
  }

  // The phone page as a user sees it: the number, the way back to the password, no password.
  async function expectPhonePage(page, username) {
    assert.equal(new URL(page.url()).pathname, '/login/app');
    await page.locator('#push-number').waitFor();
    const number = (await page.locator('#push-number').innerText()).trim();
    assert.match(number, /^\d{2}$/, `the page shows a two-digit number, not ${JSON.stringify(number)}`);
    await page.getByRole('button', { name: 'Use your password instead' }).waitFor();
    assert.equal(await page.getByLabel('Password').count(), 0, 'no password field on the phone page');
    assert.equal(await page.locator('input[type=password]').count(), 0, 'no password input at all');
    assert.match(await page.locator('main').innerText(), new RegExp(username));
    return number;
  }

  async function expectPasswordPage(page) {
    assert.equal(new URL(page.url()).pathname, '/login/password');
    await page.getByLabel('Password').waitFor();
    await page.getByRole('button', { name: 'Use an app instead' }).waitFor();
    assert.equal(await page.locator('#push-number').count(), 0, 'no number on the password page');
  }

  // The only waiting request of `user`, checked to be of `kind`, answered with `number`.
  function approveOnPhone(user, kind, number) {
    const list = pending(user);
    assert.equal(list.length, 1, `one request waits: ${JSON.stringify(list)}`);
    assert.equal(list[0].kind, kind);
    assert.ok(!JSON.stringify(list).includes(`"${number}"`), 'the number is not sent to the phone');
    app(user, ['respond', list[0].request, '--number', number, '--approve'], withPin);
  }

  // Holds the page's status poll until a request to `clickUrl` is sent, answers the poll
  // "cancelled" at once, and lets the held request go on half a second later.
  async function holdPollAnswerBehindClick(page, clickUrl) {
    const cdp = await page.context().newCDPSession(page);
    let heldPoll;
    cdp.on('Fetch.requestPaused', async ({ requestId, request }) => {
      if (request.url.includes('/login/push/status')) {
        heldPoll = requestId;
        return;
      }
      if (heldPoll) {
        const body = Buffer.from(JSON.stringify({ state: 'cancelled', message: '' })).toString('base64');
        await cdp.send('Fetch.fulfillRequest', {
          requestId: heldPoll,
          responseCode: 200,
          responseHeaders: [{ name: 'Content-Type', value: 'application/json' }],
          body,
        });
        heldPoll = undefined;
      }
      await delay(500);
      // Fails harmlessly if the page already gave up this request; the checks below notice.
      await cdp.send('Fetch.continueRequest', { requestId }).catch(() => {});
    });
    await cdp.send('Fetch.enable', {
      patterns: [{ urlPattern: '*/login/push/status*' }, { urlPattern: clickUrl }],
    });
    // The poll already waiting went out before the hold: a reload sends it again, held.
    await page.reload();
    await page.locator('#push-number').waitFor();
    while (!heldPoll) await delay(20);
    return cdp;
  }

  async function signOut(page) {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'You signed out of your account' }).waitFor();
  }

  // Signs in with the password (no second step, or a second step approved in the app), then adds
  // the app from My security info with the activation link; returns `add`'s output.
  async function addAppFor(user, deviceName) {
    const context = await freshContext();
    const page = await context.newPage();
    assert.equal(await usernameStep(page, user), 'password');
    await page.getByLabel('Password').fill(PASSWORDS[user]);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${server.url}/account`);
    await page.getByRole('link', { name: 'My security info' }).click();
    await page.getByRole('link', { name: 'Add method' }).click();
    await page.getByRole('link', { name: /Sesame Authenticator app/ }).click();
    const link = (await page.locator('#activation-link').innerText()).trim();
    assert.match(link, /^sesame:\/\/activate\?server=/);
    await page.locator('#activation-status', { hasText: 'Waiting for the app' }).waitFor();
    const added = app(user, ['add', link, '--device-name', deviceName]);
    await page.locator('#activation-status', { hasText: `${deviceName} was added` }).waitFor();
    await page.goto(`${server.url}/security-info`);
    await page.getByRole('cell', { name: deviceName, exact: true }).waitFor();
    await closeContext(context);
    return added.stdout;
  }

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'sesame-phone-browser-'));
    dataDir = path.join(tmp, 'data');
    // A new installation: admin commands never create one by themselves.
    run(SESAME_BIN, ['--data-dir', dataDir, 'init']);
    vaults.carol = path.join(tmp, 'carol-vault');
    vaults.dave = path.join(tmp, 'dave-vault');
    for (const [user, password] of Object.entries(PASSWORDS)) {
      run(SESAME_BIN, ['--data-dir', dataDir, 'user', 'add', user, '--password-stdin'], { input: `${password}\n` });
    }
    sesame('group', 'add', GROUP);
    sesame('group', 'add-member', GROUP, 'carol');
    // The administrator allows the app, phone sign-in included, for the pilot group only.
    sesame('policy', 'set', '--targets', `${GROUP}=any`);
    const policy = JSON.parse(sesame('--json', 'policy', 'show').stdout);
    assert.equal(policy.authenticator.targets.type, 'groups', JSON.stringify(policy));
    server = await startSesame(dataDir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    server?.child.kill('SIGTERM');
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('carol adds the app from My security info; the app offers phone sign-in', async () => {
    const out = await addAppFor('carol', 'Carol phone');
    assert.match(out, /Phone sign-in is available/);
    assert.match(out, /sesame-authenticator phone-sign-in enable/);
  });

  test('phone sign-in needs an app PIN first, then carol confirms it on My security info', async () => {
    const refused = app('carol', ['phone-sign-in', 'enable', 'carol'], { allowFail: true });
    assert.notEqual(refused.status, 0, `refused without a PIN:\n${refused.stdout}`);
    assert.match(refused.stderr, /needs an app PIN/);
    assert.match(refused.stderr, /sesame-authenticator pin set/);
    app('carol', ['pin', 'set'], withPin);
    // The app asks and waits: a copied device key alone must not turn phone sign-in on.
    const enabling = spawn(AUTHENTICATOR_BIN, ['--vault', vaults.carol, 'phone-sign-in', 'enable', 'carol'], {
      env: { ...serverEnv(), SESAME_AUTHENTICATOR_PIN: PIN },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    enabling.stdout.on('data', (d) => { out += d; });
    enabling.stderr.on('data', (d) => { out += d; });
    const exited = new Promise((resolve) => enabling.on('exit', resolve));
    const deadline = Date.now() + TIMEOUT;
    const codeLine = /only if it shows code (\d{4}-\d{4})/;
    while (!/confirm it on My security info/.test(out) || !codeLine.test(out)) {
      assert.ok(Date.now() < deadline, `the app says where to confirm, and the request's code:\n${out}`);
      await delay(100);
    }
    assert.match(out, new RegExp(`${server.url}/security-info`));
    const requestCode = out.match(codeLine)[1];

    // Carol signs in with her password and the app, and confirms on My security info.
    const context = await freshContext();
    const page = await context.newPage();
    assert.equal(await usernameStep(page, 'carol'), 'password', 'not on yet: the password comes first');
    await page.getByLabel('Password').fill(PASSWORDS.carol);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: PHONE_HEADING }).waitFor();
    const number = (await page.locator('#push-number').innerText()).trim();
    approveOnPhone('carol', 'two-step verification', number);
    await page.waitForURL(`${server.url}/account`);
    await page.goto(`${server.url}/security-info`);
    await page.getByRole('cell', { name: /waiting for your confirmation/ }).waitFor();
    // The page shows the code the app printed: this is carol's own request.
    await page.getByText(`Confirm only if your app shows code ${requestCode}`).waitFor();
    await page.getByRole('button', { name: 'Turn on phone sign-in' }).click();
    await page.getByText('Phone sign-in is on for that device').waitFor();
    await page.getByRole('cell', { name: 'On', exact: true }).waitFor();
    await closeContext(context);

    const code = await Promise.race([exited, delay(TIMEOUT).then(() => 'timeout')]);
    assert.equal(code, 0, `the app saw the confirmation and finished:\n${out}`);
    assert.match(out, /Phone sign-in is on for/);
  });

  test('a fresh browser: username, Next, approve on the phone; the page signs in by itself', async () => {
    carolPage = await (await freshContext()).newPage();
    const page = carolPage;
    assert.equal(await usernameStep(page, 'carol'), 'phone');
    const number = await expectPhonePage(page, 'carol');
    approveOnPhone('carol', 'phone sign-in', number);
    // No click: the page's long-poll sees the approval and completes the sign-in.
    await page.waitForURL(`${server.url}/account`);
    await page.getByRole('heading', { name: 'My account' }).waitFor();
    assert.match(await page.locator('main').innerText(), /Signed in as .*\(carol\)/);
  });

  test('the password instead: remembered in this browser and for the user', async () => {
    // The browser carol just signed in with, on the phone.
    assert.ok(carolPage, 'the previous test signed carol in');
    const page = carolPage;
    assert.equal(new URL(page.url()).pathname, '/account');
    await signOut(page);

    // After signing out, the phone comes first again.
    assert.equal(await usernameStep(page, 'carol'), 'phone');
    await expectPhonePage(page, 'carol');
    // The race a busy machine has: the click withdraws the phone request, which wakes the
    // page's waiting poll, and the poll's answer can arrive before the click's own response.
    // Here it always does: the poll is held and answered "cancelled" the moment the click is
    // sent, and the click is let through only after that. The page must follow the click (whose
    // response stores the remembered choice) and not reload itself over it.
    const cdp = await holdPollAnswerBehindClick(page, '*/login/password-instead');
    await page.getByRole('button', { name: 'Use your password instead' }).click();
    await page.getByRole('heading', { name: PASSWORD_HEADING }).waitFor();
    await expectPasswordPage(page);
    await cdp.detach();
    assert.deepEqual(pending('carol'), [], 'the phone request was withdrawn');

    // The password, then the app as her second step (she added it, so she uses it).
    await page.getByLabel('Password').fill(PASSWORDS.carol);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: PHONE_HEADING }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/login/verify');
    const number = (await page.locator('#push-number').innerText()).trim();
    approveOnPhone('carol', 'two-step verification', number);
    await page.waitForURL(`${server.url}/account`);
    await signOut(page);

    // This browser remembers the password.
    assert.equal(
      await usernameStep(page, 'carol'),
      'password',
      'after "Use your password instead", this browser offers the password first',
    );
    await expectPasswordPage(page);
    assert.deepEqual(pending('carol'), [], 'no request was sent to the phone');
    await closeContext(page.context());
    carolPage = undefined;

    // So does the server, for a browser that has never seen carol.
    const other = await freshContext();
    const page2 = await other.newPage();
    assert.equal(await usernameStep(page2, 'carol'), 'password', 'the server remembers the password for carol');
    await expectPasswordPage(page2);
    assert.deepEqual(pending('carol'), [], 'no request was sent to the phone');
    await closeContext(other);
  });

  test('dave, outside the group, cannot add the app and keeps the password', async () => {
    // The policy is judged when the app is added: no activation link for him.
    const setup = await freshContext();
    const signedIn = await setup.newPage();
    assert.equal(await usernameStep(signedIn, 'dave'), 'password');
    await signedIn.getByLabel('Password').fill(PASSWORDS.dave);
    await signedIn.getByRole('button', { name: 'Sign in' }).click();
    await signedIn.waitForURL(`${server.url}/account`);
    await signedIn.goto(`${server.url}/security-info/add/app`);
    await signedIn.getByText('does not allow the Sesame Authenticator app for your account').waitFor();
    assert.equal(await signedIn.locator('#activation-link').count(), 0);
    await closeContext(setup);

    const context = await freshContext();
    const page = await context.newPage();
    assert.equal(await usernameStep(page, 'dave'), 'password');
    await expectPasswordPage(page);
    // Asking for the app anyway keeps him on the password page, told why.
    await page.getByRole('button', { name: 'Use an app instead' }).click();
    await page.getByText("Phone sign-in isn't turned on for this account").waitFor();
    await page.getByLabel('Password').waitFor();
    assert.equal(await page.locator('#push-number').count(), 0);
    await closeContext(context);
  });
});
