/**
 * A parsed query (query.ts) as SQL over the index's tables (index-store.ts), newest first. Every
 * value is a bound parameter; only column names and operators come from here.
 *
 * How a search stays fast whatever the trail's size (docs/console.md, "The search index"): each term
 * is first counted through its index (within the time range where the index is ordered by time),
 * stopping at FEW. A rare term drives the search through its index; a common one is only a filter on
 * a walk of the time index from the newest record, which meets a page of matches after a short walk
 * because matches are common. SQLite's planner alone cannot tell the two apart for an address domain or a reply code
 * (`to:@gmail.com` is a fifth of the trail, `to:@corp12.example` a handful of rows).
 */
import { QueryError, wordParts, type Query, type Term } from '../query.js';

/** The SMTP users a console user may see the mail of; null = all mail. */
export type Scope = { readonly users: readonly string[] } | null;

export interface Page {
  readonly limit: number;
  /** From the previous page's `next`; null for the first page. */
  readonly cursor: string | null;
}

/** Below this many matching rows a term alone drives the search through its own index. */
export const RARE = 5_000;
/**
 * With several terms, the rarest drives below this many rows: how common their conjunction is cannot
 * be counted, and a walk of the time index for a conjunction that matches nothing would read the whole
 * index, while the rarest term's index reads at most this many rows.
 */
export const FEW = 50_000;

/** A condition in the two forms: through its index (driving), or as a filter that keeps the index out. */
export interface Condition {
  readonly indexed: string;
  readonly filter: string;
  readonly values: readonly unknown[];
  /**
   * `SELECT count(*) FROM (SELECT 1 ... LIMIT ?)` over the condition's index, with `values` then the
   * cap; null when no index can count it (it is then always a filter).
   */
  readonly count: string | null;
  /** The count also takes the time range (after `values`): the condition's index is ordered by time. */
  readonly timed?: boolean;
}

/** Runs a condition's `count` with the time range (when `timed`) and the cap (index-store.ts). */
export type Estimate = (condition: Condition, range: { readonly after: number; readonly before: number }, cap: number) => number;

/** The columns a summary is built from (index-store.ts, `summaryOf`). */
const SUMMARY_COLUMNS = 'rowid, id, time, type, outcome, class, user, client, upstream, extra';

export function queryToSql(query: Query, scope: Scope, page: Page, estimate: Estimate): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (cond: string, values: readonly unknown[]): void => {
    where.push(cond);
    params.push(...values);
  };
  const positive: Condition[] = [];
  if (scope !== null) positive.push(columnIn('user', scope.users));
  for (const term of query.terms) {
    const c = termCondition(term);
    if (term.negate) add(`NOT COALESCE((${c.filter}), 0)`, c.values);
    else positive.push(c);
  }
  if (query.words.length > 0) {
    const words = 'SELECT rowid FROM words WHERE words MATCH ?';
    positive.push({
      indexed: `rowid IN (${words})`,
      // The matches are listed once; the time index is walked and each row looked up in the list.
      filter: `+rowid IN (${words})`,
      values: [ftsExpression(query.words)],
      count: `SELECT count(*) FROM (${words} LIMIT ?)`,
    });
  }
  // The rarest term drives; the others filter. None rare: the time index drives.
  const range = { after: query.after ?? 0, before: query.before ?? Number.MAX_SAFE_INTEGER };
  const threshold = positive.length > 1 ? FEW : RARE;
  const counted = positive.map((c) => ({ c, n: c.count === null ? FEW : estimate(c, range, FEW) }));
  const driver = counted.filter((x) => x.n < threshold).sort((a, b) => a.n - b.n)[0]?.c ?? null;
  for (const c of positive) add(c === driver ? `(${c.indexed})` : `(${c.filter})`, c.values);
  if (query.after !== null) add('time >= ?', [query.after]);
  if (query.before !== null) add('time < ?', [query.before]);
  if (page.cursor !== null) {
    const { time, rowid } = decodeCursor(page.cursor);
    add('(time < ? OR (time = ? AND rowid < ?))', [time, time, rowid]);
  }
  const sql = `SELECT ${SUMMARY_COLUMNS} FROM tx${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, rowid DESC LIMIT ?`;
  // One more than asked: whether there is a next page.
  params.push(page.limit + 1);
  return { sql, params };
}

