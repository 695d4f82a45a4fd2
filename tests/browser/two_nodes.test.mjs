// Two Sesame nodes on one PostgreSQL database, behind the nginx example
// (packaging/nginx-two-nodes.conf), as the README's "Several nodes on PostgreSQL" tells a new
// user to set them up: 1. PostgreSQL; 2. two nodes with the same database URL and master key
// behind the nginx example; 3. a sign-in through nginx (requests spread over both nodes) while
// the phone (the real `sesame-authenticator`) is connected to node B only.
//
// The nginx example is used as it is, changed only so it runs on loopback as a non-privileged
// test: its server name, node addresses, certificate paths (a self-signed certificate made
// here), listen ports (free high ports on 127.0.0.1 / ::1) and ACME root. Our own main
// nginx.conf around it adds the pid/log/temp paths, an access log naming the node that served
// each request, and `proxy_bind 127.0.0.2` so the nodes see the proxy at another address than
// the browser's (127.0.0.1): the client address the sign-in log shows can only be 127.0.0.1
// if the node believed nginx's X-Forwarded-For.
//
// Needs SESAME_TEST_DATABASE_URL (a PostgreSQL server; the test makes a database of its own
// there and drops it at the end), /usr/sbin/nginx (NGINX_BIN), psql, openssl and tmux. Without
// the database URL or nginx the test is skipped, unless SESAME_REQUIRE_POSTGRES is set.
// A screenshot of the signed-in page goes to /tmp/screens/two_nodes.png (SESAME_SCREENS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { AUTHENTICATOR_BIN, CHROMIUM, CHROMIUM_ARGS, SESAME_BIN, delay, freePort, run, serverEnv } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const NGINX_EXAMPLE = path.resolve(here, '../../packaging/nginx-two-nodes.conf');
const NGINX = process.env.NGINX_BIN || '/usr/sbin/nginx';
const BASE_DATABASE_URL = process.env.SESAME_TEST_DATABASE_URL;
const REQUIRE = Boolean(process.env.SESAME_REQUIRE_POSTGRES);
const SCREENS = process.env.SESAME_SCREENS || '/tmp/screens';
const USERNAME = 'alice';
const PASSWORD = 'Correct-Horse-Battery-7';
const DEVICE = 'Phone on node B';
const TIMEOUT = 20_000;
// The address nginx connects to the nodes from (any 127/8 address is loopback on Linux).
const PROXY_ADDRESS = '127.0.0.2';

function whyNot() {
  if (!BASE_DATABASE_URL) return 'SESAME_TEST_DATABASE_URL is not set (a PostgreSQL server for the two nodes)';
  if (!existsSync(NGINX)) return `${NGINX} is missing (nginx runs the example in packaging/nginx-two-nodes.conf)`;
  return null;
}

// Resolves when the process has exited; SIGKILL if it did not within `ms` of `signal`.
function stop(child, signal = 'SIGTERM', ms = 10_000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

function ipv6Loopback() {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(0, '::1', () => srv.close(() => resolve(true)));
  });
}

// A GET with Node's own client: `ca` (our self-signed certificate) for https, checked for real.
function get(url, { ca } = {}) {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { ca, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error(`GET ${url} timed out`)));
  });
}

