/**
 * The hook of deliveries from the spool (docs/spool.md, "Before the final dot"): awaited after the
 * last body byte and before the final dot, on both ways a body goes out (a body in memory written
 * straight to the socket, and a streamed one), and a failed hook means the dot never goes out.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RelayEngine } from '../../src/routing/relay-engine.js';
import { RouteTable } from '../../src/routing/route-table.js';
import { Router } from '../../src/routing/router.js';
import type { ReplayableBody } from '../../src/upstream/tracked-body.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, upstreamConfig } from '../helpers/relay-harness.js';
import { RelayParts } from '../helpers/relay-parts.js';

const ENVELOPE = { from: 'app@example.com', to: ['ana@example.org'], use8BitMime: false, size: 0 };

describe('the hook before the final dot', () => {
  let upstream: FakeUpstream;
  let dir: string;
  const parts = new RelayParts();

  beforeEach(async () => {
    upstream = await startFakeUpstream();
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-dot-'));
  });
  afterEach(async () => {
    parts.close();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  function engine(): RelayEngine {
    const channel = parts.channel(upstreamConfig({ name: 'provider', port: upstream.port, breaker: null }));
    return new RelayEngine(new Router(new RouteTable([], [channel.upstream]), [channel]), 20_000);
  }

  const bodies: [string, () => Promise<ReplayableBody>][] = [
    ['a body in memory written straight to the socket', () => Promise.resolve(simpleMessage())],
    ['a body that needs dot-stuffing (streamed)', () => Promise.resolve(simpleMessage({ body: '.leading dot\r\nend' }))],
    [
      'a body in a file (streamed)',
      async () => {
        const path = join(dir, 'body.eml');
        await writeFile(path, simpleMessage());
        return { path };
      },
    ],
  ];

  for (const [what, make] of bodies) {
    it(`is awaited before the dot, the whole body already handed over: ${what}`, async () => {
      const body = await make();
      let hookDoneAt = 0;
      let dataSeenDuringHook = -1;
      const decision = await engine().relay(ENVELOPE, body, undefined, undefined, {
        beforeFinalDot: async (u) => {
          expect(u.name).toBe('provider');
          await new Promise((r) => setTimeout(r, 300));
          dataSeenDuringHook = upstream.allData.length;
          hookDoneAt = Date.now();
        },
      });
      expect(decision.deciding.verdict.outcome).toBe('delivered');
      // The upstream had no complete DATA while the hook ran: the dot came after it.
      expect(dataSeenDuringHook).toBe(0);
      expect(upstream.messages).toHaveLength(1);
      expect(upstream.messages[0]!.receivedAt.getTime()).toBeGreaterThanOrEqual(hookDoneAt - 5);
    });

    it(`that fails stops the send before the dot, and the upstream has nothing: ${what}`, async () => {
      const body = await make();
      const decision = await engine().relay(ENVELOPE, body, undefined, undefined, {
        beforeFinalDot: () => Promise.reject(new Error('the mark could not be written')),
      });
      expect(decision.deciding.verdict.outcome).not.toBe('delivered');
      expect(decision.deciding.verdict.outcome).not.toBe('unknown');
      await new Promise((r) => setTimeout(r, 100));
      expect(upstream.allData).toHaveLength(0);
    });
  }

  it('skips an upstream the caller says to skip, recorded with code EPARKED and no connection', async () => {
    const decision = await engine().relay(ENVELOPE, simpleMessage(), undefined, undefined, { skip: () => 'parked: 535 5.7.8' });
    expect(decision.attempts.map((a) => a.result.facts.errorCode)).toEqual(['EPARKED']);
    expect(decision.deciding.verdict.failure?.rule).toBe('spool-parked');
    expect(upstream.connections).toBe(0);
  });
});
