/**
 * A message's page, `/messages/<id>` (docs/api.md, "The story of a message"): every transaction of
 * the story with its attempts and failover path, what the upstream said beside what the client was
 * told, the phase timings as a waterfall, the links to retries and duplicates, whether the records
 * verify against the chain, and the records themselves.
 */
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { StoryTransaction, StoryView } from '../../../src/console/story-view.js';
import { ApiError, describe, type Api } from '../api.js';
import { ErrorNote, Link, Outcome } from '../components.js';
import { messageHref, ms, reply, time } from '../format.js';

type Attempt = NonNullable<StoryTransaction['attempts']>[number];

/** The story as the API gives it: the story view and whether its records verify against the chain. */
interface Story extends StoryView {
  readonly verified: { readonly ok: boolean; readonly detail: string; readonly checked?: number };
}

export function Message(props: { api: Api; id: string }): JSX.Element {
  const [story, setStory] = useState<Story | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let gone = false;
    let timer: number | undefined;
    // The live list shows a transaction as it is written; the search index has it about a quarter of
    // a second later (docs/console.md, "Following the trail"): a message opened at once is asked for
    // again for a few seconds before the page says there is none.
    const load = (tries: number): void => {
      props.api.get<Story>(`/api/v1/messages/${encodeURIComponent(props.id)}`).then(
        (s) => !gone && setStory(s),
        (e: unknown) => {
          if (gone) return;
          const missing = e instanceof ApiError && e.code === 'not_found';
          if (missing && tries > 0) timer = window.setTimeout(() => load(tries - 1), 500);
          else setError(missing ? `No message ${props.id} in the trail (or none you may see).` : describe(e));
        },
      );
    };
    load(6);
    return () => {
      gone = true;
      window.clearTimeout(timer);
    };
  }, [props.api, props.id]);

  if (error !== null)
    return (
      <section>
        <h1>Message</h1>
        <ErrorNote error={error} />
      </section>
    );
  if (story === null) return <p class="loading">Loading the story of {props.id}…</p>;
  return (
    <article aria-labelledby="story-title">
      <div class="bar">
        <h1 id="story-title">
          Message <span class="mono">{story.key}</span>
        </h1>
        <Outcome outcome={story.outcome} />
        {story.class ? <span class="mono class">{story.class}</span> : null}
        <span class={`badge ${story.verified.ok ? 'verified' : 'unverified'}`} title={story.verified.detail}>
          {story.verified.ok ? '✓ verified against the chain' : '✗ not verified'}
        </span>
      </div>
      <p class="muted verify-detail">{story.verified.detail}</p>
      {story.privacyNote ? <p class="note">{story.privacyNote}</p> : null}
      {story.transactions.length === 0 ? <p>No relay record in this story (only the records below).</p> : null}
      {story.transactions.map((t, i) => (
        <Transaction key={t.id} t={t} n={i + 1} of={story.transactions.length} current={t.id === props.id} />
      ))}
      <details class="records">
        <summary>
          The records ({story.records.length}
          {story.dropped ? `, ${story.dropped} older left out` : ''})
        </summary>
        {story.records.map((r) => (
          <div key={`${r.file}:${r.line}`} class="record">
            <p class="mono muted">
              {r.file}:{r.line} {r.record.type ?? ''}
            </p>
            <pre>{JSON.stringify(r.record, null, 2)}</pre>
          </div>
        ))}
      </details>
    </article>
  );
}

