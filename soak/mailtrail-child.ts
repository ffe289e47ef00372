/**
 * mailtrail as a child process (`node dist/cli.js serve --config FILE`), as an operator runs it, so
 * the soak can stop it with SIGTERM and kill it with SIGKILL like a real supervisor would.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import YAML from 'yaml';

const run = promisify(execFile);
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(ROOT, 'dist', 'cli.js');

/** Newest modification time of the .ts files under `dir`. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when cli.js is missing or older than a source file (a test run without `npm test`). */
export async function ensureBuilt(): Promise<void> {
  const built = existsSync(CLI) ? statSync(CLI).mtimeMs : 0;
  if (built >= newestSource(join(ROOT, 'src'))) return;
  await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json')], { cwd: ROOT });
}

export interface MailtrailChild {
  readonly pid: number;
  /** Which start this is (1, 2, ...): connections are attributed to the instance that greeted them. */
  readonly generation: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The start-up banner and anything else printed on stdout. */
  stdout(): string;
  /** The operational log (JSON lines). */
  stderr(): string;
  /** SIGTERM, then the exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL, then the exit. */
  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Problems `check-config` reports for `file`; empty when it is valid. */
async function checkConfig(file: string): Promise<string[]> {
  try {
    await run(process.execPath, [CLI, 'check-config', '--config', file]);
    return [];
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '');
    return stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('mailtrail: invalid configuration'));
  }
}

function unset(obj: Record<string, unknown>, path: string): void {
  const keys = path.split('.');
  const last = keys.pop()!;
  let node: unknown = obj;
  for (const k of keys) node = (node as Record<string, unknown> | undefined)?.[k];
  if (node && typeof node === 'object') delete (node as Record<string, unknown>)[last];
}

/**
 * Writes `config` as YAML, leaving out the `optional` key paths this build does not know (features
 * still being built elsewhere), and returns the optional paths that were kept.
 */
export async function writeConfig(file: string, config: Record<string, unknown>, optional: string[]): Promise<string[]> {
  const kept = new Set(optional);
  for (let round = 0; round <= optional.length; round++) {
    await writeFile(file, YAML.stringify(config));
    // "upstreams[0].breaker: unknown key" names the optional path "upstreams.0.breaker".
    const problems = (await checkConfig(file)).map((l) => l.replace(/\[(\d+)\]/g, '.$1'));
    if (problems.length === 0) return [...kept];
    const drop = [...kept].filter((p) => problems.some((l) => l.startsWith(`${p}:`) || l.startsWith(`${p}.`)));
    if (drop.length === 0) throw new Error(`generated config is invalid:\n${problems.join('\n')}`);
    for (const p of drop) {
      unset(config, p);
      kept.delete(p);
    }
  }
  throw new Error('generated config is still invalid');
}

/** Starts mailtrail and resolves once it prints its banner. */
export function startMailtrail(configFile: string, generation: number, timeoutMs = 15_000): Promise<MailtrailChild> {
  const child: ChildProcess = spawn(process.execPath, [CLI, 'serve', '--config', configFile], {
    cwd: dirname(configFile),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (stderr.length > 2_000_000) stderr = stderr.slice(-200_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once('exit', (code, signal) => resolveExit({ code, signal }));
  });
  const ended = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const handle: MailtrailChild = {
    pid: child.pid!,
    generation,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    async stop(graceMs = 30_000) {
      if (!ended()) child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const result = await exited;
      clearTimeout(force);
      return result;
    },
    async kill() {
      if (!ended()) child.kill('SIGKILL');
      return exited;
    },
  };
  return new Promise((resolveStart, reject) => {
    const deadline = Date.now() + timeoutMs;
    const poll = (): void => {
      if (stdout.includes('mailtrail is running')) return resolveStart(handle);
      if (ended() || Date.now() > deadline) {
        child.kill('SIGKILL');
        return reject(new Error(`mailtrail did not start\nstdout:\n${stdout}\nstderr:\n${stderr}`));
      }
      setTimeout(poll, 20);
    };
    poll();
  });
}

/**
 * Runs `mailtrail verify FILE` when this build has the command. Resolves with null when it does not.
 */
export async function verifyTrail(file: string): Promise<{ ok: boolean; output: string } | null> {
  try {
    const help = await run(process.execPath, [CLI, 'verify', '--help'], { timeout: 10_000 });
    if (/unknown command/i.test(help.stdout + help.stderr)) return null;
  } catch {
    return null;
  }
  try {
    const r = await run(process.execPath, [CLI, 'verify', file], { timeout: 60_000 });
    return { ok: true, output: (r.stdout + r.stderr).trim() };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() };
  }
}
