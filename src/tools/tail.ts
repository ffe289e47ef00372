/**
 * `mailtrail tail [FILE] [-f] [-n N|all] [--failures] [--outcome X] [--class X] [--from X] [--to X]
 * [--upstream X] [--json]`: the last records of the trail, one readable line each, and with `-f` the
 * new ones as they are written, across rotation.
 *
 * The last N records of a plain file are found by reading it backwards, so `tail` on a 2 GB trail
 * answers at once; a gzip file or standard input is read forwards through a ring of N lines.
 */
import { existsSync } from 'node:fs';
import type { AuditRecord } from '../audit/records.js';
import { followFile } from './follow.js';
import { missedRecords } from './rotation-gap.js';
import { colorWanted, paint, recordLine, type Style } from './format.js';
import { matchesFilter, listValue, type RecordFilter } from './record-filter.js';
import { addressNeedles, privacyFrom, type LookupPrivacy } from './address-forms.js';
import { configuredTrail, toolConfig, withRotated } from './trail-files.js';
import { isGzipFile, lastLines, parseRecord, ReadProblems, readTrail, STDIN } from './trail-reader.js';
import { LineOutput, UsageError, complain, type ToolIo } from './tool-io.js';
import { parseCommandArgs } from './command-args.js';
import { jsonForTerminal, terminalText } from './terminal-text.js';
import { instanceOf, mergeByTime } from './trail-instances.js';

export const TAIL_USAGE = `Usage: mailtrail tail [FILE...] [options]

Shows the last records of the trail, one line each (FILE: the configured audit file; "-" = stdin;
gzip files are read as they are). Several files (the trails of several instances, a/audit.log*
b/audit.log*): their records merged by time, each line starting with its instance.

  -f, --follow        keep printing new records; follows the file across rotation (like tail -F)
  -n, --lines N|all   how many records to show first (default 10; "all" = the whole file)
  --failures          only failed relay records (not delivered) and refusals
  --outcome LIST      delivered, partial, deferred, rejected, unknown, aborted, queued; "refused" = refusals
  --class LIST        failure class (throttled, connect, relay_denied...)
  --from TEXT         MAIL FROM contains TEXT (an address, a domain "@example.com"...)
  --to TEXT           a recipient contains TEXT
  --upstream LIST     relayed (or tried) through this upstream
  --json              print the matching records as JSON lines, as they are in the trail
  -c, --config FILE   configuration that names the audit file (default: MAILTRAIL_CONFIG, else ./data/audit.log)`;

const OPTIONS = {
  follow: { type: 'boolean', short: 'f' },
  lines: { type: 'string', short: 'n' },
  failures: { type: 'boolean' },
  outcome: { type: 'string' },
  class: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  upstream: { type: 'string' },
  json: { type: 'boolean' },
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** How often `-f` looks for new lines and for rotation. */
const POLL_MS = 250;
const DEFAULT_LINES = 10;

interface TailPlan {
  readonly file: string;
  /** Several files named: merged by time (trail-instances.ts); `file` is the first. */
  readonly files: readonly string[];
  readonly follow: boolean;
  /** Records shown before following; null = all. */
  readonly count: number | null;
  /** The line to print for a raw trail line, or null when it does not match the filters. */
  readonly show: (raw: string, record?: AuditRecord | null) => string | null;
  /**
   * The configured trail (no FILE named): when its current file holds fewer than N matching
   * records (it was just rotated), the rest come from its rotated files, newest first.
   */
  readonly withRotated: boolean;
}

export async function tailCommand(args: readonly string[], io: ToolIo): Promise<number> {
  const plan = tailPlan(args, io);
  if (!plan) {
    io.stdout.write(TAIL_USAGE + '\n');
    return 0;
  }
  const out = new LineOutput(io.stdout);
  const problems = new ReadProblems();
  if (plan.files.length > 1) {
    for (const line of await lastMerged(plan, problems, io)) await out.line(line);
    await out.flush();
    const summary = problems.summary();
    if (summary) complain(io, 'tail', summary);
    return 0;
  }
  const followFrom = await showExisting(plan, out, problems, io);
  await out.flush();
  const summary = problems.summary();
  if (summary) complain(io, 'tail', summary);
  if (plan.follow && followFrom !== null && !out.closed) await showNew(plan, followFrom, out, io);
  return 0;
}

/** What to read and how to show it; null for --help. */
function tailPlan(args: readonly string[], io: ToolIo): TailPlan | null {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) return null;
  if (positionals.length > 1 && values.follow) throw new UsageError('-f follows one file; give several files without -f, or run one tail -f per file');
  if (positionals.filter((f) => f === STDIN).length > 1) throw new UsageError('standard input ("-") can be read once');
  const count = parseCount(values.lines);
  const named = positionals[0];
  const config = named === undefined ? toolConfig(values.config, io) : null;
  const file = named ?? configuredTrail(config!);
  const privacy = values.from !== undefined || values.to !== undefined ? privacyFrom(config, values.config, io) : null;
  const filter = buildFilter(values, privacy);
  const style: Style = { color: !values.json && colorWanted(io.env, io.isTty) };
  const several = positionals.length > 1;
  const line = (record: AuditRecord, raw: string): string => {
    if (values.json) return jsonForTerminal(raw);
    const text = recordLine(record, style, raw);
    // Several instances' records interleave: each line says whose it is.
    return several ? `${paint(style, 'dim', terminalText(instanceOf(record) ?? '-'))}  ${text}` : text;
  };
  const show = (raw: string, record: AuditRecord | null = parseRecord(raw)): string | null =>
    record && matchesFilter(record, filter) ? line(record, raw) : null;
  return { file, files: several ? positionals : [file], follow: values.follow ?? false, count, show, withRotated: named === undefined };
}