/** `column IN (...)`; as a filter, `+column` keeps SQLite from using the column's index. */
function columnIn(column: string, values: readonly unknown[]): Condition {
  const marks = values.map(() => '?').join(',');
  return { indexed: `${column} IN (${marks})`, filter: `+${column} IN (${marks})`, values, count: countOf(`${column} IN (${marks})`), timed: true };
}

/** The tx column of each key that is a plain comparison. */
const COLUMNS = {
  msgid: 'msgid',
  id: 'id',
  queueid: 'queue_id',
  user: 'user',
  upstream: 'upstream',
  class: 'class',
  outcome: 'outcome',
  type: 'type',
} as const;

function termCondition(term: Term): Condition {
  const v = term.values;
  switch (term.key) {
    case 'from':
    case 'to': {
      // Addresses are kept reversed (index-store.ts): a domain is a range of keys.
      const role = term.key === 'from' ? 0 : 1;
      const parts: string[] = [];
      const values: unknown[] = [];
      for (const value of v) {
        const rev = [...value].reverse().join('');
        if (value.startsWith('@')) {
          parts.push('(rev >= ? AND rev < ?)');
          values.push(rev, `${rev}\u{10ffff}`);
        } else {
          parts.push('rev = ?');
          values.push(rev);
        }
      }
      const match = `(${parts.join(' OR ')}) AND role = ${role}`;
      return {
        indexed: `rowid IN (SELECT tx FROM addr WHERE ${match})`,
        // addr's primary key starts with tx: one lookup per row walked.
        filter: `EXISTS (SELECT 1 FROM addr WHERE addr.tx = tx.rowid AND ${match})`,
        values,
        count: `SELECT count(*) FROM (SELECT 1 FROM addr WHERE ${match} LIMIT ?)`,
      };
    }
    case 'msgid':
    case 'id':
    case 'queueid':
    case 'user':
    case 'upstream':
    case 'class':
    case 'outcome':
    case 'type':
      return columnIn(COLUMNS[term.key], v);
    case 'client': {
      // GLOB (case-sensitive, like the index) can use the index for a prefix.
      const parts = v.map((value) => (value.endsWith('*') ? 'client GLOB ?' : 'client = ?'));
      const values = v.map((value) => (value.endsWith('*') ? `${value.slice(0, -1).replace(/[[\]*?]/g, '')}*` : value));
      return { indexed: parts.join(' OR '), filter: parts.map((p) => `+${p}`).join(' OR '), values, count: countOf(parts.join(' OR ')), timed: true };
    }
    case 'code': {
      const indexed: string[] = [];
      const filter: string[] = [];
      const values: unknown[] = [];
      // Enhanced codes have no index (they are in few replies' text, and rarely searched alone).
      const countable = v.every((value) => !value.includes('.'));
      for (const value of v) {
        if (value.includes('.')) {
          indexed.push('client_enh = ? OR up_enh = ?');
          filter.push('+client_enh = ? OR +up_enh = ?');
          values.push(value, value);
          continue;
        }
        const low = Number(value.replace(/x/g, '0'));
        const high = Number(value.replace(/x/g, '9'));
        indexed.push('client_code BETWEEN ? AND ? OR up_code BETWEEN ? AND ?');
        filter.push('+client_code BETWEEN ? AND ? OR +up_code BETWEEN ? AND ?');
        values.push(low, high, low, high);
      }
      return { indexed: indexed.join(' OR '), filter: filter.join(' OR '), values, count: countable ? countOf(indexed.join(' OR ')) : null, timed: true };
    }
  }
}

function countOf(indexed: string): string {
  return `SELECT count(*) FROM (SELECT 1 FROM tx WHERE (${indexed}) AND time >= ? AND time < ? LIMIT ?)`;
}

/** The bare words as an FTS5 expression: every part (query.ts, `wordParts`) required. */
export function ftsExpression(words: readonly string[]): string {
  return wordParts(words)
    .map((p) => `"${p.token}"${p.prefix ? '*' : ''}`)
    .join(' AND ');
}

function decodeCursor(cursor: string): { time: number; rowid: number } {
  const m = /^(\d{1,15})\.(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new QueryError('the cursor is not one this server gave');
  return { time: Number(m[1]), rowid: Number(m[2]) };
}
