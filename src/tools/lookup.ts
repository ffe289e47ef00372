/**
 * `mailtrail lookup <message-id | id | queue id | session id | address> [FILE...]`: the whole story of
 * a message, every record that mentions it, in time order.
 *
 * Two passes over the files. The first finds the records that name the key (a record id or
 * `duplicateOf`, the Message-ID, the upstream queue id, a connection id, MAIL FROM or a recipient,
 * the `spoolId` of a spooled message's delivery and spool records).
 * The second adds what belongs to the same story: a spooled message's deliveries and end (its
 * `spoolId` is the accepting transaction's id), the client's retries and duplicates (same
 * Message-ID or SHA-256, or linked by `duplicateOf`), the refusals earlier in the same transaction
 * (same connection, same transaction number, same sender), and the connection's `session` record.
 * Standard input can be read once: from `-` only the direct matches are shown.
 *
 * Memory: the keys of at most EXPAND_LIMIT direct matches, and at most `--limit` records (the most
 * recent are kept; an address with a million messages prints the last ones and says how many more).
 */
import { addressNeedles, isFullAddress, privacyFrom, type LookupPrivacy } from './address-forms.js';
import { colorWanted } from './format.js';
import { containsAny, containsExact, memberValueIn } from './line-prefilter.js';
import { renderStory, type KeyKind, type Story } from './lookup-story.js';
import { configuredTrail, toolConfig, withRotated } from './trail-files.js';
import { ReadProblems, readTrail, STDIN, type BytePrefilter, type TrailEntry } from './trail-reader.js';
import { EXIT, LineOutput, UsageError, complain, type ToolIo } from './tool-io.js';
import { parseCommandArgs } from './command-args.js';
import { jsonForTerminal } from './terminal-text.js';
import type { AuditRecord, RelayRecord } from '../audit/records.js';

export const LOOKUP_USAGE = `Usage: mailtrail lookup KEY [FILE...] [options]

Tells the whole story of a message: every record that mentions it, in time order (refusals,
attempts and failover, outcome, retries and duplicates, the connection). KEY is a Message-ID, a
mailtrail id (from the reply the client got), an upstream queue id, a connection id, or an address
(MAIL FROM or a recipient; works on a pseudonymized trail when the configuration has the HMAC key).
FILE: the configured audit file and its rotated files ("-" = stdin; gzip files are read as they are).

  --json              print the records as JSON lines, as they are in the trail
  --limit N           show at most the N most recent records (default 1000)
  -c, --config FILE   configuration that names the audit file and the privacy key`;

const OPTIONS = {
  json: { type: 'boolean' },
  limit: { type: 'string' },
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Beyond this many direct matches (a busy address), related records are not looked for. */
export const EXPAND_LIMIT = 100;
const DEFAULT_LIMIT = 1000;

export async function lookupCommand(args: readonly string[], io: ToolIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, OPTIONS);
  if (values.help) {
    io.stdout.write(LOOKUP_USAGE + '\n');
    return 0;
  }
  const key = positionals[0]?.trim();
  if (!key) throw new UsageError('give the Message-ID, id, queue id or address to look up');
  const limit = parseLimit(values.limit);
  const named = positionals.slice(1);
  const config = named.length === 0 || isFullAddress(stripBrackets(key)) ? tryConfig(values.config, io, named.length === 0) : null;
  const files = named.length > 0 ? named : withRotated(configuredTrail(config!));
  if (files.filter((f) => f === STDIN).length > 1) throw new UsageError('standard input ("-") can be read once');
  const privacy = isFullAddress(stripBrackets(key)) ? privacyFrom(config, values.config, io) : null;

  const problems = new ReadProblems();
  const story = await findStory(key, files, { problems, stdin: io.stdin, limit, privacy });
  const out = new LineOutput(io.stdout);
  if (values.json) for (const e of story.entries) await out.line(jsonForTerminal(e.raw));
  else for (const line of renderStory(story, { color: colorWanted(io.env, io.isTty) })) await out.line(line);
  await out.flush();
  const summary = problems.summary();
  if (summary) complain(io, 'lookup', summary);
  if (story.entries.length === 0) {
    complain(io, 'lookup', `no record mentions ${key} (in ${files.join(', ')})`);
    // A pseudonymized trail holds no clear address: without its key, the address cannot match.
    if (isFullAddress(stripBrackets(key)) && privacy?.mode !== 'pseudonymize') {
      complain(io, 'lookup', 'if the trail is pseudonymized (audit.privacy), give --config with its audit.hmacKey to look up an address');
    }
    return EXIT.notFound;
  }
  return EXIT.ok;
}

