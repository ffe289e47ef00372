/**
 * `mailtrail queue list|show|retry|hold|release|delete|bounce` (docs/spool.md, "Operating the
 * queue"). With the relay running, every subcommand asks it over the control socket in the data
 * folder (its lock, data-dir-lock.ts), and each action is recorded in the trail with the OS user who
 * asked. With the relay down, `list` and `show` read the spool folder (read-only); actions refuse:
 * their records belong in the relay's hash chain, which only the relay writes.
 */
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { loadQueueConfig } from '../config/load.js';
import { ConfigError, formatProblem } from '../config/config-error.js';
import type { QueueToolConfig } from '../config/schema.js';
import { DATA_DIR, lockHolder, SPOOL_DIR } from '../data-dir-lock.js';
import { ERR } from '../error-codes.js';
import { isSpoolState, QueueAdmin, queueRow, type QueueActionResult } from '../spool/queue-admin.js';
import { CONTROL_PROTOCOL_VERSION, type ControlEnd, type ControlRequest } from '../spool/queue-protocol.js';
import type { SpoolEntry, SpoolState } from '../spool/spool-entry.js';
import { SpoolFolder } from '../spool/spool-folder.js';
import { parseCommandArgs } from './command-args.js';
import { colorWanted, formatAddress, formatBytes, formatCount, formatTime, paint, type Paint, type Style } from './format.js';
import { askRelay } from './queue-client.js';
import { forTerminal, jsonForTerminal, terminalText } from './terminal-text.js';
import { complain, EXIT, LineOutput, UsageError, type ToolIo } from './tool-io.js';

export const QUEUE_USAGE = `usage: mailtrail queue list [--state S] [--query TEXT] [--json]   the spooled messages
       mailtrail queue show ID [--json]                             one message: envelope, attempts, state
       mailtrail queue retry ID|--all                               due at once (--all: every queued message)
       mailtrail queue hold ID [--reason TEXT]                      keep it; nothing is tried until released
       mailtrail queue release ID                                   a held message, due at once
       mailtrail queue delete ID [--reason TEXT]                    remove it, without a bounce
       mailtrail queue bounce ID [--reason TEXT]                    give it up now, with a DSN to the sender

Asks the running relay over the control socket in its data folder; each action is recorded in the
trail with your user name. With the relay down, list and show read the spool folder.
  --state S           queued, delivering or held
  --query TEXT        id, sender, recipient, Message-ID or From containing TEXT (any case)
  --json              list: one JSON object a line, as Postfix's postqueue -j; show: the entry
  -c, --config FILE   the relay's configuration (dataDir, spool.dir)`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
  state: { type: 'string' },
  query: { type: 'string' },
  all: { type: 'boolean' },
  reason: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const ACTIONS = ['retry', 'hold', 'release', 'delete', 'bounce'] as const;
type Action = (typeof ACTIONS)[number];
const SUBCOMMANDS = ['list', 'show', ...ACTIONS] as const;
const ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

type Values = ReturnType<typeof parseCommandArgs<typeof OPTIONS>>['values'];

export async function queueCommand(args: readonly string[], io: ToolIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS, { max: 2 });
  if (values.help) {
    io.stdout.write(QUEUE_USAGE + '\n');
    return EXIT.ok;
  }
  const sub = positionals[0];
  if (sub === undefined) throw new UsageError(`give a subcommand: ${SUBCOMMANDS.join(', ')}`);
  if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError(`unknown subcommand "${sub}"; it is one of ${SUBCOMMANDS.join(', ')}`);
  const plan = checkUsage(sub as (typeof SUBCOMMANDS)[number], positionals[1], values);
  const config = queueConfig(values.config, io);
  const socket = join(config.dataDir, DATA_DIR.file);
  const style: Style = { color: colorWanted(io.env, io.isTty) };
  const out = new LineOutput(io.stdout);
  try {
    if (plan.kind === 'list') return await list(plan, config, socket, out, style, io);
    if (plan.kind === 'show') return await show(plan.id, plan.json, config, socket, out, style, io);
    return await act(plan, config, socket, out, io);
  } finally {
    await out.flush();
  }
}

