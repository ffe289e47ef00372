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
});
