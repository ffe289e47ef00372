/**
 * The console's query syntax (docs/api.md, "Query syntax"): one behaviour per key, then quoting,
 * negation, lists and the errors a user is told.
 */
import { describe, expect, it } from 'vitest';
import { parseQuery, QueryError, type Term } from '../../src/console/query.js';
import { ftsExpression } from '../../src/console/search/sql-query.js';

const NOW = Date.parse('2026-11-25T12:00:00.000Z');
const terms = (q: string): readonly Term[] => parseQuery(q, NOW).terms;
const one = (q: string): Term => {
  const t = terms(q);
  expect(t).toHaveLength(1);
  return t[0]!;
};
const refused = (q: string): string => {
  try {
    parseQuery(q, NOW);
  } catch (err) {
    expect(err).toBeInstanceOf(QueryError);
    return (err as QueryError).message;
  }
  throw new Error(`"${q}" was accepted`);
};

describe('query keys', () => {
  it('from: takes an address, lowercased, or a domain with or without @', () => {
    expect(one('from:App@Example.COM').values).toEqual(['app@example.com']);
    expect(one('from:@example.com').values).toEqual(['@example.com']);
    expect(one('from:example.com').values).toEqual(['@example.com']);
  });

  it('to: takes an address in angle brackets as well', () => {
    expect(one('to:<Ana@Example.org>')).toEqual({ key: 'to', values: ['ana@example.org'], negate: false });
  });

  it('msgid: drops the angle brackets and lowercases', () => {
    expect(one('msgid:<ABC.123@Example.com>').values).toEqual(['abc.123@example.com']);
  });

  it('id: takes a mailtrail id in either case and refuses anything else', () => {
    expect(one('id:01m8830ft48g96hga5dqz5wbq8').values).toEqual(['01M8830FT48G96HGA5DQZ5WBQ8']);
    expect(refused('id:12345')).toMatch(/^id: wants a mailtrail id/);
  });

  it('queueid: is compared lowercased', () => {
    expect(one('queueid:0102019A-ABC').values).toEqual(['0102019a-abc']);
  });

  it('user: keeps the SMTP username as written', () => {
    expect(one('user:Billing').values).toEqual(['Billing']);
  });

  it('client: takes an IP address or its start with *', () => {
    expect(one('client:10.0.4.17').values).toEqual(['10.0.4.17']);
    expect(one('client:10.0.4.*').values).toEqual(['10.0.4.*']);
    expect(one('client:::ffff:10.0.4.17').values).toEqual(['10.0.4.17']);
    expect(refused('client:shop-web')).toMatch(/^client: wants an IP address/);
  });

  it('upstream: takes the upstream name', () => {
    expect(one('upstream:ses')).toEqual({ key: 'upstream', values: ['ses'], negate: false });
  });

  it('class: takes an upstream or client failure class and refuses unknown ones', () => {
    expect(one('class:throttled').values).toEqual(['throttled']);
    expect(one('class:relay_denied').values).toEqual(['relay_denied']);
    expect(refused('class:nope')).toMatch(/not a failure class/);
  });

  it('outcome: takes the relay outcomes and refused', () => {
    expect(one('outcome:deferred,refused').values).toEqual(['deferred', 'refused']);
    expect(refused('outcome:lost')).toMatch(/^outcome: wants one of/);
  });

  it('code: takes a reply code, a class of codes or an enhanced code', () => {
    expect(one('code:550').values).toEqual(['550']);
    expect(one('code:4XX').values).toEqual(['4xx']);
    expect(one('code:45x').values).toEqual(['45x']);
    expect(one('code:5.1.1').values).toEqual(['5.1.1']);
    expect(refused('code:999')).toMatch(/^code: wants a reply code/);
  });

  it('type: takes relay, reject, delivery or spool', () => {
    expect(one('type:reject').values).toEqual(['reject']);
    expect(refused('type:session')).toMatch(/^type: wants one of/);
  });

  it('after: takes a duration back from now', () => {
    expect(parseQuery('after:1h', NOW).after).toBe(NOW - 3_600_000);
  });

  it('before: takes a UTC time, with or without a zone', () => {
    expect(parseQuery('before:2026-11-25T10:00', NOW).before).toBe(Date.parse('2026-11-25T10:00:00Z'));
    expect(parseQuery('before:2026-11-25T10:00+01:00', NOW).before).toBe(Date.parse('2026-11-25T09:00:00Z'));
    expect(refused('before:yesterday')).toMatch(/^before: wants a time/);
  });
});

describe('query syntax', () => {
  it('keeps bare words, lowercased, for addresses, Message-ID and subject', () => {
    expect(parseQuery('Invoice ana', NOW).words).toEqual(['invoice', 'ana']);
  });

  it('reads a quoted value with spaces, and a quoted bare phrase', () => {
    expect(one('user:"billing team"').values).toEqual(['billing team']);
    expect(parseQuery('"march invoice"', NOW).words).toEqual(['march invoice']);
  });

  it('does not split a quoted value at commas', () => {
    expect(one('user:"a,b"').values).toEqual(['a,b']);
  });

  it('negates a term with a leading minus', () => {
    expect(one('-outcome:delivered')).toEqual({ key: 'outcome', values: ['delivered'], negate: true });
  });

  it('combines every kind of term', () => {
    const q = parseQuery('class:throttled upstream:ses after:2h before:1h to:@gmail.com invoice', NOW);
    expect(q.terms.map((t) => t.key)).toEqual(['class', 'upstream', 'to']);
    expect(q.after).toBe(NOW - 7_200_000);
    expect(q.before).toBe(NOW - 3_600_000);
    expect(q.words).toEqual(['invoice']);
  });

  it('is empty for an empty query', () => {
    expect(parseQuery('   ', NOW)).toEqual({ terms: [], words: [], after: null, before: null });
  });

  it('names an unknown key and lists the known ones', () => {
    expect(refused('subject:hello')).toMatch(/^unknown key "subject:" \(keys: from: to: msgid:/);
  });

  it('refuses an unclosed quote and a key without a value', () => {
    expect(refused('user:"billing')).toBe('a quote is not closed');
    expect(refused('class:')).toBe('class: needs a value');
  });

  it('turns bare words into FTS5 prefix terms split as the index splits text', () => {
    expect(ftsExpression(['ana.lopez@exam'])).toBe('"ana" AND "lopez" AND "exam"*');
    expect(() => ftsExpression(['@@'])).toThrow(QueryError);
  });

  it('asks the index for each word part once, however often the words repeat it', () => {
    expect(ftsExpression(['com.com.com.c', 'com', 'c'])).toBe('"com" AND "c"* AND "com"*');
  });

  it('refuses bare words with more than 12 distinct parts, and words without a letter or digit, when parsing', () => {
    expect(parseQuery('a b c d e f g h i j k l', NOW).words).toHaveLength(12);
    expect(refused('a b c d e f g h i j k l m')).toMatch(/^the search words have more than 12 parts/);
    expect(parseQuery(Array(30).fill('com.com.com.com.c').join(' '), NOW).words).toHaveLength(30);
    expect(refused('"..."')).toBe('a search word needs a letter or digit');
  });
});
