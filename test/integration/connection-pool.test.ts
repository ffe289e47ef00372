import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionPool, Lease } from '../../src/upstream/connection-pool.js';
import { ERR } from '../../src/error-codes.js';
import { stopReason, type StopSignal } from '../../src/upstream/deadline.js';
import { TrackedBody } from '../../src/upstream/tracked-body.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startRawUpstream, type RawUpstream } from '../helpers/raw-upstream.js';
import { simpleMessage, upstreamConfig, type UpstreamSpec } from '../helpers/relay-harness.js';
import { RelayParts } from '../helpers/relay-parts.js';

const ENVELOPE = { from: 'app@example.com', to: ['ana@example.org'], use8BitMime: false, size: 0 };

/** One message over a leased connection, as the attempt does it. */
function sendOne(lease: Lease, s: StopSignal): Promise<unknown> {
  return lease.connection.send(ENVELOPE, new TrackedBody(simpleMessage()), s);
}

/** Settles to 'pending' when `p` has not settled by the next macrotask. */
async function stateOf(p: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  return Promise.race([
    p.then(
      () => 'resolved' as const,
      () => 'rejected' as const,
    ),
    new Promise<'pending'>((resolve) => setImmediate(() => resolve('pending'))),
  ]);
}

describe('the upstream connection pool', () => {
  let upstream: FakeUpstream;
  const parts = new RelayParts();
  const poolFor = (port: number, pool: UpstreamSpec['pool'] = {}): ConnectionPool => parts.pool(upstreamConfig({ port, pool, breaker: null }));
  const live = () => parts.signal();

  beforeEach(async () => {
    upstream = await startFakeUpstream();
  });
  afterEach(async () => {
    parts.close();
    await upstream.close();
  });

  it('opens a new connection for the first lease and says it was not reused, with its connect time', async () => {
    const pool = poolFor(upstream.port);
    const lease = await pool.acquire(live());
    expect(lease.reused).toBe(false);
    expect(lease.connectMs).toBeGreaterThan(0);
    expect(lease.connection.alive).toBe(true);
    expect(upstream.connections).toBe(1);
    pool.release(lease.connection, true);
  });

  it('hands a released connection to the next lease, reused and with no connect time', async () => {
    const pool = poolFor(upstream.port);
    const first = await pool.acquire(live());
    pool.release(first.connection, true);
    const second = await pool.acquire(live());
    expect(second.connection).toBe(first.connection);
    expect(second.reused).toBe(true);
    expect(second.connectMs).toBe(0);
    expect(upstream.connections).toBe(1);
    pool.release(second.connection, true);
  });

  it('hands out the most recently released idle connection first', async () => {
    const pool = poolFor(upstream.port);
    const [a, b] = await Promise.all([pool.acquire(live()), pool.acquire(live())]);
    pool.release(a.connection, true);
    pool.release(b.connection, true);
    const next = await pool.acquire(live());
    expect(next.connection).toBe(b.connection);
    pool.release(next.connection, true);
  });

  it('never has more than maxConnections connections in use: the next caller waits', async () => {
    const pool = poolFor(upstream.port, { maxConnections: 2 });
    const held = await Promise.all([pool.acquire(live()), pool.acquire(live())]);
    const third = pool.acquire(live());
    expect(await stateOf(third)).toBe('pending');
    expect(pool.pending).toBe(3);
    expect(upstream.connections).toBe(2);
    pool.release(held[0].connection, true);
    const lease = await third;
    expect(lease.connection).toBe(held[0].connection);
    expect(upstream.connections).toBe(2);
    pool.release(lease.connection, true);
    pool.release(held[1].connection, true);
    expect(pool.pending).toBe(0);
  });

  it('serves waiters in arrival order, and a caller arriving as a slot frees up does not overtake them', async () => {
    const pool = poolFor(upstream.port, { maxConnections: 1 });
    const held = await pool.acquire(live());
    const order: string[] = [];
    const b = pool.acquire(live()).then((l) => (order.push('b'), l));
    const c = pool.acquire(live()).then((l) => (order.push('c'), l));
    expect(await stateOf(b)).toBe('pending');

    pool.release(held.connection, true);
    // Arrives in the same turn as the release, before the first waiter has run.
    const d = pool.acquire(live()).then((l) => (order.push('d'), l));
    const leaseB = await b;
    expect(await stateOf(c)).toBe('pending');
    expect(await stateOf(d)).toBe('pending');
    expect(leaseB).toMatchObject({ reused: true });
    expect(leaseB.waitMs).toBeGreaterThan(0);

    pool.release(leaseB.connection, true);
    const leaseC = await c;
    expect(await stateOf(d)).toBe('pending');
    pool.release(leaseC.connection, true);
    pool.release((await d).connection, true);
    expect(order).toEqual(['b', 'c', 'd']);
    expect(upstream.connections).toBe(1);
  });

  it('refuses a caller with EPOOLWAIT after maxWait without a free slot, and forgets it', async () => {
    const pool = poolFor(upstream.port, { maxConnections: 1 });
    const held = await pool.acquire(live());
    const err = await pool.acquire(live(), 30).catch((e: Error & { code?: string }) => e);
    expect(err).toMatchObject({ code: ERR.POOL_WAIT });
    expect((err as Error).message).toMatch(/^No free connection to up0 within 30 ms$/);
    expect(pool.pending).toBe(1);
    // The slot goes back to the pool, not to the caller that gave up.
    pool.release(held.connection, true);
    expect(pool.pending).toBe(0);
    const next = await pool.acquire(live(), 30);
    expect(next.reused).toBe(true);
    pool.release(next.connection, true);
  });

  it('frees the slot of a connection that could not be opened', async () => {
    const pool = poolFor(upstream.port, { maxConnections: 1 });
    await upstream.refuse();
    const err = await pool.acquire(live()).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
    expect(pool.pending).toBe(0);
    await upstream.accept();
    const lease = await pool.acquire(live(), 1_000);
    expect(lease.reused).toBe(false);
    pool.release(lease.connection, true);
  });

  it('closes a connection released as not reusable instead of keeping it', async () => {
    const pool = poolFor(upstream.port);
    const first = await pool.acquire(live());
    pool.release(first.connection, false);
    expect(first.connection.alive).toBe(false);
    const second = await pool.acquire(live());
    expect(second.reused).toBe(false);
    expect(upstream.connections).toBe(2);
    pool.release(second.connection, true);
  });

  it('does not hand out an idle connection the upstream has closed', async () => {
    const pool = poolFor(upstream.port);
    const first = await pool.acquire(live());
    pool.release(first.connection, true);
    upstream.dropConnections();
    await waitFor(() => !first.connection.alive, 5_000);
    const second = await pool.acquire(live());
    expect(second.reused).toBe(false);
    expect(second.connection).not.toBe(first.connection);
    pool.release(second.connection, true);
  });

  it('releases a waiter whose stop signal fires, with the signal’s reason, and forgets it', async () => {
    const pool = poolFor(upstream.port, { maxConnections: 1 });
    const held = await pool.acquire(live());
    const stop = live();
    const waiting = pool.acquire(stop).catch((e: Error & { code?: string }) => e);
    expect(await stateOf(waiting)).toBe('pending');
    stop.stop(stopReason('mailtrail is shutting down', 'ESHUTDOWN'));
    expect(await waiting).toMatchObject({ code: 'ESHUTDOWN' });
    expect(pool.pending).toBe(1);
    pool.release(held.connection, true);
    expect(pool.pending).toBe(0);
  });

  it('refuses at once a caller whose signal has already stopped while the pool is full', async () => {
    const pool = poolFor(upstream.port, { maxConnections: 1 });
    const held = await pool.acquire(live());
    const stopped = live();
    stopped.stop(stopReason('deadline', 'EDEADLINE'));
    await expect(pool.acquire(stopped)).rejects.toMatchObject({ code: 'EDEADLINE' });
    expect(pool.pending).toBe(1);
    pool.release(held.connection, true);
  });

  it('on close, refuses every waiter and every later caller with ESHUTDOWN', async () => {
    const pool = poolFor(upstream.port, { maxConnections: 1 });
    const held = await pool.acquire(live());
    const waiter = pool.acquire(live()).catch((e: Error & { code?: string }) => e);
    expect(await stateOf(waiter)).toBe('pending');
    pool.close();
    expect(await waiter).toMatchObject({ code: 'ESHUTDOWN' });
    await expect(pool.acquire(live())).rejects.toMatchObject({ code: 'ESHUTDOWN' });
    pool.release(held.connection, true);
    expect(pool.pending).toBe(0);
  });

  it('on close, quits idle connections at once and busy ones only when they are given back', async () => {
    const pool = poolFor(upstream.port, { maxConnections: 2 });
    const [idle, busy] = await Promise.all([pool.acquire(live()), pool.acquire(live())]);
    pool.release(idle.connection, true);
    pool.close();
    expect(idle.connection.alive).toBe(false);
    expect(busy.connection.alive).toBe(true);
    pool.release(busy.connection, true);
    expect(busy.connection.alive).toBe(false);
    expect(pool.pending).toBe(0);
  });
});

