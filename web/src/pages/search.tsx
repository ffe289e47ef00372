/**
 * Search over the whole trail with the query syntax (docs/api.md, "Query syntax"); the query is in
 * the address (`/#/search?q=...`), so a search can be shared, and pages follow the API's cursor.
 */
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { describe, type Api, type Page, type Summary } from '../api.js';
import { ErrorNote, TransactionTable } from '../components.js';
import { href, navigate } from '../router.js';

const LIMIT = 50;

export function Search(props: { api: Api; q: string }): JSX.Element {
  const [text, setText] = useState(props.q);
  // The cursors of the pages before this one (to go back), and this page's.
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [page, setPage] = useState<Page<Summary> | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [tookMs, setTookMs] = useState<number | null>(null);
  const cursor = cursors[cursors.length - 1] ?? null;

  useEffect(() => {
    setText(props.q);
    setCursors([null]);
  }, [props.q]);

  useEffect(() => {
    let gone = false;
    setBusy(true);
    const started = performance.now();
    props.api.get<Page<Summary>>('/api/v1/transactions', { q: props.q, limit: LIMIT, cursor }).then(
      (p) => {
        if (gone) return;
        setPage(p);
        setError(null);
        setTookMs(performance.now() - started);
        setBusy(false);
      },
      (e: unknown) => {
        if (gone) return;
        setPage(null);
        setError(describe(e));
        setBusy(false);
      },
    );
    return () => {
      gone = true;
    };
  }, [props.api, props.q, cursor]);

  const submit = (e: Event): void => {
    e.preventDefault();
    const q = text.trim();
    if (q === props.q) setCursors([null]);
    else navigate(href({ name: 'search', q }));
  };

  return (
    <section aria-labelledby="search-title">
      <h1 id="search-title">Search</h1>
      <form class="search" role="search" onSubmit={submit}>
        <label for="q">Query</label>
        <input
          id="q"
          type="search"
          name="q"
          value={text}
          placeholder="to:ana@example.org class:throttled after:1h"
          autocomplete="off"
          spellcheck={false}
          aria-describedby="syntax"
          onInput={(e) => setText(e.currentTarget.value)}
        />
        <button type="submit">Search</button>
      </form>
      <details id="syntax" class="syntax">
        <summary>Query syntax</summary>
        <p>
          Space-separated terms, all of which must hold: <code>key:value</code>, <code>"quoted values"</code>, <code>-key:value</code> negates, <code>a,b</code>{' '}
          lists alternatives. A bare word searches addresses, the Message-ID and the subject.
        </p>
        <dl>
          {SYNTAX.map(([key, what]) => (
            <div key={key}>
              <dt>
                <code>{key}</code>
              </dt>
              <dd>{what}</dd>
            </div>
          ))}
        </dl>
      </details>
      <ErrorNote error={error} />
      <p class="muted" role="status">
        {busy
          ? 'Searching…'
          : page
            ? `${page.items.length === 0 ? 'Nothing found' : `${page.items.length}${page.next ? '+' : ''} on this page`}${tookMs !== null ? ` in ${Math.round(tookMs)} ms` : ''}${page.index && page.index.state !== 'following' ? ` (index ${page.index.state}: results may be incomplete)` : ''}`
            : ''}
      </p>
      {page && page.items.length > 0 ? <TransactionTable items={page.items} caption={`Results for ${props.q || 'everything'}`} fullTime /> : null}
      <div class="pager">
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors((c) => c.slice(0, -1))}>
          ← Newer
        </button>
        <button type="button" disabled={!page?.next} onClick={() => page?.next && setCursors((c) => [...c, page.next])}>
          Older →
        </button>
      </div>
    </section>
  );
}

const SYNTAX: readonly (readonly [string, string])[] = [
  ['from:', 'envelope sender, a full address or a domain (from:@example.com)'],
  ['to:', 'a recipient, likewise'],
  ['msgid:', 'the Message-ID, with or without <>'],
  ['id:', 'the mailtrail id'],
  ['queueid:', "the upstream's queue id"],
  ['user:', 'the SMTP user (AUTH)'],
  ['client:', "the client's IP address, or its start and * (client:10.0.4.*)"],
  ['upstream:', 'the deciding upstream'],
  ['class:', 'a failure class (class:throttled,quota)'],
  ['outcome:', 'delivered partial deferred rejected unknown aborted refused'],
  ['code:', 'a reply code: 550, 4xx, 45x, 5.7.1'],
  ['type:', 'relay reject delivery spool'],
  ['after:', 'at or after a time: 1h, 2d, 2026-11-25T10:00'],
  ['before:', 'before a time, likewise'],
];
