// OpenID Connect with a relying party nobody here wrote: `openid-client` (panva's certified
// client) discovers Sesame, builds the authorization URL (PKCE S256, nonce, state), and
// validates everything Sesame sends back (the iss in the authorization response, the ID token's
// signature and claims, UserInfo); headless Chromium signs in through Sesame's real pages, the
// real `sesame-authenticator` binary standing in for the phone. Three sign-ins:
//   (a) password + verification code from the app      -> amr ["pwd", "otp", "mfa"]
//   (b) password + notification approved in the app     -> amr ["pwd", "swk", "mfa"]
//   (c) passwordless phone sign-in, unlocked with the PIN -> amr ["swk", "pin", "mfa"]
// each followed by UserInfo, a refresh, the reuse of the old refresh token (refused) and the
// newer one (refused too: the family was revoked); then RP-initiated logout.
//
// Needs: built binaries (SESAME_BIN, SESAME_AUTHENTICATOR_BIN) and /usr/bin/chromium.
// Run: cd tests/browser && npm ci && node --test oidc.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import * as oidc from 'openid-client';
import {
  AUTHENTICATOR_BIN,
  CHROMIUM,
  CHROMIUM_ARGS,
  SESAME_BIN,
  delay,
  freePort,
  run,
  serverEnv,
  startSesame,
} from './lib.mjs';

const USERNAME = 'erin';
const DISPLAY_NAME = 'Erin Example';
const PASSWORD = 'Correct-Horse-Battery-5';
const PIN = '582914';
const APP_NAME = 'Hello RP';
const DEVICE = 'Erin phone';
const TIMEOUT = 30_000;

// The app with its own vault; `env` adds variables (the PIN: lib.mjs's run() drops SESAME_*).
function authenticator(vault, args, { env = {} } = {}) {
  const full = ['--vault', vault, ...args];
  const r = spawnSync(AUTHENTICATOR_BIN, full, {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...serverEnv(), ...env },
    stdio: ['pipe', 'pipe', 'pipe'], // not a terminal: the app never prompts
  });
  if (r.error) throw new Error(`sesame-authenticator ${full.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(`sesame-authenticator ${full.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  }
  return r;
}

