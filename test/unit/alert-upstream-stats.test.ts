import { describe, expect, it } from 'vitest';
import type { AttemptEntry, RelayRecord } from '../../src/audit/records.js';
import { attemptFacts, UpstreamStats, type AttemptFact } from '../../src/observe/alerts/upstream-stats.js';

function attempt(upstream: string, cls: string | null, reply: AttemptEntry['reply'] = null, error: AttemptEntry['error'] = null): AttemptEntry {
  return { upstream, startedAt: new Date().toISOString(), ms: 5, phase: cls ? 'connecting' : 'done', reply, error, class: cls as AttemptEntry['class'] };
}

function record(outcome: RelayRecord['outcome'], attempts: AttemptEntry[]): RelayRecord {
  return { outcome, attempts } as unknown as RelayRecord;
}

const fact = (kind: AttemptFact['kind'], cls: string | null = null, skip: AttemptFact['skip'] = null, evidence: string | null = null): AttemptFact => ({
  upstream: 'ses',
  kind,
  class: cls,
  evidence,
  hint: null,
  skip,
});
const connectionClasses = (cls: string): boolean => ['connect', 'dns', 'tls', 'upstream_auth'].includes(cls);

describe('attempts as alert rules see them', () => {
  it('counts a failed-over primary as a failure even when the backup delivered', () => {
    const facts = attemptFacts(
      record('delivered', [attempt('primary', 'connect', null, { code: 'ESOCKET', cause: 'ECONNREFUSED', message: null }), attempt('backup', null)]),
    );
    expect(facts.map((f) => [f.upstream, f.kind, f.evidence])).toEqual([
      ['primary', 'failure', 'ESOCKET ECONNREFUSED'],
      ['backup', 'success', null],
    ]);
  });

  it("gives the deciding try the rule's hint from the record, and earlier tries none", () => {
    const hint = 'move this account to OAuth2 (XOAUTH2): the provider no longer accepts a password for it.';
    const refused = { code: 535, enhanced: '5.7.139', text: 'Authentication unsuccessful, basic authentication is disabled.' };
    const r = {
      outcome: 'deferred',
      attempts: [attempt('backup', 'connect', null, { code: 'ESOCKET', cause: 'ECONNREFUSED', message: null }), attempt('m365', 'upstream_auth', refused)],
      failure: { class: 'upstream_auth', detail: { rule: 'password-auth-disabled', hint } },
    } as unknown as RelayRecord;
    expect(attemptFacts(r).map((f) => [f.upstream, f.hint])).toEqual([
      ['backup', null],
      ['m365', hint],
    ]);
  });

  it('keeps the hint of the last failure for the streak alert text', () => {
    const stats = new UpstreamStats();
    stats.addAttempt({ ...fact('failure', 'upstream_auth', null, '535 5.7.139 …'), hint: 'move this account to OAuth2' }, 1);
    expect(stats.lastFailure).toEqual({ class: 'upstream_auth', evidence: '535 5.7.139 …', hint: 'move this account to OAuth2' });
  });

  it('treats a verdict about the recipient as neutral: the upstream works', () => {
    const [f] = attemptFacts(record('rejected', [attempt('ses', 'recipient_rejected')]));
    expect(f!.kind).toBe('neutral');
  });

  it('masks addresses and numbers in the evidence, keeping the reply codes', () => {
    const reply = { code: 550, enhanced: '5.1.1', text: '<ana@example.org>: Recipient address rejected (id 123)' };
    const [f] = attemptFacts(record('rejected', [attempt('ses', 'recipient_rejected', reply)]));
    expect(f!.evidence).toBe('550 5.1.1 <address>: Recipient address rejected (id <n>)');
  });
});

describe('upstream statistics', () => {
  it('counts failures in a row and ends the streak on any answer from the upstream', () => {
    const s = new UpstreamStats();
    for (let i = 0; i < 3; i++) s.addAttempt(fact('failure', 'connect'), 1_000);
    expect(s.consecutiveFailures).toBe(3);
    s.addAttempt(fact('neutral', 'recipient_rejected'), 1_000);
    expect(s.consecutiveFailures).toBe(0);
    expect(s.failingSince).toBe(1_000);
    s.addAttempt(fact('success'), 2_000);
    expect(s.failingSince).toBeNull();
  });

  it('tells a breaker or rate-limit skip from a real try', () => {
    const facts = attemptFacts(
      record('deferred', [
        attempt('primary', 'upstream_unavailable', null, { code: 'EBREAKEROPEN', cause: null, message: null }),
        attempt('backup', 'throttled', null, { code: 'ERATELIMIT', cause: null, message: null }),
      ]),
    );
    expect(facts.map((f) => f.skip)).toEqual(['breaker', 'local']);
  });

  it('keeps the real failure behind an open breaker as the last failure, and ignores our own pacing', () => {
    const s = new UpstreamStats();
    s.addAttempt(fact('failure', 'connect', null, 'ESOCKET ECONNREFUSED'), 1_000);
    s.addAttempt(fact('failure', 'upstream_unavailable', 'breaker', 'EBREAKEROPEN'), 1_000);
    s.addAttempt(fact('failure', 'throttled', 'local', 'ERATELIMIT'), 1_000);
    expect(s.consecutiveFailures).toBe(2);
    expect(s.lastFailure).toEqual({ class: 'connect', evidence: 'ESOCKET ECONNREFUSED', hint: null });
    expect(s.failureRate(5_000, 1_000)).toEqual({ failed: 2, total: 2 });
  });

  it('extends the streak with failed health probes, without counting them as traffic', () => {
    const s = new UpstreamStats();
    for (let i = 0; i < 5; i++) s.addProbe({ class: 'connect', evidence: 'ESOCKET ECONNREFUSED', hint: null }, connectionClasses);
    expect(s.consecutiveFailures).toBe(5);
    expect(s.failingSince).toBeNull();
    expect(s.failureRate(5_000, 0)).toEqual({ failed: 0, total: 0 });
    s.addProbe(null, connectionClasses);
    expect(s.consecutiveFailures).toBe(0);
  });

  it('does not end a throttling streak on a passing probe, which sends no mail', () => {
    const s = new UpstreamStats();
    for (let i = 0; i < 3; i++) s.addAttempt(fact('failure', 'throttled'), 1_000);
    s.addProbe(null, connectionClasses);
    expect(s.consecutiveFailures).toBe(3);
  });

  it('computes the failure ratio over a sliding window', () => {
    const s = new UpstreamStats();
    s.addAttempt(fact('failure', 'connect'), 0);
    for (let i = 0; i < 3; i++) s.addAttempt(fact('failure', 'connect'), 10_000);
    s.addAttempt(fact('success'), 10_000);
    expect(s.failureRate(5_000, 12_000)).toEqual({ failed: 3, total: 4 });
  });

  it('computes a nearest-rank p95 over the window', () => {
    const s = new UpstreamStats();
    s.addLatency(10_000, 0);
    for (let i = 1; i <= 100; i++) s.addLatency(i, 1_000);
    expect(s.p95(5_000, 5_500)).toEqual({ p95: 95, count: 100 });
  });
});
