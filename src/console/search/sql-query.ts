/**
 * A parsed query (query.ts) as SQL over the index's tables (index-store.ts), newest first. Every
 * value is a bound parameter; only column names and operators come from here. Each key has its own
 * index ordered by time, so the common searches read about `limit` rows whatever the trail's size
 * (docs/console.md, "The search index").
 */
import { QueryError, type Query, type Term } from '../query.js';

/** The SMTP users a console user may see the mail of; null = all mail. */
export type Scope = { readonly users: readonly string[] } | null;

export interface Page {
  readonly limit: number;
  /** From the previous page's `next`; null for the first page. */
  readonly cursor: string | null;
}

export function queryToSql(query: Query, scope: Scope, page: Page): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (cond: string, ...values: unknown[]): void => {
    where.push(cond);
    params.push(...values);
  };
  if (scope !== null) add(`user IN (${marks(scope.users)})`, ...scope.users);
  for (const term of query.terms) {
    const { cond, values } = termSql(term);
    add(term.negate ? `NOT COALESCE((${cond}), 0)` : `(${cond})`, ...values);
  }
  if (query.words.length > 0) add('rowid IN (SELECT rowid FROM words WHERE words MATCH ?)', ftsExpression(query.words));
  if (query.after !== null) add('time >= ?', query.after);
  if (query.before !== null) add('time < ?', query.before);
  if (page.cursor !== null) {
    const { time, rowid } = decodeCursor(page.cursor);
    add('(time < ? OR (time = ? AND rowid < ?))', time, time, rowid);
  }
  const sql = `SELECT ${SUMMARY_COLUMNS} FROM tx${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, rowid DESC LIMIT ?`;
  // One more than asked: whether there is a next page.
  params.push(page.limit + 1);
  return { sql, params };
}

/** The columns a summary is built from (index-store.ts, `summaryOf`). */
const SUMMARY_COLUMNS = 'rowid, id, time, type, outcome, class, user, client, upstream, extra';

function termSql(term: Term): { cond: string; values: unknown[] } {
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
      return { cond: `rowid IN (SELECT tx FROM addr WHERE (${parts.join(' OR ')}) AND role = ${role})`, values };
    }
    case 'msgid':
      return { cond: `msgid IN (${marks(v)})`, values: [...v] };
    case 'id':
      return { cond: `id IN (${marks(v)})`, values: [...v] };
    case 'queueid':
      return { cond: `queue_id IN (${marks(v)})`, values: [...v] };
    case 'user':
      return { cond: `user IN (${marks(v)})`, values: [...v] };
    case 'upstream':
      return { cond: `upstream IN (${marks(v)})`, values: [...v] };
    case 'class':
      return { cond: `class IN (${marks(v)})`, values: [...v] };
    case 'outcome':
      return { cond: `outcome IN (${marks(v)})`, values: [...v] };
    case 'type':
      return { cond: `type IN (${marks(v)})`, values: [...v] };
    case 'client': {
      // GLOB (case-sensitive, like the index) can use the index for a prefix.
      const parts = v.map((value) => (value.endsWith('*') ? 'client GLOB ?' : 'client = ?'));
      return { cond: parts.join(' OR '), values: v.map((value) => (value.endsWith('*') ? `${value.slice(0, -1).replace(/[[\]*?]/g, '')}*` : value)) };
    }
    case 'code': {
      const parts: string[] = [];
      const values: unknown[] = [];
      for (const value of v) {
        if (value.includes('.')) {
          parts.push('client_enh = ? OR up_enh = ?');
          values.push(value, value);
          continue;
        }
        const low = Number(value.replace(/x/g, '0'));
        const high = Number(value.replace(/x/g, '9'));
        parts.push('client_code BETWEEN ? AND ? OR up_code BETWEEN ? AND ?');
        values.push(low, high, low, high);
      }
      return { cond: parts.join(' OR '), values };
    }
  }
}

/**
 * The bare words as an FTS5 expression: each word split into tokens as the index splits text
 * (unicode61: letters and digits), all required, the last token of each word as a prefix.
 */
export function ftsExpression(words: readonly string[]): string {
  const parts: string[] = [];
  for (const word of words) {
    const tokens = word.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
    tokens.forEach((token, i) => parts.push(`"${token}"${i === tokens.length - 1 ? '*' : ''}`));
  }
  if (parts.length === 0) throw new QueryError('a search word needs a letter or digit');
  return parts.join(' AND ');
}

function marks(values: readonly unknown[]): string {
  return values.map(() => '?').join(',');
}

function decodeCursor(cursor: string): { time: number; rowid: number } {
  const m = /^(\d{1,15})\.(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new QueryError('the cursor is not one this server gave');
  return { time: Number(m[1]), rowid: Number(m[2]) };
}
