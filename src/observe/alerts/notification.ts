/** One alert state change, as every sink receives it. Carries no address: texts are masked. */
export interface AlertNotification {
  /** The id of the `alert` record written to the trail for this notice. */
  readonly id: string;
  readonly state: 'fired' | 'resolved';
  readonly rule: string;
  /** The upstream it is about; null for the relay itself (rule `audit-trail`). */
  readonly upstream: string | null;
  readonly class: string | null;
  /** One line: what happened, the evidence, and for a resolve how long it lasted. */
  readonly message: string;
  /** When the state changed (RFC 3339). */
  readonly time: string;
  /** When the incident opened (RFC 3339); equals `time` for a fire announced at once. */
  readonly since: string;
  /** mailtrail's host name, to tell several instances apart. */
  readonly host: string;
}

/** The first line of every sink's text: Slack, Mattermost and plain email all show it as is. */
export function headline(n: AlertNotification): string {
  return `[mailtrail ${n.host}] ${n.state === 'fired' ? 'FIRING' : 'RESOLVED'}: ${n.message}`;
}

/**
 * The webhook's JSON body. `text` is what Slack-compatible incoming webhooks (Slack, Mattermost,
 * Rocket.Chat, Google Chat) display; `alert` is the same notice as fields, for any other receiver.
 */
export function webhookBody(n: AlertNotification): { text: string; alert: AlertNotification } {
  return { text: headline(n), alert: n };
}

export function emailSubject(n: AlertNotification): string {
  return `[mailtrail] ${n.state === 'fired' ? 'FIRING' : 'RESOLVED'} ${n.rule}${n.upstream === null ? '' : ` on ${n.upstream}`}`;
}

export function emailText(n: AlertNotification): string {
  return [
    headline(n),
    '',
    `rule:      ${n.rule}`,
    `upstream:  ${n.upstream ?? '-'}`,
    `class:     ${n.class ?? '-'}`,
    `state:     ${n.state}`,
    `since:     ${n.since}`,
    `time:      ${n.time}`,
    `host:      ${n.host}`,
    `record id: ${n.id} (type alert in the audit trail)`,
    '',
  ].join('\n');
}

/** "2m 5s", "1h 3m", "850ms": durations in alert texts. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1_000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 === 0 ? `${m}m` : `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  return m % 60 === 0 ? `${h}h` : `${h}h ${m % 60}m`;
}
