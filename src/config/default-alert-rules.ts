import type { AlertRuleConfig } from './types.js';

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