type Plan =
  | { readonly kind: 'list'; readonly state: SpoolState | null; readonly query: string | null; readonly json: boolean }
  | { readonly kind: 'show'; readonly id: string; readonly json: boolean }
  | { readonly kind: 'act'; readonly action: Action; readonly id: string | null; readonly reason: string | null };

/** What the subcommand takes, checked before anything is read or asked. */
function checkUsage(sub: (typeof SUBCOMMANDS)[number], id: string | undefined, values: Values): Plan {
  const only = (option: keyof Values, subs: readonly string[]): void => {
    if (values[option] !== undefined && !subs.includes(sub)) throw new UsageError(`--${option} is for queue ${subs.join(' and ')}, not queue ${sub}`);
  };
  only('state', ['list']);
  only('query', ['list']);
  only('json', ['list', 'show']);
  only('all', ['retry']);
  only('reason', ['retry', 'hold', 'release', 'delete', 'bounce']);
  if (sub === 'list') {
    if (id !== undefined) throw new UsageError(`unexpected argument ${id}: queue list takes no id (--query ${id} finds it)`);
    const state = values.state ?? null;
    if (state !== null && !isSpoolState(state)) throw new UsageError(`--state ${state}: it is one of queued, delivering, held`);
    return { kind: 'list', state, query: values.query ?? null, json: values.json === true };
  }
  if (sub === 'retry' && values.all === true) {
    if (id !== undefined) throw new UsageError('give an id or --all, not both');
    return { kind: 'act', action: 'retry', id: null, reason: values.reason ?? null };
  }
  if (id === undefined) throw new UsageError(`give the id of the message (queue ${sub} ID${sub === 'retry' ? ', or --all' : ''})`);
  const upper = id.trim().toUpperCase();
  if (!ID.test(upper)) throw new UsageError(`${id} is not a mailtrail id (26 characters, as in "queued as <id>")`);
  if (sub === 'show') return { kind: 'show', id: upper, json: values.json === true };
  return { kind: 'act', action: sub, id: upper, reason: values.reason ?? null };
}

/** `dataDir` and `spool.dir` from the configuration; a problem is a usage error naming its key. */
function queueConfig(file: string | undefined, io: ToolIo): QueueToolConfig {
  try {
    return loadQueueConfig({ file: file ?? null, env: io.env, cwd: io.cwd });
  } catch (err) {
    if (err instanceof ConfigError)
      throw new UsageError(`cannot read the configuration (dataDir, spool.dir):\n  ${err.problems.map(formatProblem).join('\n  ')}`);
    throw err;
  }
}

async function list(
  plan: Extract<Plan, { kind: 'list' }>,
  config: QueueToolConfig,
  socket: string,
  out: LineOutput,
  style: Style,
  io: ToolIo,
): Promise<number> {
  const table = new QueueTable(out, style, plan.json);
  const request: ControlRequest = { v: CONTROL_PROTOCOL_VERSION, op: 'list', state: plan.state, query: plan.query };
  const answer = await askRelay(socket, request, (entry) => table.add(entry as SpoolEntry));
  if (answer.kind === 'answer') {
    if (!answer.end.ok) return failed(io, answer.end);
    await table.end();
    return EXIT.ok;
  }
  if (answer.kind === 'failed') return refused(io, answer.why);
  complain(io, 'queue', `the relay is not running: the spool folder ${config.spoolDir} read as it is (read-only)`);
  for await (const entry of new QueueAdmin(new SpoolFolder(config.spoolDir), null).list(plan)) await table.add(entry);
  await table.end();
  return EXIT.ok;
}

async function show(id: string, json: boolean, config: QueueToolConfig, socket: string, out: LineOutput, style: Style, io: ToolIo): Promise<number> {
  const answer = await askRelay(socket, { v: CONTROL_PROTOCOL_VERSION, op: 'show', id });
  let entry: SpoolEntry | null;
  if (answer.kind === 'answer') {
    if (!answer.end.ok) return failed(io, answer.end);
    entry = (answer.end as unknown as { entry: SpoolEntry }).entry;
  } else if (answer.kind === 'failed') {
    return refused(io, answer.why);
  } else {
    complain(io, 'queue', `the relay is not running: the spool folder ${config.spoolDir} read as it is (read-only)`);
    entry = await new SpoolFolder(config.spoolDir).get(id);
    if (entry === null) {
      complain(io, 'queue', `no message ${id} in the spool (it ended, or never was: mailtrail lookup ${id} tells its story)`);
      return EXIT.notFound;
    }
  }
  if (json) await out.line(jsonForTerminal(JSON.stringify(entry)));
  else for (const line of entryLines(forTerminal(entry), style)) await out.line(line);
  return EXIT.ok;
}

