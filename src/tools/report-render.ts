/**
 * The text form of `mailtrail report`: sections in the order an operator reads them (how much, how
 * well, what broke, how fast, when, who). `--json` prints the Report object itself instead. What an
 * upstream decided and what mailtrail decided itself are kept apart in every section that counts
 * verdicts (report-builder.ts, "who decided"). The report's text is escaped for the terminal first.
 */
import { formatBytes, formatCount, formatPercent, formatTime, paint, type Style } from './format.js';
import { DELIVERY_OUTCOMES, OUTCOMES, type ErrorGroup, type GroupRow, type Report } from './report-builder.js';
import { forTerminal } from './terminal-text.js';

/** Rows of error groups and `--by` groups shown in text (the JSON has them all). */
const TEXT_ROWS = 20;
/** Beyond this many hours in range, traffic is shown per day. */
const MAX_HOUR_ROWS = 72;

export function renderReport(report: Report, fileNames: readonly string[], style: Style): string[] {
  const r = forTerminal(report);
  const files = forTerminal(fileNames);
  const out: string[] = [];
  const h = (title: string): void => {
    out.push('', paint(style, 'bold', title));
  };
  out.push(paint(style, 'bold', `mailtrail report  ${rangeText(r)}`));
  out.push(`  files: ${files.join(', ')}`);

  h('Grand totals');
  const relay = r.records.relay;
  out.push(row('relayed (reached DATA)', relay));
  for (const o of OUTCOMES) out.push(row(`  ${o}`, r.outcomes[o], share(r.outcomes[o], relay)));
  out.push(row('success rate', null, `${formatPercent(r.successRate)} (delivered ÷ relayed, queued left out: see Spool)`));
  const up = r.decidedBy.upstream;
  const own = r.decidedBy.mailtrail;
  out.push(row('decided by an upstream', up.relay, 'an upstream was tried: its reply, or its failure'));
  out.push(
    row('decided by mailtrail', own.relay, 'no upstream tried: queued into the spool, too large, trail not writable, every upstream skipped, client gone'),
  );
  out.push(
    row(
      'deferrals',
      r.deferrals,
      `client told to retry (4xx): ${formatCount(up.outcomes.deferred)} by an upstream, ${formatCount(own.outcomes.deferred)} by mailtrail; unknown outcomes counted apart`,
    ),
  );
  out.push(row('rejected by an upstream', r.rejections.byUpstream, '5xx from an upstream that was tried'));
  out.push(row('rejected by mailtrail', r.rejections.byMailtrail, 'after DATA, no upstream tried (e.g. over limits.maxMessageSize)'));
  out.push(row('refused by mailtrail', r.rejections.refusals, 'before relaying: reject records (policy, protocol), and those counted in session records'));
  out.push(
    row(
      'recipients',
      r.recipients.accepted + r.recipients.rejected + r.recipients.deferred + r.recipients.unknown + r.recipients.queued,
      `${formatCount(r.recipients.accepted)} accepted, ${formatCount(r.recipients.rejected)} rejected, ${formatCount(r.recipients.deferred)} deferred, ${formatCount(r.recipients.unknown)} unknown${r.recipients.queued > 0 ? `, ${formatCount(r.recipients.queued)} queued` : ''}`,
    ),
  );
  out.push(row('failovers', r.failovers, 'more than one upstream tried or skipped (failure, open breaker, pacing)'));
  out.push(row('duplicate risk', r.duplicateRisk, `unknown outcome: the upstream may have it; ${formatCount(r.duplicateOf)} later linked as duplicates`));
  out.push(row('bytes', null, `${formatBytes(r.bytes.received)} received, ${formatBytes(r.bytes.delivered)} delivered`));
  out.push(row('sessions', r.sessions.count));
  if (r.records.alert > 0) out.push(row('alerts', r.records.alert, `${r.alerts.fired} fired, ${r.alerts.resolved} resolved`));

  if (r.outcomes.queued + r.records.delivery + r.records.spool > 0) {
    h('Spool');
    out.push(row('queued', r.outcomes.queued, 'relay records of messages taken into the spool (client told 250 queued)'));
    const d = r.spool.deliveries;
    out.push(
      row(
        'delivery attempts',
        r.records.delivery,
        DELIVERY_OUTCOMES.filter((o) => d[o] > 0)
          .map((o) => `${formatCount(d[o])} ${o}`)
          .join(', '),
      ),
    );
    out.push(
      row(
        'spool events',
        r.records.spool,
        Object.entries(r.spool.events)
          .map(([e, n]) => `${formatCount(n)} ${e}`)
          .join(', '),
      ),
    );
  }

  h('Failure classes decided by an upstream (relay records)');
  out.push(...counts(up.failureClasses, relay));
  h('Failure classes decided by mailtrail (relay records, no upstream tried)');
  out.push(...counts(own.failureClasses, relay));
  h('Refusals by class');
  out.push(...counts(r.rejectClasses, r.rejections.refusals));

  h(`Error groups (${formatCount(r.errorGroups.groups.length)}; most frequent first)`);
  if (r.errorGroups.groups.length === 0) out.push('  (none)');
  for (const g of r.errorGroups.groups.slice(0, TEXT_ROWS)) {
    out.push(`  ${formatCount(g.count).padStart(9)}  ${g.class}  ${decidedIn(g)}  ${g.normalized}`);
    out.push(paint(style, 'dim', `             first ${formatTime(g.firstSeen)}  last ${formatTime(g.lastSeen)}  e.g. ${g.sample.id}: ${g.sample.reply}`));
  }
  more(out, r.errorGroups.groups.length, 'error groups');
  if (r.errorGroups.other > 0)
    out.push(`  ${formatCount(r.errorGroups.other)} failures in groups beyond the first ${formatCount(r.errorGroups.groups.length)} (not grouped)`);

  h(`Latency per upstream (ms: p50 / p95 / p99, within ${Math.round(r.latency.relativeError * 100)}%)`);
  if (r.latency.upstreams.length === 0) out.push('  (no relay record reached an upstream)');
  else out.push(`  ${'upstream'.padEnd(16)} ${'count'.padStart(9)}  ${'total'.padEnd(24)} ${'connect'.padEnd(24)} data`);
  for (const l of r.latency.upstreams) {
    const q = (s: typeof l.totalMs): string => (s.count === 0 ? '-' : `${s.p50} / ${s.p95} / ${s.p99}`);
    out.push(`  ${l.upstream.padEnd(16)} ${formatCount(l.count).padStart(9)}  ${q(l.totalMs).padEnd(24)} ${q(l.connectMs).padEnd(24)} ${q(l.dataMs)}`);
  }

  const perDay = r.perHour.length > MAX_HOUR_ROWS;
  h(perDay ? 'Traffic per day (UTC)' : 'Traffic per hour (UTC)');
  out.push(
    `  ${(perDay ? 'day' : 'hour').padEnd(16)} ${'relayed'.padStart(9)} ${'delivered'.padStart(10)} ${'queued'.padStart(9)} ${'failed'.padStart(9)} ${'refused'.padStart(9)}`,
  );
  for (const t of perDay ? byDay(r.perHour) : r.perHour) {
    const label = perDay ? t.hour : `${t.hour.replace('T', ' ')}:00`;
    out.push(
      `  ${label.padEnd(16)} ${formatCount(t.relay).padStart(9)} ${formatCount(t.delivered).padStart(10)} ${formatCount(t.queued).padStart(9)} ${formatCount(t.failed).padStart(9)} ${formatCount(t.rejects).padStart(9)}`,
    );
  }

  h(`Top sender domains (messages${r.senderDomains.exact ? '' : '; counts are upper bounds, ± shown'})`);
  out.push(...domains(r.senderDomains));
  h(`Top recipient domains (recipients${r.recipientDomains.exact ? '' : '; counts are upper bounds, ± shown'})`);
  out.push(...domains(r.recipientDomains));

  if (r.by) {
    h(`By ${r.by.key}`);
    out.push(
      `  ${r.by.key.padEnd(28)} ${'relayed'.padStart(9)} ${'delivered'.padStart(10)} ${'partial'.padStart(8)} ${'deferred'.padStart(9)} ${'rejected'.padStart(9)} ${'unknown'.padStart(8)} ${'aborted'.padStart(8)} ${'queued'.padStart(8)} ${'success'.padStart(8)} ${'not tried'.padStart(10)} ${'refused'.padStart(8)}`,
    );
    for (const g of r.by.groups.slice(0, TEXT_ROWS)) out.push(groupLine(g));
    more(out, r.by.groups.length, 'groups');
    if (r.by.other) out.push(groupLine(r.by.other));
    out.push(
      paint(style, 'dim', '  not tried: relayed records mailtrail decided without trying an upstream (also in their outcome column); refused: reject records'),
    );
  }
  return out;
}

