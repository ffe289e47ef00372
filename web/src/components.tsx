/** Pieces the views share: links that stay in the app, the outcome badge, the transaction table. */
import type { ComponentChildren, JSX } from 'preact';
import type { Summary } from './api.js';
import { clock, messageHref, ms, reply, time } from './format.js';
import { navigate } from './router.js';

/** A link that moves within the app (a plain link for a new tab, a middle click or a modifier). */
export function Link(props: { href: string; children: ComponentChildren; class?: string; 'aria-current'?: 'page' | undefined; title?: string }): JSX.Element {
  const onClick = (e: MouseEvent): void => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(props.href);
  };
  return (
    <a href={props.href} class={props.class} aria-current={props['aria-current']} title={props.title} onClick={onClick}>
      {props.children}
    </a>
  );
}

/** The outcome in words and colour (the colour is never the only sign). */
export function Outcome(props: { outcome: string | null }): JSX.Element {
  const o = props.outcome ?? 'unknown';
  return <span class={`badge o-${/^[a-z_]+$/.test(o) ? o : 'unknown'}`}>{o}</span>;
}

export function Addresses(props: { from: string | null; to: readonly string[] }): JSX.Element {
  const shown = props.to.slice(0, 3);
  return (
    <span class="mono">
      {props.from ?? '<>'} → {shown.join(', ')}
      {props.to.length > shown.length ? ` +${props.to.length - shown.length}` : ''}
    </span>
  );
}

/** The list of transactions, as the live view and the search show it. */
export function TransactionTable(props: { items: readonly Summary[]; caption: string; fullTime?: boolean; fresh?: ReadonlySet<string> }): JSX.Element {
  return (
    <div class="table-wrap">
      <table class="transactions">
        <caption class="visually-hidden">{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">Time (UTC)</th>
            <th scope="col">Outcome</th>
            <th scope="col">Class</th>
            <th scope="col">From → to</th>
            <th scope="col">Upstream and reply</th>
            <th scope="col" class="num">
              Total
            </th>
          </tr>
        </thead>
        <tbody>
          {props.items.map((t) => (
            <tr key={t.id} class={`row o-${t.outcome}${props.fresh?.has(t.id) ? ' fresh' : ''}`} data-id={t.id}>
              <td class="mono nowrap">
                <Link href={messageHref(t.id)} title={`${t.id}: the message's page`}>
                  {props.fullTime ? time(t.time) : clock(t.time)}
                </Link>
              </td>
              <td>
                <Outcome outcome={t.outcome} />
              </td>
              <td class="mono">{t.class ?? ''}</td>
              <td>
                <Addresses from={t.from} to={t.to} />
                {t.user !== null ? <span class="muted"> (user {t.user})</span> : null}
              </td>
              <td>
                <span class="mono">{t.upstream ?? '–'}</span> <span class="mono reply">{reply(t.upstreamReply ?? t.clientReply)}</span>
              </td>
              <td class="num mono nowrap">{ms(t.totalMs)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function ErrorNote(props: { error: string | null }): JSX.Element | null {
  return props.error === null ? null : (
    <p class="error" role="alert">
      {props.error}
    </p>
  );
}
