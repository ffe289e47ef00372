/**
 * Several mailtrail instances sharing one Redis (`state`), as behind a load balancer: three App
 * instances in this process, each with its own listener, data folder and trail, one real
 * redis-server started for the file, and counting fake upstreams.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { haveRedisServer, startRedis, type TestRedis } from '../helpers/redis-server.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';

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

  /** `n` instances on one Redis, under a key prefix of their own (tests do not see each other's state). */
  async function fleet(
    n: number,
    spec: Omit<RelaySpec, 'state' | 'instanceId'> & { state?: Partial<NonNullable<RelaySpec['state']>> },
  ): Promise<RunningRelay[]> {
    const prefix = `fleet${(prefixes += 1)}:`;
    const started = await Promise.all(
      Array.from({ length: n }, (_, i) => startRelay({ ...spec, state: { redis: redis.url, prefix, ...spec.state }, instanceId: `relay-${i + 1}` })),
    );
    relays.push(...started);
    return started;
  }

  const send = (r: RunningRelay, id: string, to = 'ana@example.org') =>
    r.send({ from: 'app@example.com', to: [to], raw: simpleMessage({ messageId: `<${id}@x>` }), timeoutMs: 30_000 });

  it('holds a fleet-wide rate of 20 messages per second within 10 % at the upstream while three clients push through three instances', async () => {
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
    expect(rate).toBeGreaterThanOrEqual(18);
    expect(rate).toBeLessThanOrEqual(22);
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
    const results = await Promise.all(instances.flatMap((relay, c) => Array.from({ length: 12 }, (_, i) => send(relay, `lease-${c}-${i}`))));
    expect(results.filter((r) => r.ok && r.code === 250)).toHaveLength(36);
    expect(up.messages).toHaveLength(36);
    process.stderr.write(`[fleet] shared pool of 2: at most ${peak} connections open at once across 3 instances, ${up.connections} opened in all\n`);
    expect(peak).toBeLessThanOrEqual(2);
    // Idle connections of one instance were given up for the others, or nothing would have moved.
    expect(up.connections).toBeGreaterThan(2);
  });
});
