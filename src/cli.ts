#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import cluster from 'node:cluster';
import { App, StartError, type RunningInfo } from './app.js';
import { workersProblem } from './config/local-limits.js';
import { MAX_WORKERS } from './config/sections/workers.js';
import { Supervisor, WORKER_ENV } from './workers/supervisor.js';
import { runWorker } from './workers/worker.js';
import { workerConfig } from './workers/worker-config.js';
import { hashPassword } from './auth/password.js';
import { ConfigError } from './config/config-error.js';
import { configFile, loadConfig } from './config/load.js';
import type { Config } from './config/types.js';
import { createLogger } from './logger.js';
import { configWarnings } from './observe/startup-warnings.js';
import { announceStart } from './startup-output.js';
import { closest, explainUsage, parseCommandArgs, readCommandLine, shellWord, type CommandSpec, type OptionSpecs } from './tools/command-args.js';
import { keygenCommand } from './tools/keygen.js';
import { EXIT, UsageError } from './tools/tool-io.js';
import { processIo, runTrailCommand } from './tools/trail-commands.js';
import { verifyCommand } from './tools/verify.js';
import { terminalText } from './tools/terminal-text.js';

const USAGE = `mailtrail: SMTP relay proxy with an audit trail

Usage:
  mailtrail serve [--config FILE] [--workers N]
                                           run the relay (no config: the embedded default); --workers:
                                           N processes sharing the listeners
  mailtrail check-config [--config FILE]   validate a config; exit 1 listing every problem with its key path
  mailtrail hash-password                  read a password on stdin, print a passwordHash for the config
  mailtrail verify FILE... [--checkpoints FILE] [--public-key FILE]
                                           check the trail's hash chain; exit 1 naming the first bad record,
                                           3 for a record a failed write left outside the chain
  mailtrail keygen [--out PREFIX]          an Ed25519 key pair for signing checkpoints
  mailtrail tail [FILE...] [-f] [-n N] [--failures] [--outcome X] [--class X] [--from X] [--to X] [--upstream X] [--json]
                                           the last records, one line each; -f follows across rotation
  mailtrail report [FILE...] [--since 1h] [--until T] [--by KEY] [--top N] [--json]
                                           totals, success rate, error groups, latency, traffic, top domains
  mailtrail lookup KEY [FILE...] [--limit N] [--json]
                                           the whole story of a message (Message-ID, id, queue id or address)
  mailtrail COMMAND --help                 the options of a command (also: mailtrail help COMMAND)
  mailtrail --version | --help

The config file can also be named by MAILTRAIL_CONFIG.`;

/** serve and check-config read one config file, named by --config (or MAILTRAIL_CONFIG), and nothing else. */
function configCommand<N extends string>(name: N, what: string) {
  return {
    name,
    usage: `usage: mailtrail ${name} [--config FILE]   ${what}`,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    args: { max: 0, meant: 'config' },
  } as const;
}

const SERVE = {
  name: 'serve',
  usage:
    'usage: mailtrail serve [--config FILE] [--workers N]   run the relay (no config: the embedded default; MAILTRAIL_CONFIG names a file too); --workers: N processes sharing the listeners (docs/fleet.md)',
  options: { config: { type: 'string', short: 'c' }, workers: { type: 'string', short: 'w' }, help: { type: 'boolean', short: 'h' } },
  args: { max: 0, meant: 'config' },
} as const;
const CHECK_CONFIG = configCommand('check-config', 'validate a config; exit 1 listing every problem with its key path');

const HASH_PASSWORD = {
  name: 'hash-password',
  usage:
    'usage: mailtrail hash-password   reads a password on standard input (printf \'%s\' "$PW" | mailtrail hash-password), prints a passwordHash for clients.users',
  options: { help: { type: 'boolean', short: 'h' } },
  // Never echo it back: a stray argument here is most likely the password itself.
  args: { max: 0, instead: 'the password is read from standard input, not from the command line (where the shell history and the process list would keep it)' },
} as const;

const TOP_LEVEL = { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'V' } } as const;

const COMMANDS: Readonly<Record<string, (args: readonly string[]) => number | Promise<number>>> = {
  serve: (args) => withArgs(SERVE, args, (values) => serve(values.config, values.workers)),
  'check-config': (args) => withArgs(CHECK_CONFIG, args, (values) => checkConfig(values.config)),
  'hash-password': (args) => withArgs(HASH_PASSWORD, args, () => printHash()),
  verify: (args) => verifyCommand(args, process.stdout, process.stderr),
  keygen: (args) => keygenCommand(args, process.stdout, process.stderr),
  tail: (args) => runTrailCommand('tail', args, processIo()),
  report: (args) => runTrailCommand('report', args, processIo()),
  lookup: (args) => runTrailCommand('lookup', args, processIo()),
  help: (args) => help(args),
};

/**
 * Nothing happens that was not asked for: no command prints the list of commands (exit 2), an
 * unknown one is named, and each command rejects what it does not take (command-args.ts).
 */
async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(`${USAGE}\n`);
    return EXIT.usage;
  }
  if (name.startsWith('-')) return topLevel(argv);
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command) return command(rest);
  const guess = closest(name, Object.keys(COMMANDS));
  return usageProblem(`unknown command "${name}"` + (guess ? `; did you mean mailtrail ${guess}?` : ''));
}

