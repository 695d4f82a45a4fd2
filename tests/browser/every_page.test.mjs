// Every page a person can reach, in Chromium, at phone width (390 px) and on a laptop (1280 px):
// none scrolls sideways, and no table is wider than the page's card. The installation has
// some data that makes tables wide: long usernames and display names, a group with members, an
// application with a long redirect URI, an administrator with verification codes and the
// Sesame Authenticator app, and a sign-in log with successes and failures.
//
// Screenshots of a few pages go to /tmp/screens/ (set SESAME_SCREENS to change it).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { AUTHENTICATOR_BIN, CHROMIUM, CHROMIUM_ARGS, SESAME_BIN, run, startSesame } from './lib.mjs';

const PASSWORD = 'Correct-Horse-Battery-5';
const LONG_USER = 'averyveryverylongusernamewithoutanybreaksatall';
const LONG_DISPLAY =
  'Maximiliana Alexandrina Wolfeschlegelsteinhausenbergerdorff-Featherstonehaugh of Llanfairpwllgwyngyll';
const LONG_REDIRECT =
  'https://a-rather-long-host-name.applications.example.com/oauth2/callback/with/a/long/path?tenant=example-tenant-identifier';
const LONG_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) SomeVeryLongBrowserName/123.0.0.0-with-a-build-identifier-that-never-breaks Safari/537.36';
const WIDTHS = [390, 1280];
const SCREENS = process.env.SESAME_SCREENS || '/tmp/screens';
const SCREENSHOT_PAGES = {
  '/login': 'login',
  '/account': 'account',
  '/security-info': 'security-info',
  '/security-info/add': 'add-method',
  '/admin': 'admin',
  '/admin/users': 'admin-users',
  '/admin/policy': 'admin-policy',
  '/admin/log': 'admin-log',
};
const TIMEOUT = 30_000;

let tmp;
let dataDir;
let vault;
let server;
let browser;
let clientId;

const sesame = (...args) => run(SESAME_BIN, ['--data-dir', dataDir, ...args]);

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'sesame-every-page-'));
  dataDir = path.join(tmp, 'data');
  vault = path.join(tmp, 'vault');
  sesame('init');
  run(SESAME_BIN, ['--data-dir', dataDir, 'user', 'add', 'root', '--admin', '--password-stdin'], {
    input: `${PASSWORD}\n`,
  });
  run(SESAME_BIN, ['--data-dir', dataDir, 'user', 'add', 'bob', '--display-name', LONG_DISPLAY, '--password-stdin'], {
    input: `${PASSWORD}\n`,
  });
  sesame('user', 'add', LONG_USER, '--display-name', LONG_DISPLAY, '--no-password');
  sesame('user', 'add', 'carol', '--no-password');
  sesame('group', 'add', 'Pilot team');
  for (const u of ['bob', 'carol', LONG_USER]) sesame('group', 'add-member', 'Pilot team', u);
  const added = JSON.parse(
    sesame(
      '--json',
      'client',
      'add',
      'An application with a rather long name for a phone screen',
      '--redirect-uri',
      LONG_REDIRECT,
      '--post-logout-redirect-uri',
      `${LONG_REDIRECT}&signed-out=yes`,
      '--require-mfa',
    ).stdout,
  );
  clientId = added.client.client_id;
  server = await startSesame(dataDir);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  server?.child.kill('SIGTERM');
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function newContext(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  context.setDefaultTimeout(TIMEOUT);
  return context;
}

// Username, Next, password, Sign in; returns the path the browser lands on.
async function signIn(page, username, password) {
  await page.goto(`${server.url}/login`);
  await page.getByLabel('Username').fill(username);
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByLabel('Password').fill(password);
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign in' }).click()]);
  await page.waitForLoadState('load');
  return new URL(page.url()).pathname;
}

// How far a page scrolls sideways, and the tables wider than the card (main) they are in.
function measure(page) {
  return page.evaluate(() => {
    const root = document.documentElement;
    const main = document.querySelector('main');
    const box = main.getBoundingClientRect();
    const style = getComputedStyle(main);
    const inner = box.right - parseFloat(style.paddingRight) - parseFloat(style.borderRightWidth);
    const tables = [...main.querySelectorAll('table')]
      .map((t) => {
        const r = t.getBoundingClientRect();
        return { name: t.id || t.className || 'table', width: Math.round(r.width), over: Math.round(r.right - inner) };
      })
      .filter((t) => t.over > 0);
    return { scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, tables };
  });
}

