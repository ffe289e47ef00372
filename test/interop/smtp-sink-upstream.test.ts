/**
 * Postfix's smtp-sink as the upstream: a real, independent SMTP server implementation (the one the
 * benchmark measures against), healthy and with its own fault switches: a drop after the final dot
 * (`-q .`), a 421 and a hang-up at MAIL (`-Q MAIL`), a soft refusal at RCPT (`-r RCPT -b ...`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayRecord } from '../../src/audit/records.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { haveTools, startSmtpSink, type SmtpSink } from './interop-tools.js';

const available = haveTools('smtp-sink');
const idOf = (text: string | null): string => /\(id ([0-9A-Z]{26})\)/.exec(text ?? '')?.[1] ?? '';

/** A relay in front of an smtp-sink started with `args`; closed after the block. */
function withSink(args: string[]): { relay: () => RunningRelay; record: (id: string) => Promise<RelayRecord> } {
  let sink: SmtpSink;
  let relay: RunningRelay;
  beforeAll(async () => {
    sink = await startSmtpSink(args);
    relay = await startRelay({ upstreams: [{ name: 'smtp-sink', port: sink.port, breaker: null }] });
  });
  afterAll(async () => {
    await relay?.stop();
    await sink?.stop();
  });
  return {
    relay: () => relay,
    record: async (id) => {
      const r = (await relay.relayRecords()).find((x) => x.id === id);
      if (!r) throw new Error(`no relay record ${id}`);
      return r;
    },
  };
}

describe.skipIf(!available)('interop: smtp-sink as the upstream', () => {
  describe('healthy', () => {
    const t = withSink([]);

    it('relays 50 messages from 10 concurrent clients, each answered 250 with its id and recorded as delivered', async () => {
      const results: { ok: boolean; code: number | null; response: string | null }[] = [];
      await Promise.all(
        Array.from({ length: 10 }, async (_, c) => {
          for (let i = 0; i < 5; i++) {
            results.push(await t.relay().send({ from: 'app@app.example', to: [`r${c}@dest.example`], raw: simpleMessage({ body: `message ${c}/${i}` }) }));
          }
        }),
      );
      expect(results.filter((r) => r.ok && r.code === 250)).toHaveLength(50);
      const records = await t.relay().relayRecords();
      for (const r of results) {
        const record = records.find((x) => x.id === idOf(r.response));
        expect(record).toMatchObject({ outcome: 'delivered', upstreamReply: { code: 250, enhanced: '2.0.0' } });
      }
    });
  });

  describe('dropping the connection after the final dot (-q .)', () => {
    const t = withSink(['-q', '.']);

    it('answers 451 4.4.2 and records unknown_outcome with duplicateRisk', async () => {
      const r = await t.relay().send({ from: 'app@app.example', to: ['ana@dest.example'], raw: simpleMessage() });
      expect(r).toMatchObject({ ok: false, code: 451 });
      expect(r.response).toContain('4.4.2');
      const record = await t.record(idOf(r.response));
      expect(record).toMatchObject({ outcome: 'unknown', duplicateRisk: true, failure: { class: 'unknown_outcome' } });
    });
  });

  describe('421 and hang-up at MAIL (-Q MAIL)', () => {
    const t = withSink(['-Q', 'MAIL']);

    it('never passes the 421 through: the client gets 451 and keeps its session', async () => {
      const r = await t.relay().send({ from: 'app@app.example', to: ['ana@dest.example'], raw: simpleMessage() });
      expect(r).toMatchObject({ ok: false, code: 451 });
      const record = await t.record(idOf(r.response));
      expect(record.failure?.class).toBe('upstream_unavailable');
      expect(record.upstreamReply).toMatchObject({ code: 421 });
    });
  });

  describe('soft refusal of every recipient (-r RCPT, with a mailbox-busy reply)', () => {
    const t = withSink(['-r', 'RCPT', '-b', '450 4.2.1 Mailbox temporarily unavailable']);

    it("passes smtp-sink's 450 through and records recipient_deferred", async () => {
      const r = await t.relay().send({ from: 'app@app.example', to: ['ana@dest.example'], raw: simpleMessage() });
      expect(r).toMatchObject({ ok: false, code: 450 });
      const record = await t.record(idOf(r.response));
      expect(record.failure).toMatchObject({ class: 'recipient_deferred', retryable: true });
    });
  });
});
