/**
 * The search syntax of the console and of `GET /api/v1/transactions?q=` (docs/api.md, "Query
 * syntax"): space-separated terms, all of which must hold. A term is `key:value` (value in "..." when
 * it has spaces), `-key:value` for "not", or a bare word, which searches addresses, the Message-ID
 * and the subject. A value with commas means any of them (`class:throttled,quota`). Parsed once here
 * into plain data that the search index turns into SQL (search/sql-query.ts).
 */
import { isIP } from 'node:net';
import { CLIENT_REJECT_CLASSES, UPSTREAM_FAILURE_CLASSES } from '../classify/failure-class.js';
import { parseTimeBound } from '../tools/time-range.js';

export const QUERY_KEYS = [
  'from',
  'to',
  'msgid',
  'id',
  'queueid',
  'user',
  'client',
  'upstream',
  'class',
  'outcome',
  'code',
  'before',
  'after',
  'type',
] as const;
export type QueryKey = (typeof QUERY_KEYS)[number];
export type TermKey = Exclude<QueryKey, 'before' | 'after'>;

/** One `key:value` term: the record matches when any of `values` matches (none, with `negate`). */
export interface Term {
  readonly key: TermKey;
  readonly values: readonly string[];
  readonly negate: boolean;
}

export interface Query {
  readonly terms: readonly Term[];
  /** Bare words, lowercased: each must start a word of an address, the Message-ID or the subject. */
  readonly words: readonly string[];
  /** `after:` (inclusive) and `before:` (exclusive), ms since the epoch; null = unbounded. */
  readonly after: number | null;
  readonly before: number | null;
}

/** A query that cannot be read: the message says which term and why (it quotes only the term). */
export class QueryError extends Error {
  readonly code = 'bad_query';
}

/** Outcomes of relay records, and `refused` for reject records (mailtrail refused the client). */
export const OUTCOMES = ['delivered', 'partial', 'deferred', 'rejected', 'unknown', 'aborted', 'refused'] as const;
/** Record types the index holds; `delivery` and `spool` are the spool's (docs/api.md). */
export const TYPES = ['relay', 'reject', 'delivery', 'spool'] as const;
const CLASSES: ReadonlySet<string> = new Set([...UPSTREAM_FAILURE_CLASSES, ...CLIENT_REJECT_CLASSES]);
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const CODE = /^(?:[2-5]\d\d|[2-5]xx|[2-5]\dx|[245]\.\d{1,3}\.\d{1,3})$/;
const MAX_TERMS = 32;
const MAX_LENGTH = 2_000;
/**
 * Distinct word parts (search-word tokens) in one query, at most. The index intersects the full list
 * of matches of every part (docs/console.md, "Search speed"): a part common to most records (`com`)
 * costs a walk of most of the index, and a query repeating it hundreds of times (`com.com.com...`)
 * held the index worker for minutes; real searches use a handful.
 */
export const MAX_WORD_PARTS = 12;

/** Keys whose value may list alternatives separated by commas. */
const LISTS: ReadonlySet<TermKey> = new Set(['class', 'outcome', 'upstream', 'user', 'type', 'code', 'client', 'id', 'queueid']);

/** Parses `text`; `now` anchors relative times (`after:1h`). Throws QueryError. */
export function parseQuery(text: string, now: number): Query {
  if (text.length > MAX_LENGTH) throw new QueryError(`the query is longer than ${MAX_LENGTH} characters`);
  const terms: Term[] = [];
  const words: string[] = [];
  let after: number | null = null;
  let before: number | null = null;
  const tokens = tokenize(text);
  if (tokens.length > MAX_TERMS) throw new QueryError(`more than ${MAX_TERMS} terms`);
  for (const token of tokens) {
    if (token.key === null) {
      const word = token.value.trim().toLowerCase();
      if (word !== '') words.push(word);
      continue;
    }
    const key = token.key.toLowerCase();
    if (!(QUERY_KEYS as readonly string[]).includes(key)) {
      throw new QueryError(`unknown key "${clip(token.key)}:" (keys: ${QUERY_KEYS.map((k) => `${k}:`).join(' ')})`);
    }
    if (key === 'before' || key === 'after') {
      if (token.negate) throw new QueryError(`${key}: cannot be negated`);
      const iso = parseTimeBound(token.value, now);
      if (iso === null)
        throw new QueryError(
          `${key}: wants a time (2026-11-25T10:00, UTC unless it says otherwise) or a duration back from now (30m, 1h, 2d), not "${clip(token.value)}"`,
        );
      const ms = Date.parse(iso);
      if (key === 'after') after = after === null ? ms : Math.max(after, ms);
      else before = before === null ? ms : Math.min(before, ms);
      continue;
    }
    const termKey = key as TermKey;
    const raw = LISTS.has(termKey) && !token.quoted ? token.value.split(',') : [token.value];
    const values = raw
      .map((v) => v.trim())
      .filter((v) => v !== '')
      .map((v) => normalise(termKey, v));
    if (values.length === 0) throw new QueryError(`${key}: needs a value`);
    terms.push({ key: termKey, values, negate: token.negate });
  }
  if (words.length > 0) wordParts(words);
  return { terms, words, after, before };
}