function Transaction(props: { t: StoryTransaction; n: number; of: number; current: boolean }): JSX.Element {
  const { t } = props;
  return (
    <section class={`story o-${t.outcome}`} aria-label={`Transaction ${t.id}`}>
      <h2>
        {props.of > 1 ? `${props.n}. ` : ''}
        <Link href={messageHref(t.id)}>
          <span class="mono">{t.id}</span>
        </Link>{' '}
        <Outcome outcome={t.outcome} /> {t.class ? <span class="mono class">{t.class}</span> : null}
      </h2>
      <dl class="facts">
        <dt>Time</dt>
        <dd class="mono">{time(t.time)}</dd>
        <dt>From</dt>
        <dd class="mono">{t.from ?? '<>'}</dd>
        <dt>To</dt>
        <dd class="mono">{t.to.join(', ') || '–'}</dd>
        <dt>Message-ID</dt>
        <dd class="mono">{t.messageId ?? '–'}</dd>
        {t.subject !== null ? (
          <>
            <dt>Subject</dt>
            <dd>{t.subject}</dd>
          </>
        ) : null}
        <dt>Client</dt>
        <dd class="mono">
          {t.client ?? '–'}
          {t.user !== null ? ` (SMTP user ${t.user})` : ''}
        </dd>
        <dt>Route, upstream</dt>
        <dd class="mono">
          {t.route ?? '–'}, {t.failover ? t.failover.join(' → ') : (t.upstream ?? '–')}
        </dd>
        {t.failure ? (
          <>
            <dt>Failure</dt>
            <dd>
              <span class="mono">{t.failure.class}</span>:{' '}
              {t.failure.retryable === null ? 'retry unknown' : t.failure.retryable ? 'retryable' : 'not retryable'}, caused by the {t.failure.actor}, affects
              the {t.failure.scope}
            </dd>
          </>
        ) : null}
        {t.retryOf ? (
          <>
            <dt>Retry of</dt>
            <dd>
              <Link href={messageHref(t.retryOf)}>
                <span class="mono">{t.retryOf}</span>
              </Link>
            </dd>
          </>
        ) : null}
        {t.duplicateOf || t.duplicateRisk ? (
          <>
            <dt>Duplicate</dt>
            <dd>
              {t.duplicateOf ? (
                <>
                  of{' '}
                  <Link href={messageHref(t.duplicateOf)}>
                    <span class="mono">{t.duplicateOf}</span>
                  </Link>
                </>
              ) : null}
              {t.duplicateRisk ? ' (the upstream may have delivered it twice)' : ''}
            </dd>
          </>
        ) : null}
      </dl>
      <div class="replies">
        <figure>
          <figcaption>The upstream said{t.upstream ? ` (${t.upstream})` : ''}</figcaption>
          <p class="mono reply upstream-reply">{reply(t.upstreamReply)}</p>
        </figure>
        <figure>
          <figcaption>The client was told</figcaption>
          <p class="mono reply client-reply">{reply(t.clientReply)}</p>
        </figure>
      </div>
      {t.attempts && t.attempts.length > 0 ? <Attempts attempts={t.attempts} /> : null}
      {t.waterfall.length > 0 ? <Waterfall phases={t.waterfall} total={t.totalMs} /> : null}
    </section>
  );
}

function Attempts(props: { attempts: readonly Attempt[] }): JSX.Element {
  return (
    <div class="table-wrap">
      <table class="attempts">
        <caption>Attempts{props.attempts.length > 1 ? ' (failover in this order)' : ''}</caption>
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Upstream</th>
            <th scope="col">Started</th>
            <th scope="col" class="num">
              Took
            </th>
            <th scope="col">Phase</th>
            <th scope="col">Reply or error</th>
            <th scope="col">Class</th>
          </tr>
        </thead>
        <tbody>
          {props.attempts.map((a, i) => (
            <tr key={i}>
              <td>{i + 1}</td>
              <td class="mono">{a.upstream}</td>
              <td class="mono nowrap">{time(a.startedAt)}</td>
              <td class="num mono">{ms(a.ms)}</td>
              <td>{a.phase}</td>
              <td class="mono reply">{a.reply ? reply(a.reply) : a.error ? [a.error.code, a.error.cause, a.error.message].filter(Boolean).join(': ') : '–'}</td>
              <td class="mono">{a.class ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The phases laid end to end, as bars scaled to the whole transaction. */
function Waterfall(props: { phases: StoryTransaction['waterfall']; total: number | null }): JSX.Element {
  const span = Math.max(props.total ?? 0, ...props.phases.map((p) => p.startMs + p.ms), 1);
  return (
    <figure class="waterfall">
      <figcaption>Phases (total {ms(props.total)})</figcaption>
      <ol>
        {props.phases.map((p) => (
          <li key={p.phase}>
            <span class="phase">{p.phase}</span>
            <span class="track" aria-hidden="true">
              <span class={`bar-fill p-${p.phase}`} style={{ left: `${(p.startMs / span) * 100}%`, width: `max(${(p.ms / span) * 100}%, 2px)` }} />
            </span>
            <span class="num mono">{ms(p.ms)}</span>
          </li>
        ))}
      </ol>
    </figure>
  );
}