// The example with only what a loopback, non-privileged test must change. Every change must
// match exactly as often as expected: if the example changes, this says so instead of testing
// something else.
function transformExample(text, { nodeA, nodeB, httpPort, httpsPort, cert, key, acme, ipv6 }) {
  const changes = [
    [/^(\s*)server 10\.0\.0\.11:8080 /m, `$1server ${nodeA} `],
    [/^(\s*)server 10\.0\.0\.12:8080 /m, `$1server ${nodeB} `],
    [/^(\s*)server_name login\.example\.com;/gm, '$1server_name 127.0.0.1;', 2],
    [/^(\s*)listen 80;/m, `$1listen 127.0.0.1:${httpPort};`],
    [/^(\s*)listen \[::\]:80;/m, ipv6 ? `$1listen [::1]:${httpPort};` : '$1# (no IPv6 loopback here)'],
    [/^(\s*)listen 443 ssl http2;/m, `$1listen 127.0.0.1:${httpsPort} ssl http2;`],
    [/^(\s*)listen \[::\]:443 ssl http2;/m, ipv6 ? `$1listen [::1]:${httpsPort} ssl http2;` : '$1# (no IPv6 loopback here)'],
    [/^(\s*)ssl_certificate(\s+)\/etc\/letsencrypt\/live\/login\.example\.com\/fullchain\.pem;/m, `$1ssl_certificate$2${cert};`],
    [/^(\s*)ssl_certificate_key(\s+)\/etc\/letsencrypt\/live\/login\.example\.com\/privkey\.pem;/m, `$1ssl_certificate_key$2${key};`],
    [/^(\s*)root \/var\/www\/letsencrypt;/m, `$1root ${acme};`],
  ];
  for (const [re, replacement, count = 1] of changes) {
    const found = text.match(new RegExp(re.source, 'gm'))?.length ?? 0;
    assert.equal(found, count, `packaging/nginx-two-nodes.conf changed: expected ${count} line(s) matching ${re}, found ${found}`);
    text = text.replace(re, replacement);
  }
  const directives = text.split('\n').filter((l) => !l.trim().startsWith('#'));
  for (const leftover of ['10.0.0.', 'login.example.com', '/etc/', '/var/']) {
    assert.ok(!directives.some((l) => l.includes(leftover)), `nginx example: "${leftover}" left in a directive`);
  }
  return text;
}

// A value from a node's /metrics (allowed from loopback by default), read on its own address.
async function metric(node, series) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

