/**
 * Transactions, live: the newest page from the API, then each transaction as the relay writes it
 * (Server-Sent Events, docs/api.md "Live stream"). Paused, new ones wait and are counted; resumed,
 * they are shown. After `dropped` (the page read too slowly) the list is loaded again.
 */
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { describe, type Api, type Page, type Summary } from '../api.js';
import { ErrorNote, TransactionTable } from '../components.js';

/** Rows kept on the page; older ones are a search away. */
const KEEP = 500;
/** How often new transactions are drawn, at most. */
const DRAW_MS = 200;

type Link = 'connecting' | 'live' | 'reconnecting' | 'ended';

export function Live(props: { api: Api }): JSX.Element {
  const [items, setItems] = useState<Summary[]>([]);
  const [waiting, setWaiting] = useState<Summary[]>([]);
  const [paused, setPaused] = useState(false);
  const [link, setLink] = useState<Link>('connecting');
  const [error, setError] = useState<string | null>(null);
  const [fresh, setFresh] = useState<ReadonlySet<string>>(new Set());
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  useEffect(() => {
    let closed = false;
    const load = (): void => {
      props.api.get<Page<Summary>>('/api/v1/transactions', { limit: 100 }).then(
        (page) => {
          if (closed) return;
          setError(null);
          setItems((now) => merge(page.items, now));
        },
        (e: unknown) => !closed && setError(describe(e)),
      );
    };
    load();
    const source = new EventSource('/api/v1/stream');
    source.onopen = () => setLink('live');
    // Asking the API whether the session still holds tells the app when it ended (the login form).
    const checkSession = (): void => void props.api.get('/api/v1/session').catch(() => undefined);
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) return setLink('reconnecting');
      // The browser gives up on a stream answered with an error (a 401 once the session ended).
      setLink('ended');
      checkSession();
    };
    // Transactions are drawn in batches, at most every DRAW_MS: a busy relay sends hundreds a second,
    // and redrawing the list for each would cost the browser (and a shared machine) far more than the
    // relaying itself.
    let batch: Summary[] = [];
    let timer: number | null = null;
    const flush = (): void => {
      timer = null;
      const ts = batch.reverse();
      batch = [];
      if (pausedRef.current) setWaiting((w) => [...ts, ...w].slice(0, KEEP));
      else show(ts);
    };
    source.addEventListener('transaction', (e) => {
      batch.push(JSON.parse((e as MessageEvent<string>).data) as Summary);
      if (batch.length > KEEP) batch.shift();
      timer ??= window.setTimeout(flush, DRAW_MS);
    });
    source.addEventListener('dropped', load);
    source.addEventListener('ended', () => {
      source.close();
      setLink('ended');
      checkSession();
    });
    const show = (ts: Summary[]): void => {
      setItems((now) => merge(ts, now));
      setFresh(new Set(ts.map((t) => t.id)));
    };
    return () => {
      closed = true;
      if (timer !== null) window.clearTimeout(timer);
      source.close();
    };
  }, [props.api]);

  const resume = (): void => {
    setItems((now) => merge(waiting, now));
    setFresh(new Set(waiting.map((t) => t.id)));
    setWaiting([]);
    setPaused(false);
  };

  return (
    <section aria-labelledby="live-title">
      <div class="bar">
        <h1 id="live-title">Transactions</h1>
        <span class={`status s-${link}`} role="status">
          {statusText[link]}
          {paused ? `, paused: ${waiting.length} new waiting` : ''}
        </span>
        {paused ? (
          <button type="button" onClick={resume}>
            Resume
          </button>
        ) : (
          <button type="button" onClick={() => setPaused(true)}>
            Pause
          </button>
        )}
      </div>
      <ErrorNote error={error} />
      {items.length === 0 ? <p class="muted">No transactions yet. Each message relayed appears here as it is written to the trail.</p> : null}
      <TransactionTable items={items} caption="Transactions, newest first" fresh={fresh} />
    </section>
  );
}

const statusText: Record<Link, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  ended: 'Stream closed',
};

/** New ones first, each id once, newest first, at most KEEP. */
function merge(incoming: readonly Summary[], now: readonly Summary[]): Summary[] {
  const seen = new Set<string>();
  const all = [...incoming, ...now].filter((t) => !seen.has(t.id) && (seen.add(t.id), true));
  all.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  return all.slice(0, KEEP);
}