async function act(plan: Extract<Plan, { kind: 'act' }>, config: QueueToolConfig, socket: string, out: LineOutput, io: ToolIo): Promise<number> {
  const user = osUser();
  const request: ControlRequest =
    plan.id === null
      ? { v: CONTROL_PROTOCOL_VERSION, op: 'retry-all', user, reason: plan.reason }
      : { v: CONTROL_PROTOCOL_VERSION, op: 'act', action: plan.action, id: plan.id, user, reason: plan.reason };
  const answer = await askRelay(socket, request);
  if (answer.kind === 'failed') return refused(io, answer.why);
  if (answer.kind === 'not-running') {
    // The spool's own lock answers while the data folder's does not: a relay runs without a control socket.
    const running = (await lockHolder(config.spoolDir, SPOOL_DIR)) !== null;
    return refused(
      io,
      running
        ? `the relay runs, but its data folder has no control socket (${socket}: see the start-up warnings); actions need it`
        : `the relay is not running: actions on the queue need it, so that each is recorded in its trail (list and show work without it)`,
    );
  }
  if (!answer.end.ok) return failed(io, answer.end);
  if (plan.id === null) {
    const r = (answer.end as unknown as { result: { retried: number; skipped: number } }).result;
    await out.line(`${formatCount(r.retried)} queued message(s) due at once${r.skipped > 0 ? `; ${formatCount(r.skipped)} ended or taken meanwhile` : ''}`);
    return EXIT.ok;
  }
  const r = (answer.end as unknown as { result: QueueActionResult }).result;
  await out.line(terminalText(`${r.id}: ${r.note}${r.record !== null ? ` (recorded as ${r.record})` : ''}`));
  return EXIT.ok;
}

/** The OS user who asks, for the records (the socket's mode already limits who can). */
function osUser(): string | null {
  try {
    return userInfo().username;
  } catch {
    return null;
  }
}

function failed(io: ToolIo, end: ControlEnd): number {
  if (end.ok) return EXIT.ok;
  complain(io, 'queue', `${end.error.message} (${end.error.code})`);
  return EXIT.failed;
}

function refused(io: ToolIo, why: string): number {
  complain(io, 'queue', `${why} (${ERR.CONTROL})`);
  return EXIT.failed;
}

const STATE_PAINT: Readonly<Record<SpoolState, Paint>> = { queued: 'cyan', delivering: 'green', held: 'yellow' };

/**
 * `queue list`: one line a message (`--json`: postqueue -j's objects), then the totals, like mailq's
 * `-- 12 Kbytes in 3 Requests.`. Every value from a client or an upstream is escaped for the terminal.
 */
class QueueTable {
  readonly #out: LineOutput;
  readonly #style: Style;
  readonly #json: boolean;
  #count = 0;
  #bytes = 0;
  readonly #byState: Record<SpoolState, number> = { queued: 0, delivering: 0, held: 0 };

  constructor(out: LineOutput, style: Style, json: boolean) {
    this.#out = out;
    this.#style = style;
    this.#json = json;
  }

