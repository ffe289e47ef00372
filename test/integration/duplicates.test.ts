import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RelayRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;

describe('duplicateOf links', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ port: upstream.port }] });
  });
  afterEach(async () => {
    await upstream.resetFaults();
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  async function send(raw: Buffer, to: string[]): Promise<RelayRecord> {
    const res = await relay.send({ from: 'app@example.com', to, raw });
    const id = ID_IN_REPLY.exec(res.response ?? '')?.[1];
    expect(id, `no id in ${res.response}`).toBeDefined();
    return (await relay.relayRecords()).find((r) => r.id === id)!;
  }

  it('names the unknown-outcome record in the retry of the same message', async () => {
    const raw = simpleMessage({ messageId: '<dup-unknown@example.com>' });
    await upstream.setFaults({ data: 'drop-after-dot' });
    const first = await send(raw, ['ana@example.org']);
    expect(first).toMatchObject({ outcome: 'unknown', duplicateRisk: true, duplicateOf: null });
    await upstream.resetFaults();
    const retry = await send(raw, ['ana@example.org']);
    expect(retry).toMatchObject({ outcome: 'delivered', duplicateOf: first.id });
  });

  it('names the deferred record in the retry, and keeps naming the first one after another deferral', async () => {
    const raw = simpleMessage({ messageId: '<dup-deferred@example.com>' });
    await upstream.setFaults({ data: { code: 451, text: '4.3.0 Please try again later' } });
    const first = await send(raw, ['ana@example.org', 'bo@example.net']);
    expect(first.outcome).toBe('deferred');
    const second = await send(raw, ['bo@example.net', 'ana@example.org']);
    expect(second).toMatchObject({ outcome: 'deferred', duplicateOf: first.id });
    await upstream.resetFaults();
    const third = await send(raw, ['ana@example.org', 'bo@example.net']);
    expect(third).toMatchObject({ outcome: 'delivered', duplicateOf: first.id });
  });

  it('links nothing after a delivered message, nor when the body or the recipients differ', async () => {
    const raw = simpleMessage({ messageId: '<dup-none@example.com>' });
    expect((await send(raw, ['ana@example.org'])).duplicateOf).toBeNull();
    expect((await send(raw, ['ana@example.org'])).duplicateOf).toBeNull();
    await upstream.setFaults({ data: 'drop-after-dot' });
    await send(raw, ['cy@example.org']);
    await upstream.resetFaults();
    expect((await send(raw, ['dee@example.org'])).duplicateOf).toBeNull();
    expect((await send(simpleMessage({ messageId: '<dup-other@example.com>' }), ['cy@example.org'])).duplicateOf).toBeNull();
  });
});
