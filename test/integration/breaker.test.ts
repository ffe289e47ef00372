import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AlertRecord } from '../../src/audit/records.js';
import type { RelayEvents } from '../../src/observe/relay-events.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const COOLDOWN = 1_500;
type StateEvent = RelayEvents['upstream-state'][0];

/**
 * The circuit breaker, against real fake upstreams. The primary fails with a 421 greeting: it accepts
 * the TCP connection (so its `connections` counter shows every attempt) and then refuses service.
 */
describe('the circuit breaker per upstream', () => {
  let primary: FakeUpstream;
  let secondary: FakeUpstream;
  let relay: RunningRelay;
  let states: StateEvent[];

  beforeEach(async () => {
    [primary, secondary] = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    relay = await startRelay({
      upstreams: [
        { name: 'primary', port: primary.port, breaker: { failures: 3, cooldown: COOLDOWN } },
        { name: 'secondary', port: secondary.port, breaker: { failures: 3, cooldown: COOLDOWN } },
      ],
    });
    states = [];
    relay.app.bus.subscribe('upstream-state', (e) => states.push(e));
  });
  afterEach(async () => {
    await relay.stop();
    await Promise.all([primary.close(), secondary.close()]);
  });

  const send = (id: string) =>
    relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId: `<${id}@x>` }), timeoutMs: 15_000 });
  const recordOf = async (id: string) => (await relay.relayRecords()).find((r) => r.message.messageId === `<${id}@x>`)!;
  const alerts = async () => (await relay.records()).filter((r): r is AlertRecord => r.type === 'alert');

  async function openPrimary(): Promise<void> {
    await primary.setFaults({ greeting: '421' });
    for (let i = 0; i < 3; i++) expect(await send(`fail-${i}`)).toMatchObject({ ok: true, code: 250 });
    expect(primary.connections).toBe(3);
    expect(states.at(-1)).toMatchObject({ upstream: 'primary', state: 'open' });
  }

  it('opens after N consecutive failures and then skips the primary without any connection attempt', async () => {
    await openPrimary();
    expect(states).toEqual([{ upstream: 'primary', from: 'closed', state: 'open', reason: expect.stringContaining('3 consecutive infrastructure failures') }]);
    for (let i = 0; i < 3; i++) expect(await send(`skip-${i}`)).toMatchObject({ ok: true, code: 250 });
    expect(primary.connections).toBe(3);
    expect(secondary.messages).toHaveLength(6);
    const rec = await recordOf('skip-0');
    expect(rec.attempts[0]).toEqual({
      upstream: 'primary',
      startedAt: expect.any(String),
      ms: 0,
      phase: 'connecting',
      reply: null,
      error: { code: 'EBREAKEROPEN', cause: null, message: expect.stringMatching(/^circuit breaker open; next try in \d+ ms$/) },
      class: 'upstream_unavailable',
    });
    expect(rec.attempts[1]).toMatchObject({ upstream: 'secondary', phase: 'done' });
    expect(rec.upstream?.name).toBe('secondary');
    expect(relay.app.upstreamHealth()).toEqual([
      { upstream: 'primary', state: 'open', throttleDelayMs: 0 },
      { upstream: 'secondary', state: 'closed', throttleDelayMs: 0 },
    ]);
  });

  it('opens after N connections dropped after the final dot, sparing the next messages a possible duplicate', async () => {
    await primary.setFaults({ data: 'drop-after-dot' });
    for (let i = 0; i < 3; i++) expect(await send(`dropped-${i}`)).toMatchObject({ ok: false, code: 451 });
    expect(states.at(-1)).toMatchObject({ upstream: 'primary', state: 'open' });
    expect(await send('after-drops')).toMatchObject({ ok: true, code: 250 });
    expect(secondary.messages).toHaveLength(1);
    expect((await recordOf('after-drops')).attempts.map((a) => a.error?.code ?? null)).toEqual(['EBREAKEROPEN', null]);
  });

  it('writes an alert record to the trail when the breaker opens', async () => {
    await openPrimary();
    expect(await alerts()).toEqual([
      expect.objectContaining({
        type: 'alert',
        state: 'fired',
        rule: 'circuit-breaker',
        upstream: 'primary',
        message: expect.stringContaining('circuit breaker open'),
      }),
    ]);
  });

  it('tries the primary again after the cooldown, and opens it again when it still fails', async () => {
    await openPrimary();
    await waitFor(() => states.at(-1)?.state === 'half-open', COOLDOWN + 2_000);
    expect(await send('probe-fails')).toMatchObject({ ok: true, code: 250 });
    expect(primary.connections).toBe(4);
    expect(states.map((s) => s.state)).toEqual(['open', 'half-open', 'open']);
    expect(states.at(-1)?.reason).toMatch(/^half-open trial failed: upstream_unavailable 421/);
    // Open again for a fresh cooldown: skipped without a connection.
    await send('after-probe');
    expect(primary.connections).toBe(4);
  });

  it('closes again once the primary recovers, and the primary gets the traffic back', async () => {
    await openPrimary();
    await primary.resetFaults();
    await waitFor(() => states.at(-1)?.state === 'half-open', COOLDOWN + 2_000);
    expect(await send('probe-ok')).toMatchObject({ ok: true, code: 250 });
    expect(states.map((s) => s.state)).toEqual(['open', 'half-open', 'closed']);
    expect((await recordOf('probe-ok')).attempts.map((a) => a.upstream)).toEqual(['primary']);
    await send('back');
    expect(primary.messages).toHaveLength(2);
    expect(await alerts()).toEqual([
      expect.objectContaining({ state: 'fired', upstream: 'primary' }),
      expect.objectContaining({ state: 'resolved', upstream: 'primary', message: expect.stringContaining('circuit breaker closed') }),
    ]);
  });

  it('lets only one message probe a half-open upstream; the others go straight to the secondary', async () => {
    await openPrimary();
    await waitFor(() => states.at(-1)?.state === 'half-open', COOLDOWN + 2_000);
    // The probe hangs a little so the others arrive while it is in flight.
    await primary.setFaults({ greeting: 'ok', delayMs: { mailFrom: 600 } });
    const results = await Promise.all([0, 1, 2, 3].map((i) => send(`concurrent-${i}`)));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(primary.connections).toBe(4);
    expect(primary.messages).toHaveLength(1);
    expect(secondary.messages).toHaveLength(3 + 3);
  });

  it('answers 451 4.4.1 at once when every upstream of the route is open, with the skips in the record', async () => {
    await Promise.all([primary.setFaults({ greeting: '421' }), secondary.setFaults({ greeting: '421' })]);
    for (let i = 0; i < 3; i++) expect(await send(`both-${i}`)).toMatchObject({ ok: false, code: 451 });
    expect(
      states
        .filter((s) => s.state === 'open')
        .map((s) => s.upstream)
        .sort(),
    ).toEqual(['primary', 'secondary']);
    const before = primary.connections + secondary.connections;
    const t0 = performance.now();
    const res = await send('all-open');
    const elapsed = performance.now() - t0;
    expect(res).toMatchObject({ ok: false, code: 451 });
    expect(res.ok ? '' : res.response).toMatch(/^451 4\.4\.1 Upstream unavailable \(circuit breaker open\); try again later \(id [0-9A-Z]{26}\)$/);
    expect(primary.connections + secondary.connections).toBe(before);
    // Loose bound: no connect or greeting timeout was waited for (those are seconds).
    expect(elapsed).toBeLessThan(2_000);
    const rec = await recordOf('all-open');
    expect(rec).toMatchObject({
      outcome: 'deferred',
      failure: { class: 'upstream_unavailable', actor: 'upstream', retryable: true, detail: { rule: 'breaker-open', code: 'EBREAKEROPEN' } },
      upstreamReply: null,
      clientReply: { code: 451, enhanced: '4.4.1' },
    });
    expect(rec.attempts.map((a) => [a.upstream, a.error?.code, a.class, a.ms])).toEqual([
      ['primary', 'EBREAKEROPEN', 'upstream_unavailable', 0],
      ['secondary', 'EBREAKEROPEN', 'upstream_unavailable', 0],
    ]);
  });

  it('does not count verdicts on the message as failures', async () => {
    await primary.setFaults({ rcpt: () => ({ code: 550, text: '5.1.1 User unknown' }) });
    for (let i = 0; i < 5; i++) expect(await send(`verdict-${i}`)).toMatchObject({ ok: false, code: 550 });
    expect(states).toEqual([]);
    expect(relay.app.upstreamHealth()[0]!.state).toBe('closed');
  });
});