export interface FindOptions {
  readonly problems: ReadProblems;
  readonly stdin?: NodeJS.ReadableStream;
  readonly limit: number;
  readonly privacy: LookupPrivacy | null;
}

/** The records of `key`'s story in `files` (see the file comment). */
export async function findStory(key: string, files: readonly string[], opts: FindOptions): Promise<Story> {
  const kind = kindOf(key);
  const bare = stripBrackets(key);
  const needles = new Set(isFullAddress(bare) ? addressNeedles(bare, opts.privacy).map(normalize) : [normalize(key)]);
  const privacyNote = privacyNoteFor(kind, opts.privacy);
  const direct = (r: AuditRecord): boolean => mentions(r, needles);

  // Pass 1: direct matches. A line that does not contain a needle (case-insensitively) is not parsed.
  const first = new Recent(opts.limit);
  const related = new RelatedKeys();
  let count = 0;
  for await (const entry of readTrail(files, { problems: opts.problems, stdin: opts.stdin, prefilter: literalPrefilter([...needles]) })) {
    if (!direct(entry.record)) continue;
    count += 1;
    first.push(entry);
    if (count <= EXPAND_LIMIT) related.learn(entry.record);
  }
  const expand = count > 0 && count <= EXPAND_LIMIT && !files.includes(STDIN);
  if (!expand) return { key, kind, entries: first.ordered(), direct: count, dropped: first.dropped, expanded: false, privacyNote };

  // Pass 2: everything related that is known so far, and the other transactions of the message
  // (retries, duplicates) to learn their connections. When that taught nothing new, it is the story;
  // otherwise pass 3 reads again for those connections' refusals and session records (a refusal comes
  // before its transaction's record in the file). Problems were counted in pass 1.
  for (let pass = 2; ; pass++) {
    const entries = new Recent(opts.limit);
    const before = related.size;
    for await (const entry of readTrail(files, { problems: new ReadProblems(), prefilter: related.prefilter() })) {
      if (!direct(entry.record) && !related.matches(entry.record)) continue;
      entries.push(entry);
      if (entry.record.type === 'relay') related.learnTransaction(entry.record);
    }
    if (related.size === before || pass === 3) {
      return { key, kind, entries: entries.ordered(), direct: count, dropped: entries.dropped, expanded: true, privacyNote };
    }
  }
}

export function kindOf(key: string): KeyKind {
  if (/^[0-9A-HJKMNP-TV-Z]{26}$/i.test(key)) return 'id';
  // <local@domain> is how Message-IDs are written (and sometimes addresses): both are matched.
  if (key.startsWith('<') && key.endsWith('>')) return 'message-id';
  if (isFullAddress(key)) return 'address';
  return 'queue or connection id';
}

function stripBrackets(s: string): string {
  return s.startsWith('<') && s.endsWith('>') ? s.slice(1, -1) : s;
}

function normalize(s: string): string {
  return stripBrackets(s.trim()).toLowerCase();
}

function norm(s: string | null | undefined): string | null {
  return typeof s === 'string' ? normalize(s) : null;
}