/** One part of the bare words as the index matches it: a whole token, or the start of one. */
export interface WordPart {
  readonly token: string;
  readonly prefix: boolean;
}

/**
 * The bare words split as the index splits text (FTS5 unicode61: runs of letters and digits), the
 * last part of each word as a prefix, each distinct part once. Throws QueryError when there is none,
 * or more than MAX_WORD_PARTS.
 */
export function wordParts(words: readonly string[]): WordPart[] {
  const parts = new Map<string, WordPart>();
  for (const word of words) {
    const tokens = word.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
    tokens.forEach((token, i) => {
      const prefix = i === tokens.length - 1;
      parts.set(`${token}${prefix ? '*' : ''}`, { token, prefix });
    });
  }
  if (parts.size === 0) throw new QueryError('a search word needs a letter or digit');
  if (parts.size > MAX_WORD_PARTS)
    throw new QueryError(`the search words have more than ${MAX_WORD_PARTS} parts (letters and digits between other characters): search with fewer`);
  return [...parts.values()];
}

/** The value as the index stores it; throws for a value that can never match. */
function normalise(key: TermKey, value: string): string {
  const v = value.trim();
  switch (key) {
    case 'from':
    case 'to': {
      const lower = stripBrackets(v).toLowerCase();
      // `@example.com` or `example.com`: the whole domain; `ana@example.com`: that address.
      if (!lower.includes('@')) return `@${lower}`;
      if (lower.endsWith('@')) throw new QueryError(`${key}: wants an address or @domain, not "${clip(v)}"`);
      return lower;
    }
    case 'msgid':
      return stripBrackets(v).toLowerCase();
    case 'id': {
      const id = v.toUpperCase();
      if (!ULID.test(id)) throw new QueryError(`id: wants a mailtrail id (26 characters, as in the reply the client got), not "${clip(v)}"`);
      return id;
    }
    case 'queueid':
      return v.toLowerCase();
    case 'client': {
      const ip = v.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '');
      if (ip.endsWith('*') || isIP(ip) !== 0) return ip;
      throw new QueryError(`client: wants an IP address, or its start followed by * (10.0.4.*), not "${clip(v)}"`);
    }
    case 'upstream':
    case 'user':
      return v;
    case 'class': {
      const cls = v.toLowerCase();
      if (!CLASSES.has(cls)) throw new QueryError(`class: "${clip(v)}" is not a failure class (docs/failures.md)`);
      return cls;
    }
    case 'outcome': {
      const o = v.toLowerCase();
      if (!(OUTCOMES as readonly string[]).includes(o)) throw new QueryError(`outcome: wants one of ${OUTCOMES.join(', ')}, not "${clip(v)}"`);
      return o;
    }
    case 'code': {
      const c = v.toLowerCase();
      if (!CODE.test(c)) throw new QueryError(`code: wants a reply code (550, 5xx, 45x) or an enhanced code (5.1.1), not "${clip(v)}"`);
      return c;
    }
    case 'type': {
      const t = v.toLowerCase();
      if (!(TYPES as readonly string[]).includes(t)) throw new QueryError(`type: wants one of ${TYPES.join(', ')}, not "${clip(v)}"`);
      return t;
    }
  }
}

interface Token {
  readonly key: string | null;
  readonly value: string;
  readonly negate: boolean;
  readonly quoted: boolean;
}

/** Splits at unquoted whitespace; `key:"a b"`, `"a b"` and `\"` inside quotes. */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (i >= text.length) break;
    let negate = false;
    let key: string | null = null;
    const keyMatch = /^(-?)([A-Za-z]+):/.exec(text.slice(i));
    if (keyMatch) {
      negate = keyMatch[1] === '-';
      key = keyMatch[2]!;
      i += keyMatch[0].length;
    }
    let value = '';
    let quoted = false;
    if (text[i] === '"') {
      quoted = true;
      i++;
      let closed = false;
      while (i < text.length) {
        const ch = text[i]!;
        if (ch === '\\' && i + 1 < text.length) {
          value += text[i + 1];
          i += 2;
          continue;
        }
        if (ch === '"') {
          closed = true;
          i++;
          break;
        }
        value += ch;
        i++;
      }
      if (!closed) throw new QueryError('a quote is not closed');
    } else {
      while (i < text.length && !/\s/.test(text[i]!)) value += text[i++];
    }
    tokens.push({ key, value, negate, quoted });
  }
  return tokens;
}

function stripBrackets(s: string): string {
  return s.startsWith('<') && s.endsWith('>') ? s.slice(1, -1) : s;
}

/** Error messages quote at most this much of the input. */
function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}
