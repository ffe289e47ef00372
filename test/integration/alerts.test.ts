import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AlertRecord, AuditRecord } from '../../src/audit/records.js';
import type { AlertRuleConfig, Config } from '../../src/config/types.js';
import { defaultAlertRules } from '../../src/config/sections/alerts.js';
import { PASSWORD_AUTH_DISABLED_HINT } from '../../src/classify/rules.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const SECRET = 'webhook-secret';
const AUTH_FAILED = { code: 535, text: '5.7.8 Authentication credentials invalid' };
/** Exchange Online with basic authentication switched off (nodemailer#1714). */
const PASSWORD_AUTH_OFF = {
  code: 535,
  text: '5.7.139 Authentication unsuccessful, basic authentication is disabled. [PN0PR01CA0024.INDPRD01.PROD.OUTLOOK.COM 2025-01-26T18:54:30.055Z 08DD3DD7D75D7743]',
};

function alertsWith(hook: WebhookReceiver, rules: AlertRuleConfig[], delivery: Partial<Config['alerts']['delivery']> = {}): Partial<Config['alerts']> {
  return {
    sinks: [{ kind: 'webhook', name: 'hook', url: hook.url, secret: SECRET, headers: { 'x-team': 'mail' } }],
    rules,
    delivery: { queueSize: 100, retries: 3, timeout: 10_000, backoff: 1_000, ...delivery },
  };
}

const alertRecords = (records: AuditRecord[]): AlertRecord[] => records.filter((r): r is AlertRecord => r.type === 'alert');

/** Sends `count` messages, `parallel` at a time; returns each client-side latency in ms. */
async function sendMany(relay: RunningRelay, count: number, parallel = 10): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < count; i += parallel) {
    const batch = Array.from({ length: Math.min(parallel, count - i) }, async () => {
      const t0 = performance.now();
      await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
      latencies.push(performance.now() - t0);
    });
    await Promise.all(batch);
  }
  return latencies;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe('alerting to a webhook', () => {
  let upstream: FakeUpstream;
  let hook: WebhookReceiver;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ auth: { user: 'relay', pass: 'secret' } });
    hook = await startWebhookReceiver();
    relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port, auth: { user: 'relay', pass: 'secret' } }],
      alerts: alertsWith(hook, [{ name: 'provider-config', condition: { kind: 'class', classes: ['upstream_auth'] }, sinks: ['hook'] }]),
    });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
    await hook.close();
  });

  it('sends exactly one alert for a burst of 50 failures, then one resolve after recovery', async () => {
    await upstream.setFaults({ authReply: AUTH_FAILED });
    await sendMany(relay, 50);
    await hook.waitFor((r) => r.length >= 1);
    // Give any stray duplicate time to arrive before counting.
    await new Promise((r) => setTimeout(r, 500));
    expect(hook.received.map((h) => h.json.alert.state)).toEqual(['fired']);
    expect(hook.received[0]!.json.alert).toMatchObject({ rule: 'provider-config', upstream: 'provider', class: 'upstream_auth' });
    expect(hook.received[0]!.json.text).toMatch(/^\[mailtrail mailtrail\.test\] FIRING: provider-config on upstream provider: .*upstream_auth \(535 5\.7\.8/);

    await upstream.resetFaults();
    await sendMany(relay, 1);
    await hook.waitFor((r) => r.length >= 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(hook.received.map((h) => h.json.alert.state)).toEqual(['fired', 'resolved']);
    expect(hook.received[1]!.json.alert.message).toMatch(/a message was delivered; open for/);
  });

  it('signs each body with HMAC-SHA256 of the secret and sends the custom headers', () => {
    for (const h of hook.received) {
      const expected = createHmac('sha256', SECRET).update(h.body).digest('hex');
      expect(h.headers['x-mailtrail-signature']).toBe(`sha256=${expected}`);
      expect(h.headers['x-team']).toBe('mail');
      expect(h.headers['content-type']).toMatch(/^application\/json/);
      expect(h.headers['x-mailtrail-delivery']).toBe(h.json.alert.id);
    }
  });

  it('writes every fire and resolve to the trail as an alert record naming the sinks', async () => {
    const alerts = alertRecords(await relay.records());
    expect(alerts.map((a) => [a.state, a.rule, a.upstream, a.class, a.sinks])).toEqual([
      ['fired', 'provider-config', 'provider', 'upstream_auth', ['hook']],
      ['resolved', 'provider-config', 'provider', 'upstream_auth', ['hook']],
    ]);
    expect(alerts.map((a) => a.id)).toEqual(hook.received.map((h) => h.json.alert.id));
    expect(alerts[0]!.message).toBe(hook.received[0]!.json.alert.message);
  });

  it('never puts a recipient address into an alert', () => {
    for (const h of hook.received) expect(h.body.toString()).not.toContain('ana@example.org');
  });
});