// The relying party's own web server: it only receives the browser (the callback after sign-in
// and the page after sign-out) and remembers what arrived.
async function startRp() {
  const port = await freePort();
  const hits = [];
  const srv = http.createServer((req, res) => {
    hits.push(req.url);
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(`<!doctype html><title>Hello RP</title><h1>Hello RP</h1><p>${req.url.startsWith('/cb') ? 'Signing you in' : 'Home'}</p>`);
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  return { srv, hits, base: `http://127.0.0.1:${port}` };
}

const isOAuthError = (code) => (e) => {
  assert.equal(e?.error, code, `expected OAuth error ${code}, got ${e?.name}: ${e?.message} ${JSON.stringify(e?.cause ?? '')}`);
  return true;
};

describe('OpenID Connect with openid-client as the relying party, signing in with Chromium', { timeout: 600_000 }, () => {
  let tmp;
  let dataDir;
  let vault;
  let server;
  let rp;
  let browser;
  let config; // openid-client's Configuration, from discovery
  let clientId;
  let clientSecret;
  let lastSignIn; // { context, page, tokens } of the latest sign-in, for the logout
  const contexts = new Set();
  const consoleErrors = [];

  const sesame = (...args) => run(SESAME_BIN, ['--data-dir', dataDir, ...args]);
  const app = (args, opts) => authenticator(vault, args, opts);
  const withPin = { env: { SESAME_AUTHENTICATOR_PIN: PIN } };
  const pending = () => {
    const list = JSON.parse(app(['--json', 'pending']).stdout);
    assert.ok(Array.isArray(list), 'pending --json prints a list');
    return list;
  };

  async function freshContext() {
    const context = await browser.newContext();
    context.setDefaultTimeout(TIMEOUT);
    context.setDefaultNavigationTimeout(TIMEOUT);
    // What the browser refused (a Content-Security-Policy violation, say), for the failure message.
    context.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${m.page()?.url()}: ${m.text()}`);
    });
    contexts.add(context);
    return context;
  }

  async function closeContext(context) {
    contexts.delete(context);
    await context.close();
  }

  // The RP sends the browser to Sesame: a fresh PKCE verifier, nonce and state each time.
  async function startSignIn(page) {
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const nonce = oidc.randomNonce();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: `${rp.base}/cb`,
      scope: 'openid profile',
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      nonce,
      state,
    });
    assert.equal(url.origin, server.url, 'the authorization endpoint is Sesame');
    await page.goto(url.href);
    return { codeVerifier, nonce, state };
  }

  // Sesame's sign-in page, reached from the RP: it names the application asking.
  async function usernameStep(page) {
    assert.equal(new URL(page.url()).pathname, '/login', `on ${page.url()}`);
    await page.getByText(`to continue to ${APP_NAME}`).waitFor();
    await page.getByLabel('Username').fill(USERNAME);
    await page.getByRole('button', { name: 'Next' }).click();
  }

  async function passwordStep(page) {
    await page.getByRole('heading', { name: 'Enter password' }).waitFor();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  // Waits until Sesame sends the browser back to the RP's callback.
  async function callback(page) {
    try {
      await page.waitForURL((u) => u.href.startsWith(`${rp.base}/cb?`));
    } catch (e) {
      throw new Error(
        `the browser never reached the RP's callback; it is on ${page.url()}\n` +
          `browser console errors:\n${consoleErrors.join('\n') || '(none)'}\n${e.message}`,
      );
    }
    const url = new URL(page.url());
    assert.ok(rp.hits.includes(url.pathname + url.search), 'the RP server received the callback');
    assert.ok(!url.searchParams.has('error'), `no error: ${url.search}`);
    return url;
  }

  // What the RP does with the callback: the code grant (openid-client validates iss, state, the
  // ID token's signature, iss, aud, exp, iat, nonce and the PKCE binding), UserInfo, a refresh,
  // and the rotation rules. Returns the tokens of the code grant.
  async function redeemAndCheck(callbackUrl, checks, expectedAmr) {
    const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
      pkceCodeVerifier: checks.codeVerifier,
      expectedNonce: checks.nonce,
      expectedState: checks.state,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    assert.ok(claims, 'an ID token came with the code grant');
    assert.deepEqual(claims.amr, expectedAmr, `amr: ${JSON.stringify(claims)}`);
    assert.equal(claims.acr, 'mfa', 'two factors: acr mfa');
    assert.equal(claims.iss, server.url);
    assert.equal(claims.aud, clientId);
    assert.equal(claims.nonce, checks.nonce);
    assert.equal(claims.preferred_username, USERNAME, 'scope profile: the username');
    assert.equal(claims.name, DISPLAY_NAME, 'scope profile: the name');
    assert.equal(typeof claims.auth_time, 'number');
    assert.ok(Math.abs(claims.auth_time - Date.now() / 1000) < 120, 'auth_time is the sign-in just made');
    assert.ok(tokens.access_token && tokens.refresh_token, 'access and refresh tokens');
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');

    // UserInfo, with openid-client checking that its sub is the ID token's.
    const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(info.sub, claims.sub);
    assert.equal(info.preferred_username, USERNAME);
    assert.equal(info.name, DISPLAY_NAME);

    // A refresh gives new tokens (the refreshed ID token validated by openid-client again).
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
    assert.ok(refreshed.refresh_token, 'a new refresh token');
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'the refresh token rotates');
    assert.notEqual(refreshed.access_token, tokens.access_token);
    const again = refreshed.claims();
    assert.ok(again, 'Sesame sends a new ID token with a refresh');
    assert.equal(again.sub, claims.sub);
    assert.equal(again.auth_time, claims.auth_time, 'auth_time stays the time of the sign-in (OIDC Core 12.2)');
    assert.deepEqual(again.amr, expectedAmr, 'a refresh does not change how the person signed in');
    const info2 = await oidc.fetchUserInfo(config, refreshed.access_token, claims.sub);
    assert.equal(info2.sub, claims.sub);

    // The old refresh token again: refused (it was rotated) ...
    await assert.rejects(oidc.refreshTokenGrant(config, tokens.refresh_token), isOAuthError('invalid_grant'));
    // ... and the reuse revoked the whole family: the newer one is refused as well,
    await assert.rejects(oidc.refreshTokenGrant(config, refreshed.refresh_token), isOAuthError('invalid_grant'));
    // and so is the family's access token at UserInfo.
    await assert.rejects(oidc.fetchUserInfo(config, refreshed.access_token, claims.sub), (e) => {
      assert.equal(e?.status ?? e?.response?.status, 401, `${e?.name}: ${e?.message}`);
      return true;
    });
    return tokens;
  }

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'sesame-oidc-browser-'));
    dataDir = path.join(tmp, 'data');
    vault = path.join(tmp, 'vault');
    // A new installation: admin commands never create one by themselves.
    run(SESAME_BIN, ['--data-dir', dataDir, 'init']);
    run(SESAME_BIN, ['--data-dir', dataDir, 'user', 'add', USERNAME, '--display-name', DISPLAY_NAME, '--password-stdin'], {
      input: `${PASSWORD}\n`,
    });
    rp = await startRp();
    const added = JSON.parse(
      sesame(
        '--json', 'client', 'add', APP_NAME,
        '--redirect-uri', `${rp.base}/cb`,
        '--post-logout-redirect-uri', `${rp.base}/`,
        '--first-party',
      ).stdout,
    );
    clientId = added.client.client_id;
    assert.ok(clientId, `client_id in ${JSON.stringify(added)}`);
    clientSecret = added.client_secret;
    assert.ok(clientSecret, 'a confidential client gets a secret');
    server = await startSesame(dataDir);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    server?.child.kill('SIGTERM');
    await new Promise((resolve) => (rp ? rp.srv.close(resolve) : resolve()));
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('openid-client discovers Sesame (plain http allowed at loopback only by option)', async () => {
    // Without the option openid-client refuses http: the issuer is http://127.0.0.1 here.
    await assert.rejects(oidc.discovery(new URL(server.url), clientId, clientSecret), /HTTPS/i);
    config = await oidc.discovery(new URL(server.url), clientId, clientSecret, undefined, {
      execute: [oidc.allowInsecureRequests],
    });
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, server.url);
    assert.ok(meta.supportsPKCE(), 'PKCE S256 advertised');
    assert.equal(meta.end_session_endpoint, `${server.url}/oauth/logout`);
  });

  test('setup: a password-only sign-in through the RP (amr pwd), then the app is added', async () => {
    const context = await freshContext();
    const page = await context.newPage();
    const checks = await startSignIn(page);
    await usernameStep(page);
    await passwordStep(page);
    const cb = await callback(page);
    const tokens = await oidc.authorizationCodeGrant(config, cb, {
      pkceCodeVerifier: checks.codeVerifier,
      expectedNonce: checks.nonce,
      expectedState: checks.state,
    });
    assert.deepEqual(tokens.claims().amr, ['pwd'], 'no second step yet: only the password');
    assert.equal(tokens.claims().acr, 'pwd');

    // The same browser is signed in to Sesame: add the app from My security info.
    await page.goto(`${server.url}/security-info`);
    await page.getByRole('link', { name: 'Add method' }).click();
    await page.getByRole('link', { name: /Sesame Authenticator app/ }).click();
    const link = (await page.locator('#activation-link').innerText()).trim();
    assert.match(link, /^sesame:\/\/activate\?server=/);
    await page.locator('#activation-status', { hasText: 'Waiting for the app' }).waitFor();
    app(['add', link, '--device-name', DEVICE]);
    await page.locator('#activation-status', { hasText: `${DEVICE} was added` }).waitFor();
    await closeContext(context);
  });

  test('(a) password + verification code from the app: amr pwd otp mfa', async () => {
    const context = await freshContext();
    const page = await context.newPage();
    const checks = await startSignIn(page);
    await usernameStep(page);
    await passwordStep(page);
    // The app's notification is the default second step; choose its codes instead.
    await page.getByRole('heading', { name: 'Approve sign-in request' }).waitFor();
    await page.getByRole('link', { name: 'Use a different verification option' }).click();
    await page.getByRole('button', { name: 'Authenticator app (verification code)' }).click();
    await page.getByRole('heading', { name: 'Enter code' }).waitFor();
    // A code with time left in its 30-second step.
    let line;
    for (;;) {
      const codes = JSON.parse(app(['--json', 'code']).stdout);
      assert.equal(codes.length, 1, JSON.stringify(codes));
      line = codes[0];
      if (line.seconds_left >= 5) break;
      await delay((line.seconds_left + 1) * 1000);
    }
    assert.match(line.code, /^\d{6}$/);
    await page.getByLabel('Code').fill(line.code);
    await page.getByRole('button', { name: 'Verify' }).click();
    const cb = await callback(page);
    await redeemAndCheck(cb, checks, ['pwd', 'otp', 'mfa']);
    assert.deepEqual(pending(), [], 'choosing codes withdrew the notification');
    await closeContext(context);
  });

  test('(b) password + notification approved in the app: amr pwd swk mfa; the phone names the app', async () => {
    const context = await freshContext();
    const page = await context.newPage();
    const checks = await startSignIn(page);
    await usernameStep(page);
    await passwordStep(page);
    await page.getByRole('heading', { name: 'Approve sign-in request' }).waitFor();
    const number = (await page.locator('#push-number').innerText()).trim();
    assert.match(number, /^\d{2}$/);
    const list = pending();
    assert.equal(list.length, 1, JSON.stringify(list));
    assert.equal(list[0].kind, 'two-step verification');
    assert.equal(list[0].app, APP_NAME, 'the phone is told which application asks');
    app(['respond', list[0].request, '--number', number, '--approve']);
    // No click: the page's long-poll completes the sign-in and Sesame sends the browser back.
    const cb = await callback(page);
    await redeemAndCheck(cb, checks, ['pwd', 'swk', 'mfa']);
    await closeContext(context);
  });

  test('phone sign-in turned on: app PIN, then confirmed on My security info', async () => {
    app(['pin', 'set'], withPin);
    const enabling = spawn(AUTHENTICATOR_BIN, ['--vault', vault, 'phone-sign-in', 'enable', USERNAME], {
      env: { ...serverEnv(), SESAME_AUTHENTICATOR_PIN: PIN },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    enabling.stdout.on('data', (d) => { out += d; });
    enabling.stderr.on('data', (d) => { out += d; });
    const exited = new Promise((resolve) => enabling.on('exit', resolve));
    const codeLine = /only if it shows code (\d{4}-\d{4})/;
    const deadline = Date.now() + TIMEOUT;
    while (!codeLine.test(out)) {
      assert.ok(Date.now() < deadline, `the app prints the request's code:\n${out}`);
      await delay(100);
    }
    const requestCode = out.match(codeLine)[1];

    // Erin signs in to Sesame itself (password + the app) and confirms.
    const context = await freshContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/login`);
    await page.getByLabel('Username').fill(USERNAME);
    await page.getByRole('button', { name: 'Next' }).click();
    await passwordStep(page);
    await page.getByRole('heading', { name: 'Approve sign-in request' }).waitFor();
    const number = (await page.locator('#push-number').innerText()).trim();
    const list = pending();
    assert.equal(list.length, 1, JSON.stringify(list));
    assert.equal(list[0].app, 'Sesame', 'signing in to Sesame itself: the phone says Sesame');
    app(['respond', list[0].request, '--number', number, '--approve']);
    await page.waitForURL(`${server.url}/account`);
    await page.goto(`${server.url}/security-info`);
    await page.getByText(`Confirm only if your app shows code ${requestCode}`).waitFor();
    await page.getByRole('button', { name: 'Turn on phone sign-in' }).click();
    await page.getByText('Phone sign-in is on for that device').waitFor();
    await closeContext(context);
    const code = await Promise.race([exited, delay(TIMEOUT).then(() => 'timeout')]);
    assert.equal(code, 0, `the app saw the confirmation:\n${out}`);
  });

  test('(c) passwordless phone sign-in: amr swk pin mfa; the phone names the app', async () => {
    const context = await freshContext();
    const page = await context.newPage();
    const checks = await startSignIn(page);
    await usernameStep(page);
    // No password: the phone page at once.
    await page.getByRole('heading', { name: 'Approve sign-in request' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/login/app');
    assert.equal(await page.locator('input[type=password]').count(), 0, 'no password field');
    const number = (await page.locator('#push-number').innerText()).trim();
    const list = pending();
    assert.equal(list.length, 1, JSON.stringify(list));
    assert.equal(list[0].kind, 'phone sign-in');
    assert.equal(list[0].app, APP_NAME, 'the phone is told which application asks');
    app(['respond', list[0].request, '--number', number, '--approve'], withPin);
    const cb = await callback(page);
    const tokens = await redeemAndCheck(cb, checks, ['swk', 'pin', 'mfa']);
    lastSignIn = { context, page, tokens };
  });

  test('RP-initiated logout: back on the RP, signed out of Sesame', async () => {
    assert.ok(lastSignIn, 'the phone sign-in left a signed-in browser');
    const { page, tokens } = lastSignIn;
    // Signed in to Sesame in this browser.
    await page.goto(`${server.url}/account`);
    assert.equal(new URL(page.url()).pathname, '/account');
    const state = oidc.randomState();
    const url = oidc.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token,
      post_logout_redirect_uri: `${rp.base}/`,
      state,
    });
    assert.equal(url.origin + url.pathname, `${server.url}/oauth/logout`);
    await page.goto(url.href);
    await page.waitForURL((u) => u.origin === rp.base && u.pathname === '/');
    assert.equal(new URL(page.url()).searchParams.get('state'), state, 'state comes back');
    await page.getByRole('heading', { name: 'Hello RP' }).waitFor();
    // Sesame's session is gone: My account sends the browser to sign in.
    await page.goto(`${server.url}/account`);
    assert.equal(new URL(page.url()).pathname, '/login', `after sign-out, /account went to ${page.url()}`);
    await closeContext(lastSignIn.context);
    lastSignIn = undefined;
  });
});
