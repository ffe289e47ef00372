import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayRecord } from '../../src/audit/records.js';
import { verifyTrail } from '../../src/tools/verify.js';
import { startFakeUpstream, type FakeUpstream, type Reply } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { smtpTalk } from '../helpers/smtp-client.js';

const TRANSACTIONS = 200;
const MAX_SIZE = 64 * 1024;
const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;

/** The fake upstream's knobs are global: each transaction picks its outcome by its recipients. */
function rcptVerdict(address: string): Reply | null {
  if (address.startsWith('bad-')) return { code: 550, text: '5.1.1 Recipient address rejected: User unknown' };
  if (address.startsWith('later-')) return { code: 450, text: '4.2.1 Mailbox temporarily unavailable' };
  return null;
}

type Kind = 'good' | 'bad' | 'later' | 'partial' | 'big' | 'abort';
const KINDS: readonly Kind[] = ['good', 'good', 'bad', 'later', 'partial', 'good', 'big', 'abort', 'good', 'bad'];
const EXPECTED: Record<Kind, { code: number; outcome: RelayRecord['outcome'] }> = {
  good: { code: 250, outcome: 'delivered' },
  partial: { code: 250, outcome: 'partial' },
  bad: { code: 550, outcome: 'rejected' },
  later: { code: 450, outcome: 'deferred' },
  big: { code: 552, outcome: 'rejected' },
  abort: { code: 0, outcome: 'aborted' },
};

interface Outcome {
  readonly n: number;
  readonly kind: Kind;
  /** What the client was told, with the id from the reply text; null for a client that vanished. */
  readonly code: number;
  readonly id: string | null;
  /** The trail held the record when the client read its reply. */
  readonly recordedBeforeReply: boolean;
}

describe('the trail under 200 concurrent transactions', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ faults: { rcpt: rcptVerdict } });
    relay = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port, pool: { maxConnections: 10 } }], limits: { maxMessageSize: MAX_SIZE } });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  /** A client that sends DATA, part of a body, and disconnects. */
  async function abortingClient(n: number): Promise<Outcome> {
    const c = await smtpTalk(relay.port);
    await c.expect(220);
    c.send('EHLO abort.test');
    await c.expect(250);
    c.send(`MAIL FROM:<app-${n}@example.com>`);
    await c.expect(250);
    c.send(`RCPT TO:<ok-${n}@example.org>`);
    await c.expect(250);
    c.send('DATA');
    await c.expect(354);
    c.sendRaw(`Subject: cut short ${n}\r\n\r\nhalf a bo`);
    await new Promise((r) => setTimeout(r, 30));
    c.close();
    return { n, kind: 'abort', code: 0, id: null, recordedBeforeReply: true };
  }

  async function sendingClient(n: number, kind: Exclude<Kind, 'abort'>): Promise<Outcome> {
    const to = kind === 'partial' ? [`ok-${n}@example.org`, `bad-${n}@example.org`] : [`${kind === 'big' || kind === 'good' ? 'ok' : kind}-${n}@example.org`];
    const body =
      kind === 'big'
        ? 'y'
            .repeat(76)
            .concat('\r\n')
            .repeat(Math.ceil((MAX_SIZE * 1.5) / 78))
        : `Message ${n}.`;
    const res = await relay.send({
      from: `app-${n}@example.com`,
      to,
      raw: simpleMessage({ to: to[0], messageId: `<count-${n}@example.com>`, body }),
      timeoutMs: 25_000,
    });
    const id = ID_IN_REPLY.exec(res.response ?? '')?.[1] ?? null;
    // Read right when the client has its reply: the record must already be there.
    const recordedBeforeReply = id !== null && readFileSync(relay.auditFile, 'utf8').includes(`"id":"${id}"`);
    return { n, kind, code: res.code ?? -1, id, recordedBeforeReply };
  }

  it('writes exactly one relay record per transaction that reached DATA, before each reply, with mixed outcomes', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: TRANSACTIONS }, (_, n) => {
        const kind = KINDS[n % KINDS.length]!;
        return kind === 'abort' ? abortingClient(n) : sendingClient(n, kind);
      }),
    );
    // The aborted transactions are recorded once the relay notices the client is gone.
    await expect.poll(async () => (await relay.relayRecords()).length, { timeout: 10_000 }).toBe(TRANSACTIONS);

    const records = await relay.relayRecords();
    expect(records).toHaveLength(TRANSACTIONS);
    expect(new Set(records.map((r) => r.id)).size).toBe(TRANSACTIONS);
    const byId = new Map(records.map((r) => [r.id, r]));

    for (const o of outcomes.filter((x) => x.kind !== 'abort')) {
      const record = o.id ? byId.get(o.id) : undefined;
      expect({ n: o.n, kind: o.kind, code: o.code, outcome: record?.outcome, before: o.recordedBeforeReply }).toEqual({
        n: o.n,
        kind: o.kind,
        code: EXPECTED[o.kind].code,
        outcome: EXPECTED[o.kind].outcome,
        before: true,
      });
      expect(record!.clientReply.code).toBe(o.code);
    }
    const aborted = records.filter((r) => r.outcome === 'aborted');
    expect(aborted).toHaveLength(outcomes.filter((o) => o.kind === 'abort').length);
    expect(aborted.every((r) => r.clientReply.code === 0 && r.failure?.class === 'client_aborted')).toBe(true);

    // Counted per kind, the trail says what the clients saw.
    const perOutcome = (outcome: string) => records.filter((r) => r.outcome === outcome).length;
    const perKind = (...kinds: Kind[]) => outcomes.filter((o) => kinds.includes(o.kind)).length;
    expect(perOutcome('delivered')).toBe(perKind('good'));
    expect(perOutcome('partial')).toBe(perKind('partial'));
    expect(perOutcome('rejected')).toBe(perKind('bad', 'big'));
    expect(perOutcome('deferred')).toBe(perKind('later'));

    // And the chain over it all is intact, gap-free from seq 1.
    await relay.app.stop();
    const verified = await verifyTrail({ files: [relay.auditFile] });
    expect(verified.damage).toBeNull();
    expect(verified.warnings).toEqual([]);
    expect(verified.firstSeq).toBe(1);
    expect(verified.records).toBeGreaterThan(TRANSACTIONS); // plus session records and the final checkpoint
  }, 60_000);
});
