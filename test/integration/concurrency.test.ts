import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream, type Reply } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import type { SendResult } from '../helpers/smtp-client.js';

const CLIENTS = 100;
const MAX_SIZE = 64 * 1024;
const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;

/**
 * What the fake upstream answers at RCPT, by the recipient's local part. The knobs are global, so
 * each client's outcome is chosen through its recipient address.
 */
function rcptVerdict(address: string): Reply | null {
  if (address.startsWith('bad-')) return { code: 550, text: '5.1.1 Recipient address rejected: User unknown' };
  if (address.startsWith('later-')) return { code: 450, text: '4.2.1 Mailbox temporarily unavailable' };
  if (address.startsWith('busy-')) return { code: 421, text: '4.7.0 Too many connections, slow down' };
  return null;
}

type Kind = 'good' | 'bad' | 'later' | 'busy' | 'partial' | 'big';
const KINDS: readonly Kind[] = ['good', 'good', 'good', 'bad', 'later', 'partial', 'good', 'busy', 'good', 'big'];

interface Client {
  readonly n: number;
  readonly kind: Kind;
  readonly messageId: string;
  result?: SendResult;
}

function envelopeFor(c: Client): { to: string[]; raw: Buffer } {
  const to = c.kind === 'partial' ? [`ok-${c.n}@example.org`, `bad-${c.n}@example.org`] : [`${c.kind === 'big' ? 'ok' : c.kind}-${c.n}@example.org`];
  const body =
    c.kind === 'big'
      ? 'y'
          .repeat(76)
          .concat('\r\n')
          .repeat(Math.ceil((MAX_SIZE * 1.5) / 78))
      : `Message ${c.n}.`;
  return { to, raw: simpleMessage({ to: to[0], messageId: c.messageId, body }) };
}

describe('many clients at once', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;

  beforeAll(async () => {
    upstream = await startFakeUpstream({ faults: { rcpt: rcptVerdict } });
    relay = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }], limits: { maxMessageSize: MAX_SIZE } });
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
  });

  it('answers 100 concurrent clients with mixed outcomes, one record each, matching what each client saw', async () => {
    const clients: Client[] = Array.from({ length: CLIENTS }, (_, n) => ({
      n,
      kind: KINDS[n % KINDS.length]!,
      messageId: `<concurrent-${n}@example.com>`,
    }));

    await Promise.all(
      clients.map(async (c) => {
        const { to, raw } = envelopeFor(c);
        c.result = await relay.send({ from: `app-${c.n}@example.com`, to, raw, timeoutMs: 15_000 });
      }),
    );

    // Every client got a reply, carrying a transaction id.
    const idOf = new Map<Client, string>();
    for (const c of clients) {
      const r = c.result!;
      expect(r.code, `client ${c.n} (${c.kind}) got no reply: ${r.ok ? '' : r.error.message}`).not.toBeNull();
      const m = ID_IN_REPLY.exec(r.response ?? '');
      expect(m, `client ${c.n} (${c.kind}): reply without an id: ${r.response}`).not.toBeNull();
      idOf.set(c, m![1]!);
    }

    // Exactly one relay record per transaction, and each says what that client was told.
    const records = await relay.relayRecords();
    expect(records).toHaveLength(CLIENTS);
    expect(new Set(records.map((r) => r.id)).size).toBe(CLIENTS);
    const byId = new Map(records.map((r) => [r.id, r]));
    for (const c of clients) {
      const record = byId.get(idOf.get(c)!);
      expect(record, `client ${c.n}: no record with its id`).toBeDefined();
      expect(record!.clientReply.code).toBe(c.result!.code);
      expect(record!.message.messageId).toBe(c.messageId);
    }

    // The outcome each kind of client must get.
    const expected: Record<Kind, { code: number; outcome: string }> = {
      good: { code: 250, outcome: 'delivered' },
      partial: { code: 250, outcome: 'partial' },
      bad: { code: 550, outcome: 'rejected' },
      later: { code: 450, outcome: 'deferred' },
      busy: { code: 451, outcome: 'deferred' },
      big: { code: 552, outcome: 'rejected' },
    };
    for (const c of clients) {
      expect({ n: c.n, kind: c.kind, code: c.result!.code, outcome: byId.get(idOf.get(c)!)!.outcome }).toEqual({
        n: c.n,
        kind: c.kind,
        ...expected[c.kind],
      });
    }

    // Refusals that come from the relay are relay records only, never a second (reject) record.
    expect(await relay.rejectRecords()).toEqual([]);

    // The upstream holds exactly the messages whose client was told 250.
    const accepted = clients.filter((c) => c.result!.code === 250);
    expect(upstream.messages).toHaveLength(accepted.length);
    expect(new Set(upstream.messages.map((m) => m.from))).toEqual(new Set(accepted.map((c) => `app-${c.n}@example.com`)));
  }, 20_000);

  it('raises no process warnings when more than ten transactions are in flight at once', async () => {
    // A fresh app: Node reports a given EventTarget's listener count only once per process.
    const fresh = await startRelay({ upstreams: [{ name: 'provider', port: upstream.port }] });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(`${w.name}: ${w.message}`);
    };
    process.on('warning', onWarning);
    try {
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, n) => fresh.send({ from: 'app@example.com', to: [`ok-${n}@example.org`], raw: simpleMessage(), timeoutMs: 15_000 })),
      );
      expect(results.every((r) => r.code === 250)).toBe(true);
      await new Promise((r) => setImmediate(r));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await fresh.stop();
    }
  });
});