test('sign-in through nginx over two nodes on one PostgreSQL, the phone on the other node', { timeout: 120_000 }, async (t) => {
  const why = whyNot();
  if (why) {
    if (REQUIRE) assert.fail(`${why}, and SESAME_REQUIRE_POSTGRES is set`);
    t.skip(why);
    return;
  }
  const started = Date.now();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sesame-two-nodes-'));
  const dbName = `sesame_two_nodes_${process.pid}_${Date.now()}`;
  const dbUrl = new URL(BASE_DATABASE_URL);
  dbUrl.pathname = `/${dbName}`;
  const DATABASE_URL = dbUrl.toString();
  const keyFile = path.join(tmp, 'master.key');
  const vault = path.join(tmp, 'vault');
  const tmuxSocket = `sesame-two-nodes-${process.pid}`;
  const tmux = (...args) => spawnSync('tmux', ['-L', tmuxSocket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  const nodes = [];
  let nginx;
  let browser;
  let dbMade = false;

  let passed = false;
  let errorLog;

  t.after(async () => {
    if (!passed) {
      // What the nodes and nginx said, for the failure.
      for (const n of nodes) console.error(`--- node ${n.name} (${n.url}):\n${n.output}`);
      if (errorLog && existsSync(errorLog)) console.error(`--- nginx error log:\n${readFileSync(errorLog, 'utf8')}`);
    }
    await browser?.close().catch(() => {});
    tmux('kill-server');
    await stop(nginx);
    await Promise.all(nodes.map((n) => stop(n.child)));
    if (dbMade) {
      const r = run('psql', [BASE_DATABASE_URL, '-v', 'ON_ERROR_STOP=1', '-qc', `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`], { allowFail: true });
      if (r.status !== 0) console.error(`could not drop the test database ${dbName}: ${r.stderr}`);
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  // An administration command against the shared database (options object last, if any).
  const sesame = (...args) => {
    const opts = typeof args.at(-1) === 'object' ? args.pop() : {};
    return run(SESAME_BIN, ['--database-url', DATABASE_URL, '--master-key-file', keyFile, ...args], opts);
  };
  const app = (...args) => run(AUTHENTICATOR_BIN, ['--vault', vault, ...args]);

  // 1. PostgreSQL: a database of this test's own on the server we were given.
  run('psql', [BASE_DATABASE_URL, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${dbName}`]);
  dbMade = true;

  // 2. One master key, the schema, a user: the README's steps.
  sesame('master-key', 'generate', keyFile);
  sesame('migrate');
  sesame('user', 'add', USERNAME, '--password-stdin', { input: `${PASSWORD}\n` });

  // A self-signed certificate for 127.0.0.1, in place of the example's Let's Encrypt one.
  const certFile = path.join(tmp, 'fullchain.pem');
  const certKeyFile = path.join(tmp, 'privkey.pem');
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', certKeyFile, '-out', certFile]);
  const ca = readFileSync(certFile);

  // The public address (nginx, https) is in each node's configuration, so its port comes first.
  const httpsPort = await freePort();
  const httpPort = await freePort();
  const PUBLIC = `https://127.0.0.1:${httpsPort}`;
  const nodeConfig = path.join(tmp, 'sesame.toml');
  writeFileSync(nodeConfig, [
    '[server]',
    `public_base_url = "${PUBLIC}"`,
    `trusted_proxies = ["${PROXY_ADDRESS}"]`,
    '',
  ].join('\n'));

  // Two nodes: the same database URL, the same master key file, each its own listen address.
  // (`--listen 127.0.0.1:0` cannot be used: with public_base_url set, the first line prints the
  // public address, not the one the node listens on; so a free port, tried again if taken.)
  async function startNode(name) {
    for (let attempt = 1; ; attempt++) {
      let port = await freePort();
      while (port === httpsPort || port === httpPort) port = await freePort();
      const dataDir = path.join(tmp, `data-${name}`);
      const child = spawn(SESAME_BIN, ['--data-dir', dataDir, '--database-url', DATABASE_URL, '--master-key-file', keyFile,
        '--config', nodeConfig, 'serve', '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'], env: serverEnv() });
      const node = { name, child, port, addr: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}`, output: '' };
      child.stdout.on('data', (d) => (node.output += d));
      child.stderr.on('data', (d) => (node.output += d));
      nodes.push(node);
      const deadline = Date.now() + 30_000;
      while (child.exitCode === null && Date.now() < deadline) {
        try {
          if ((await fetch(`${node.url}/readyz`)).ok) return node;
        } catch {
          // not listening yet
        }
        await delay(100);
      }
      await stop(child);
      nodes.splice(nodes.indexOf(node), 1);
      if (attempt >= 3 || !/cannot listen/.test(node.output)) throw new Error(`node ${name} did not become ready on ${node.url}:\n${node.output}`);
    }
  }
  const [nodeA, nodeB] = await Promise.all([startNode('A'), startNode('B')]);

  // nginx: the example, transformed, inside a main nginx.conf of our own.
  const nginxDir = path.join(tmp, 'nginx');
  const acme = path.join(nginxDir, 'acme');
  mkdirSync(path.join(nginxDir, 'temp'), { recursive: true });
  mkdirSync(acme, { recursive: true });
  const site = transformExample(readFileSync(NGINX_EXAMPLE, 'utf8'), {
    nodeA: nodeA.addr, nodeB: nodeB.addr, httpPort, httpsPort, cert: certFile, key: certKeyFile, acme, ipv6: await ipv6Loopback(),
  });
  const siteFile = path.join(nginxDir, 'sesame-two-nodes.conf');
  writeFileSync(siteFile, site);
  const accessLog = path.join(nginxDir, 'access.log');
  errorLog = path.join(nginxDir, 'error.log');
  const temp = (name) => `${name}_temp_path ${path.join(nginxDir, 'temp', name)};`;
  const mainConf = path.join(nginxDir, 'nginx.conf');
  writeFileSync(mainConf, `# The test's own main configuration around packaging/nginx-two-nodes.conf.
daemon off;
worker_processes 1;
pid ${path.join(nginxDir, 'nginx.pid')};
error_log ${errorLog} notice;
${process.getuid?.() === 0 ? 'user root;  # workers as the current user (root here), who owns the temp directory\n' : ''}
events {
    worker_connections 256;
}

http {
    # Which node served each request.
    log_format upstreams '$upstream_addr "$request" $status';
    access_log ${accessLog} upstreams;
    ${temp('client_body')}
    ${temp('proxy')}
    ${temp('fastcgi')}
    ${temp('uwsgi')}
    ${temp('scgi')}
    # The nodes see nginx at ${PROXY_ADDRESS}, the browser is at 127.0.0.1.
    proxy_bind ${PROXY_ADDRESS};

    include ${siteFile};
}
`);
  const nginxArgs = ['-p', nginxDir, '-c', mainConf, '-e', errorLog];
  const check = spawnSync(NGINX, ['-t', ...nginxArgs], { encoding: 'utf8' });
  assert.equal(check.status, 0, `nginx -t refused the transformed example:\n${check.stderr}\n--- ${siteFile}:\n${site}`);

  let nginxOutput = '';
  nginx = spawn(NGINX, nginxArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  nginx.stdout.on('data', (d) => (nginxOutput += d));
  nginx.stderr.on('data', (d) => (nginxOutput += d));
  {
    const deadline = Date.now() + 15_000;
    let last;
    for (;;) {
      assert.equal(nginx.exitCode, null, `nginx exited: ${nginxOutput}\n${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : ''}`);
      try {
        // Through nginx, with the certificate checked against 127.0.0.1.
        last = await get(`${PUBLIC}/healthz`, { ca });
        if (last.status === 200) break;
      } catch (e) {
        last = e;
      }
      assert.ok(Date.now() < deadline, `nginx did not answer ${PUBLIC}/healthz: ${last?.status ?? last}`);
      await delay(100);
    }
  }
  // Which node served each request through nginx, from the access log.
  const accessLines = () => readFileSync(accessLog, 'utf8').split('\n').filter(Boolean);
  const nodeOf = (line) => {
    const upstreams = line.split(' ')[0].split(',').map((a) => a.trim());
    return [nodeA, nodeB].filter((n) => upstreams.includes(n.addr)).map((n) => n.name).join('+') || '-';
  };
  const count = (ls, name) => ls.filter((l) => nodeOf(l).includes(name)).length;

  // The example's plain HTTP server only sends browsers to HTTPS, and /metrics is not public.
  const plain = await get(`http://127.0.0.1:${httpPort}/login`);
  assert.equal(plain.status, 301);
  assert.match(plain.headers.location, /^https:\/\/127\.0\.0\.1(:\d+)?\/login$/);
  assert.equal((await get(`${PUBLIC}/metrics`, { ca })).status, 404);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, '--ignore-certificate-errors'] });
  async function newPage() {
    const context = await browser.newContext();
    context.setDefaultTimeout(TIMEOUT);
    return context.newPage();
  }
  async function passwordStep(page, beforeSubmit) {
    await page.goto(`${PUBLIC}/login`);
    await page.getByLabel('Username').fill(USERNAME);
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByLabel('Password').fill(PASSWORD);
    await beforeSubmit?.();
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  // The phone: added with the activation link from My security info (made from the public
  // address), its server rewritten to node B's own address.
  {
    const page = await newPage();
    await passwordStep(page);
    await page.getByRole('link', { name: 'My security info' }).click();
    await page.getByRole('link', { name: 'Add method' }).click();
    await page.getByRole('link', { name: /Sesame Authenticator app/ }).click();
    const link = (await page.locator('#activation-link').innerText()).trim();
    const params = new URLSearchParams(link.replace(/^sesame:\/\/activate\?/, ''));
    assert.equal(params.get('server'), PUBLIC, `the activation link names the public address: ${link}`);
    params.set('server', nodeB.url);
    await page.locator('#activation-status', { hasText: 'Waiting for the app' }).waitFor();
    app('add', `sesame://activate?${params}`, '--device-name', DEVICE);
    // The page (through nginx, on either node) hears of the activation made on node B.
    await page.locator('#activation-status', { hasText: `${DEVICE} was added` }).waitFor();
    await page.context().close();
  }

  // The phone holds its event stream on node B: the full-screen app, in a terminal.
  const screen = () => tmux('capture-pane', '-p', '-t', 'phone').stdout || '';
  const waitScreen = async (text) => {
    for (let i = 0; i < 150; i++) {
      if (screen().includes(text)) return;
      await delay(100);
    }
    throw new Error(`"${text}" never appeared in the app:\n${screen()}`);
  };
  const watch = tmux('new-session', '-d', '-s', 'phone', '-x', '80', '-y', '24', `${AUTHENTICATOR_BIN} --vault ${vault} watch`);
  assert.equal(watch.status, 0, `tmux is needed: ${watch.stderr}`);
  await waitScreen('No sign-in requests');
  for (let i = 0; (await metric(nodeB, 'sesame_device_event_streams')) !== 1; i++) {
    assert.ok(i < 50, 'the app holds an event stream on node B');
    await delay(100);
  }
  assert.equal(await metric(nodeA, 'sesame_device_event_streams'), 0, 'no event stream on node A');

  // 3. The sign-in, through nginx: its requests go to both nodes, the phone is on B.
  // nginx's round robin takes turns: once the password page and its favicon are in, one
  // extra request through nginx if needed makes the password POST, which makes the request to
  // the phone, go to node A. The phone's event stream is on B: only the database (LISTEN/NOTIFY)
  // can carry the request there, and the phone's answer back to the page.
  const logBefore = accessLines().length;
  const page = await newPage();
  await passwordStep(page, async () => {
    let seen = -1;
    for (let i = 0; ; i++) {
      const n = accessLines().length;
      if (n === seen) break;
      assert.ok(i < 50, 'the access log settles');
      seen = n;
      await delay(300);
    }
    if (nodeOf(accessLines().at(-1)) === 'A') await get(`${PUBLIC}/healthz`, { ca });
  });
  await page.getByRole('heading', { name: 'Approve sign-in request' }).waitFor();
  const number = (await page.locator('#push-number').innerText()).trim();
  assert.match(number, /^\d{2}$/);
  await waitScreen('Approve sign-in?');
  tmux('send-keys', '-t', 'phone', 'Enter');
  await waitScreen('Enter number');
  tmux('send-keys', '-t', 'phone', number, 'Enter');
  await waitScreen('[a] Approve');
  tmux('send-keys', '-t', 'phone', 'a');
  // No click: the waiting page's long poll (on whichever node) hears the answer given on B.
  await page.waitForURL(`${PUBLIC}/account`);
  await page.getByRole('heading', { name: 'My account' }).waitFor();
  await waitScreen('Approved');
  mkdirSync(SCREENS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENS, 'two_nodes.png'), fullPage: true });

  // The cookies were set over https, and are Secure (__Host-).
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === '__Host-sesame-session');
  assert.ok(session, `a session cookie: ${cookies.map((c) => c.name).join(', ')}`);
  for (const c of cookies) assert.equal(c.secure, true, `cookie ${c.name} is Secure`);

  // The sign-in log has the browser's address (127.0.0.1), not nginx's (127.0.0.2): the
  // X-Forwarded-For from the trusted proxy was believed.
  const log = JSON.parse(sesame('--json', 'log', '--user', USERNAME).stdout);
  const signedIn = log.find((e) => e.event === 'sign_in' && e.method === 'push' && e.result === 'success');
  assert.ok(signedIn, `the phone-approved sign-in is in the log: ${JSON.stringify(log)}`);
  assert.equal(signedIn.ip, '127.0.0.1', `the browser's address, not nginx's: ${JSON.stringify(signedIn)}`);
  for (const e of log) assert.notEqual(e.ip, PROXY_ADDRESS, `logged with the proxy's address: ${JSON.stringify(e)}`);

  // Requests reached both nodes, the sign-in's own too (node A has no phone connected).
  const lines = accessLines();
  const signIn = lines.slice(logBefore);
  const served = `${lines.length} requests through nginx: A ${count(lines, 'A')}, B ${count(lines, 'B')}; `
    + `the sign-in: ${signIn.map((l) => `${nodeOf(l)} ${l.slice(l.indexOf(' ') + 1)}`).join(', ')}`;
  t.diagnostic(served);
  assert.ok(count(lines, 'A') > 0 && count(lines, 'B') > 0, `both nodes served requests: ${served}`);
  assert.ok(count(signIn, 'A') > 0 && count(signIn, 'B') > 0, `both nodes served the sign-in: ${served}`);
  const made = signIn.filter((l) => l.includes('"POST /login/password '));
  assert.equal(made.length, 1, served);
  assert.equal(nodeOf(made[0]), 'A', `the request to the phone was made on node A: ${served}`);
  // Each node counts its own sign-ins; the phone-approved one once, on one of them.
  const push = 'sesame_sign_ins_total{method="push",result="success"}';
  const [pushA, pushB] = [await metric(nodeA, push), await metric(nodeB, push)];
  assert.equal(pushA + pushB, 1, `${push}: A ${pushA}, B ${pushB}`);

  const nginxLog = readFileSync(errorLog, 'utf8').split('\n');
  for (const l of nginxLog.filter((l) => /\[warn\]/.test(l))) t.diagnostic(`nginx: ${l}`);
  assert.deepEqual(nginxLog.filter((l) => /\[(error|crit|alert|emerg)\]/.test(l)), [], 'nginx logged no errors');
  t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s`);
  passed = true;
});