  async add(entry: SpoolEntry): Promise<void> {
    if (this.#json) return this.#out.line(jsonForTerminal(JSON.stringify(queueRow(entry))));
    if (this.#count === 0)
      await this.#out.line(
        paint(this.#style, 'bold', `${'ID'.padEnd(26)}  ${'STATE'.padEnd(10)}  ${'ACCEPTED'.padEnd(20)}  ${'SIZE'.padStart(7)}  TRIES  FROM → TO`),
      );
    this.#count += 1;
    this.#bytes += entry.message.size;
    this.#byState[entry.state] += 1;
    const e = forTerminal(entry);
    const pending = e.rcpt.filter((r) => r.state === 'pending').map((r) => r.to);
    const to = pending.length <= 2 ? pending.join(', ') : `${pending.slice(0, 2).join(', ')} +${pending.length - 2}`;
    await this.#out.line(
      [
        e.id,
        paint(this.#style, STATE_PAINT[e.state], e.state.padEnd(10)),
        formatTime(e.acceptedAt).slice(0, 19) + 'Z',
        formatBytes(e.message.size).padStart(7),
        String(e.attempts).padStart(5),
        `${formatAddress(e.from)} → ${to || '-'}`,
      ].join('  '),
    );
    const why = whyLine(e);
    if (why !== null) await this.#out.line(`${' '.repeat(28)}${paint(this.#style, 'dim', why)}`);
  }

  async end(): Promise<void> {
    if (this.#json) return;
    if (this.#count === 0) return this.#out.line('the spool is empty');
    const states = (['queued', 'delivering', 'held'] as const).filter((s) => this.#byState[s] > 0).map((s) => `${formatCount(this.#byState[s])} ${s}`);
    await this.#out.line(`-- ${formatCount(this.#count)} message(s), ${formatBytes(this.#bytes)}: ${states.join(', ')}`);
  }
}

/** The second line of a listed message: why it waits (held, its last reply, when it is due). */
function whyLine(e: SpoolEntry): string | null {
  if (e.held !== null) return `held since ${formatTime(e.held.since)}${e.held.by !== null ? ` by ${e.held.by}` : ''}: ${e.held.reason}`;
  const parts: string[] = [];
  if (e.lastAttempt !== null)
    parts.push(`last: ${e.lastAttempt.reply ?? e.lastAttempt.outcome}${e.lastAttempt.upstream !== null ? ` (${e.lastAttempt.upstream})` : ''}`);
  if (e.state === 'queued' && e.nextAttemptAt !== null && e.attempts > 0) parts.push(`next ${formatTime(e.nextAttemptAt)}`);
  if (e.dotPendingSince !== null) parts.push(`final dot sent ${formatTime(e.dotPendingSince)} to ${e.dotPendingUpstream ?? '?'} without an answer yet`);
  return parts.length === 0 ? null : parts.join('; ');
}

/** `queue show`: the entry, a field a line. */
function entryLines(e: SpoolEntry, style: Style): string[] {
  const row = (name: string, value: string): string => `${paint(style, 'bold', name.padEnd(14))}${value}`;
  const lines = [
    row('id', e.id),
    row('state', paint(style, STATE_PAINT[e.state], e.state)),
    row('accepted', `${formatTime(e.acceptedAt)} (${e.mode}: ${e.reason})`),
    row('from', formatAddress(e.from)),
    ...e.rcpt.map((r, i) => row(i === 0 ? 'to' : '', `${r.to} (${r.state})`)),
    row('message', `${formatBytes(e.message.size)}, Message-ID ${e.message.messageId ?? '-'}, From ${e.message.headerFrom ?? '-'}`),
    row('client', `${e.client.ip}${e.client.user !== null ? `, user ${e.client.user}` : ''}`),
    row('attempts', String(e.attempts)),
  ];
  if (e.lastAttempt !== null) {
    const l = e.lastAttempt;
    lines.push(row('last attempt', `${formatTime(l.at)} ${l.outcome}${l.class !== null ? ` (${l.class})` : ''} via ${l.upstream ?? '-'}: ${l.reply ?? '-'}`));
  }
  if (e.state === 'queued') lines.push(row('next attempt', e.nextAttemptAt === null ? 'when an operator says so' : formatTime(e.nextAttemptAt)));
  if (e.held !== null) lines.push(row('held', `since ${formatTime(e.held.since)} by ${e.held.by ?? 'mailtrail'}: ${e.held.reason}`));
  if (e.dotPendingSince !== null)
    lines.push(row('final dot', `sent ${formatTime(e.dotPendingSince)} to ${e.dotPendingUpstream ?? '?'}, no answer recorded yet`));
  lines.push(row('story', `mailtrail lookup ${e.id}`));
  return lines;
}