describe('alerting by email', () => {
  let upstream: FakeUpstream;
  let mailbox: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ faults: { mailFrom: { code: 550, text: '5.4.5 Daily sending quota exceeded' } } });
    mailbox = await startFakeUpstream();
    const smtp = (port: number) => ({ host: '127.0.0.1', port, implicitTls: false, auth: null, tls: { mode: 'none' as const, ca: null, verify: true } });
    relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port }],
      alerts: {
        sinks: [
          { kind: 'email', name: 'oncall', smtp: smtp(mailbox.port), from: 'mailtrail@example.com', to: ['oncall@example.com'] },
          // The failing upstream itself: an alert about it must never be mailed through it.
          { kind: 'email', name: 'via-upstream', smtp: smtp(upstream.port), from: 'mailtrail@example.com', to: ['oncall@example.com'] },
        ],
        rules: [{ name: 'provider-config', condition: { kind: 'class', classes: ['quota'] }, sinks: ['oncall', 'via-upstream'] }],
      },
    });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
    await mailbox.close();
  });

  it('mails the alert through its own SMTP server, never through the upstream it is about', async () => {
    await sendMany(relay, 3);
    await mailbox.waitFor(() => mailbox.messages.length >= 1, 10_000);
    const mail = mailbox.messages[0]!;
    expect(mail.to).toEqual(['oncall@example.com']);
    expect(mail.raw.toString()).toMatch(/^Subject: \[mailtrail\] FIRING provider-config on provider$/m);
    expect(mail.raw.toString()).toContain('quota');
    const [fired] = alertRecords(await relay.records());
    expect(fired!.sinks).toEqual(['oncall']);
    expect(upstream.allData).toHaveLength(0);
  });
});

describe('a dead webhook', () => {
  let upstream: FakeUpstream;
  let dead: WebhookReceiver;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ faults: { rcpt: () => ({ code: 550, text: '5.1.1 User unknown' }) } });
    dead = await startWebhookReceiver('hang');
  });
  afterAll(async () => {
    await upstream.close();
    await dead.close();
  });

  it('does not slow relaying, and does not hold up stopping', async () => {
    // Every message fails (recipient unknown), a rule fires on it and the sink never answers.
    const rules: AlertRuleConfig[] = [
      { name: 'unknown-recipients', condition: { kind: 'class', classes: ['recipient_rejected'] }, sinks: ['hook'] },
      { name: 'all-failing', condition: { kind: 'consecutiveFailures', count: 1 }, sinks: ['hook'] },
    ];
    const quiet = await startRelay({ upstreams: [{ port: upstream.port }] });
    await sendMany(quiet, 10); // warm-up, as the relay with the sink gets below
    const withoutSink = await sendMany(quiet, 40);
    await quiet.stop();

    const hanging = await startRelay({ upstreams: [{ port: upstream.port }], alerts: alertsWith(dead, rules, { timeout: 60_000 }) });
    await sendMany(hanging, 10);
    await waitFor(() => dead.requests >= 1, 5_000);
    const withSink = await sendMany(hanging, 40);
    const t0 = performance.now();
    await hanging.stop();
    const stopMs = performance.now() - t0;

    const [a, b] = [median(withoutSink), median(withSink)];
    console.log(`relay latency median: ${a.toFixed(1)} ms without a sink, ${b.toFixed(1)} ms with a hanging webhook; stop took ${stopMs.toFixed(0)} ms`);
    expect(b).toBeLessThan(a + 250);
    expect(Math.max(...withSink)).toBeLessThan(5_000);
    expect(stopMs).toBeLessThan(8_000);
  });
});

