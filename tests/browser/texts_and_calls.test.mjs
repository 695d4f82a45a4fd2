// Texts and calls through real gateways, in Chromium (issue 13). Sesame sends texts through a
// real Kannel (bearerbox + smsbox, with fakesmsc as the phone) and places calls through a real
// baresip user agent to a second baresip that plays the phone: it answers by itself, and this
// test presses keys on it through its ctrl_tcp interface (RFC 4733 telephone events over RTP).
//
// dana adds her mobile number (the code is read from what fakesmsc received), signs in with
// password + text code, switches to a call with "Use a different verification option" and
// presses #, then presses 0# on the next call, which blocks calls and shows in the log.
// Every page on the way is checked at 390 px for sideways scrolling, and screenshots go to
// /tmp/screens/ (set SESAME_SCREENS to change it).
//
// Needs: built binaries, /usr/bin/chromium, and Kannel, baresip, espeak-ng and sox (the
// scripts in scripts/telephony install them with apt-get when missing; scripts/test.sh does).
// Run: cd tests/browser && npm ci && node --test texts_and_calls.test.mjs
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, SESAME_BIN, delay, run, startSesame } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCRIPTS = path.resolve(here, '../../scripts/telephony');
const PASSWORD = 'Correct-Horse-Battery-5';
const NUMBER = '+31612345678';
const TIMEOUT = 30_000;
const SCREENS = process.env.SESAME_SCREENS || '/tmp/screens';

// Starts a gateway with its script in `workdir` and returns what its ports.env says.
function startGateway(script, workdir, args = []) {
  const r = spawnSync('bash', [path.join(SCRIPTS, script), 'start', ...args], {
    encoding: 'utf8',
    timeout: 600_000,
    env: { ...process.env, KANNEL_WORKDIR: workdir, BARESIP_WORKDIR: workdir },
  });
  if (r.status !== 0) throw new Error(`${script} start failed:\n${r.stdout}\n${r.stderr}`);
  const env = {};
  for (const line of readFileSync(path.join(workdir, 'ports.env'), 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
  }
  return env;
}

function stopGateway(script, workdir) {
  spawnSync('bash', [path.join(SCRIPTS, script), 'stop'], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, KANNEL_WORKDIR: workdir, BARESIP_WORKDIR: workdir },
  });
}

// The phone's baresip, driven over ctrl_tcp (netstrings of JSON: `<len>:<json>,`).
class Phone {
  constructor(address) {
    const [host, port] = address.split(':');
    this.events = [];
    this.waiters = [];
    this.buffer = Buffer.alloc(0);
    this.socket = net.connect(Number(port), host);
    this.socket.on('data', (d) => this.received(d));
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
  }

  received(data) {
    this.buffer = Buffer.concat([this.buffer, data]);
    for (;;) {
      const colon = this.buffer.indexOf(':');
      if (colon < 0) return;
      const len = Number(this.buffer.subarray(0, colon).toString());
      if (this.buffer.length < colon + 1 + len + 1) return;
      const json = JSON.parse(this.buffer.subarray(colon + 1, colon + 1 + len).toString());
      this.buffer = this.buffer.subarray(colon + 1 + len + 1);
      if (json.event) {
        this.events.push(json);
        this.waiters = this.waiters.filter((w) => !w(json));
      }
    }
  }

