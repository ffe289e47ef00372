/**
 * The text form of `mailtrail lookup`: a heading with the verdict (the latest relay outcome), then
 * each record in time order; relay records in full (envelope, each attempt, the deciding upstream,
 * what the client was told, timings, duplicate links), refusals and sessions on one line. The story's
 * text is escaped for the terminal first (terminal-text.ts).
 */
import type { AuditRecord, DeliveryRecord, RelayRecord, SpoolRecord } from '../audit/records.js';
import { formatAddress, formatBytes, formatMs, formatReply, formatTime, outcomeColor, paint, recordLine, type Style } from './format.js';
import type { TrailEntry } from './trail-reader.js';

export type KeyKind = 'id' | 'message-id' | 'address' | 'queue or connection id';

export interface Story {
  readonly key: string;
  readonly kind: KeyKind;
  /** Records in time order. */
  readonly entries: readonly TrailEntry[];
  /** Direct matches (before expansion), and records left out by --limit. */
  readonly direct: number;
  readonly dropped: number;
  /** Related records were looked for (a second pass). */
  readonly expanded: boolean;
  readonly privacyNote: string | null;
}
import { forTerminal } from './terminal-text.js';
import { instanceOf } from './trail-instances.js';

export function renderStory(raw: Story, style: Style): string[] {
  const story = forTerminal(raw);
  const out: string[] = [];
  const entries = story.entries;
  if (entries.length === 0) return out;
  const first = (entries[0]!.record as { time?: string }).time;
  const last = (entries[entries.length - 1]!.record as { time?: string }).time;
  // The trails of several instances: one story across them, each record saying whose it is.
  const instances = [...new Set(entries.map((e) => instanceOf(e.record) ?? '-'))];
  const across = instances.length > 1 ? ` across ${instances.length} instances (${instances.join(', ')})` : '';
  out.push(paint(style, 'bold', `lookup ${story.key} (${story.kind}): ${entries.length} record(s)${across}, ${formatTime(first)} → ${formatTime(last)}`));
  if (story.privacyNote) out.push(paint(style, 'dim', `  note: ${story.privacyNote}`));
  const relays = entries.map((e) => e.record).filter((r): r is RelayRecord => r.type === 'relay');
  const verdict = verdictLine(relays, story.dropped, style);
  if (verdict) out.push(verdict);
  const spooled = spoolLine(
    entries.map((e) => e.record),
    style,
  );
  if (spooled) out.push(spooled);
  if (story.dropped > 0) out.push(paint(style, 'yellow', `  ${story.dropped} earlier record(s) not shown (--limit)`));
  if (!story.expanded && story.direct > 1 && relays.length > 0 && story.direct > 100) {
    out.push(paint(style, 'dim', `  ${story.direct} records name it directly; related records (sessions, refusals) are not added for so many`));
  }
  for (const e of entries) {
    out.push('');
    const where = `${across ? `${instanceOf(e.record) ?? '-'}  ` : ''}${e.file}:${e.line}`;
    if (e.record.type === 'relay') out.push(...relayStory(e.record, style, where));
    else out.push(`${recordLine(e.record, style)}  ${paint(style, 'dim', where)}`);
  }
  return out;
}

/** "latest outcome: delivered ... after 2 earlier tries" from the relay records of the story. */
function verdictLine(relays: readonly RelayRecord[], dropped: number, style: Style): string | null {
  const latest = relays[relays.length - 1];
  if (!latest) return null;
  const where = latest.upstream ? ` via ${latest.upstream.name}${latest.upstream.queueId ? ` (queue ${latest.upstream.queueId})` : ''}` : '';
  // With --limit cutting the story, say that the count is of what is shown, not of all there is.
  const shown = dropped > 0 ? ' shown here' : '';
  const earlier = relays.length > 1 ? `, after ${relays.length - 1} earlier transaction(s)${shown}: ${outcomeList(relays.slice(0, -1))}` : '';
  return `  latest outcome: ${paint(style, outcomeColor(latest.outcome), latest.outcome)} at ${formatTime(latest.time)}${where}${earlier}`;
}

/** Where a spooled message stands: its delivery attempts and its end, when the story has them. */
function spoolLine(records: readonly AuditRecord[], style: Style): string | null {
  const deliveries = records.filter((r): r is DeliveryRecord => r.type === 'delivery');
  const events = records.filter((r): r is SpoolRecord => r.type === 'spool' && r.spoolId !== null);
  if (deliveries.length === 0 && events.length === 0) return null;
  const last = deliveries.at(-1);
  const tries = last ? `${deliveries.length} delivery attempt(s), the last ${paint(style, outcomeColor(last.outcome), last.outcome)}` : 'no delivery attempt';
  const end = events.findLast((e) => ['delivered', 'bounced', 'expired', 'deleted'].includes(e.event));
  const state = end ? `ended ${paint(style, outcomeColor(end.event), end.event)} at ${formatTime(end.time)}` : 'still in the spool';
  return `  spool: ${tries}; ${state}`;
}

