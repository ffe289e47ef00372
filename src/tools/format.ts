/**
 * Rendering records for people: one line per record for `tail`, and the shared pieces (times,
 * addresses, replies, sizes, colours) that `lookup` and `report` use too. What a renderer is given
 * has been through terminal-text.ts first (`recordLine` does it here): no field reaches the terminal
 * with a control character in it, and a multi-line reply reads `line / line`.
 *
 * Colour only on a terminal, never when NO_COLOR is set (https://no-color.org); FORCE_COLOR forces it
 * (for pagers: `FORCE_COLOR=1 mailtrail tail | less -R`).
 */
import type { AlertRecord, AuditRecord, CheckpointRecord, DeliveryRecord, RejectRecord, RelayRecord, SessionRecord, SpoolRecord } from '../audit/records.js';
import { forTerminal, parsedForTerminal } from './terminal-text.js';

export interface Style {
  readonly color: boolean;
}

const SGR = { reset: 0, bold: 1, dim: 2, red: 31, green: 32, yellow: 33, magenta: 35, cyan: 36 } as const;
export type Paint = keyof typeof SGR;

/** Colours when stdout is a terminal, unless NO_COLOR is set and non-empty; FORCE_COLOR (not "0") wins. */
export function colorWanted(env: NodeJS.ProcessEnv, isTty: boolean): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined && force !== '' && force !== '0' && force !== 'false') return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return isTty;
}

export function paint(style: Style, how: Paint, text: string): string {
  return style.color ? `\u001b[${SGR[how]}m${text}\u001b[0m` : text;
}

/**
 * Green delivered; yellow deferred, partial, unknown; red rejected (and a spooled message bounced or
 * expired); dim aborted (the client left); cyan queued (in the spool, its fate in later records).
 */
export function outcomeColor(outcome: string): Paint {
  switch (outcome) {
    case 'delivered':
      return 'green';
    case 'rejected':
    case 'bounced':
    case 'expired':
      return 'red';
    case 'aborted':
      return 'dim';
    case 'queued':
      return 'cyan';
    default:
      return 'yellow';
  }
}

/** `2026-11-25T10:15:02.481Z` → `2026-11-25 10:15:02.481Z` (the trail is UTC; say so). */
export function formatTime(iso: string | undefined): string {
  if (typeof iso !== 'string') return '????-??-?? ??:??:??.???Z';
  return iso.replace('T', ' ');
}

export function formatAddress(address: string | null | undefined): string {
  if (address === null || address === undefined) return '-';
  return address === '' ? '<>' : address;
}

/** First recipient and how many more: `ana@example.org +2`. */
export function recipientSummary(rcpt: readonly { readonly to: string }[] | undefined): string {
  if (!rcpt || rcpt.length === 0) return '-';
  return rcpt.length === 1 ? rcpt[0]!.to : `${rcpt[0]!.to} +${rcpt.length - 1}`;
}

export function formatReplyCode(reply: { readonly code: number; readonly enhanced: string | null } | null | undefined): string {
  if (!reply) return '-';
  return reply.enhanced ? `${reply.code} ${reply.enhanced}` : String(reply.code);
}