function rangeText(r: Report): string {
  const from = r.range.since ?? r.range.first;
  const to = r.range.until ?? r.range.last;
  if (!from && !to) return '(no records)';
  return `${from ? formatTime(from) : '…'} → ${to ? formatTime(to) : '…'}`;
}

function row(label: string, n: number | null, note = ''): string {
  return `  ${label.padEnd(26)} ${n === null ? ''.padStart(11) : formatCount(n).padStart(11)}  ${note}`.trimEnd();
}

function share(n: number, whole: number): string {
  return whole === 0 ? '' : formatPercent(n / whole);
}

function counts(map: Record<string, number>, whole: number): string[] {
  const entries = Object.entries(map);
  if (entries.length === 0) return ['  (none)'];
  return entries.map(([k, n]) => row(k, n, share(n, whole)));
}

function domains(list: Report['senderDomains']): string[] {
  if (list.top.length === 0) return ['  (none)'];
  return list.top.map((d) => row(d.key, d.count, d.error > 0 ? `± ${formatCount(d.error)}` : share(d.count, list.total)));
}

function more(out: string[], n: number, what: string): void {
  if (n > TEXT_ROWS) out.push(`  ... ${formatCount(n - TEXT_ROWS)} more ${what} (--json lists them all)`);
}

function groupLine(g: GroupRow): string {
  const o = g.outcomes;
  const n = (v: number, w: number): string => formatCount(v).padStart(w);
  return `  ${g.key.padEnd(28)} ${n(g.relay, 9)} ${n(o.delivered, 10)} ${n(o.partial, 8)} ${n(o.deferred, 9)} ${n(o.rejected, 9)} ${n(o.unknown, 8)} ${n(o.aborted, 8)} ${n(o.queued, 8)} ${formatPercent(g.successRate).padStart(8)} ${n(g.byMailtrail, 10)} ${n(g.rejects, 8)}`;
}

/** Where an error group's failures were decided: the upstream, or mailtrail without trying it. */
function decidedIn(g: ErrorGroup): string {
  if (g.decidedBy.mailtrail === 0) return g.upstream ?? '-';
  if (g.decidedBy.upstream === 0) return g.upstream ? `mailtrail (${g.upstream} not tried)` : 'mailtrail (no upstream tried)';
  return `${g.upstream ?? '-'} (${formatCount(g.decidedBy.mailtrail)} not tried: mailtrail)`;
}

function byDay(hours: Report['perHour']): Report['perHour'] {
  const days = new Map<string, { relay: number; delivered: number; queued: number; failed: number; rejects: number }>();
  for (const h of hours) {
    const day = h.hour.slice(0, 10);
    const d = days.get(day) ?? { relay: 0, delivered: 0, queued: 0, failed: 0, rejects: 0 };
    d.relay += h.relay;
    d.delivered += h.delivered;
    d.queued += h.queued;
    d.failed += h.failed;
    d.rejects += h.rejects;
    days.set(day, d);
  }
  return [...days.entries()].map(([hour, d]) => ({ hour, ...d }));
}
