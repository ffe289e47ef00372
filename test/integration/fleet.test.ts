/**
 * Several mailtrail instances sharing one Redis (`state`), as behind a load balancer: three App
 * instances in this process, each with its own listener, data folder and trail, one real
 * redis-server started for the file, and counting fake upstreams.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AlertRecord, RelayRecord } from '../../src/audit/records.js';
import type { AlertRuleConfig } from '../../src/config/types.js';
import type { ReadinessReport } from '../../src/observe/readiness.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { haveRedisServer, startRedis, type TestRedis } from '../helpers/redis-server.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';
import { tryAuth } from '../helpers/smtp-client.js';
import { freePort } from '../interop/interop-tools.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';

const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;
const PASSWORD = 'Billing-Pa55-7f3kq';

function webhookAlerts(hook: WebhookReceiver, rules: AlertRuleConfig[]): RelaySpec['alerts'] {
  return { sinks: [{ kind: 'webhook', name: 'hook', url: hook.url, secret: null, headers: {} }], rules };
}

const available = haveRedisServer();

describe.skipIf(!available)('a fleet sharing state through Redis', () => {
  let redis: TestRedis;
  let relays: RunningRelay[] = [];
  let upstreams: FakeUpstream[] = [];
  let prefixes = 0;

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  afterEach(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    relays = [];
    await Promise.all(upstreams.map((u) => u.close()));
    upstreams = [];
  });

  async function upstream(...args: Parameters<typeof startFakeUpstream>): Promise<FakeUpstream> {
    const u = await startFakeUpstream(...args);
    upstreams.push(u);
    return u;
  }

  /**
   * `n` instances on one Redis, under a key prefix of their own (tests do not see each other's state).
   * `state.timeout` 2 s: on a loaded machine a command may take longer than the default 250 ms, and an
   * instance that turns degraded keeps its local share (a whole pool of 2 with expectedInstances 1, so
   * 6 connections for three), which is not what most tests are about; those about the timeout set theirs.
   */
  async function fleet(n: number, spec: Omit<RelaySpec, 'state' | 'instance'> & { state?: Partial<NonNullable<RelaySpec['state']>> }): Promise<RunningRelay[]> {
    const prefix = `fleet${(prefixes += 1)}:`;
    const started = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        startRelay({ ...spec, state: { redis: redis.url, prefix, timeout: 2_000, ...spec.state }, instance: `relay-${i + 1}` }),
      ),
    );
    relays.push(...started);
    return started;
  }

  const send = (r: RunningRelay, id: string, to = 'ana@example.org') =>
    r.send({ from: 'app@example.com', to: [to], raw: simpleMessage({ messageId: `<${id}@x>` }), timeoutMs: 30_000 });

  it('holds a fleet-wide rate of 20 messages per second at the upstream (at most 10 % over) while three clients push through three instances', async () => {
    const up = await upstream();
    const instances = await fleet(3, {
      upstreams: [{ name: 'ses', port: up.port, rateLimit: { messagesPerSecond: 20 }, pool: { maxConnections: 10 } }],
      relayTimeout: 30_000,
    });
    const perClient = 40;
    const concurrency = 8;
    const t0 = performance.now();
    const results = await Promise.all(
      instances.map(async (relay, c) => {
        const out: boolean[] = [];
        let next = 0;
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (next < perClient) {
              const i = (next += 1);
              const r = await send(relay, `fleet-rate-${c}-${i}`);
              out.push(r.ok && r.code === 250);
            }
          }),
        );
        return out;
      }),
    );
    const elapsed = performance.now() - t0;
    const total = 3 * perClient;
    expect(results.flat().filter(Boolean)).toHaveLength(total);
    expect(up.messages).toHaveLength(total);
    const received = up.messages.map((m) => m.receivedAt.getTime()).sort((a, b) => a - b);
    const rate = ((total - 1) * 1000) / (received.at(-1)! - received[0]!);
    const worstSecond = Math.max(...received.map((t) => received.filter((u) => u >= t && u < t + 1_000).length));
    process.stderr.write(
      `[fleet] ${total} messages through 3 instances: ${rate.toFixed(2)} msg/s at the upstream, worst 1-s window ${worstSecond}, ${Math.round(elapsed)} ms\n`,
    );
    expect(rate).toBeLessThanOrEqual(22);
    // Not paced at a fraction of the limit (one instance's share, 6.7/s). Not 18: on a loaded machine the
    // clients, the three instances and the upstream in this one process fall behind the limit themselves.
    expect(rate).toBeGreaterThanOrEqual(12);
    // Every instance took its share of the waiting: none ran at the full rate on its own.
    for (const relay of instances) {
      const records = await relay.relayRecords();
      expect(records).toHaveLength(perClient);
      expect(records.every((x) => x.outcome === 'delivered')).toBe(true);
    }
  });

  it('skips an upstream another instance found dead within a second, and closes it for all after the one trial of the fleet', async () => {
    const dead = await upstream();
    const backup = await upstream();
    await dead.refuse();
    const [one, two] = await fleet(2, {
      upstreams: [
        { name: 'primary', port: dead.port, breaker: { failures: 1, cooldown: 1_500 } },
        { name: 'backup', port: backup.port },
      ],
    });
    const openedAt = (r: RunningRelay): Promise<number> =>
      new Promise((resolve) => {
        const off = r.app.bus.subscribe('upstream-state', (s) => {
          if (s.upstream !== 'primary' || s.state !== 'open') return;
          off();
          resolve(performance.now());
        });
      });
    const [firstOpened, otherOpened] = [openedAt(one!), openedAt(two!)];
    expect((await send(one!, 'finds-dead')).ok).toBe(true);
    await waitFor(() => two!.app.upstreamHealth().find((h) => h.upstream === 'primary')?.state === 'open', 1_000);
    const seenAfterMs = (await otherOpened) - (await firstOpened);
    expect(seenAfterMs).toBeLessThan(1_000);
    process.stderr.write(`[fleet] the other instance skipped the dead upstream ${seenAfterMs.toFixed(1)} ms after the first opened its breaker\n`);
    // The second instance never tries it: its message goes straight to the backup.
    const connectionsBefore = dead.connections;
    expect((await send(two!, 'skips-dead')).ok).toBe(true);
    const [record] = await two!.relayRecords();
    expect(record!.attempts[0]).toMatchObject({ upstream: 'primary', class: 'upstream_unavailable' });
    expect(record!.upstream?.name).toBe('backup');
    expect(dead.connections).toBe(connectionsBefore);

    // The primary comes back; after the cooldown both are half-open, and only one message tries it.
    await dead.accept();
    await waitFor(() => [one!, two!].every((r) => r.app.upstreamHealth().find((h) => h.upstream === 'primary')?.state === 'half-open'), 5_000);
    dead.faults.delayMs.data = 300;
    const trials = await Promise.all([send(one!, 'trial-1'), send(two!, 'trial-2'), send(one!, 'trial-3'), send(two!, 'trial-4')]);
    expect(trials.every((t) => t.ok)).toBe(true);
    expect(dead.messages).toHaveLength(1);
    await waitFor(() => [one!, two!].every((r) => r.app.upstreamHealth().find((h) => h.upstream === 'primary')?.state === 'closed'), 1_000);
  });

  it('never lets the fleet open more than pool.maxConnections to a shared pool, and serves every message', async () => {
    const up = await upstream({ faults: { delayMs: { data: 40 } } });
    let open = 0;
    let peak = 0;
    up.server.server.on('connection', (socket: import('node:net').Socket) => {
      open += 1;
      peak = Math.max(peak, open);
      socket.once('close', () => (open -= 1));
    });
    const instances = await fleet(3, {
      upstreams: [{ name: 'm365', port: up.port, pool: { maxConnections: 2, shared: true, maxWait: 20_000, idleTimeout: 60_000 } }],
      relayTimeout: 30_000,
    });
    const modes: string[] = [];
    for (const relay of instances) relay.app.bus.subscribe('shared-state', (s) => modes.push(s.mode));
    const results = await Promise.all(instances.flatMap((relay, c) => Array.from({ length: 12 }, (_, i) => send(relay, `lease-${c}-${i}`))));
    // Degraded, each instance would open its local share (the whole pool here): the bound below is Redis's.
    expect(modes, 'an instance found Redis too slow and turned degraded').not.toContain('degraded');
    expect(results.filter((r) => r.ok && r.code === 250)).toHaveLength(36);
    expect(up.messages).toHaveLength(36);
    process.stderr.write(`[fleet] shared pool of 2: at most ${peak} connections open at once across 3 instances, ${up.connections} opened in all\n`);
    expect(peak).toBeLessThanOrEqual(2);
    // Idle connections of one instance were given up for the others, or nothing would have moved.
    expect(up.connections).toBeGreaterThan(2);
  });

  it('slows the whole fleet down after a throttling reply to one instance, and lets the slow-down fade for all', async () => {
    const up = await upstream();
    const [one, two] = await fleet(2, {
      upstreams: [{ name: 'ses', port: up.port, rateLimit: { backoff: { initial: 800, max: 5_000, decay: 1_500 } } }],
    });
    const delayOf = (r: RunningRelay) => r.app.upstreamHealth()[0]!.throttleDelayMs;
    await up.setFaults({ mailFrom: { code: 454, text: 'Throttling failure: Maximum sending rate exceeded.' } });
    expect(await send(one!, 'throttled')).toMatchObject({ ok: false, code: 451 });
    await up.resetFaults();
    await waitFor(() => delayOf(two!) === 800, 1_000);
    // The other instance, which was never throttled itself, spaces its messages too.
    await Promise.all([send(two!, 'paced-0'), send(two!, 'paced-1'), send(two!, 'paced-2')]);
    const times = up.messages.map((m) => m.receivedAt.getTime()).sort((a, b) => a - b);
    expect(times[2]! - times[0]!).toBeGreaterThanOrEqual(1_400);
    await waitFor(() => delayOf(one!) === 0 && delayOf(two!) === 0, 6_000);
  });

  it('links a retry that lands on another instance to the first record (duplicateOf)', async () => {
    const up = await upstream();
    const [one, two] = await fleet(2, { upstreams: [{ port: up.port }] });
    const raw = simpleMessage({ messageId: '<fleet-dup@example.com>' });
    await up.setFaults({ data: 'drop-after-dot' });
    const first = await one!.send({ from: 'app@example.com', to: ['ana@example.org'], raw });
    const firstId = ID_IN_REPLY.exec(first.response ?? '')?.[1];
    expect(first.ok).toBe(false);
    await up.resetFaults();
    const retry = await two!.send({ from: 'app@example.com', to: ['ana@example.org'], raw });
    expect(retry.ok).toBe(true);
    const [record] = await two!.relayRecords();
    expect(record).toMatchObject({ outcome: 'delivered', duplicateOf: firstId });
  });

  it('locks an address across instances: failures on one count on the others', async () => {
    const up = await upstream();
    const clients: RelaySpec['clients'] = {
      networks: [],
      allowInsecureAuth: true,
      users: [{ username: 'billing', password: PASSWORD, passwordHash: null, allowedSenders: [], mode: null }],
      authLockout: { failures: 3, window: 60_000, lockout: 60_000, maxLockout: 600_000, maxTracked: 1_000 },
    };
    const [one, two, three] = await fleet(3, { upstreams: [{ port: up.port }], clients });
    const from = '127.0.9.1';
    const codes = [
      (await tryAuth(one!.port, from, 'billing', 'wrong-1')).code,
      (await tryAuth(two!.port, from, 'alice', 'wrong-2')).code,
      (await tryAuth(three!.port, from, 'bob', 'wrong-3')).code,
    ];
    expect(codes).toEqual([535, 535, 454]);
    // Locked on every instance, the right password included; another address is not.
    expect((await tryAuth(one!.port, from, 'billing', PASSWORD)).code).toBe(454);
    expect((await tryAuth(two!.port, '127.0.9.2', 'billing', PASSWORD)).code).toBe(235);
  });

  it('counts a client rate limit once for the fleet', async () => {
    const up = await upstream();
    const none = { messagesPerMinute: null, messagesPerHour: null, recipientsPerHour: null };
    const [one, two] = await fleet(2, {
      upstreams: [{ port: up.port }],
      clients: { rateLimits: { perUser: none, perIp: { ...none, messagesPerMinute: 3 }, maxTracked: 1_000 } },
    });
    const results = [await send(one!, 'ingress-1'), await send(two!, 'ingress-2'), await send(one!, 'ingress-3'), await send(two!, 'ingress-4')];
    expect(results.map((r) => r.code)).toEqual([250, 250, 250, 451]);
    expect(results[3]!.ok ? '' : results[3]!.response).toMatch(/^451 4\.7\.1 .*at most 3 messages per minute for address 127\.0\.0\.1/);
  });

  it('announces an incident once for the fleet, fire and resolve; the other instances record it as announced elsewhere', async () => {
    const up = await upstream();
    const hook = await startWebhookReceiver();
    try {
      await up.refuse();
      const rules: AlertRuleConfig[] = [{ name: 'failing', condition: { kind: 'consecutiveFailures', count: 1 }, sinks: ['hook'] }];
      const instances = await fleet(3, { upstreams: [{ name: 'ses', port: up.port }], alerts: webhookAlerts(hook, rules) });
      const alertRecords = async (r: RunningRelay) => (await r.records()).filter((x): x is AlertRecord => x.type === 'alert');
      for (const [i, relay] of instances.entries()) expect((await send(relay, `incident-down-${i}`)).ok).toBe(false);
      await waitFor(() => hook.received.length >= 1, 5_000);
      for (const relay of instances) await waitFor(() => relay.app.config !== null, 10);
      await expect.poll(async () => (await Promise.all(instances.map(alertRecords))).flat().length, { timeout: 5_000 }).toBe(3);
      await up.accept();
      for (const [i, relay] of instances.entries()) expect((await send(relay, `incident-up-${i}`)).ok).toBe(true);
      await expect.poll(async () => (await Promise.all(instances.map(alertRecords))).flat().length, { timeout: 5_000 }).toBe(6);
      // Give a stray second notice time to show up before counting.
      await new Promise((r) => setTimeout(r, 300));
      expect(hook.received.map((h) => `${h.json.alert.rule} ${h.json.alert.state}`)).toEqual(['failing fired', 'failing resolved']);
      const records = (await Promise.all(instances.map(alertRecords))).flat();
      const announced = records.filter((r) => r.sinks.length > 0);
      const elsewhere = records.filter((r) => r.sinks.length === 0);
      expect(announced.map((r) => r.state).sort()).toEqual(['fired', 'resolved']);
      expect(elsewhere).toHaveLength(4);
      for (const r of elsewhere) expect(r.message).toMatch(/\(announced by instance relay-[123]\)$/);
    } finally {
      await hook.close();
    }
  });

  it('relays on without loss when Redis is killed mid-load: degraded, alerted, and shared again when it returns', async () => {
    const up = await upstream();
    const hook = await startWebhookReceiver();
    try {
      const rules: AlertRuleConfig[] = [{ name: 'failing', condition: { kind: 'consecutiveFailures', count: 5 }, sinks: ['hook'] }];
      const instances = await fleet(2, {
        upstreams: [{ name: 'ses', port: up.port, rateLimit: { messagesPerSecond: 40 }, pool: { maxConnections: 4 } }],
        relayTimeout: 30_000,
        http: { port: 0 },
        alerts: webhookAlerts(hook, rules),
        state: { expectedInstances: 2 },
      });
      const changes: { relay: number; mode: string; at: number }[] = [];
      for (const [i, relay] of instances.entries())
        relay.app.bus.subscribe('shared-state', (s) => changes.push({ relay: i, mode: s.mode, at: performance.now() }));
      const replies: { ok: boolean; id: string | undefined; ms: number; at: number }[] = [];
      let stop = false;
      const load = instances.flatMap((relay, c) =>
        Array.from({ length: 3 }, async (_, w) => {
          for (let i = 0; !stop && i < 200; i++) {
            const t0 = performance.now();
            const r = await send(relay, `kill-${c}-${w}-${i}`);
            replies.push({ ok: r.ok && r.code === 250, id: ID_IN_REPLY.exec(r.ok ? r.response : (r.response ?? ''))?.[1], ms: performance.now() - t0, at: t0 });
          }
        }),
      );
      await waitFor(() => replies.length >= 20, 10_000);
      const killedAt = performance.now();
      await redis.kill();
      await waitFor(() => changes.filter((c) => c.mode === 'degraded').length === 2, 5_000);
      const degradedAfter = Math.max(...changes.filter((c) => c.mode === 'degraded').map((c) => c.at - killedAt));
      // Still ready while degraded, and saying so.
      const ready = (await (await fetch(`${instances[0]!.httpUrl!}/readyz`)).json()) as ReadinessReport;
      expect(ready).toMatchObject({ ready: true, sharedState: { mode: 'degraded' } });
      const metrics = () => fetch(`${instances[0]!.httpUrl!}/metrics`).then((r) => r.text());
      const down = await metrics();
      expect(down).toMatch(/^mailtrail_shared_state_up 0$/m);
      expect(down).toMatch(/^mailtrail_shared_state_degraded_total 1$/m);
      await hook.waitFor((r) => r.filter((h) => h.json.alert.rule === 'shared-state').length === 2, 5_000);
      const sentWhileDown = replies.length;
      await waitFor(() => replies.length >= sentWhileDown + 20, 10_000);
      const downReplies = replies.filter((r) => r.at > killedAt + degradedAfter);
      const restartedAt = performance.now();
      await redis.start();
      await waitFor(() => changes.filter((c) => c.mode === 'shared' && c.at > restartedAt).length === 2, 5_000);
      const sharedAfter = Math.max(...changes.filter((c) => c.mode === 'shared' && c.at > restartedAt).map((c) => c.at - restartedAt));
      const back = await metrics();
      expect(back).toMatch(/^mailtrail_shared_state_up 1$/m);
      expect(back).toMatch(/^mailtrail_shared_state_fallbacks_total\{part="egress_rate"\} [1-9]\d*$/m);
      const afterReturn = replies.length;
      await waitFor(() => replies.length >= afterReturn + 20, 10_000);
      stop = true;
      await Promise.all(load);
      await hook.waitFor((r) => r.filter((h) => h.json.alert.rule === 'shared-state' && h.json.alert.state === 'resolved').length === 2, 5_000);

      // No loss: every 250 has its record and reached the upstream.
      const accepted = replies.filter((r) => r.ok);
      const records = (await Promise.all(instances.map((r) => r.relayRecords()))).flat();
      const byId = new Map<string, RelayRecord>(records.map((r) => [r.id, r]));
      for (const r of accepted) expect(byId.get(r.id!)?.outcome).toBe('delivered');
      expect(up.messages).toHaveLength(accepted.length);
      expect(replies.filter((r) => !r.ok)).toEqual([]);
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
      process.stderr.write(
        `[fleet] Redis killed under load: degraded after ${degradedAfter.toFixed(1)} ms, shared again ${sharedAfter.toFixed(0)} ms after it restarted; ` +
          `${accepted.length} messages, all delivered and recorded; median relay time while down ${median(downReplies.map((r) => r.ms)).toFixed(1)} ms\n`,
      );
    } finally {
      await hook.close();
      if (!(await redis.command(['PING']).catch(() => ''))) await redis.start();
    }
  });

  it('hands the pacing over without a burst when Redis goes and when it returns: the slots already given keep their places', async () => {
    const up = await upstream();
    const [one] = await fleet(1, {
      upstreams: [{ name: 'ses', port: up.port, rateLimit: { messagesPerSecond: 10 }, pool: { maxConnections: 10 } }],
      relayTimeout: 30_000,
    });
    const relay = one!;
    const modes: string[] = [];
    relay.app.bus.subscribe('shared-state', (s) => modes.push(s.mode));
    const batch = (name: string, n: number) => Array.from({ length: n }, (_, i) => send(relay, `${name}-${i}`));
    try {
      // Slots for about 1.5 s ahead from Redis; then Redis goes, and more messages are paced locally.
      const shared = batch('handover-shared', 15);
      await waitFor(() => up.messages.length >= 2, 10_000);
      await redis.kill();
      await waitFor(() => modes.includes('degraded'), 5_000);
      const local = batch('handover-local', 15);
      await waitFor(() => up.messages.length >= 17, 10_000);
      // Back: Redis has forgotten everything, and the local slots still run for about a second.
      await redis.start();
      await waitFor(() => modes.at(-1) === 'shared', 5_000);
      const back = batch('handover-back', 8);
      const results = await Promise.all([...shared, ...local, ...back]);
      expect(results.filter((r) => r.ok)).toHaveLength(38);
      const received = up.messages.map((m) => m.receivedAt.getTime()).sort((a, b) => a - b);
      const worstSecond = Math.max(...received.map((t) => received.filter((u) => u >= t && u < t + 1_000).length));
      process.stderr.write(`[fleet] pacing handed over to local and back: worst 1-s window ${worstSecond} for a limit of 10\n`);
      // Side by side, the two pacings started 23 to 26 in a second; handed over, 12 arrive in the worst
      // second, and up to 18 at a load average of 15, where arrivals bunch up.
      expect(worstSecond).toBeLessThanOrEqual(20);
    } finally {
      if (!(await redis.command(['PING']).catch(() => ''))) await redis.start();
    }
  });

  it('starts, relays and stops promptly with a Redis that cannot be reached at all', async () => {
    const up = await upstream();
    const nowhere = await freePort();
    const relay = await startRelay({ upstreams: [{ port: up.port }], state: { redis: `redis://127.0.0.1:${nowhere}/0` }, instance: 'alone' });
    let stopped = false;
    try {
      expect(relay.app.upstreamHealth()).toHaveLength(1);
      expect((await send(relay, 'no-redis')).ok).toBe(true);
      const t0 = performance.now();
      await relay.stop();
      stopped = true;
      expect(performance.now() - t0).toBeLessThan(5_000);
    } finally {
      if (!stopped) relays.push(relay);
    }
  });

  it('bounds the wait on a Redis that stops answering to one command timeout, then relays on local shares until it answers again', async () => {
    const up = await upstream();
    const [one] = await fleet(1, {
      upstreams: [{ name: 'ses', port: up.port, rateLimit: { messagesPerSecond: 100 } }],
      state: { timeout: 200 },
    });
    expect((await send(one!, 'before-freeze')).ok).toBe(true);
    redis.freeze();
    try {
      const t0 = performance.now();
      expect((await send(one!, 'frozen-1')).ok).toBe(true);
      const firstMs = performance.now() - t0;
      const t1 = performance.now();
      expect((await send(one!, 'frozen-2')).ok).toBe(true);
      const secondMs = performance.now() - t1;
      process.stderr.write(`[fleet] Redis frozen: first message ${firstMs.toFixed(1)} ms (one command timeout), next ${secondMs.toFixed(1)} ms\n`);
      expect(firstMs).toBeLessThan(200 * 2 + 1_000);
      expect(secondMs).toBeLessThan(firstMs);
    } finally {
      redis.thaw();
    }
    await waitFor(() => (one!.app as unknown as { config: unknown }) !== null && up.messages.length === 3, 1_000);
  });
});