export function formatReply(reply: { readonly code: number; readonly enhanced: string | null; readonly text: string } | null | undefined): string {
  if (!reply) return '-';
  return `${formatReplyCode(reply)} ${reply.text}`.trim();
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.round(ms / 60_000)}min`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatPercent(ratio: number | null): string {
  if (ratio === null) return '-';
  const pct = ratio * 100;
  return `${pct === 100 || pct === 0 ? pct.toFixed(0) : pct.toFixed(1)}%`;
}

/** The upstreams tried, `primary›backup` when it failed over. */
export function upstreamPath(r: Pick<RelayRecord, 'attempts' | 'upstream'>): string {
  const names: string[] = [];
  for (const a of r.attempts ?? []) if (names[names.length - 1] !== a.upstream) names.push(a.upstream);
  if (names.length === 0) return r.upstream?.name ?? '-';
  return names.join('›');
}

/** The upstream's deciding reply code, else the error that stood for it (ECONNREFUSED, ETIMEDOUT...). */
export function upstreamResult(r: Pick<RelayRecord, 'upstreamReply' | 'failure'>): string {
  if (r.upstreamReply) return formatReplyCode(r.upstreamReply);
  const d = r.failure?.detail;
  return d?.cause ?? d?.timeoutType ?? d?.code ?? '-';
}

/**
 * One line for `tail`: the record type decides the layout. The record's text is escaped first;
 * `json`, the line it was parsed from, makes that check cheap.
 */
export function recordLine(parsed: AuditRecord, style: Style, json?: string): string {
  const record = json === undefined ? forTerminal(parsed) : parsedForTerminal(parsed, json);
  switch (record.type) {
    case 'relay':
      return relayLine(record, style);
    case 'reject':
      return rejectLine(record, style);
    case 'session':
      return sessionLine(record, style);
    case 'alert':
      return alertLine(record, style);
    case 'checkpoint':
      return checkpointLine(record, style);
    case 'delivery':
      return deliveryLine(record, style);
    case 'spool':
      return spoolLine(record, style);
    default:
      return otherLine(record, style);
  }
}

const OUTCOME_WIDTH = 9;
const CLASS_WIDTH = 20;

/** time, outcome, class, from → to +N, upstream(s) reply code queue id, total ms, id. */
function relayLine(r: RelayRecord, style: Style): string {
  const outcome = paint(style, outcomeColor(r.outcome), r.outcome.padEnd(OUTCOME_WIDTH));
  const cls = (r.failure?.class ?? '-').padEnd(CLASS_WIDTH);
  const queue = r.upstream?.queueId ? ` q=${r.upstream.queueId}` : '';
  const flags = `${r.duplicateRisk ? ' ' + paint(style, 'yellow', 'dup-risk') : ''}${r.duplicateOf ? ` dup-of=${r.duplicateOf}` : ''}`;
  return [
    paint(style, 'dim', formatTime(r.time)),
    outcome,
    cls,
    `${formatAddress(r.from)} → ${recipientSummary(r.rcpt)}`,
    `${upstreamPath(r)} ${upstreamResult(r)}${queue}`,
    formatMs(r.timing?.totalMs),
    paint(style, 'dim', r.id) + flags,
  ].join('  ');
}

/** time, "delivery" and its outcome, class, which attempt of which spooled message, upstream(s) and result, what next, id. */
function deliveryLine(r: DeliveryRecord, style: Style): string {
  const next = r.next ? `next ${r.next.action}${r.next.at ? ` at ${formatTime(r.next.at)}` : ''}` : '-';
  const flags = r.duplicateRisk ? ' ' + paint(style, 'yellow', 'dup-risk') : '';
  return [
    paint(style, 'dim', formatTime(r.time)),
    paint(style, outcomeColor(r.outcome), `↳ ${r.outcome}`.padEnd(OUTCOME_WIDTH)),
    (r.failure?.class ?? '-').padEnd(CLASS_WIDTH),
    `attempt ${r.attempt} of ${r.spoolId} → ${recipientSummary(r.rcpt)}`,
    `${upstreamPath(r)} ${upstreamResult(r)}${r.upstream?.queueId ? ` q=${r.upstream.queueId}` : ''}`,
    next,
    formatMs(r.timing?.totalMs),
    paint(style, 'dim', r.id) + flags,
  ].join('  ');
}

/** time, "spool" and the event, the message (or upstream), why, who, the DSN queued, id. */
function spoolLine(r: SpoolRecord, style: Style): string {
  const by = r.by ? `by ${r.by.user ?? '?'} (${r.by.channel}${r.by.address ? ` ${r.by.address}` : ''})` : '';
  return [
    paint(style, 'dim', formatTime(r.time)),
    paint(style, outcomeColor(r.event), `◆ ${r.event}`.padEnd(OUTCOME_WIDTH)),
    (r.spoolId ?? r.upstream ?? '-').padEnd(CLASS_WIDTH),
    [r.reason, by, r.dsn ? `dsn ${r.dsn.id}` : ''].filter(Boolean).join('  ') || '-',
    paint(style, 'dim', r.id),
  ].join('  ');
}

/** time, "refused", class, command + reply (× count when the record stands for several), client, from → to, id. */
export function rejectLine(r: RejectRecord, style: Style): string {
  const user = r.client?.user ? ` (${r.client.user})` : r.authUser ? ` (tried ${r.authUser})` : '';
  const who = r.client ? `${r.client.ip}${user}` : '-';
  const times = (r.count ?? 1) > 1 ? ` ×${r.count}` : '';
  return [
    paint(style, 'dim', formatTime(r.time)),
    paint(style, 'red', 'refused'.padEnd(OUTCOME_WIDTH)),
    String(r.class).padEnd(CLASS_WIDTH),
    `${formatAddress(r.from)} → ${formatAddress(r.to)}`,
    `${r.command} ${formatReplyCode(r.clientReply)}${times}`,
    who,
    paint(style, 'dim', r.id),
  ].join('  ');
}

/** time, "session", client, counts, bytes, duration, TLS, connection id. */
function sessionLine(r: SessionRecord, style: Style): string {
  const who = r.client ? `${r.client.ip}${r.client.user ? ` (${r.client.user})` : ''}` : '-';
  const tls = r.client?.tls?.protocol ?? 'no TLS';
  return [
    paint(style, 'dim', formatTime(r.time)),
    paint(style, 'cyan', 'session'.padEnd(OUTCOME_WIDTH)),
    who,
    `${r.transactions} txn, ${r.accepted} accepted, ${r.rejected} refused${summarisedText(r.refusalsSummarised)}`,
    formatBytes(r.bytes ?? 0),
    formatMs(r.durationMs),
    tls,
    paint(style, 'dim', `session ${r.session?.id ?? '-'}`),
  ].join('  ');
}

/** ", 15 without a record of their own" when the session record alone counts some refusals. */
function summarisedText(summarised: SessionRecord['refusalsSummarised'] | undefined): string {
  const n = Object.values(summarised ?? {}).reduce((a, b) => a + (b ?? 0), 0);
  return n > 0 ? ` (${n} without a record of their own)` : '';
}

export function alertLine(r: AlertRecord, style: Style): string {
  const color: Paint = r.state === 'resolved' ? 'green' : 'magenta';
  const about = [r.upstream, r.class].filter(Boolean).join(' ');
  return [
    paint(style, 'dim', formatTime(r.time)),
    paint(style, color, `alert ${r.state}`.padEnd(OUTCOME_WIDTH)),
    String(r.rule).padEnd(CLASS_WIDTH),
    about || '-',
    String(r.message ?? ''),
    paint(style, 'dim', r.id),
  ].join('  ');
}

/** time, "checkpoint", the chain head it attests, records since the last one, signed or not. */
function checkpointLine(r: CheckpointRecord, style: Style): string {
  const head = r.head ? `after seq ${r.head.seq} (${String(r.head.hash).slice(0, 12)}…)` : '-';
  return [
    paint(style, 'dim', formatTime(r.time)),
    paint(style, 'dim', 'checkpoint'),
    head,
    `${r.count} record(s)`,
    r.signature ? `signed by key ${r.keyId ?? '?'}` : 'unsigned',
    paint(style, 'dim', r.id),
  ].join('  ');
}

/** Types this version does not render specially (checkpoint, future ones): type and the short facts. */
function otherLine(r: Record<string, unknown>, style: Style): string {
  const facts: string[] = [];
  for (const key of ['seq', 'hash']) {
    const v = r[key];
    if (typeof v === 'number' || (typeof v === 'string' && v.length > 0))
      facts.push(`${key}=${typeof v === 'string' && v.length > 16 ? v.slice(0, 16) + '…' : v}`);
  }
  return [
    paint(style, 'dim', formatTime(r.time as string | undefined)),
    paint(style, 'dim', String(r.type).padEnd(OUTCOME_WIDTH)),
    facts.join(' ') || '-',
    paint(style, 'dim', typeof r.id === 'string' ? r.id : ''),
  ]
    .filter(Boolean)
    .join('  ');
}