/** Where following starts: a byte offset, and the seq of the record just before it (when known). */
interface FollowStart {
  readonly offset: number;
  readonly lastSeq: number | null;
}

const FROM_START: FollowStart = { offset: 0, lastSeq: null };

/**
 * The records already in the file (the last N, or all). Returns where to follow from, or null when
 * the source cannot be followed that way (standard input is read to its end here).
 */
async function showExisting(plan: TailPlan, out: LineOutput, problems: ReadProblems, io: ToolIo): Promise<FollowStart | null> {
  const { file, follow, count, show } = plan;
  if (file === STDIN) {
    await forwards(file, follow ? null : count, show, out, problems, io);
    return null;
  }
  if (follow && !existsSync(file)) {
    // Like tail -F: the trail may not have been created yet (or is between rotation and reopening).
    complain(io, 'tail', `${file} does not exist yet; waiting for it`);
    return FROM_START;
  }
  if (isGzipFile(file)) {
    if (follow) throw new UsageError(`${file} is compressed: a rotated file does not grow, there is nothing to follow`);
    await forwards(file, count, show, out, problems, io);
    return null;
  }
  // Everything, then (with -f) what comes: following from 0 reads it all once.
  if (count === null) {
    if (!follow) await forwards(file, null, show, out, problems, io);
    return FROM_START;
  }
  const last = lastMatching(file, count, show);
  const earlier = plan.withRotated && last.lines.length < count ? await lastOfRotated(file, count - last.lines.length, show, problems) : [];
  for (const line of [...earlier, ...last.lines]) await out.line(line);
  return last.start;
}

/**
 * The last `count` matching lines of the files rotated away from `file`, oldest first: read newest
 * file first, each forwards through a ring (rotated files may be gzip, which cannot be read backwards).
 */
