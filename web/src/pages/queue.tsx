/**
 * The queue (docs/api.md, "Queue"): the spool's entries by state, many selected at once, and the
 * actions on them with a result per id. Delete and bounce are asked twice: they cannot be undone.
 */
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { describe, type Api, type Page } from '../api.js';
import { ErrorNote, Link } from '../components.js';
import { messageHref, plain as text } from '../format.js';
import { usePoll } from '../poll.js';

interface Entry {
  readonly id: string;
  readonly user: string | null;
  readonly state?: unknown;
  readonly [field: string]: unknown;
}

interface Result {
  readonly id: string;
  readonly ok: boolean;
  readonly code?: string;
  readonly message?: string;
}

const ACTIONS = ['retry', 'hold', 'release', 'delete', 'bounce'] as const;
type Action = (typeof ACTIONS)[number];
const FINAL: ReadonlySet<Action> = new Set(['delete', 'bounce']);
const STATES = ['', 'queued', 'deferred', 'held', 'parked', 'sending'] as const;

export function Queue(props: { api: Api }): JSX.Element {
  const [state, setState] = useState('');
  const [q, setQ] = useState('');
  const [applied, setApplied] = useState({ state: '', q: '' });
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [results, setResults] = useState<{ action: Action; results: readonly Result[] } | null>(null);
  const [confirm, setConfirm] = useState<Action | null>(null);
  const [busy, setBusy] = useState(false);
  const [actError, setActError] = useState<string | null>(null);
  const { data, error, reload } = usePoll(() => props.api.get<Page<Entry>>('/api/v1/queue', { state: applied.state, q: applied.q, limit: 200 }), 10_000, [
    props.api,
    applied,
  ]);
  const items = data?.items ?? [];
  const allSelected = items.length > 0 && items.every((e) => selected.has(e.id));

  const toggle = (id: string): void =>
    setSelected((s) => {
      const next = new Set(s);
      if (!next.delete(id)) next.add(id);
      return next;
    });

  const act = async (action: Action): Promise<void> => {
    if (FINAL.has(action) && confirm !== action) {
      setConfirm(action);
      return;
    }
    setConfirm(null);
    setBusy(true);
    setActError(null);
    try {
      const answer = await props.api.post<{ action: Action; results: Result[] }>('/api/v1/queue/actions', { action, ids: [...selected] });
      setResults(answer);
      setSelected(new Set(answer.results.filter((r) => !r.ok).map((r) => r.id)));
      reload();
    } catch (e) {
      setActError(describe(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="queue-title">
      <h1 id="queue-title">Queue</h1>
      <form
        class="search"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied({ state, q: q.trim() });
        }}
      >
        <label for="queue-state">State</label>
        <select id="queue-state" value={state} onChange={(e) => setState(e.currentTarget.value)}>
          {STATES.map((s) => (
            <option key={s} value={s}>
              {s === '' ? 'any' : s}
            </option>
          ))}
        </select>
        <label for="queue-q">Filter</label>
        <input id="queue-q" type="search" value={q} onInput={(e) => setQ(e.currentTarget.value)} />
        <button type="submit">Show</button>
      </form>
      <div class="bar actions" role="group" aria-label="Act on the selected entries">
        <span>{selected.size} selected</span>
        {ACTIONS.map((a) => (
          <button
            key={a}
            type="button"
            data-action={a}
            disabled={busy || selected.size === 0}
            onClick={() => void act(a)}
            class={FINAL.has(a) ? 'danger' : undefined}
          >
            {confirm === a ? `Really ${a} ${selected.size}?` : a[0]!.toUpperCase() + a.slice(1)}
          </button>
        ))}
        {confirm ? (
          <button type="button" onClick={() => setConfirm(null)}>
            Cancel
          </button>
        ) : null}
      </div>
      <ErrorNote error={error ?? actError} />
      {results ? (
        <div class="results" role="status">
          <h2>
            {results.action}: {results.results.filter((r) => r.ok).length} done, {results.results.filter((r) => !r.ok).length} not
          </h2>
          <ul>
            {results.results.map((r) => (
              <li key={r.id} class={r.ok ? 'ok' : 'failed'}>
                <span class="mono">{r.id}</span> {r.ok ? 'done' : `${r.code ?? 'failed'}${r.message ? `: ${r.message}` : ''}`}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      {data === null ? (
        <p class="loading">Loading…</p>
      ) : items.length === 0 ? (
        <p>The queue holds nothing{applied.state || applied.q ? ' that matches' : ''}.</p>
      ) : (
        <div class="table-wrap">
          <table class="queue">
            <caption class="visually-hidden">Spooled entries</caption>
            <thead>
              <tr>
                <th scope="col">
                  <input
                    type="checkbox"
                    aria-label="Select all"
                    checked={allSelected}
                    onChange={() => setSelected(allSelected ? new Set() : new Set(items.map((e) => e.id)))}
                  />
                </th>
                <th scope="col">Entry</th>
                <th scope="col">State</th>
                <th scope="col">SMTP user</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.id} data-id={e.id}>
                  <td>
                    <input type="checkbox" aria-label={`Select ${e.id}`} checked={selected.has(e.id)} onChange={() => toggle(e.id)} />
                  </td>
                  <td class="mono">{typeof e.transaction === 'string' ? <Link href={messageHref(e.transaction)}>{e.id}</Link> : e.id}</td>
                  <td>
                    <span class="badge">{text(e.state)}</span>
                  </td>
                  <td class="mono">{e.user ?? '–'}</td>
                  <td class="mono details">
                    {Object.entries(e)
                      .filter(([k]) => !['id', 'user', 'state'].includes(k))
                      .map(([k, v]) => `${k}: ${text(v)}`)
                      .join('  ')}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
