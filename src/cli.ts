#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { App, StartError, type RunningInfo } from './app.js';
import { hashPassword } from './auth/password.js';
import { ConfigError } from './config/config-error.js';
import { configFile, loadConfig } from './config/load.js';
import type { Config } from './config/types.js';
import { createLogger } from './observe/logger.js';
import { configWarnings } from './observe/startup-warnings.js';
import { announceStart } from './startup-output.js';
import { keygenCommand } from './tools/keygen.js';
import { verifyCommand } from './tools/verify.js';
import { isTrailCommand, processIo, runTrailCommand } from './tools/trail-commands.js';

const USAGE = `mailtrail: SMTP relay proxy with an audit trail

Usage:
  mailtrail serve [--config FILE]          run the relay (no config: the embedded default)
  mailtrail check-config [--config FILE]   validate a config; exit 1 listing every problem
  mailtrail hash-password                  read a password on stdin, print a passwordHash for the config
  mailtrail verify FILE... [--checkpoints FILE] [--public-key FILE]
                                           check the trail's hash chain; exit 1 naming the first bad record
  mailtrail keygen [--out PREFIX]          an Ed25519 key pair for signing checkpoints
  mailtrail tail [FILE] [-f] [--failures] [--outcome X] [--class X] [--from X] [--to X] [--upstream X] [--json]
                                           the last records, one line each; -f follows across rotation
  mailtrail report [FILE...] [--since 1h] [--until T] [--by KEY] [--json]
                                           totals, success rate, error groups, latency, traffic, top domains
  mailtrail lookup KEY [FILE...] [--json]  the whole story of a message (Message-ID, id, queue id or address)
  mailtrail --version | --help

The config file can also be named by MAILTRAIL_CONFIG.`;

async function main(argv: string[]): Promise<number> {
  // Commands with options of their own parse their own arguments.
  if (argv[0] === 'verify') return verifyCommand(argv.slice(1), process.stdout, process.stderr);
  if (argv[0] === 'keygen') return keygenCommand(argv.slice(1), process.stdout, process.stderr);
  if (isTrailCommand(argv[0])) return runTrailCommand(argv[0], argv.slice(1), processIo());
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
  });
  if (values.version) return print(version());
  const command = positionals[0] ?? (values.help ? 'help' : 'serve');
  switch (command) {
    case 'serve':
      return serve(values.config);
    case 'check-config':
      return checkConfig(values.config);
    case 'hash-password':
      return printHash();
    case 'help':
      return print(USAGE);
    default:
      process.stderr.write(`mailtrail: unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

function load(file: string | undefined): Config {
  return loadConfig({ file: file ?? null, env: process.env, cwd: process.cwd() });
}

function checkConfig(file: string | undefined): number {
  try {
    const config = load(file);
    const source = configFile({ file, env: process.env }) ?? 'the embedded default (no config file)';
    process.stdout.write(`config ok: ${source}: ${config.listen.length} listener(s), ${config.upstreams.length} upstream(s)\n`);
    for (const w of configWarnings(config)) process.stdout.write(`  warning   ${w.message}\n`);
    return 0;
  } catch (err) {
    return reportConfigError(err);
  }
}

function reportConfigError(err: unknown): number {
  if (err instanceof ConfigError) {
    // ConfigError's message is the header line (with the file) followed by one problem per line.
    const [header, ...lines] = err.message.split('\n');
    process.stderr.write(`mailtrail: ${header}\n${lines.map((l) => `  ${l}\n`).join('')}`);
    return 1;
  }
  throw err;
}

async function serve(file: string | undefined): Promise<number> {
  let config: Config;
  try {
    config = load(file);
  } catch (err) {
    return reportConfigError(err);
  }
  const log = createLogger(config.log.level);
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
  if (!input) {
    process.stderr.write('mailtrail: give the password on standard input\n');
    return 2;
  }
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
    process.stderr.write(`mailtrail: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
