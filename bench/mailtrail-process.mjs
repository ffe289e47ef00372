/**
 * Runs mailtrail as a child process, the way an operator does: a generated YAML config and
 * `node dist/cli.js serve --config FILE`.
 *
 * Optional features (the audit hash chain, the HTTP endpoint for metrics and health) are asked for in
 * the config; `check-config` says which keys this build does not know, and those are left out, so the
 * bench always runs the fullest configuration the build supports and reports which one it was.
 */
import { spawn, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';

export const ROOT = new URL('..', import.meta.url).pathname;
export const CLI = join(ROOT, 'dist', 'cli.js');

/** Deletes `path` ("a.b.c") from a nested object. */
function unset(obj, path) {
  const keys = path.split('.');
  const last = keys.pop();
  let node = obj;
  for (const k of keys) node = node?.[k];
  if (node && typeof node === 'object') delete node[last];
}

function checkConfig(file) {
  try {
    execFileSync(process.execPath, [CLI, 'check-config', '--config', file], { encoding: 'utf8', stdio: 'pipe' });
    return [];
  } catch (err) {
    return String(err.stderr ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  }
}

/**
 * Writes `config` to `file`, dropping the `optional` key paths this build rejects. Returns the
 * optional paths kept. Throws when the config is invalid for any other reason.
 */
export function writeConfig(file, config, optional) {
  const kept = new Set(optional);
  for (let round = 0; round <= optional.length; round++) {
    writeFileSync(file, YAML.stringify(config));
    // "upstreams[0].pool: unknown key" names the optional path "upstreams.0.pool".
    const problems = checkConfig(file)
      .filter((l) => !l.startsWith('mailtrail: invalid configuration'))
      .map((l) => l.replace(/\[(\d+)\]/g, '.$1'));
    if (problems.length === 0) return [...kept];
    const rejected = [...kept].filter((p) => problems.some((l) => l.startsWith(p + ':') || l.startsWith(p + '.') || l.startsWith(p + ' ')));
    const parents = [...kept].filter((p) => problems.some((l) => p.startsWith(l.split(':')[0] + '.')));
    const drop = [...new Set([...rejected, ...parents])];
    if (drop.length === 0) throw new Error(`generated config is invalid:\n${problems.join('\n')}`);
    for (const p of drop) {
      unset(config, p);
      kept.delete(p);
    }
  }
  throw new Error('generated config is still invalid after dropping optional keys');
}

/**
 * Starts `node dist/cli.js serve --config FILE` (or another build's cli.js) and resolves once it
 * prints its banner. stderr (the operational log) goes to `logFile`.
 */
export function startMailtrail({ configFile, logFile, nodeArgs = [], cwd = ROOT, timeoutMs = 15_000, cli = CLI }) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, cli, 'serve', '--config', configFile], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mailtrail did not start within ${timeoutMs} ms\n${out}\n${err}`));
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      if (out.includes('mailtrail is running')) {
        clearTimeout(timer);
        resolve({
          child,
          pid: child.pid,
          stdout: () => out,
          stop: (signal = 'SIGTERM') => stopChild(child, signal),
        });
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      err += d;
      if (err.length > 1_000_000) err = err.slice(-100_000);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (logFile) writeFileSync(logFile, err);
      if (!out.includes('mailtrail is running')) reject(new Error(`mailtrail exited (${code ?? signal})\n${out}\n${err}`));
    });
  });
}

/** Sends `signal` and resolves with the exit code once the child is gone (SIGKILL after 20 s). */
export function stopChild(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code) => {
      clearTimeout(force);
      resolve(code);
    });
    child.kill(signal);
  });
}

/** Does this build have the `verify` command? (`mailtrail verify --help` exits 0.) */
export function hasVerify() {
  try {
    const out = execFileSync(process.execPath, [CLI, 'verify', '--help'], { encoding: 'utf8', stdio: 'pipe', timeout: 10_000 });
    return !/unknown command/i.test(out);
  } catch {
    return false;
  }
}
