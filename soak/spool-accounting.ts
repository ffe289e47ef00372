/**
 * The soak's ledger in spool mode (docs/spool.md, "Crash safety"): every message a client was told
 * `250 queued` for must, once the queue has drained,
 *
 * 1. have its acceptance record (`relay`, outcome `queued`) and an end record (`spool`: delivered,
 *    bounced or expired), or still be in the spool (nothing is lost);
 * 2. have reached the upstream (answered 250) at most once per recipient (after a partial acceptance
 *    it goes again to the recipients still owed), unless a `delivery` record of it says
 *    `duplicateRisk: true` (an attempt whose final dot got no answer, then sent again);
 * 3. if it ended delivered, have reached the upstream at least once.
 *
 * DSNs (from the null sender) are the spool's own messages and are left out.
 */
import type { ReceivedMessage } from '../test/helpers/fake-upstream.js';
import { upstreamMessageId } from './accounting.js';
import type { ClientMessage } from './soak-client.js';

interface TrailRecord {
  readonly type: string;
  readonly id: string;
  readonly outcome?: string;
  readonly spoolId?: string | null;
  readonly event?: string;
  readonly duplicateRisk?: boolean;
  readonly message?: { readonly messageId: string | null };
}

export interface SpoolAccounting {
  /** Messages a client got 250 queued for. */
  readonly accepted: number;
  readonly delivered: number;
  readonly bounced: number;
  readonly expired: number;
  /** Still in the spool when the run ended (held, or not yet delivered). */
  readonly stillQueued: number;
  /** Messages the upstream took more than once for a recipient, each recorded as a possible duplicate. */
  readonly recordedDuplicates: number;
  /** Accepted messages with neither an end record nor an entry in the spool. */
  readonly lost: number;
  readonly problems: string[];
  readonly text: string;
}

export function accountSpool(
  clients: readonly ClientMessage[],
  upstream: readonly ReceivedMessage[],
  trailText: string,
  inSpool: ReadonlySet<string>,
): SpoolAccounting {
  const records: TrailRecord[] = [];
  for (const line of trailText.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      records.push(JSON.parse(line) as TrailRecord);
    } catch {
      // A record torn by a kill: the ledger of relay records has its own check for these.
    }
  }
  const acceptanceByMessageId = new Map<string, string[]>();
  for (const r of records) {
    if (r.type !== 'relay' || r.outcome !== 'queued' || !r.message?.messageId) continue;
    const mid = r.message.messageId.replace(/^<|>$/g, '');
    acceptanceByMessageId.set(mid, [...(acceptanceByMessageId.get(mid) ?? []), r.id]);
  }
  const ends = new Map<string, string>();
  const duplicateRisk = new Set<string>();
  for (const r of records) {
    if (r.type === 'spool' && r.spoolId && ['delivered', 'bounced', 'expired', 'deleted'].includes(r.event ?? '')) ends.set(r.spoolId, r.event!);
    if (r.type === 'delivery' && r.duplicateRisk && r.spoolId) duplicateRisk.add(r.spoolId);
  }
  // Per recipient: after a partial acceptance the message goes again, to the recipients still owed.
  const copies = new Map<string, number>();
  const perRecipient = new Map<string, number>();
  for (const m of upstream) {
    if (m.from === '' || typeof m.verdict === 'string' || m.verdict.code !== 250) continue;
    const id = upstreamMessageId(m);
    if (id === null) continue;
    for (const to of m.to) {
      const key = `${id}\n${to.toLowerCase()}`;
      const n = (perRecipient.get(key) ?? 0) + 1;
      perRecipient.set(key, n);
      copies.set(id, Math.max(copies.get(id) ?? 0, n));
    }
  }

  const problems: string[] = [];
  const problem = (text: string): void => {
    if (problems.length < 50) problems.push(text);
  };
  const counts = { accepted: 0, delivered: 0, bounced: 0, expired: 0, stillQueued: 0, recordedDuplicates: 0, lost: 0 };
  for (const c of clients) {
    if (c.stage !== 'replied' || c.code !== 250) continue;
    counts.accepted += 1;
    const spoolIds = acceptanceByMessageId.get(c.messageId) ?? [];
    if (spoolIds.length === 0) {
      problem(`${c.messageId}: 250 without its acceptance record`);
      continue;
    }
    const n = copies.get(c.messageId) ?? 0;
    const risky = spoolIds.some((id) => duplicateRisk.has(id));
    const end = spoolIds.map((id) => ends.get(id)).find((e) => e !== undefined);
    if (end === undefined) {
      if (spoolIds.some((id) => inSpool.has(id))) counts.stillQueued += 1;
      else {
        counts.lost += 1;
        problem(`${c.messageId}: acknowledged, no end record, and not in the spool: lost`);
      }
    } else if (end === 'delivered') counts.delivered += 1;
    else if (end === 'bounced') counts.bounced += 1;
    else if (end === 'expired') counts.expired += 1;
    if (end === 'delivered' && n === 0) problem(`${c.messageId}: recorded delivered, but the upstream never took it`);
    if (n > 1) {
      if (risky) counts.recordedDuplicates += 1;
      else problem(`${c.messageId}: the upstream took it ${n} times for one recipient, and no delivery record says it might`);
    }
  }
  const text =
    `spool ledger: ${counts.accepted} acknowledged (250 queued): ${counts.delivered} delivered, ${counts.bounced} bounced, ` +
    `${counts.expired} expired, ${counts.stillQueued} still in the spool, ${counts.recordedDuplicates} taken twice and recorded as possible duplicates, ` +
    `${counts.lost} lost; ${problems.length} problem(s)`;
  return { ...counts, problems, text };
}