/** Does the record name one of `needles` (normalised) in a field that identifies a message? */
function mentions(r: AuditRecord, needles: ReadonlySet<string>): boolean {
  const has = (s: string | null | undefined): boolean => {
    const n = norm(s);
    return n !== null && needles.has(n);
  };
  if (has(r.id)) return true;
  switch (r.type) {
    case 'relay':
      return (
        has(r.duplicateOf) ||
        has(r.message?.messageId) ||
        has(r.upstream?.queueId) ||
        has(r.session?.id) ||
        has(r.from) ||
        (r.rcpt ?? []).some((x) => has(x.to))
      );
    case 'reject':
      return has(r.session?.id) || has(r.from) || has(r.to);
    case 'session':
      return has(r.session?.id);
    case 'delivery':
      return has(r.spoolId) || has(r.upstream?.queueId) || (r.rcpt ?? []).some((x) => has(x.to));
    case 'spool':
      return has(r.spoolId);
    default:
      return false;
  }
}

/**
 * A line can only match if it contains a needle (case-insensitively): test that on the bytes before
 * parsing. Only when JSON writes the needle as it is (no quote, backslash or control character to
 * escape), and not for needles so short that most lines would pass anyway.
 */
function literalPrefilter(needles: readonly string[]): BytePrefilter | undefined {
  return needles.every(isLiteral) ? containsAny(needles) : undefined;
}