describe('the upstream connection pool recycling connections', () => {
  let raw: RawUpstream;
  let s: StopSignal;
  const parts = new RelayParts();
  const poolFor = (pool: UpstreamSpec['pool']): ConnectionPool => parts.pool(upstreamConfig({ port: raw.port, pool, breaker: null }));

  beforeEach(async () => {
    raw = await startRawUpstream();
    s = parts.signal();
  });
  afterEach(async () => {
    parts.close();
    await raw.close();
  });
  const quits = (): number => raw.commands.filter((c) => c === 'QUIT').length;

  it('retires a connection after pool.maxMessages messages with QUIT and opens a new one', async () => {
    const pool = poolFor({ maxMessages: 2 });
    const leases: Lease[] = [];
    for (let i = 0; i < 3; i++) {
      const lease = await pool.acquire(s);
      leases.push(lease);
      await sendOne(lease, s);
      pool.release(lease.connection, true);
    }
    expect(leases.map((l) => l.reused)).toEqual([false, true, false]);
    expect(leases[2]!.connection).not.toBe(leases[0]!.connection);
    expect(leases[0]!.connection.alive).toBe(false);
    expect(raw.connections).toBe(2);
    await waitFor(() => quits() === 1, 5_000);
    expect(raw.transactions.map((t) => t.connection)).toEqual([1, 1, 2]);
  });

  it('quits a connection left idle longer than pool.idleTimeout, and the next lease opens a new one', async () => {
    // The sweep runs every max(1 s, idleTimeout / 2).
    const pool = poolFor({ idleTimeout: 50 });
    const first = await pool.acquire(s);
    pool.release(first.connection, true);
    await waitFor(() => quits() === 1, 5_000);
    expect(first.connection.alive).toBe(false);
    const second = await pool.acquire(s);
    expect(second.reused).toBe(false);
    expect(raw.connections).toBe(2);
    pool.release(second.connection, true);
  });

  it('never hands out a connection idle longer than pool.idleTimeout, even before the sweep ran', async () => {
    // The sweep runs every max(1 s, idleTimeout / 2): 400 ms after a 300 ms timeout it has not run yet.
    const pool = poolFor({ idleTimeout: 300 });
    const first = await pool.acquire(s);
    pool.release(first.connection, true);
    await new Promise((r) => setTimeout(r, 400));
    const second = await pool.acquire(s);
    expect(second.reused).toBe(false);
    expect(first.connection.alive).toBe(false);
    pool.release(second.connection, true);
  });
});