describe('alerts with the default rules', () => {
  let hook: WebhookReceiver;
  let upstream: FakeUpstream;
  const running: RunningRelay[] = [];

  beforeAll(async () => {
    hook = await startWebhookReceiver();
  });
  afterEach(async () => {
    for (const r of running.splice(0)) await r.stop();
    await upstream?.close();
    hook.received.length = 0;
  });
  afterAll(async () => {
    await hook.close();
  });

  it('alerts within 60 s when the upstream credentials stop working, and resolves when they work again', async () => {
    upstream = await startFakeUpstream({ auth: { user: 'relay', pass: 'secret' }, faults: { authReply: AUTH_FAILED } });
    const t0 = Date.now();
    const relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port, auth: { user: 'relay', pass: 'secret' }, probe: { enabled: true, interval: 500, timeout: 2_000 } }],
      alerts: alertsWith(hook, defaultAlertRules(['hook'])),
    });
    running.push(relay);
    await hook.waitFor((r) => r.length >= 1, 60_000);
    const fireMs = Date.now() - t0;
    expect(hook.received[0]!.json.alert).toMatchObject({ state: 'fired', rule: 'provider-config', class: 'upstream_auth' });
    expect(hook.received[0]!.json.alert.message).toContain('check the credentials configured for this upstream');

    const t1 = Date.now();
    await upstream.resetFaults();
    await hook.waitFor((r) => r.length >= 2, 60_000);
    const resolveMs = Date.now() - t1;
    expect(hook.received[1]!.json.alert).toMatchObject({ state: 'resolved', rule: 'provider-config' });
    expect(hook.received[1]!.json.alert.message).toContain('a health probe passed');
    console.log(`default rules, broken credentials: alert ${fireMs} ms after start, resolve ${resolveMs} ms after the fix (probe interval 500 ms)`);
  });

  /** A relay whose one upstream refuses password login the way Exchange Online does. */
  async function relayFacingPasswordAuthOff(probe?: { enabled: boolean; interval: number; timeout: number }): Promise<RunningRelay> {
    upstream = await startFakeUpstream({ auth: { user: 'relay', pass: 'secret' }, faults: { authReply: PASSWORD_AUTH_OFF } });
    const relay = await startRelay({
      upstreams: [{ name: 'm365', port: upstream.port, auth: { user: 'relay', pass: 'secret' }, ...(probe ? { probe } : {}) }],
      alerts: alertsWith(hook, defaultAlertRules(['hook'])),
    });
    running.push(relay);
    return relay;
  }

  it('tells the operator to move the account to OAuth2, in the record and the alert, when the provider refuses password login', async () => {
    const relay = await relayFacingPasswordAuthOff();
    await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
    await hook.waitFor((r) => r.length >= 1);

    const record = (await relay.records()).find((r) => r.type === 'relay');
    expect(record?.failure?.class).toBe('upstream_auth');
    expect(record?.failure?.detail).toMatchObject({ rule: 'password-auth-disabled', hint: PASSWORD_AUTH_DISABLED_HINT });
    expect(record?.failure?.detail.hint).toMatch(
      /^the provider no longer accepts a password for this account: configure OAuth2 for this upstream \(auth\.type: oauth2/,
    );

    const alert = hook.received[0]!.json.alert;
    expect(alert).toMatchObject({ state: 'fired', rule: 'provider-config', class: 'upstream_auth' });
    expect(alert.message).toContain('basic authentication is disabled');
    expect(alert.message).toContain(`; ${PASSWORD_AUTH_DISABLED_HINT}`);
    expect(alert.message).not.toContain('check the credentials');
  });

  it('gives the same advice when the health probe meets the refusal before any mail', async () => {
    await relayFacingPasswordAuthOff({ enabled: true, interval: 500, timeout: 2_000 });
    await hook.waitFor((r) => r.length >= 1, 30_000);
    expect(hook.received[0]!.json.alert.message).toMatch(
      /: the health probe failed with upstream_auth \(535 5\.7\.139 .*\); the provider no longer accepts a password for this account: configure OAuth2/,
    );
  });

  it('sends one alert, not one per rule, when wrong credentials fail every message', async () => {
    upstream = await startFakeUpstream({ auth: { user: 'relay', pass: 'secret' }, faults: { authReply: AUTH_FAILED } });
    const relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port, auth: { user: 'relay', pass: 'secret' } }],
      alerts: alertsWith(hook, defaultAlertRules(['hook'])),
    });
    running.push(relay);
    // Enough for `failing` (5 in a row) and `error-rate` (20 tries), and long enough for its 5 s check.
    await sendMany(relay, 25);
    await new Promise((r) => setTimeout(r, 6_000));
    expect(hook.received.map((h) => [h.json.alert.state, h.json.alert.rule])).toEqual([['fired', 'provider-config']]);
  });

  it('alerts within 60 s when the upstream stops accepting connections under traffic', async () => {
    upstream = await startFakeUpstream();
    const relay = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], alerts: alertsWith(hook, defaultAlertRules(['hook'])) });
    running.push(relay);
    await upstream.refuse();
    const t0 = Date.now();
    for (let i = 0; i < 300 && hook.received.length === 0 && Date.now() - t0 < 60_000; i++) {
      await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage() });
      await new Promise((r) => setTimeout(r, 100));
    }
    await hook.waitFor((r) => r.length >= 1, 60_000);
    const fireMs = Date.now() - t0;
    expect(hook.received[0]!.json.alert).toMatchObject({ state: 'fired', rule: 'failing', upstream: 'provider', class: 'connect' });
    console.log(`default rules, upstream refusing connections: alert ${fireMs} ms after the first failure`);
  });

  it('alerts on an upstream that stopped accepting connections while no mail flows, from its health probes', async () => {
    upstream = await startFakeUpstream();
    const relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port, probe: { enabled: true, interval: 200, timeout: 1_000 } }],
      alerts: alertsWith(hook, defaultAlertRules(['hook'])),
    });
    running.push(relay);
    await upstream.refuse();
    await hook.waitFor((r) => r.length >= 1, 30_000);
    expect(hook.received[0]!.json.alert).toMatchObject({ state: 'fired', rule: 'failing', upstream: 'provider', class: 'connect' });
    expect(hook.received[0]!.json.alert.message).toContain('health probes');
    await upstream.accept();
    await hook.waitFor((r) => r.length >= 2, 30_000);
    expect(hook.received[1]!.json.alert).toMatchObject({ state: 'resolved', rule: 'failing' });
    expect(hook.received[1]!.json.alert.message).toContain('a health probe passed');
  });

  it('pages once when the audit trail stops taking records, whatever the rules, naming no upstream', async () => {
    upstream = await startFakeUpstream();
    const relay = await startRelay({
      upstreams: [{ name: 'provider', port: upstream.port }],
      alerts: alertsWith(hook, defaultAlertRules(['hook'])),
      // More free space than any disk here has: below the reserve from the start.
      audit: { minFreeSpace: 2 ** 60 },
    });
    running.push(relay);
    await sendMany(relay, 5, 1);
    await hook.waitFor((r) => r.length >= 1, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]!.json.alert).toMatchObject({ state: 'fired', rule: 'audit-trail', upstream: null, class: 'internal' });
    expect(hook.received[0]!.json.alert.message).toMatch(/^audit-trail: the audit trail's filesystem is below audit\.minFreeSpace; every message is refused/);
  });

  it('resolves an alert left open by a previous run once the restarted relay works', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-alert-restart-'));
    try {
      upstream = await startFakeUpstream({ auth: { user: 'relay', pass: 'secret' } });
      const spec = (pass: string) => ({
        upstreams: [{ name: 'provider', port: upstream.port, auth: { user: 'relay', pass }, probe: { enabled: true, interval: 300, timeout: 2_000 } }],
        alerts: alertsWith(hook, defaultAlertRules(['hook'])),
        dataDir,
      });
      const broken = await startRelay(spec('wrong'));
      await hook.waitFor((r) => r.length >= 1, 30_000);
      await broken.stop();
      expect(hook.received.map((h) => h.json.alert.state)).toEqual(['fired']);

      const fixed = await startRelay(spec('secret'));
      running.push(fixed);
      await hook.waitFor((r) => r.length >= 2, 30_000);
      expect(hook.received.map((h) => [h.json.alert.state, h.json.alert.rule])).toEqual([
        ['fired', 'provider-config'],
        ['resolved', 'provider-config'],
      ]);
    } finally {
      for (const r of running.splice(0)) await r.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
