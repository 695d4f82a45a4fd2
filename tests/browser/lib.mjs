// Helpers shared by the browser tests: binaries, processes, ports, Chromium flags.
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SESAME_BIN = path.resolve(here, process.env.SESAME_BIN || '../../target/debug/sesame');
export const AUTHENTICATOR_BIN = path.resolve(
  here,
  process.env.SESAME_AUTHENTICATOR_BIN || '../../target/debug/sesame-authenticator',
);
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export const delay = (ms) => new Promise((r) => setTimeout(r, ms));

// The environment for sesame without settings that would point it somewhere else than the
// temporary data directory.
export function serverEnv() {
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith('SESAME_')) delete env[k];
  }
  return env;
}

export function run(cmd, args, { input, allowFail = false } = {}) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 60_000, env: serverEnv() });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0 && !allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  }
  return r;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Starts `sesame serve` on a free port and waits until /healthz answers. `config`, if given,
// is called with the port and returns the path of a configuration file to use (settings that
// name the server's own address, like a gateway's callback URL).
export async function startSesame(dataDir, { config } = {}) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    let output = '';
    const args = ['--data-dir', dataDir];
    if (config) args.push('--config', config(port));
    const child = spawn(SESAME_BIN, [...args, 'serve', '--listen', `127.0.0.1:${port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: serverEnv(),
    });
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    let exited = false;
    child.on('exit', () => (exited = true));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    while (!exited && Date.now() < deadline) {
      try {
        if ((await fetch(`${url}/healthz`)).ok) return { child, url, output: () => output };
      } catch {
        // not listening yet
      }
      await delay(100);
    }
    if (!exited) child.kill('SIGKILL');
    if (attempt >= 3 || !exited) throw new Error(`sesame serve did not become healthy on ${url}:\n${output}`);
  }
}
