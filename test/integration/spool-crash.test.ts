/**
 * kill -9 of a real relay process while it delivers from the spool (docs/spool.md, "Crash safety"):
 * nothing that got a 250 is lost, and a message the upstream may have is never sent again silently.
 *
 * - Killed during an attempt, before its final dot: the next start queues it again and delivers it,
 *   once.
 * - Killed between the upstream's 250 and the spool recording it (the deterministic seam: the fake
 *   upstream kills the relay as it sends its 250): the next start finds the dot mark, records the
 *   attempt as an unknown outcome and a possible duplicate, and holds the message (default) or sends
 *   it again (`spool.unknownOutcome: resend`).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { AuditRecord, DeliveryRecord, SpoolRecord } from '../../src/audit/records.js';
import { ensureBuilt, startMailtrail, type MailtrailChild } from '../../soak/mailtrail-child.js';
import { startFakeUpstream, waitFor, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage } from '../helpers/relay-harness.js';
import { sendMessage } from '../helpers/smtp-client.js';

const QUEUED = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]{26})/;

function smtpPort(child: MailtrailChild): number {
  const port = /SMTP\s+127\.0\.0\.1:(\d+)/.exec(child.stdout())?.[1];
  if (port === undefined) throw new Error(`no SMTP listener in the banner:\n${child.stdout()}`);
  return Number(port);
}

function trail(file: string): AuditRecord[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{') && l.endsWith('}'))
    .map((l) => JSON.parse(l) as AuditRecord);
}

describe('a relay killed while it delivers from the spool', () => {
  let upstream: FakeUpstream;
  let work: string;
  const children: MailtrailChild[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    upstream = await startFakeUpstream();
    work = await mkdtemp(join(tmpdir(), 'mailtrail-spool-crash-'));
  }, 120_000);
  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.kill()));
    await upstream.resetFaults();
    upstream.clearRecords();
  });
  afterAll(async () => {
    await upstream.close();
    await rm(work, { recursive: true, force: true });
  });

  /** A spool relay's config in a folder of its own; returns the file and the trail's path. */
  async function setUp(unknownOutcome: 'hold' | 'resend' = 'hold'): Promise<{ config: string; audit: string }> {
    const dir = await mkdtemp(join(work, 'run-'));
    const config = join(dir, 'mailtrail.yaml');
    await writeFile(
      config,
      YAML.stringify({
        listen: [{ host: '127.0.0.1', port: 0, mode: 'spool' }],
        clients: { networks: ['127.0.0.0/8'] },
        upstreams: [{ name: 'provider', url: `smtp://127.0.0.1:${upstream.port}`, tls: { mode: 'none' }, probe: { enabled: false } }],
        spool: { minFreeSpace: 0, retry: { first: '100ms', max: '1s' }, unknownOutcome },
        dataDir: './data',
      }),
    );
    return { config, audit: join(dir, 'data', 'audit.log') };
  }

  async function start(config: string, generation: number): Promise<MailtrailChild> {
    const child = await startMailtrail(config, generation);
    children.push(child);
    return child;
  }

  async function queue(child: MailtrailChild, messageId: string): Promise<string> {
    const res = await sendMessage({
      port: smtpPort(child),
      from: 'app@example.com',
      to: ['ana@example.org'],
      raw: simpleMessage({ messageId }),
      startTls: false,
    });
    const id = QUEUED.exec(res.ok ? res.response : '')?.[1];
    if (id === undefined) throw new Error(`not queued: ${JSON.stringify(res)}`);
    return id;
  }

  async function endOf(audit: string, id: string): Promise<SpoolRecord> {
    let end: SpoolRecord | undefined;
    await waitFor(() => {
      end = trail(audit).find((r): r is SpoolRecord => r.type === 'spool' && r.spoolId === id && ['delivered', 'bounced', 'expired'].includes(r.event));
      return end !== undefined;
    }, 10_000);
    return end!;
  }

  const copies = (messageId: string) => upstream.allData.filter((m) => m.raw.toString().includes(`Message-ID: ${messageId}`));

  it('queues an attempt cut before its final dot again, and delivers it once', async () => {
    const { config, audit } = await setUp();
    // The attempt stops at RCPT long enough to kill the relay there.
    await upstream.setFaults({ delayMs: { rcpt: 5_000 } });
    const first = await start(config, 1);
    const id = await queue(first, '<cut-before-dot@example.com>');
    await waitFor(() => upstream.transactions >= 1, 5_000);
    expect(await first.kill()).toMatchObject({ signal: 'SIGKILL' });
    await upstream.resetFaults();

    const second = await start(config, 2);
    expect(await endOf(audit, id)).toMatchObject({ event: 'delivered' });
    expect(second.stderr()).toContain('spool entries left delivering queued again');
    expect(copies('<cut-before-dot@example.com>').filter((m) => m.verdict !== 'drop-after-dot')).toHaveLength(1);
    const attempts = trail(audit).filter((r): r is DeliveryRecord => r.type === 'delivery' && r.spoolId === id);
    expect(attempts.map((a) => [a.outcome, a.duplicateRisk])).toEqual([['delivered', false]]);
  }, 60_000);

  for (const policy of ['hold', 'resend'] as const) {
    it(`after a kill between the upstream's 250 and the spool recording it, records a possible duplicate and ${policy === 'hold' ? 'holds the message' : 'sends it again'}`, async () => {
      const { config, audit } = await setUp(policy);
      let relay: MailtrailChild | null = null;
      // The seam: the upstream kills the relay as it answers 250 to the final dot.
      await upstream.setFaults({
        queueId: () => {
          if (relay !== null) process.kill(relay.pid, 'SIGKILL');
          relay = null;
          return 'KILLED1';
        },
      });
      const first = await start(config, 1);
      relay = first;
      const id = await queue(first, `<seam-${policy}@example.com>`);
      expect(await first.exited).toMatchObject({ signal: 'SIGKILL' });
      await upstream.resetFaults();
      // The upstream has it; the relay never recorded the answer.
      expect(copies(`<seam-${policy}@example.com>`)).toHaveLength(1);
      expect(trail(audit).filter((r) => r.type === 'delivery')).toEqual([]);

      const second = await start(config, 2);
      const unknown = await waitFor(() => trail(audit).some((r) => r.type === 'delivery' && r.spoolId === id), 10_000).then(() =>
        trail(audit).find((r): r is DeliveryRecord => r.type === 'delivery' && r.spoolId === id)!,
      );
      expect(unknown).toMatchObject({
        attempt: 1,
        outcome: 'unknown',
        duplicateRisk: true,
        upstream: { name: 'provider' },
        failure: { class: 'unknown_outcome', detail: { rule: 'spool-dot-pending' } },
        next: { action: policy === 'hold' ? 'hold' : 'retry' },
      });
      if (policy === 'hold') {
        await new Promise((r) => setTimeout(r, 500));
        expect(copies(`<seam-${policy}@example.com>`)).toHaveLength(1);
        const meta = JSON.parse(readFileSync(join(audit, '..', 'spool', 'meta', `${id}.json`), 'utf8')) as { state: string; held: { reason: string } };
        expect(meta.state).toBe('held');
        expect(meta.held.reason).toContain(unknown.id);
      } else {
        expect(await endOf(audit, id)).toMatchObject({ event: 'delivered' });
        // Sent twice, and the trail says the first may have arrived.
        expect(copies(`<seam-${policy}@example.com>`)).toHaveLength(2);
      }
      expect(await second.stop()).toMatchObject({ code: 0 });
    }, 60_000);
  }
});
