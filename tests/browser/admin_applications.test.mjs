// The console's Applications pages in Chromium: an administrator registers an application with
// the form, sees its secret once, and no page scrolls sideways at phone width (390 px) or on a
// laptop (1280 px).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { SESAME_BIN, CHROMIUM, CHROMIUM_ARGS, run, startSesame } from './lib.mjs';

const PASSWORD = 'correct horse battery';
let dir;
let server;
let browser;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sesame-apps-'));
  run(SESAME_BIN, ['--data-dir', dir, 'init']);
  run(SESAME_BIN, ['--data-dir', dir, 'user', 'add', 'root', '--admin', '--password-stdin'], {
    input: `${PASSWORD}\n`,
  });
  server = await startSesame(dir);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  server?.child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

async function signedIn(width) {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  await page.goto(`${server.url}/login`);
  await page.fill('#username', 'root');
  await page.click('button[type=submit]');
  await page.fill('input[name=password]', PASSWORD);
  await Promise.all([page.waitForURL(/\/account/), page.click('button[type=submit]')]);
  return page;
}

const sideways = (page) =>
  page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);

test('an administrator registers an application and sees its secret once; no page scrolls sideways', async () => {
  const page = await signedIn(390);
  await page.goto(`${server.url}/admin/applications`);
  await page.fill('input[name=name]', 'A rather long application name for a phone screen');
  await page.fill(
    'textarea[name=redirect_uris]',
    'https://a-very-long-host-name.example.com/some/long/callback/path?with=query',
  );
  await page.click('button:has-text("Add application")');
  const text = await page.textContent('body');
  assert.match(text, /shown only now/i);
  const secret = await page.evaluate(() => {
    const m = document.body.innerText.match(/[A-Za-z0-9_-]{43}/);
    return m && m[0];
  });
  assert.ok(secret, 'the secret is on the page');
  assert.equal(await sideways(page), 0, 'the secret page fits at 390 px');
  await page.goto(`${server.url}/admin/applications`);
  const detail = await page.getAttribute('#applications a[href^="/admin/applications/"]', 'href');
  assert.ok(detail, 'the list links to the application');
  await page.goto(server.url + detail);
  assert.ok(!(await page.textContent('body')).includes(secret), 'not shown again');
  for (const width of [390, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    for (const p of ['/admin/applications', detail]) {
      await page.goto(server.url + p);
      assert.equal(await sideways(page), 0, `${p} at ${width} px`);
    }
  }
  await page.close();
});
