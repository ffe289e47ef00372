import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';

/** Failover inside one pass-through transaction: two real fake upstreams, primary first. */
describe('failover between upstreams', () => {
  let primary: FakeUpstream;
  let secondary: FakeUpstream;
  let relay: RunningRelay | null = null;

  beforeEach(async () => {
    [primary, secondary] = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
  });
  afterEach(async () => {
    await relay?.stop();
    relay = null;
    await Promise.all([primary.close(), secondary.close()]);
  });

  async function start(extra: Partial<RelaySpec> = {}): Promise<RunningRelay> {
    relay = await startRelay({
      upstreams: [
        { name: 'primary', port: primary.port },
        { name: 'secondary', port: secondary.port },
      ],
      ...extra,
    });
    return relay;
  }

  const send = (r: RunningRelay, messageId: string) =>
    r.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId }), timeoutMs: 15_000 });

  const recordOf = async (r: RunningRelay, messageId: string) => (await r.relayRecords()).find((x) => x.message.messageId === messageId)!;

  it('sends to the secondary when the primary refuses connections, records both attempts and answers 250', async () => {
    const r = await start();
    await primary.refuse();
    const res = await send(r, '<refused@x>');
    expect(res).toMatchObject({ ok: true, code: 250 });
    expect(secondary.messages).toHaveLength(1);
    const rec = await recordOf(r, '<refused@x>');
    expect(rec.outcome).toBe('delivered');
    expect(rec.route).toBe('default');
    expect(rec.attempts).toHaveLength(2);
    expect(rec.attempts[0]).toMatchObject({
      upstream: 'primary',
      phase: 'connecting',
      reply: null,
      error: { cause: 'ECONNREFUSED' },
      class: 'connect',
    });
    expect(rec.attempts[1]).toMatchObject({ upstream: 'secondary', phase: 'done', reply: { code: 250 }, error: null, class: null });
    // The deciding attempt is the secondary's.
    expect(rec.upstream).toMatchObject({ name: 'secondary', port: secondary.port });
    expect(rec.upstreamReply).toMatchObject({ code: 250, phase: 'data' });
    expect(res.ok && res.response).toContain(rec.id);
  });

  it('moves a message on to the secondary when every connection to a hung primary stays busy for pool.maxWait', async () => {
    // The primary takes 3 s to answer the final dot; it has one connection; messages wait 300 ms for it.
    await primary.setFaults({ delayMs: { data: 3_000 } });
    const r = await start({
      upstreams: [
        { name: 'primary', port: primary.port, pool: { maxConnections: 1, maxWait: 300 } },
        { name: 'secondary', port: secondary.port },
      ],
    });
    const first = send(r, '<holds-primary@x>');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const t0 = performance.now();
    expect(await send(r, '<moves-on@x>')).toMatchObject({ ok: true, code: 250 });
    expect(performance.now() - t0).toBeLessThan(2_500);
    expect(secondary.messages).toHaveLength(1);
    const moved = await recordOf(r, '<moves-on@x>');
    expect(moved.attempts.map((a) => [a.upstream, a.class, a.error?.code ?? null])).toEqual([
      ['primary', 'timeout', 'EPOOLWAIT'],
      ['secondary', null, null],
    ]);
    expect(await first).toMatchObject({ ok: true, code: 250 });
    expect(primary.messages).toHaveLength(1);
    // A full pool is not a dead upstream: the breaker stays closed.
    expect(r.app.upstreamHealth().find((h) => h.upstream === 'primary')?.state).toBe('closed');
  });

  it('fails over after a 421 at MAIL FROM (the upstream is not accepting mail now)', async () => {
    const r = await start();
    await primary.setFaults({ mailFrom: { code: 421, text: '4.3.2 Service not available, closing transmission channel' } });
    const res = await send(r, '<mail-421@x>');
    expect(res).toMatchObject({ ok: true, code: 250 });
    const rec = await recordOf(r, '<mail-421@x>');
    expect(rec.attempts.map((a) => [a.upstream, a.class])).toEqual([
      ['primary', 'upstream_unavailable'],
      ['secondary', null],
    ]);
  });

  it('does not fail over when the primary drops the connection after the final dot: 451, unknown_outcome', async () => {
    const r = await start();
    await primary.setFaults({ data: 'drop-after-dot' });
    const res = await send(r, '<dropped@x>');
    expect(res).toMatchObject({ ok: false, code: 451 });
    expect(res.ok ? '' : res.response).toMatch(/^451 4\.4\.2 /);
    // The primary may have the message; the secondary must never get a second copy.
    expect(primary.allData).toHaveLength(1);
    expect(secondary.allData).toHaveLength(0);
    const rec = await recordOf(r, '<dropped@x>');
    expect(rec).toMatchObject({ outcome: 'unknown', duplicateRisk: true, failure: { class: 'unknown_outcome' }, upstream: { name: 'primary' } });
    expect(rec.attempts).toHaveLength(1);
  });

  it('does not fail over when the primary rejects the content with 554: the client gets the 554', async () => {
    const r = await start();
    await primary.setFaults({ data: { code: 554, text: '5.7.1 Message rejected as spam' } });
    const res = await send(r, '<spam@x>');
    expect(res).toMatchObject({ ok: false, code: 554 });
    expect(res.ok ? '' : res.response).toMatch(/^554 5\.7\.1 Message rejected as spam/);
    expect(secondary.allData).toHaveLength(0);
    expect(secondary.transactions).toBe(0);
    const rec = await recordOf(r, '<spam@x>');
    expect(rec).toMatchObject({ outcome: 'rejected', failure: { class: 'content_rejected' }, upstreamReply: { code: 554, phase: 'data' } });
    expect(rec.attempts).toHaveLength(1);
  });

  it('does not fail over when the primary refuses the recipient: the client gets the 550', async () => {
    const r = await start();
    await primary.setFaults({ rcpt: () => ({ code: 550, text: '5.1.1 User unknown' }) });
    const res = await send(r, '<nouser@x>');
    expect(res).toMatchObject({ ok: false, code: 550 });
    expect(secondary.transactions).toBe(0);
  });

  it("answers with the last upstream's failure when every upstream fails before the body", async () => {
    const r = await start();
    await primary.refuse();
    await secondary.setFaults({ greeting: '421' });
    const res = await send(r, '<all-down@x>');
    expect(res).toMatchObject({ ok: false, code: 451 });
    const rec = await recordOf(r, '<all-down@x>');
    expect(rec.attempts.map((a) => [a.upstream, a.class])).toEqual([
      ['primary', 'connect'],
      ['secondary', 'upstream_unavailable'],
    ]);
    expect(rec.upstream?.name).toBe('secondary');
    expect(rec.failure?.class).toBe('upstream_unavailable');
  });

  it('stops at the overall relay deadline instead of trying the next upstream', async () => {
    const r = await start({ relayTimeout: 800 });
    await primary.setFaults({ greeting: 'hang' });
    const t0 = performance.now();
    const res = await send(r, '<deadline@x>');
    const elapsed = performance.now() - t0;
    expect(res).toMatchObject({ ok: false, code: 451 });
    expect(elapsed).toBeLessThan(5_000);
    expect(secondary.connections).toBe(0);
    const rec = await recordOf(r, '<deadline@x>');
    expect(rec.attempts).toHaveLength(1);
    expect(rec.failure?.class).toBe('timeout');
  });
});
