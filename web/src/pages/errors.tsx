/** Error groups (docs/api.md, "GET /api/v1/errors"): the same failure counted once, with a sample. */
import type { JSX } from 'preact';
import type { ErrorGroup } from '../../../src/observe/error-groups.js';
import type { Api } from '../api.js';
import { ErrorNote, Link } from '../components.js';
import { messageHref, reply, time } from '../format.js';
import { usePoll } from '../poll.js';

type Group = ErrorGroup;

export function Errors(props: { api: Api }): JSX.Element {
  const { data, error } = usePoll(() => props.api.get<{ groups: Group[] }>('/api/v1/errors'), 10_000, [props.api]);
  return (
    <section aria-labelledby="errors-title">
      <h1 id="errors-title">Error groups</h1>
      <p class="muted">Failures grouped by class, upstream and reply (what varies per message masked), since mailtrail started.</p>
      <ErrorNote error={error} />
      {data === null ? (
        <p class="loading">Loading…</p>
      ) : data.groups.length === 0 ? (
        <p>No failures since mailtrail started.</p>
      ) : (
        <div class="table-wrap">
          <table class="errors">
            <caption class="visually-hidden">Error groups, most recently seen first</caption>
            <thead>
              <tr>
                <th scope="col" class="num">
                  Count
                </th>
                <th scope="col">Class</th>
                <th scope="col">Upstream</th>
                <th scope="col">Error</th>
                <th scope="col">First seen</th>
                <th scope="col">Last seen</th>
                <th scope="col">Sample</th>
              </tr>
            </thead>
            <tbody>
              {data.groups.map((g) => (
                <tr key={g.fingerprint}>
                  <td class="num">{g.count}</td>
                  <td class="mono">{g.class}</td>
                  <td class="mono">{g.upstream ?? '–'}</td>
                  <td class="mono reply">{g.normalized}</td>
                  <td class="mono nowrap">{time(g.firstSeen)}</td>
                  <td class="mono nowrap">{time(g.lastSeen)}</td>
                  <td>
                    <Link href={messageHref(g.sample.id)} title={g.sample.reply ? reply(g.sample.reply) : (g.sample.error?.code ?? '')}>
                      <span class="mono">{g.sample.id}</span>
                    </Link>
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
