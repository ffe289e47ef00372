/**
 * The story of a message as `GET /api/v1/messages/<id>` gives it (docs/api.md, "The story of a
 * message"): the records `mailtrail lookup` finds, each in full, and for each transaction what the
 * message page draws: attempts and the failover path, both replies, the timings as a waterfall, and
 * the links between retries and duplicates.
 */
import type { AuditRecord, RelayRecord } from '../audit/records.js';
import type { Story } from '../tools/lookup-story.js';
import type { Scope } from './search/sql-query.js';
import { summarise, type TransactionSummary } from './summary.js';

export interface StoryTransaction extends TransactionSummary {
  readonly route: string | null;
  readonly attempts: RelayRecord['attempts'];
  /** Upstreams in the order they were tried, when more than one was. */
  readonly failover: readonly string[] | null;
  readonly failure: RelayRecord['failure'];
  readonly timing: RelayRecord['timing'] | null;
  /** The timings laid end to end (ms from the start of the transaction), for a waterfall chart. */
  readonly waterfall: readonly { readonly phase: string; readonly startMs: number; readonly ms: number }[];
  readonly duplicateOf: string | null;
  readonly duplicateRisk: boolean;
  /** The earlier transaction of the same message (same Message-ID or content) that this one retries. */
  readonly retryOf: string | null;
}

export interface StoryView {
  readonly key: string;
  readonly kind: Story['kind'];
  /** The latest transaction's outcome and class. */
  readonly outcome: string | null;
  readonly class: string | null;
  readonly transactions: readonly StoryTransaction[];
  /** Every record of the story in time order, as it is in the trail. */
  readonly records: readonly { readonly file: string; readonly line: number; readonly record: AuditRecord }[];
  /** Records left out because the story is longer than the limit (the most recent are kept). */
  readonly dropped: number;
  readonly privacyNote: string | null;
}

/** The records a console user may see: those of their SMTP users (sessions included). */
export function inScope(record: AuditRecord, scope: Scope): boolean {
  if (scope === null) return true;
  const user = (record as { client?: { user?: unknown } }).client?.user;
  return typeof user === 'string' && scope.users.includes(user);
}

export function storyView(story: Story, fileName: (path: string) => string): StoryView {
  const relays = story.entries.map((e) => e.record).filter((r): r is RelayRecord => r.type === 'relay');
  const transactions: StoryTransaction[] = [];
  const earlier = new Map<string, string>();
  for (const r of relays) {
    const keys = [r.message?.messageId?.toLowerCase(), r.message?.sha256].filter((k): k is string => !!k);
    const retryOf = keys.map((k) => earlier.get(k)).find((id) => id !== undefined) ?? null;
    for (const k of keys) earlier.set(k, r.id);
    transactions.push(transaction(r, retryOf));
  }
  const latest = story.entries.map((e) => e.record).filter((r) => r.type === 'relay' || r.type === 'reject');
  const last = latest[latest.length - 1];
  const lastSummary = last ? summarise(last) : null;
  return {
    key: story.key,
    kind: story.kind,
    outcome: lastSummary?.outcome ?? null,
    class: lastSummary?.class ?? null,
    transactions,
    records: story.entries.map((e) => ({ file: fileName(e.file), line: e.line, record: e.record })),
    dropped: story.dropped,
    privacyNote: story.privacyNote,
  };
}

function transaction(r: RelayRecord, retryOf: string | null): StoryTransaction {
  const attempts = r.attempts ?? [];
  const tried = attempts.map((a) => a.upstream);
  const t = r.timing ?? null;
  const waterfall: { phase: string; startMs: number; ms: number }[] = [];
  if (t) {
    let at = 0;
    for (const [phase, ms] of [
      ['receive', t.receiveMs],
      ['wait', t.waitMs],
      ['connect', t.connectMs],
      ['envelope', t.envelopeMs],
      ['data', t.dataMs],
    ] as const) {
      waterfall.push({ phase, startMs: at, ms });
      at += ms;
    }
  }
  return {
    ...summarise(r),
    route: r.route ?? null,
    attempts,
    failover: new Set(tried).size > 1 ? tried : null,
    failure: r.failure ?? null,
    timing: t,
    waterfall,
    duplicateOf: r.duplicateOf ?? null,
    duplicateRisk: r.duplicateRisk ?? false,
    retryOf,
  };
}
