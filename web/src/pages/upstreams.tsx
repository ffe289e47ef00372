/** Upstreams (docs/api.md, "GET /api/v1/upstreams"): probe, breaker and why, rate, latency, token, parked. */
import type { JSX } from 'preact';
import type { TokenView } from '../../../src/console/token-states.js';
import type { UpstreamReadiness } from '../../../src/observe/readiness.js';
import type { Api } from '../api.js';
import { ErrorNote } from '../components.js';
import { ms, reply, time } from '../format.js';
import { usePoll } from '../poll.js';

/** One upstream as `GET /api/v1/upstreams` gives it (the probe and usable are /readyz's). */
interface Upstream {
  readonly name: string;
  readonly probe: UpstreamReadiness['probe'] | null;
  readonly usable: boolean | null;
  readonly breaker: { readonly state: string; readonly reason: string | null; readonly since: string | null };
  readonly sendRate: { readonly perMinute: number; readonly window: string };
  readonly latency: { readonly p50: number | null; readonly p95: number | null; readonly window: string };
  /** null: the upstream logs in with a password. */
  readonly token: TokenView | null;
  readonly parked: number | null;
}

export function Upstreams(props: { api: Api }): JSX.Element {
  const { data, error } = usePoll(() => props.api.get<{ upstreams: Upstream[] }>('/api/v1/upstreams'), 5_000, [props.api]);
  return (
    <section aria-labelledby="upstreams-title">
      <h1 id="upstreams-title">Upstreams</h1>
      <ErrorNote error={error} />
      {data === null ? (
        <p class="loading">Loading…</p>
      ) : (
        <div class="table-wrap">
          <table class="upstreams">
            <caption class="visually-hidden">Upstreams, refreshed every 5 seconds</caption>
            <thead>
              <tr>
                <th scope="col">Upstream</th>
                <th scope="col">State</th>
                <th scope="col">Health probe</th>
                <th scope="col">Breaker</th>
                <th scope="col" class="num">
                  Rate
                </th>
                <th scope="col" class="num">
                  Latency p50 / p95
                </th>
                <th scope="col">Token</th>
                <th scope="col" class="num">
                  Parked
                </th>
              </tr>
            </thead>
            <tbody>
              {data.upstreams.map((u) => (
                <tr key={u.name} class={u.usable ? 'o-delivered' : 'o-rejected'}>
                  <th scope="row" class="mono">
                    {u.name}
                  </th>
                  <td>
                    <span class={`badge ${u.usable ? 'o-delivered' : 'o-rejected'}`}>{u.usable ? 'usable' : 'not usable'}</span>
                  </td>
                  <td>
                    <Probe probe={u.probe} />
                  </td>
                  <td>
                    <span class={`badge b-${u.breaker.state.replace(/[^a-z-]/g, '')}`}>{u.breaker.state}</span>
                    {u.breaker.reason ? <span class="mono reply"> {u.breaker.reason}</span> : null}
                    {u.breaker.since ? <span class="muted"> since {time(u.breaker.since)}</span> : null}
                  </td>
                  <td class="num nowrap">
                    {u.sendRate.perMinute.toFixed(1)}/min <span class="muted">({u.sendRate.window})</span>
                  </td>
                  <td class="num nowrap mono">
                    {ms(u.latency.p50)} / {ms(u.latency.p95)}
                  </td>
                  <td>{u.token === null ? <span class="muted">password</span> : <TokenCell token={u.token} />}</td>
                  <td class="num">{u.parked ?? '–'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Probe(props: { probe: Upstream['probe'] }): JSX.Element {
  const p = props.probe;
  if (p === null || !p.enabled) return <span class="muted">off</span>;
  if (p.ok === null) return <span class="muted">not run yet</span>;
  return (
    <span>
      <span class={`badge ${p.ok ? 'o-delivered' : 'o-rejected'}`}>{p.ok ? 'ok' : (p.class ?? 'failed')}</span>{' '}
      {p.ms !== null ? <span class="mono">{ms(p.ms)}</span> : null}
      {p.reply ? <span class="mono reply"> {reply(p.reply)}</span> : null}
      {p.error ? <span class="mono reply"> {[p.error.code, p.error.cause].filter(Boolean).join(': ')}</span> : null}
      {p.time ? <span class="muted"> at {time(p.time)}</span> : null}
    </span>
  );
}

/** The OAuth2 token's state as the server describes it (never the token itself). */
function TokenCell(props: { token: TokenView }): JSX.Element {
  const { state, expiresAt, lastRequest } = props.token;
  const bad = state === 'failing' || state === 'expired' || state === 'renewal_failing';
  return (
    <span>
      <span class={`badge ${state === 'valid' ? 'b-closed' : bad ? 'b-open' : ''}`}>OAuth2 {state.replace('_', ' ')}</span>
      {expiresAt !== null ? <span class="muted"> until {time(expiresAt)}</span> : null}
      {lastRequest?.error ? <span class="mono reply"> {[lastRequest.error.code, lastRequest.error.message].join(': ')}</span> : null}
    </span>
  );
}
