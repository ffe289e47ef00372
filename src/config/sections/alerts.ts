/**
 * `alerts`: alert rules on relay failures, the sinks they notify and the delivery to them
 * (docs/config.md, "Keys": `alerts.*`; docs/observability.md, "Alerts" and "Default rules").
 */
import { z } from 'zod';
import { UPSTREAM_FAILURE_CLASSES } from '../../classify/failure-class.js';
import { ALWAYS, count, duration, entryName, fromNumericString, httpUrl, isRecord, requiredDuration, ratio, unique } from '../fields.js';
import type { Carries, Expect, Loaded, Same } from '../loaded.js';
import { smtpTlsShape, smtpUrl, toSmtpTls, type SmtpTlsConfig } from '../outbound-smtp.js';

/** A plain address for alert mail: no display name, no angle brackets. */
const EMAIL_ADDRESS = /^[^\s@<>",;]+@[^\s@<>",;]+$/;
/** RFC 9110 §5.1 field-name token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const webhookSink = z.strictObject({
  url: httpUrl(),
  /** HMAC-SHA256 key for the X-Mailtrail-Signature header; null = unsigned. */
  secret: z.string().min(1).nullable().optional(),
  headers: z
    .record(
      z.string().regex(HEADER_NAME, 'not an HTTP header name'),
      z.string().refine((s) => !/[\r\n\0]/.test(s), 'must not contain line breaks'),
    )
    .default({}),
});

/** The sink's own SMTP server: never one of mailtrail's upstream pools. */
const emailSink = z.strictObject({
  url: smtpUrl,
  tls: z.strictObject(smtpTlsShape).prefault({}),
  from: z.string().regex(EMAIL_ADDRESS, 'not an email address'),
  to: z.array(z.string().regex(EMAIL_ADDRESS, 'not an email address')).min(1),
});

const alertSink = z
  .strictObject({
    name: entryName(),
    webhook: webhookSink.optional(),
    email: emailSink.optional(),
  })
  .superRefine((value: unknown, ctx) => {
    const given = isRecord(value) ? [value.webhook, value.email].filter((v) => v !== undefined) : [];
    if (given.length !== 1) ctx.addIssue({ code: 'custom', message: 'needs exactly one of webhook or email' });
  }, ALWAYS);

/** Keys of an alert rule that are conditions; a rule has exactly one. */
const RULE_CONDITIONS = ['class', 'consecutiveFailures', 'failureRate', 'latency', 'noSuccess'] as const;
type RuleCondition = (typeof RULE_CONDITIONS)[number];

const alertRule = z
  .strictObject({
    name: entryName(),
    class: z.array(z.enum(UPSTREAM_FAILURE_CLASSES)).min(1).optional(),
    consecutiveFailures: z.preprocess(fromNumericString, z.int().min(1)).optional(),
    failureRate: z
      .strictObject({
        ratio: ratio(),
        window: duration(5 * 60_000),
        minVolume: count(20),
      })
      .optional(),
    latency: z
      .strictObject({
        p95: requiredDuration(),
        window: duration(5 * 60_000),
        minVolume: count(20),
      })
      .optional(),
    noSuccess: requiredDuration().optional(),
    sinks: z.array(z.string().min(1)).min(1).optional(),
  })
  .superRefine((value: unknown, ctx) => {
    const given = isRecord(value) ? RULE_CONDITIONS.filter((k) => value[k] !== undefined) : [];
    if (given.length !== 1) ctx.addIssue({ code: 'custom', message: `needs exactly one of ${RULE_CONDITIONS.join(', ')}` });
  }, ALWAYS);

/** Every sink a rule names exists. `value` may be partly invalid (see ALWAYS). */
function alertsConsistency(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value) || !Array.isArray(value.rules)) return;
  const sinkNames = new Set((Array.isArray(value.sinks) ? value.sinks : []).map((s) => (isRecord(s) ? s.name : undefined)));
  value.rules.forEach((rule: unknown, i) => {
    const sinks = isRecord(rule) && Array.isArray(rule.sinks) ? rule.sinks : [];
    sinks.forEach((name: unknown, j) => {
      if (typeof name === 'string' && !sinkNames.has(name)) {
        ctx.addIssue({ code: 'custom', message: 'names no entry of alerts.sinks', path: ['rules', i, 'sinks', j] });
      }
    });
  });
}

export const alertsSection = z
  .strictObject({
    /** Least time between two notifications of the same (rule, upstream, class). */
    cooldown: duration(10 * 60_000),
    sinks: z.array(alertSink).default([]).superRefine(unique('name', 'duplicate sink name'), ALWAYS),
    rules: z.array(alertRule).superRefine(unique('name', 'duplicate rule name'), ALWAYS).optional(),
    delivery: z
      .strictObject({
        /** Notifications waiting per sink; beyond it the newest is dropped (and counted). */
        queueSize: count(100),
        /** Further tries after a failed delivery. */
        retries: z.preprocess(fromNumericString, z.int().min(0).max(10)).default(3),
        /** One delivery try, connect to reply. */
        timeout: duration(10_000),
        /** Wait before the first retry; doubled for each further one. */
        backoff: duration(1_000),
      })
      .prefault({}),
  })
  .superRefine(alertsConsistency, ALWAYS)
  .prefault({});

// ---------------------------------------------------------------------------------------------------
// Loaded types: sinks and rules are reshaped into tagged unions at load.

export type AlertsConfig = Loaded<
  typeof alertsSection,
  {
    sinks: readonly AlertSinkConfig[];
    /** The configured rules; the built-in defaults when sinks are configured and `rules` is not. */
    rules: readonly AlertRuleConfig[];
  }
>;

export type AlertDeliveryConfig = AlertsConfig['delivery'];

