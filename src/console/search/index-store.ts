/**
 * The search index beside the trail (docs/console.md, "The search index"): an SQLite file
 * (better-sqlite3) with one row per `relay` and `reject` record, its addresses, its words, and where
 * its line is in the trail; and one row per `session` record, for the stories. Only ever used inside
 * the index worker (search-worker.ts): better-sqlite3 is synchronous.
 *
 * The trail is the source of truth. The index holds a schema version; a file of another version, or
 * one that SQLite finds corrupt, is deleted and built again from the trail. Rows are keyed by record
 * id, so reading a stretch of the trail twice (after a crash, a rotation seen late) adds nothing twice.
 */
import { closeSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { AuditRecord } from '../../audit/records.js';
import type { StatsInput } from '../stats.js';
import { summarise, type TransactionSummary } from '../summary.js';
import { queryToSql, type Estimate, type Page, type Scope } from './sql-query.js';
import type { Query } from '../query.js';

/** Bumped whenever the tables change: an index of another version is rebuilt. */
export const INDEX_SCHEMA_VERSION = 1;

/** Where the follower of the current trail file is: stored with each batch, in the same transaction. */
export interface FollowPosition {
  /** Id of the first record of the file being followed (names the file across renames). */
  readonly head: string | null;
  readonly ino: number;
  /** Byte offset after the last line read, and lines read so far. */
  readonly offset: number;
  readonly line: number;
  /** seq of the last chained record indexed (null on a trail without the chain). */
  readonly lastSeq: number | null;
}

/** One record to index, with where it is. */
export interface Located {
  readonly record: AuditRecord;
  /** The file's `head` (see FollowPosition). */
  readonly head: string;
  readonly offset: number;
  /** Bytes of the line, without the newline. */
  readonly length: number;
  readonly line: number;
}

/** A line of the trail the index knows the place of. */
export interface LinePlace {
  readonly head: string;
  readonly offset: number;
  readonly length: number;
  readonly line: number;
  readonly seq: number | null;
}

/** What links records into one story (lookup.ts), as the index can find them. */
export interface StoryKeys {
  readonly ids: readonly string[];
  readonly messageIds: readonly string[];
  readonly hashes: readonly string[];
  readonly sessions: readonly string[];
  readonly queueIds: readonly string[];
  readonly addresses: readonly string[];
}

const SCHEMA = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (fileno INTEGER PRIMARY KEY, head TEXT NOT NULL UNIQUE);
CREATE TABLE tx (
  rowid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  time INTEGER NOT NULL,
  type TEXT NOT NULL,
  outcome TEXT NOT NULL,
  class TEXT,
  user TEXT,
  client TEXT,
  upstream TEXT,
  queue_id TEXT,
  msgid TEXT,
  sha INTEGER,
  dup_of TEXT,
  session TEXT,
  client_code INTEGER,
  client_enh TEXT,
  up_code INTEGER,
  up_enh TEXT,
  total_ms INTEGER,
  seq INTEGER,
  fileno INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  line INTEGER NOT NULL,
  extra TEXT NOT NULL
);
CREATE TABLE addr (tx INTEGER NOT NULL, role INTEGER NOT NULL, rev TEXT NOT NULL, PRIMARY KEY (tx, role, rev)) WITHOUT ROWID;
CREATE TABLE sess (id TEXT NOT NULL UNIQUE, session TEXT NOT NULL, user TEXT, fileno INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, line INTEGER NOT NULL, seq INTEGER);
CREATE VIRTUAL TABLE words USING fts5(text, content='', detail=none, tokenize='unicode61');
`;

/**
 * The indexes of the searches. A first build fills the tables without them and creates them once it
 * has caught up with the trail (sorting once is several times faster than keeping 16 b-trees in
 * order row by row); until then a search is answered by scanning.
 */
const INDEXES = `
CREATE INDEX IF NOT EXISTS tx_time ON tx(time);
CREATE INDEX IF NOT EXISTS tx_class ON tx(class, time);
CREATE INDEX IF NOT EXISTS tx_outcome ON tx(outcome, time);
CREATE INDEX IF NOT EXISTS tx_user ON tx(user, time);
CREATE INDEX IF NOT EXISTS tx_upstream ON tx(upstream, time);
CREATE INDEX IF NOT EXISTS tx_client ON tx(client, time);
CREATE INDEX IF NOT EXISTS tx_type ON tx(type, time);
CREATE INDEX IF NOT EXISTS tx_client_code ON tx(client_code, time);
CREATE INDEX IF NOT EXISTS tx_up_code ON tx(up_code, time);
CREATE INDEX IF NOT EXISTS tx_msgid ON tx(msgid) WHERE msgid IS NOT NULL;
CREATE INDEX IF NOT EXISTS tx_queue ON tx(queue_id) WHERE queue_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tx_session ON tx(session);
CREATE INDEX IF NOT EXISTS tx_sha ON tx(sha) WHERE sha IS NOT NULL;
CREATE INDEX IF NOT EXISTS tx_dup ON tx(dup_of) WHERE dup_of IS NOT NULL;
CREATE INDEX IF NOT EXISTS addr_rev ON addr(rev, role);
CREATE INDEX IF NOT EXISTS sess_session ON sess(session);
`;

/** Role of an address in `addr`. */
const FROM = 0;
const TO = 1;

/** Thrown for an index file that cannot be used: the caller deletes it and builds again. */
export class IndexUnusable extends Error {}

export class IndexStore {
  readonly #db: Database.Database;
  readonly #insertTx: Database.Statement;
  readonly #insertAddr: Database.Statement;
  readonly #insertWords: Database.Statement;
  readonly #insertSess: Database.Statement;
  readonly #fileByHead: Database.Statement;
  readonly #insertFile: Database.Statement;
  readonly #setMeta: Database.Statement;
  readonly #heads = new Map<string, number>();

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#insertTx = db.prepare(`INSERT OR IGNORE INTO tx (id, time, type, outcome, class, user, client, upstream, queue_id, msgid, sha, dup_of, session,
      client_code, client_enh, up_code, up_enh, total_ms, seq, fileno, offset, length, line, extra)
      VALUES (@id, @time, @type, @outcome, @class, @user, @client, @upstream, @queueId, @msgid, @sha, @dupOf, @session,
      @clientCode, @clientEnh, @upCode, @upEnh, @totalMs, @seq, @fileno, @offset, @length, @line, @extra)`);
    this.#insertAddr = db.prepare('INSERT OR IGNORE INTO addr (tx, role, rev) VALUES (?, ?, ?)');
    this.#insertWords = db.prepare('INSERT INTO words (rowid, text) VALUES (?, ?)');
    this.#insertSess = db.prepare('INSERT OR IGNORE INTO sess (id, session, user, fileno, offset, length, line, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    this.#fileByHead = db.prepare('SELECT fileno FROM files WHERE head = ?').pluck();
    this.#insertFile = db.prepare('INSERT INTO files (head) VALUES (?)');
    this.#setMeta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
  }

  /**
   * Opens the index at `path`, building it anew when it is missing, of another schema version or
   * unreadable (`rebuilt` says which). The file is created readable by the owner only: it holds
   * addresses, as the trail does.
   */
  static open(path: string, trail: string): { store: IndexStore; rebuilt: string | null } {
    mkdirSync(dirname(path), { recursive: true });
    let why: string;
    try {
      const store = IndexStore.#tryOpen(path, trail);
      if (store) return { store, rebuilt: null };
      why = 'new';
    } catch (err) {
      why = err instanceof IndexUnusable ? err.message : `unreadable (${(err as { code?: string }).code ?? (err as Error).message})`;
    }
    IndexStore.remove(path);
    closeSync(openSync(path, 'w', 0o600));
    const db = new Database(path);
    IndexStore.#tune(db);
    db.exec(SCHEMA);
    const store = new IndexStore(db);
    store.#meta('version', String(INDEX_SCHEMA_VERSION));
    store.#meta('trail', trail);
    store.#meta('indexes', 'pending');
    return { store, rebuilt: why };
  }

  /** The index file and SQLite's companions. */
  static remove(path: string): void {
    for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
  }

  /** An existing index of this version for this trail, or null when there is none; throws IndexUnusable. */
  static #tryOpen(path: string, trail: string): IndexStore | null {
    let db: Database.Database;
    try {
      db = new Database(path, { fileMustExist: true });
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CANTOPEN') return null;
      throw err;
    }
    try {
      IndexStore.#tune(db);
      const version = db.prepare("SELECT value FROM meta WHERE key = 'version'").pluck().get() as string | undefined;
      if (version !== String(INDEX_SCHEMA_VERSION)) throw new IndexUnusable(`schema version ${version ?? 'missing'}, not ${INDEX_SCHEMA_VERSION}`);
      const forTrail = db.prepare("SELECT value FROM meta WHERE key = 'trail'").pluck().get() as string | undefined;
      if (forTrail !== trail) throw new IndexUnusable('made for another trail file');
      // Reads the first pages of each table: a file overwritten with garbage fails here, not at the first search.
      db.prepare('SELECT count(*) FROM (SELECT 1 FROM tx ORDER BY rowid DESC LIMIT 1)').get();
      return new IndexStore(db);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  static #tune(db: Database.Database): void {
    db.pragma('journal_mode = WAL');
    // A crash may lose the last batches: they are read again from the trail (the position is in the same transactions).
    db.pragma('synchronous = OFF');
    db.pragma('cache_size = -32000');
    db.pragma('temp_store = MEMORY');
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  position(): FollowPosition | null {
    const text = this.#db.prepare("SELECT value FROM meta WHERE key = 'position'").pluck().get() as string | undefined;
    return text === undefined ? null : (JSON.parse(text) as FollowPosition);
  }

  /** Rows indexed (relay and reject records). */
  count(): number {
    return (this.#db.prepare('SELECT max(rowid) FROM tx').pluck().get() as number | null) ?? 0;
  }

  /** Adds `batch` and moves the position, in one transaction. */
  add(batch: readonly Located[], position: FollowPosition | null): void {
    this.#db.transaction(() => {
      for (const item of batch) this.#add(item);
      if (position) this.#meta('position', JSON.stringify(position));
    })();
  }

  /** False while a first build has not created the search indexes yet. */
  get indexed(): boolean {
    return this.#db.prepare("SELECT value FROM meta WHERE key = 'indexes'").pluck().get() === 'ready';
  }

  /**
   * Creates the search indexes (when a first build left them out) and updates the optimiser's
   * statistics: the plans of the searches depend on them.
   */
  async finishBuild(): Promise<void> {
    // One index at a time, letting the searches waiting in this thread's queue in between.
    for (const statement of INDEXES.split(';')
      .map((s) => s.trim())
      .filter(Boolean)) {
      this.#db.exec(statement);
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.#db.exec('ANALYZE');
    this.#meta('indexes', 'ready');
  }

  /** Rows a condition's index finds, counted up to `cap` (sql-query.ts chooses the driving term with it). */
  readonly #estimate: Estimate = (condition, range, cap) => {
    if (condition.count === null) return cap;
    const bounds = condition.timed ? [range.after, range.before] : [];
    return this.#db
      .prepare(condition.count)
      .pluck()
      .get(...condition.values, ...bounds, cap) as number;
  };

  /** A page of summaries, newest first. */
  search(query: Query, scope: Scope, page: Page): { items: TransactionSummary[]; next: string | null } {
    const { sql, params } = queryToSql(query, scope, page, this.#estimate);
    const rows = this.#db.prepare(sql).all(params) as SummaryRow[];
    const more = rows.length > page.limit;
    const shown = more ? rows.slice(0, page.limit) : rows;
    const last = shown[shown.length - 1];
    return { items: shown.map(summaryOf), next: more && last ? encodeCursor(last.time, last.rowid) : null };
  }

  /** The plan SQLite chooses for a search (for the benchmark and for tests of the indexes). */
  plan(query: Query, scope: Scope, page: Page): string[] {
    const { sql, params } = queryToSql(query, scope, page, this.#estimate);
    return (this.#db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as { detail: string }[]).map((r) => r.detail);
  }

  /**
   * Lines that may belong to the story of the records with these keys: a superset (lookup.ts keeps
   * the ones that do), at most `limit`, the most recent.
   */
  storyLines(keys: StoryKeys, limit: number): LinePlace[] {
    const conds: string[] = [];
    const params: unknown[] = [];
    const any = (column: string, values: readonly unknown[]): void => {
      if (values.length === 0) return;
      conds.push(`${column} IN (${values.map(() => '?').join(',')})`);
      params.push(...values);
    };
    any('id', keys.ids);
    any('dup_of', keys.ids);
    any('msgid', keys.messageIds);
    any('sha', keys.hashes.map(shaKey));
    any('session', keys.sessions);
    any('queue_id', keys.queueIds);
    if (keys.addresses.length > 0) {
      conds.push(`rowid IN (SELECT tx FROM addr WHERE rev IN (${keys.addresses.map(() => '?').join(',')}))`);
      params.push(...keys.addresses.map(reversed));
    }
    const places: LinePlace[] = [];
    const columns = 'f.head AS head, t.offset AS offset, t.length AS length, t.line AS line, t.seq AS seq';
    if (conds.length > 0) {
      const sql = `SELECT ${columns} FROM (SELECT * FROM tx WHERE ${conds.join(' OR ')} ORDER BY time DESC LIMIT ?) t JOIN files f ON f.fileno = t.fileno`;
      places.push(...(this.#db.prepare(sql).all([...params, limit]) as LinePlace[]));
    }
    const sessions = [...new Set([...keys.sessions])];
    if (sessions.length > 0) {
      const sql = `SELECT ${columns} FROM sess t JOIN files f ON f.fileno = t.fileno WHERE t.session IN (${sessions.map(() => '?').join(',')}) LIMIT ?`;
      places.push(...(this.#db.prepare(sql).all([...sessions, limit]) as LinePlace[]));
    }
    return places;
  }

  /** Relay and reject records from `since` (inclusive) to `until` (exclusive), oldest first. */
  *statsRows(since: number, until: number): Generator<StatsInput> {
    const stmt = this.#db.prepare('SELECT time, type, user, outcome, class, upstream, total_ms AS totalMs FROM tx WHERE time >= ? AND time < ? ORDER BY time');
    yield* stmt.iterate(since, until) as IterableIterator<StatsInput>;
  }

  #meta(key: string, value: string): void {
    this.#setMeta.run(key, value);
  }

  #fileno(head: string): number {
    const known = this.#heads.get(head);
    if (known !== undefined) return known;
    let fileno = this.#fileByHead.get(head) as number | undefined;
    if (fileno === undefined) fileno = Number(this.#insertFile.run(head).lastInsertRowid);
    this.#heads.set(head, fileno);
    return fileno;
  }

  #add(item: Located): void {
    const { record } = item;
    const fileno = this.#fileno(item.head);
    const chain = record as { seq?: unknown };
    const seq = typeof chain.seq === 'number' ? chain.seq : null;
    if (record.type === 'session') {
      const s = record;
      if (typeof s.id !== 'string' || typeof s.session?.id !== 'string') return;
      this.#insertSess.run(s.id, s.session.id.toLowerCase(), s.client?.user ?? null, fileno, item.offset, item.length, item.line, seq);
      return;
    }
    if (record.type !== 'relay' && record.type !== 'reject') return;
    if (typeof record.id !== 'string' || typeof record.time !== 'string') return;
    const time = Date.parse(record.time);
    if (Number.isNaN(time)) return;
    const summary = summarise(record);
    const relay = record.type === 'relay' ? record : null;
    const reject = record.type === 'reject' ? record : null;
    const info = this.#insertTx.run({
      id: record.id.toUpperCase(),
      time,
      type: record.type,
      outcome: summary.outcome,
      class: summary.class,
      user: summary.user,
      client: summary.client?.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '') ?? null,
      upstream: summary.upstream,
      queueId: relay?.upstream?.queueId?.toLowerCase() ?? null,
      msgid: summary.messageId ? bare(summary.messageId) : null,
      sha: relay?.message?.sha256 ? shaKey(relay.message.sha256) : null,
      dupOf: relay?.duplicateOf?.toUpperCase() ?? null,
      session: (relay ?? reject)?.session?.id?.toLowerCase() ?? null,
      clientCode: summary.clientReply?.code ?? null,
      clientEnh: summary.clientReply?.enhanced ?? null,
      upCode: summary.upstreamReply?.code ?? null,
      upEnh: summary.upstreamReply?.enhanced ?? null,
      totalMs: summary.totalMs,
      seq,
      fileno,
      offset: item.offset,
      length: item.length,
      line: item.line,
      extra: JSON.stringify(extraOf(summary)),
    });
    if (info.changes === 0) return;
    const rowid = Number(info.lastInsertRowid);
    const seen = new Set<string>();
    const address = (role: number, value: string | null): void => {
      if (!value) return;
      const rev = reversed(bare(value));
      const key = `${role}${rev}`;
      if (seen.has(key)) return;
      seen.add(key);
      this.#insertAddr.run(rowid, role, rev);
    };
    address(FROM, summary.from);
    for (const to of summary.to) address(TO, to);
    const text = [summary.from, ...summary.to, summary.messageId, summary.subject, relay?.message?.headerFrom].filter(Boolean).join(' ');
    if (text !== '') this.#insertWords.run(rowid, text);
  }
}

/** The columns a summary is rebuilt from. */
interface SummaryRow {
  readonly rowid: number;
  readonly id: string;
  readonly time: number;
  readonly type: string;
  readonly outcome: string;
  readonly class: string | null;
  readonly user: string | null;
  readonly client: string | null;
  readonly upstream: string | null;
  readonly extra: string;
}

/** SUMMARY_COLUMNS (sql-query.ts) hold the rest of a summary: these are kept as they are. */
type Extra = [
  from: string | null,
  to: readonly string[],
  messageId: string | null,
  subject: string | null,
  upstreamReply: TransactionSummary['upstreamReply'],
  clientReply: TransactionSummary['clientReply'],
  totalMs: number | null,
  instance: string | null,
  spool?: unknown,
];

function extraOf(s: TransactionSummary): Extra {
  const extra: Extra = [s.from, s.to, s.messageId, s.subject, s.upstreamReply, s.clientReply, s.totalMs, s.instance];
  if (s.spool !== undefined) extra.push(s.spool);
  return extra;
}

function summaryOf(row: SummaryRow): TransactionSummary {
  const [from, to, messageId, subject, upstreamReply, clientReply, totalMs, instance, spool] = JSON.parse(row.extra) as Extra;
  const summary: TransactionSummary = {
    id: row.id,
    time: new Date(row.time).toISOString(),
    type: row.type,
    outcome: row.outcome,
    class: row.class,
    from,
    to,
    messageId,
    subject,
    user: row.user,
    client: row.client,
    upstream: row.upstream,
    upstreamReply,
    clientReply,
    totalMs,
    instance,
  };
  return spool === undefined ? summary : { ...summary, spool };
}

/**
 * An address as the index keeps it: lowercased and reversed, so that a whole domain
 * (`moc.elpmaxe@…`) is a prefix of the key and one index finds both an address and a domain.
 */
export function reversed(address: string): string {
  return [...address.toLowerCase()].reverse().join('');
}

/** The first 52 bits of a SHA-256 (hex) as a number: enough to find the messages with the same content (lookup then compares the whole hash). */
export function shaKey(hex: string): number {
  return parseInt(hex.slice(0, 13), 16);
}

export function encodeCursor(time: number, rowid: number): string {
  return Buffer.from(`${time}.${rowid}`).toString('base64url');
}

/** `<x>` → `x`, lowercased: Message-IDs and addresses as the index keeps them. */
function bare(s: string): string {
  const t = s.trim();
  return (t.startsWith('<') && t.endsWith('>') ? t.slice(1, -1) : t).toLowerCase();
}