/** `mailtrail --version`, `mailtrail --help`; a command's options without the command are named as such. */
function topLevel(argv: readonly string[]): number {
  let values: { help?: boolean | undefined; version?: boolean | undefined };
  try {
    values = parseCommandArgs(argv, TOP_LEVEL, { max: 0 }).values;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    // `mailtrail --config x.yaml`: serve's options, without serve.
    return usageProblem(parses(argv, SERVE) ? `no command given; did you mean mailtrail serve ${argv.map(shellWord).join(' ')}?` : err.message);
  }
  return values.version ? print(version()) : print(USAGE);
}

/** `mailtrail help` lists the commands; `mailtrail help serve` is `mailtrail serve --help`. */
function help(args: readonly string[]): number | Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined) return print(USAGE);
  if (rest.length > 0) return usageProblem(`unexpected argument ${shellWord(rest[0]!)}`);
  if (name !== 'help' && Object.hasOwn(COMMANDS, name)) return COMMANDS[name]!(['--help']);
  return usageProblem(`unknown command "${name}"`);
}

function parses<T extends OptionSpecs>(argv: readonly string[], spec: CommandSpec<T>): boolean {
  try {
    parseCommandArgs(argv, spec.options, spec.args);
    return true;
  } catch {
    return false;
  }
}

/** Runs `run` with the command's parsed options, or answers --help / bad usage (readCommandLine). */
async function withArgs<T extends OptionSpecs>(
  spec: CommandSpec<T>,
  args: readonly string[],
  run: (values: ReturnType<typeof parseCommandArgs<T>>['values']) => number | Promise<number>,
): Promise<number> {
  const parsed = readCommandLine(spec, args, process.stdout, process.stderr);
  return typeof parsed === 'number' ? parsed : run(parsed.values);
}

/** A problem with no command to blame: the problem, then the list of commands; exit 2. */
function usageProblem(problem: string): number {
  process.stderr.write(`mailtrail: ${problem}\n\n${USAGE}\n`);
  return EXIT.usage;
}

function load(file: string | undefined): Config {
  return loadConfig({ file: file ?? null, env: process.env, cwd: process.cwd() });
}

function checkConfig(file: string | undefined): number {
  try {
    const config = load(file);
    const source = configFile({ file, env: process.env }) ?? 'the embedded default (no config file)';
    process.stdout.write(`config ok: ${terminalText(source)}: ${config.listen.length} listener(s), ${config.upstreams.length} upstream(s)\n`);
    for (const w of configWarnings(config)) process.stdout.write(`  warning   ${w.message}\n`);
    return 0;
  } catch (err) {
    return reportConfigError(err);
  }
}

function reportConfigError(err: unknown): number {
  if (err instanceof ConfigError) {
    // ConfigError's message is the header line (with the file) followed by one problem per line.
    // A key, a file name or a quoted value may hold control characters: escaped for the terminal.
    const [header, ...lines] = err.message.split('\n').map(terminalText);
    process.stderr.write(`mailtrail: ${header}\n${lines.map((l) => `  ${l}\n`).join('')}`);
    return 1;
  }
  throw err;
}

async function serve(file: string | undefined, workersArg: string | undefined): Promise<number> {
  let config: Config;
  try {
    config = load(file);
  } catch (err) {
    return reportConfigError(err);
  }
  // A process the supervisor forked: one worker (it read the same config file).
  const worker = cluster.isWorker ? Number(process.env[WORKER_ENV]) : 0;
  if (worker > 0) return runWorker(workerConfig(config, worker));
  let count = config.workers.count;
  if (workersArg !== undefined) {
    if (!/^\d+$/.test(workersArg) || Number(workersArg) < 1 || Number(workersArg) > MAX_WORKERS) {
      return explainUsage(process.stderr, 'serve', `--workers takes a number from 1 to ${MAX_WORKERS}`, SERVE.usage);
    }
    count = Number(workersArg);
  }
  const problem = workersProblem(config, count);
  if (problem !== null) {
    process.stderr.write(`mailtrail: cannot start: workers: ${problem}\n`);
    return 1;
  }
  if (count > 1) return new Supervisor(config, count, createLogger(config.log.level, 2, config.instance.id)).run(process);
  const log = createLogger(config.log.level, 2, config.instance.id);
  const app = new App(config, log);
  let info: RunningInfo;
  try {
    info = await app.start();
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    // What could not start is named by its key; no stack trace for a port in use or a full disk.
    process.stderr.write(`mailtrail: cannot start: ${err.message}\n`);
    await app.stop().catch(() => undefined);
    return 1;
  }
  announceStart(info, config, process, log);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down: finishing transactions in flight');
      app.stop().then(
        () => {
          log.info('stopped');
          resolve(0);
        },
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      app.reopenAudit();
      log.info({ file: info.auditFile }, 'audit file reopened');
    });
  });
}

async function printHash(): Promise<number> {
  const input = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  if (!input) return explainUsage(process.stderr, HASH_PASSWORD.name, 'give the password on standard input', HASH_PASSWORD.usage);
  return print(await hashPassword(input));
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return `mailtrail ${pkg.version}`;
}

function print(text: string): number {
  process.stdout.write(text + '\n');
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`mailtrail: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