export type AlertSinkConfig = WebhookSinkConfig | EmailSinkConfig;

export type WebhookSinkConfig = Loaded<typeof webhookSink, { kind: 'webhook'; name: string }>;

export interface EmailSinkConfig {
  readonly kind: 'email';
  readonly name: string;
  /** The sink's own SMTP server: never one of mailtrail's upstream pools. */
  readonly smtp: {
    readonly host: string;
    readonly port: number;
    readonly implicitTls: boolean;
    readonly auth: { readonly user: string; readonly pass: string } | null;
    readonly tls: SmtpTlsConfig;
  };
  readonly from: string;
  readonly to: readonly string[];
}

/** What makes a rule fire, evaluated per upstream. Each kind is the rule key of the same name. */
export type AlertCondition =
  /** Any failure of these classes, at once. */
  | { readonly kind: 'class'; readonly classes: readonly string[] }
  /** This many upstream-side failures in a row. */
  | { readonly kind: 'consecutiveFailures'; readonly count: number }
  /** Failed share of transactions over `window`, once `minVolume` transactions were seen. */
  | { readonly kind: 'failureRate'; readonly ratio: number; readonly window: number; readonly minVolume: number }
  /** p95 of the relay time over `window` above `p95` ms, once `minVolume` transactions were seen. */
  | { readonly kind: 'latency'; readonly p95: number; readonly window: number; readonly minVolume: number }
  /** Failures kept coming and nothing was delivered for `for` ms. */
  | { readonly kind: 'noSuccess'; readonly for: number };

export interface AlertRuleConfig {
  readonly name: string;
  readonly condition: AlertCondition;
  /** Sink names to notify. */
  readonly sinks: readonly string[];
}

type ParsedRule = NonNullable<z.output<typeof alertsSection>['rules']>[number];
type ParsedEmail = z.output<typeof emailSink>;
// These do not compile when the hand-written types above and the schema drift apart (loaded.ts): a
// condition key of the schema is in RULE_CONDITIONS (the one-condition check) and is a kind here.
type _ConditionKeysFitSchema = Expect<Same<Exclude<keyof ParsedRule, 'name' | 'sinks'>, RuleCondition>>;
type _ConditionKindsFitSchema = Expect<Same<AlertCondition['kind'], RuleCondition>>;
type _FailureRateFitsSchema = Expect<Carries<Extract<AlertCondition, { kind: 'failureRate' }>, NonNullable<ParsedRule['failureRate']>>>;
type _LatencyFitsSchema = Expect<Carries<Extract<AlertCondition, { kind: 'latency' }>, NonNullable<ParsedRule['latency']>>>;
type _EmailSinkFitsSchema = Expect<Carries<EmailSinkConfig, ParsedEmail, 'url' | 'tls'>>;

/**
 * The rules used when `alerts.sinks` is configured and `alerts.rules` is not (docs/observability.md
 * lists them; deploy/prometheus/mailtrail-rules.yaml holds the Prometheus equivalents). They follow
 * the "who must act" axis of the failure classes: a single failure that only the operator can fix
 * (credentials, certificates, quota, DNS) alerts at once; provider trouble alerts when it persists.
 */
export function defaultAlertRules(sinks: readonly string[]): AlertRuleConfig[] {
  return [
    { name: 'provider-config', condition: { kind: 'class', classes: ['upstream_auth', 'tls', 'quota', 'dns'] }, sinks },
    { name: 'failing', condition: { kind: 'consecutiveFailures', count: 5 }, sinks },
    { name: 'error-rate', condition: { kind: 'failureRate', ratio: 0.2, window: 5 * 60_000, minVolume: 20 }, sinks },
    { name: 'no-delivery', condition: { kind: 'noSuccess', for: 15 * 60_000 }, sinks },
    { name: 'slow', condition: { kind: 'latency', p95: 20_000, window: 10 * 60_000, minVolume: 20 }, sinks },
  ];
}

/** Sinks normalised; rules as configured, or the built-in defaults when sinks exist and `rules` is absent. */
export function toAlerts(a: z.output<typeof alertsSection>, baseDir: string): AlertsConfig {
  const sinks = a.sinks.map((s) => toSink(s, baseDir));
  const all = sinks.map((s) => s.name);
  const rules = a.rules === undefined ? (all.length > 0 ? defaultAlertRules(all) : []) : a.rules.map((r) => toRule(r, all));
  return { cooldown: a.cooldown, sinks, rules, delivery: a.delivery };
}

function toSink(s: z.output<typeof alertSink>, baseDir: string): AlertSinkConfig {
  if (s.webhook) {
    return { kind: 'webhook', name: s.name, url: s.webhook.url, secret: s.webhook.secret ?? null, headers: s.webhook.headers };
  }
  const email = s.email!;
  return {
    kind: 'email',
    name: s.name,
    smtp: {
      host: email.url.host,
      port: email.url.port,
      implicitTls: email.url.implicitTls,
      auth: email.url.credentials,
      tls: toSmtpTls(email.url, email.tls, baseDir),
    },
    from: email.from,
    to: email.to,
  };
}

function toRule(r: ParsedRule, allSinks: readonly string[]): AlertRuleConfig {
  const sinks = r.sinks ?? allSinks;
  if (r.class) return { name: r.name, condition: { kind: 'class', classes: r.class }, sinks };
  if (r.consecutiveFailures !== undefined) return { name: r.name, condition: { kind: 'consecutiveFailures', count: r.consecutiveFailures }, sinks };
  if (r.failureRate) return { name: r.name, condition: { kind: 'failureRate', ...r.failureRate }, sinks };
  if (r.latency) return { name: r.name, condition: { kind: 'latency', ...r.latency }, sinks };
  return { name: r.name, condition: { kind: 'noSuccess', for: r.noSuccess! }, sinks };
}