/** JSON writes it as it is (no quote, backslash or control character to escape), and it is not tiny. */
function isLiteral(needle: string): boolean {
  // eslint-disable-next-line no-control-regex
  return needle.length >= 3 && !/["\\\u0000-\u001f]/.test(needle);
}

/** Up to this many keys, related lines are found by searching for the keys themselves. */
const MAX_LITERAL_KEYS = 64;

/** Related transactions whose connections are added, at most (a message retried this often is rare). */
const MAX_TRANSACTIONS = 1000;

/**
 * What links other records to the direct matches: the ids (and `duplicateOf` links), Message-IDs and
 * SHA-256 of their messages, and the connections and transaction numbers they were sent in.
 */
class RelatedKeys {
  readonly #ids = new Set<string>();
  readonly #messageIds = new Set<string>();
  readonly #hashes = new Set<string>();
  readonly #sessions = new Set<string>();
  /** The keys above as they are written in the trail, for the byte search. */
  readonly #written = new Set<string>();
  /** Per connection: the transaction numbers (as refusals record them) and senders of the messages. */
  readonly #transactions = new Map<string, { txn: number; from: string }[]>();
  #learned = 0;

  learn(r: AuditRecord): void {
    this.#ids.add(normalize(r.id));
    this.#written.add(r.id);
    if (r.type === 'relay') {
      if (r.duplicateOf) {
        this.#ids.add(normalize(r.duplicateOf));
        this.#written.add(r.duplicateOf);
      }
      if (r.message?.messageId) {
        this.#messageIds.add(normalize(r.message.messageId));
        this.#written.add(r.message.messageId);
      }
      if (r.message?.sha256) {
        this.#hashes.add(r.message.sha256.toLowerCase());
        this.#written.add(r.message.sha256);
      }
      this.learnTransaction(r);
    } else if ((r.type === 'delivery' || r.type === 'spool') && r.spoolId) {
      // The accepting transaction, and through it the message's other deliveries and its end.
      this.#ids.add(normalize(r.spoolId));
      this.#written.add(r.spoolId);
    } else if ((r.type === 'reject' || r.type === 'session') && r.session?.id) {
      this.#sessions.add(r.session.id);
      this.#written.add(r.session.id);
    }
  }

  /** The connection a transaction of the message was sent in: its session record and refusals belong. */
  learnTransaction(r: RelayRecord): void {
    if (!r.session?.id || this.#learned >= MAX_TRANSACTIONS) return;
    const list = this.#transactions.get(r.session.id) ?? [];
    // A refusal is recorded with the number of transactions that reached DATA before it.
    const txn = { txn: r.session.txn - 1, from: (r.from ?? '').toLowerCase() };
    if (list.some((t) => t.txn === txn.txn)) return;
    this.#learned += 1;
    this.#sessions.add(r.session.id);
    this.#written.add(r.session.id);
    list.push(txn);
    this.#transactions.set(r.session.id, list);
  }

  /** How many connections and transactions are known (grows while learning). */
  get size(): number {
    return this.#sessions.size + this.#learned;
  }

  matches(r: AuditRecord): boolean {
    switch (r.type) {
      case 'relay':
        return (
          this.#ids.has(normalize(r.id)) ||
          (typeof r.duplicateOf === 'string' && this.#ids.has(normalize(r.duplicateOf))) ||
          (!!r.message?.messageId && this.#messageIds.has(normalize(r.message.messageId))) ||
          (!!r.message?.sha256 && this.#hashes.has(r.message.sha256.toLowerCase()))
        );
      case 'reject': {
        const txns = r.session ? this.#transactions.get(r.session.id) : undefined;
        if (!txns) return false;
        return txns.some((t) => t.txn === r.session.txn && (r.from === null || r.from.toLowerCase() === t.from));
      }
      case 'session':
        return !!r.session && this.#sessions.has(r.session.id);
      case 'delivery':
      case 'spool':
        // A spooled message's later records name the accepting transaction's id (docs/spool.md).
        return this.#ids.has(normalize(r.id)) || (typeof r.spoolId === 'string' && this.#ids.has(normalize(r.spoolId)));
      default:
        return typeof r.id === 'string' && this.#ids.has(normalize(r.id));
    }
  }

  /**
   * Only lines that contain a known key can be related: the rest are skipped without being decoded.
   * A few keys are searched for as they are (fast substring search); many, by reading the values of
   * the members that can hold them (`id` of record or connection, `duplicateOf`, `messageId`, `sha256`).
   */
  prefilter(): BytePrefilter {
    if (this.#written.size <= MAX_LITERAL_KEYS && [...this.#written].every(isLiteral)) return containsExact([...this.#written]);
    const keys = new Set<string>([...this.#ids, ...this.#messageIds, ...this.#hashes, ...[...this.#sessions].map(normalize)]);
    return memberValueIn(['id', 'duplicateOf', 'messageId', 'sha256', 'spoolId'], keys, normalize);
  }
}

/** The most recent `limit` entries (a ring), then in time order. */
class Recent {
  readonly #limit: number;
  #ring: TrailEntry[] = [];
  #next = 0;
  dropped = 0;
  #order = 0;
  readonly #seen = new WeakMap<TrailEntry, number>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  push(entry: TrailEntry): void {
    this.#seen.set(entry, this.#order++);
    if (this.#ring.length < this.#limit) {
      this.#ring.push(entry);
      return;
    }
    this.dropped += 1;
    this.#ring[this.#next] = entry;
    this.#next = (this.#next + 1) % this.#limit;
  }

  ordered(): TrailEntry[] {
    const order = (e: TrailEntry): number => this.#seen.get(e) ?? 0;
    return [...this.#ring].sort((a, b) => {
      const ta = (a.record as { time?: string }).time ?? '';
      const tb = (b.record as { time?: string }).time ?? '';
      return ta < tb ? -1 : ta > tb ? 1 : order(a) - order(b);
    });
  }
}

function parseLimit(value: string | undefined): number {
  if (value === undefined) return DEFAULT_LIMIT;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`--limit wants a positive number, not "${value}"`);
  return Number(value);
}

/** The configuration; required only when it must name the trail file. */
function tryConfig(file: string | undefined, io: ToolIo, required: boolean) {
  if (required) return toolConfig(file, io);
  try {
    return toolConfig(file, io);
  } catch {
    return null;
  }
}

function privacyNoteFor(kind: KeyKind, privacy: LookupPrivacy | null): string | null {
  if (kind !== 'address' || !privacy || privacy.mode === 'clear') return null;
  if (privacy.mode === 'domain-only') return 'the trail keeps only domains (audit.privacy: domain-only): every address of that domain matches';
  if (privacy.key === null) return 'the trail is pseudonymized but the configuration has no audit.hmacKey: only clear addresses match';
  return 'the trail is pseudonymized: the address was masked with the configured key to find it';
}