/** `deferred, unknown` for a few, `950 delivered, 49 deferred` for many. */
function outcomeList(relays: readonly RelayRecord[]): string {
  if (relays.length <= 5) return relays.map((r) => r.outcome).join(', ');
  const counts = new Map<string, number>();
  for (const r of relays) counts.set(r.outcome, (counts.get(r.outcome) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([o, n]) => `${n} ${o}`)
    .join(', ');
}

function relayStory(r: RelayRecord, style: Style, where: string): string[] {
  const lines: string[] = [];
  const cls = r.failure ? `  ${r.failure.class}` : '';
  lines.push(
    `${paint(style, 'dim', formatTime(r.time))}  relay  ${paint(style, outcomeColor(r.outcome), r.outcome)}${cls}  ${r.id}  ${paint(style, 'dim', where)}`,
  );
  const field = (name: string, text: string): void => void lines.push(`    ${name.padEnd(10)}${text}`);
  const m = r.message;
  if (m) {
    const from = m.headerFrom ? `  From: ${m.headerFrom}` : '';
    const subject = m.subject ? `  Subject: ${m.subject}` : '';
    field('message', `${m.messageId ?? '(no Message-ID)'}  ${formatBytes(m.size)}  sha256 ${String(m.sha256).slice(0, 12)}…${from}${subject}`);
  }
  field('envelope', `${formatAddress(r.from)} → ${(r.rcpt ?? []).map(recipient).join(', ') || '-'}`);
  if (r.client) {
    const c = r.client;
    const tls = c.tls?.protocol ? ` ${c.tls.protocol}` : ' no TLS';
    field(
      'client',
      `${c.ip}:${c.port}${c.helo ? ` helo ${c.helo}` : ''}${c.user ? ` user ${c.user}` : ''}${tls}  connection ${r.session?.id ?? '-'} #${r.session?.txn ?? '-'}`,
    );
  }
  (r.attempts ?? []).forEach((a, i) => {
    const result = a.reply ? formatReply(a.reply) : a.error ? [a.error.code, a.error.cause, a.error.message].filter(Boolean).join(' ') : '-';
    const verdict = a.class ? `  → ${a.class}` : '';
    field(`attempt ${i + 1}`, `${a.upstream}  ${formatTime(a.startedAt)}  ${formatMs(a.ms)}  reached ${a.phase}  ${result}${verdict}`);
  });
  if (r.attempts && new Set(r.attempts.map((a) => a.upstream)).size > 1) field('failover', r.attempts.map((a) => a.upstream).join(' → '));
  if (r.upstream) {
    const u = r.upstream;
    const tls = u.tls?.protocol ? ` ${u.tls.protocol}${u.tls.authorized ? '' : ' (unverified)'}` : '';
    field('decided', `${u.name} ${u.host}:${u.port}${tls}${u.reusedConnection ? ' reused connection' : ''}${u.queueId ? `  queue ${u.queueId}` : ''}`);
  } else {
    field('decided', 'no upstream was tried');
  }
  if (r.failure) {
    const f = r.failure;
    const retry = f.retryable === null ? 'may or may not be retried' : f.retryable ? 'retryable' : 'not retryable';
    const detail = [f.detail?.rule ? `rule ${f.detail.rule}` : null, f.detail?.cause, f.detail?.timeoutType].filter(Boolean).join(', ');
    field('failure', `${f.class}: ${retry}, ${f.actor} must act, scope ${f.scope}${detail ? ` (${detail})` : ''}`);
  }
  field('replied', r.clientReply?.code === 0 ? 'nothing (the client had gone)' : formatReply(r.clientReply));
  const t = r.timing;
  if (t)
    field(
      'timing',
      `total ${formatMs(t.totalMs)}: receive ${t.receiveMs}, wait ${t.waitMs}, connect ${t.connectMs}, envelope ${t.envelopeMs}, data ${t.dataMs} (ms)`,
    );
  if (r.duplicateRisk) lines.push(paint(style, 'yellow', '    duplicate risk: connection lost after the final dot; the upstream may have the message'));
  if (r.duplicateOf) lines.push(paint(style, 'yellow', `    duplicate of ${r.duplicateOf}: the same message (hash and envelope) was sent before`));
  return lines;
}

function recipient(x: RelayRecord['rcpt'][number]): string {
  const reply = x.reply ? `: ${formatReply(x.reply)}` : '';
  return `${x.to} (${x.status}${reply})`;
}