  // The next event of `type` after `from` (an index into the events seen).
  waitFor(type, from, ms = TIMEOUT) {
    const seen = this.events.slice(from).find((e) => e.type === type);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the phone saw no ${type} in ${ms} ms`)), ms);
      this.waiters.push((e) => {
        if (e.type !== type) return false;
        clearTimeout(timer);
        resolve(e);
        return true;
      });
    });
  }

  send(command, params) {
    const json = JSON.stringify({ command, params, token: command });
    this.socket.write(`${Buffer.byteLength(json)}:${json},`);
  }

  // Waits for the next call to be answered (the phone answers by itself), lets the prompt
  // start, and presses `keys`.
  async answerAndPress(keys, from) {
    await this.waitFor('CALL_ESTABLISHED', from);
    await delay(1000);
    this.send('sndcode', keys);
  }

  close() {
    this.socket.destroy();
  }
}

describe('texts through Kannel and calls through baresip, in Chromium', { timeout: 600_000 }, () => {
  let tmp;
  let dataDir;
  let kannelDir;
  let baresipDir;
  let kannel;
  let sip;
  let phone;
  let server;
  let browser;
  let context;
  let page;

  const sesame = (...args) => run(SESAME_BIN, ['--data-dir', dataDir, ...args]);

  // The codes fakesmsc received for NUMBER, oldest first.
  function codes() {
    const log = readFileSync(kannel.PHONE_LOG, 'utf8');
    return [...log.matchAll(/Got message \d+: <\S+ (\S+) text (\d{6}) is your Sesame verification code\.>/g)]
      .filter((m) => m[1] === NUMBER)
      .map((m) => m[2]);
  }

  async function nextCode(before) {
    const deadline = Date.now() + TIMEOUT;
    while (Date.now() < deadline) {
      const all = codes();
      if (all.length > before) return all[all.length - 1];
      await delay(100);
    }
    throw new Error('no text reached fakesmsc');
  }

  async function clickAndLoad(locator) {
    await Promise.all([page.waitForEvent('load', { timeout: TIMEOUT }), locator.click()]);
  }

  // Screenshots at both widths, and no sideways scrolling at 390 px.
  async function look(name) {
    for (const width of [390, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scroll <= width, `${name} scrolls sideways at ${width} px (${scroll} px wide)`);
      await page.screenshot({ path: path.join(SCREENS, `${name}-${width}.png`), fullPage: true });
    }
  }

  async function passwordStep() {
    await page.goto(`${server.url}/login`);
    await page.getByLabel('Username').fill('dana');
    await clickAndLoad(page.getByRole('button', { name: 'Next' }));
    await page.getByLabel('Password').fill(PASSWORD);
    await clickAndLoad(page.getByRole('button', { name: 'Sign in' }));
  }

  async function signOut() {
    await page.goto(`${server.url}/account`);
    await clickAndLoad(page.getByRole('button', { name: 'Sign out' }));
  }

  before(async () => {
    mkdirSync(SCREENS, { recursive: true });
    tmp = mkdtempSync(path.join(os.tmpdir(), 'sesame-texts-calls-'));
    dataDir = path.join(tmp, 'data');
    kannelDir = path.join(tmp, 'kannel');
    baresipDir = path.join(tmp, 'baresip');
    kannel = startGateway('kannel.sh', kannelDir);
    sip = startGateway('baresip.sh', baresipDir, ['1']);
    phone = new Phone(sip.PHONE_CTRL);
    await phone.ready;
    sesame('init');
    run(SESAME_BIN, ['--data-dir', dataDir, 'user', 'add', 'dana', '--password-stdin'], { input: `${PASSWORD}\n` });
    const config = (port) => {
      const file = path.join(tmp, 'sesame.toml');
      const agents = sip.SERVER_CTRL.split(',').map((a) => `"${a}"`).join(', ');
      writeFileSync(
        file,
        `[server.telephony]
call_key_timeout_secs = 10

[server.telephony.sms]
gateway = "kannel"
sendsms_url = "${kannel.SENDSMS_URL}"
username = "${kannel.SMS_USER}"
password = "${kannel.SMS_PASS}"
dlr_url = "http://127.0.0.1:${port}/telephony/kannel/dlr"

[server.telephony.voice]
gateway = "baresip"
agents = [${agents}]
dial = "${sip.PHONE_URI}"
prompt_dir = "${path.join(tmp, 'prompts')}"
`,
      );
      return file;
    };
    server = await startSesame(dataDir, { config });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
    server?.child.kill('SIGTERM');
    phone?.close();
    if (baresipDir) stopGateway('baresip.sh', baresipDir);
    if (kannelDir) stopGateway('kannel.sh', kannelDir);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('a mobile number is added with the code Kannel delivered to the phone', async () => {
    await passwordStep();
    assert.match(page.url(), /\/account$/);
    await page.goto(`${server.url}/security-info`);
    await clickAndLoad(page.getByRole('link', { name: 'Add method' }));
    await clickAndLoad(page.getByRole('link', { name: 'Phone (text message or call)' }));
    await look('phone-add');
    await page.getByLabel('Mobile phone number').fill('+31 6 1234 5678');
    const before = codes().length;
    await clickAndLoad(page.getByRole('button', { name: 'Send code' }));
    assert.equal(await page.locator('#phone-masked').textContent(), '+31 6 ••••••78');
    await look('phone-verify');
    await page.getByLabel('Code').fill(await nextCode(before));
    await clickAndLoad(page.getByRole('button', { name: 'Verify' }));
    await page.getByText('Phone number saved').waitFor({ timeout: TIMEOUT });
    await look('security-info-phone');
    const body = await page.content();
    assert.ok(body.includes('Phone (call) — +31 6 ••••••78'), 'the call method is listed');
    assert.ok(!body.includes(NUMBER), 'the number is never shown in full');
    await signOut();
  });

  test('password + text code read from fakesmsc', async () => {
    const before = codes().length;
    await passwordStep();
    await page.getByText('We texted a 6-digit code').waitFor({ timeout: TIMEOUT });
    await look('text-code');
    await page.getByLabel('Code').fill(await nextCode(before));
    await clickAndLoad(page.getByRole('button', { name: 'Verify' }));
    assert.match(page.url(), /\/account$/);
    await signOut();
  });

  test('switching to a call and pressing # on the phone signs in', async () => {
    await passwordStep();
    await clickAndLoad(page.getByRole('link', { name: 'Use a different verification option' }));
    await look('methods');
    const options = await page.locator('ul.options button').allTextContents();
    assert.deepEqual(options, ['Text ••78', 'Call ••78']);
    const from = phone.events.length;
    await clickAndLoad(page.getByRole('button', { name: 'Call ••78' }));
    await page.getByRole('heading', { name: 'Answer the call' }).waitFor({ timeout: TIMEOUT });
    await look('call-waiting');
    await phone.answerAndPress('#', from);
    // The page goes on by itself when # arrives.
    await page.waitForURL(/\/account$/, { timeout: TIMEOUT });
    await signOut();
  });

  test('0# on the call reports fraud, blocks calls and shows in the log', async () => {
    await passwordStep();
    await clickAndLoad(page.getByRole('link', { name: 'Use a different verification option' }));
    const from = phone.events.length;
    await clickAndLoad(page.getByRole('button', { name: 'Call ••78' }));
    await phone.answerAndPress('0#', from);
    await page.getByText('You reported this sign-in as not you').waitFor({ timeout: TIMEOUT });
    await look('call-reported');
    const log = JSON.parse(sesame('--json', 'log', '--user', 'dana').stdout);
    assert.ok(
      log.some((l) => l.event === 'fraud_reported' && l.method === 'voice'),
      JSON.stringify(log.slice(0, 5)),
    );
    // The next call is not placed; a text still works.
    await passwordStep();
    await clickAndLoad(page.getByRole('link', { name: 'Use a different verification option' }));
    const calls = phone.events.filter((e) => e.type === 'CALL_ESTABLISHED').length;
    await clickAndLoad(page.getByRole('button', { name: 'Call ••78' }));
    await page.getByText('Calls to your phone are blocked').waitFor({ timeout: TIMEOUT });
    await delay(500);
    assert.equal(phone.events.filter((e) => e.type === 'CALL_ESTABLISHED').length, calls);
  });
});