test('no page scrolls sideways at 390 or 1280 px, and no table is wider than its card', { timeout: 300_000 }, async () => {
  mkdirSync(SCREENS, { recursive: true });

  // Sign-ins for the log: a success and failures, from a browser with a very long user agent
  // (the console shows none today; this keeps the pages honest if one ever does).
  {
    const context = await newContext({ userAgent: LONG_UA });
    const page = await context.newPage();
    assert.equal(await signIn(page, 'bob', PASSWORD), '/account');
    await context.close();
  }
  for (const [user, password] of [
    ['bob', 'not-the-password'],
    [LONG_USER, 'whatever-is-typed'],
  ]) {
    const context = await newContext({ userAgent: LONG_UA });
    const page = await context.newPage();
    await signIn(page, user, password);
    await context.close();
  }

  // The administrator signs in (long user agent too), then adds verification codes and the
  // Sesame Authenticator app, so My security info and the user's page have methods and devices.
  const context = await newContext({ userAgent: LONG_UA });
  const page = await context.newPage();
  assert.equal(await signIn(page, 'root', PASSWORD), '/account');
  await page.goto(`${server.url}/security-info/add/totp`);
  const secret = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
  const code = run('oathtool', ['--totp', '-b', secret]).stdout.trim();
  await page.getByLabel('Code').fill(code);
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Verify' }).click()]);
  await page.goto(`${server.url}/security-info/add`);
  await page.getByRole('link', { name: /Sesame Authenticator app/ }).click();
  const link = (await page.locator('#activation-link').innerText()).trim();
  await page.locator('#activation-status', { hasText: 'Waiting for the app' }).waitFor();
  run(AUTHENTICATOR_BIN, ['--vault', vault, 'add', link, '--device-name', 'A phone with a long device name, Pixel 9 Pro XL']);
  await page.locator('#activation-status', { hasText: 'was added' }).waitFor();

  // Pages whose address comes from a list.
  await page.goto(`${server.url}/admin/groups`);
  const group = await page.getAttribute('#groups a[href^="/admin/groups/"]', 'href');
  await page.goto(`${server.url}/admin/users`);
  const users = await page.$$eval('#users a[href^="/admin/users/"]', (as) => as.map((a) => a.getAttribute('href')));
  const rootPage = users.find((h) => h.endsWith('/root'));
  const longPage = users.find((h) => h.endsWith(`/${LONG_USER}`));
  assert.ok(group && rootPage && longPage, `links: ${group} ${users}`);

  const pages = [
    '/account',
    '/security-info',
    '/security-info/add',
    '/security-info/password',
    '/admin',
    '/admin/users',
    rootPage,
    longPage,
    '/admin/groups',
    group,
    '/admin/policy',
    '/admin/log',
    '/admin/applications',
    `/admin/applications/${clientId}`,
  ];

  const failures = [];
  const widths = [];
  const check = async (p, pg, width) => {
    const res = await pg.goto(server.url + p);
    assert.ok(res.ok(), `${p} answered ${res.status()}`);
    assert.ok(!new URL(pg.url()).pathname.startsWith('/login') || p === '/login', `${p}: signed out`);
    // Signed in: a way to sign out on every page (an administrator sent to set up a method
    // must not be trapped there).
    if (p !== '/login') {
      const signOut = pg.getByRole('link', { name: 'Sign out' }).or(pg.getByRole('button', { name: 'Sign out' }));
      if ((await signOut.count()) === 0) failures.push(`${p} has no Sign out`);
    }
    const m = await measure(pg);
    widths.push(`${p} @${width}: scrollWidth ${m.scrollWidth}`);
    if (m.scrollWidth > m.clientWidth) {
      failures.push(`${p} at ${width} px scrolls sideways: ${m.scrollWidth} > ${m.clientWidth}`);
    }
    for (const t of m.tables) {
      failures.push(`${p} at ${width} px: table ${t.name} (${t.width} px) is ${t.over} px wider than its card`);
    }
    if (SCREENSHOT_PAGES[p]) {
      await pg.screenshot({ path: path.join(SCREENS, `${SCREENSHOT_PAGES[p]}-${width}.png`), fullPage: true });
    }
  };

  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    for (const p of pages) await check(p, page, width);
    // Signed out: the sign-in page, in a fresh browser.
    const out = await newContext({ viewport: { width, height: 900 } });
    await check('/login', await out.newPage(), width);
    await out.close();
  }
  await context.close();
  console.log(widths.join("\n"));
  assert.deepEqual(failures, [], `pages too wide:\n${failures.join('\n')}`);
});