async function lastOfRotated(file: string, count: number, show: TailPlan['show'], problems: ReadProblems): Promise<string[]> {
  const found: string[] = [];
  const rotated = withRotated(file).filter((f) => f !== file);
  for (let i = rotated.length - 1; i >= 0 && found.length < count; i--) {
    try {
      found.unshift(...(await lastForwards(rotated[i]!, count - found.length, show, problems)));
    } catch (err) {
      // Pruned or compressed away meanwhile (the open fails, nothing was read): the others still count.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return found;
}

/** The last N (or all) matching records of several files, merged by time (trail-instances.ts). */
async function lastMerged(plan: TailPlan, problems: ReadProblems, io: ToolIo): Promise<string[]> {
  const keep = plan.count;
  const ring: string[] = [];
  let seen = 0;
  for await (const entry of mergeByTime(plan.files, { problems, stdin: io.stdin })) {
    const line = plan.show(entry.raw, entry.record);
    if (line === null || keep === 0) continue;
    ring[keep === null ? seen : seen % keep] = line;
    seen += 1;
  }
  if (keep === null || seen <= keep) return ring;
  const cut = seen % keep;
  return [...ring.slice(cut), ...ring.slice(0, cut)];
}

/**
 * The last `keep` matching lines of a source read forwards, oldest first: a ring of `keep` lines,
 * whatever the size of the source (gzip and standard input cannot be read backwards).
 */
async function lastForwards(source: string, keep: number, show: TailPlan['show'], problems: ReadProblems, stdin?: NodeJS.ReadableStream): Promise<string[]> {
  const ring: string[] = [];
  let seen = 0;
  for await (const entry of readTrail([source], { problems, stdin })) {
    const line = show(entry.raw, entry.record);
    if (line === null || keep === 0) continue;
    ring[seen % keep] = line;
    seen += 1;
  }
  if (seen <= keep) return ring;
  const cut = seen % keep;
  return [...ring.slice(cut), ...ring.slice(0, cut)];
}

/** New records as they are written, across rotation, until the signal (Ctrl-C) or the reader goes. */
async function showNew(plan: TailPlan, from: FollowStart, out: LineOutput, io: ToolIo): Promise<void> {
  const stop = new AbortController();
  io.signal?.addEventListener('abort', () => stop.abort(), { once: true });
  const show = async (raw: string, record: AuditRecord): Promise<void> => {
    const line = plan.show(raw, record);
    if (line === null) return;
    await out.line(line);
    await out.flush();
    if (out.closed) stop.abort();
  };
  // The chain's seq of the last record seen: a jump means the trail rotated more than once between
  // two polls, and the records in between are read back from the rotated files.
  let lastSeq = from.lastSeq;
  const fillGap = async (seq: number): Promise<void> => {
    if (lastSeq === null || seq <= lastSeq + 1) return;
    let found = 0;
    for await (const entry of missedRecords(plan.file, lastSeq, seq)) {
      found += 1;
      await show(entry.raw, entry.record);
      if (out.closed) return;
    }
    const missing = seq - lastSeq - 1 - found;
    if (missing > 0) complain(io, 'tail', `${missing} record(s) before seq ${seq} are no longer in the rotated files`);
  };
  await followFile(plan.file, {
    startAt: from.offset,
    pollMs: POLL_MS,
    signal: stop.signal,
    onLine: async (raw) => {
      if (raw.length === 0) return;
      const record = parseRecord(raw);
      if (!record) {
        complain(io, 'tail', 'skipped a malformed line');
        return;
      }
      if (typeof record.seq === 'number') {
        await fillGap(record.seq);
        lastSeq = record.seq;
      }
      if (!out.closed) await show(raw, record);
    },
    onTorn: (f) => complain(io, 'tail', `${f} was rotated with a torn last line (skipped)`),
  });
  await out.flush();
}

function parseCount(value: string | undefined): number | null {
  if (value === undefined) return DEFAULT_LINES;
  if (value === 'all' || value === '+1') return null;
  if (!/^\d+$/.test(value)) throw new UsageError(`-n wants a number or "all", not "${value}"`);
  return Number(value);
}

function buildFilter(
  values: { failures?: boolean; outcome?: string; class?: string; from?: string; to?: string; upstream?: string },
  privacy: LookupPrivacy | null,
): RecordFilter {
  return {
    failures: values.failures ?? false,
    outcomes: listValue(values.outcome),
    classes: listValue(values.class),
    from: values.from === undefined ? null : addressNeedles(values.from, privacy),
    to: values.to === undefined ? null : addressNeedles(values.to, privacy),
    upstreams: listValue(values.upstream),
  };
}

/**
 * Reads `file` forwards. With `keep` = N only the last N matching lines are printed (a ring buffer:
 * memory is N lines); with null every matching line is printed as it comes.
 */
async function forwards(file: string, keep: number | null, show: TailPlan['show'], out: LineOutput, problems: ReadProblems, io: ToolIo): Promise<void> {
  if (keep !== null) {
    for (const line of await lastForwards(file, keep, show, problems, io.stdin)) await out.line(line);
    return;
  }
  for await (const entry of readTrail([file], { problems, stdin: io.stdin })) {
    const line = show(entry.raw, entry.record);
    if (line === null) continue;
    await out.line(line);
    if (out.closed) return;
  }
}

/** The last `count` matching lines of a plain file, read backwards (oldest first), and where following starts. */
function lastMatching(file: string, count: number, show: (raw: string) => string | null): { lines: string[]; start: FollowStart } {
  const reader = lastLines(file);
  const found: string[] = [];
  let lastSeq: number | null | undefined;
  for (const raw of reader.lines()) {
    if (raw.length === 0) continue;
    if (lastSeq === undefined) {
      const seq = parseRecord(raw)?.seq;
      lastSeq = typeof seq === 'number' ? seq : null;
    }
    if (found.length >= count) break;
    const line = show(raw);
    if (line !== null) found.push(line);
  }
  return { lines: found.reverse(), start: { offset: reader.completeEnd, lastSeq: lastSeq ?? null } };
}
