/**
 * The console's queue endpoints on a real spool (docs/api.md, "Queue"): a message taken into the
 * spool is listed to the console, and an action from a console user or a script changes the entry
 * through the same path as `mailtrail queue`, with a `spool` record naming who did it and from where.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, SpoolRecord } from '../../src/audit/records.js';
import { ConsoleClient, eventually } from '../helpers/console-client.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const TOKEN = 'queue-script-token-1';
const QUEUED = /queued as ([0-9A-Z]{26})/;

describe('the console queue on a real spool', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let ops: ConsoleClient;
  let id: string;

  beforeAll(async () => {
    // The upstream defers every recipient, so the message stays in the spool whatever delivers it.
    upstream = await startFakeUpstream({ faults: { rcpt: () => ({ code: 451, text: '4.3.0 Try again later' }) } });
    relay = await startRelay({
      upstreams: [{ name: 'primary', port: upstream.port }],
      mode: 'spool',
      spool: { retry: { first: 3_600_000, max: 7_200_000 } },
      http: { token: TOKEN },
      console: { enabled: true, users: [{ username: 'ops', password: 'ops-pass-1', passwordHash: null, scope: null }] },
    });
    const sent = await relay.send({
      from: 'app@example.com',
      to: ['ana@example.org'],
      raw: simpleMessage({ from: 'app@example.com', messageId: '<spooled-1@example.com>' }),
    });
    expect(sent.code).toBe(250);
    id = QUEUED.exec(sent.response ?? '')![1]!;
    ops = new ConsoleClient(relay.httpUrl!);
    await ops.login('ops-pass-1', 'ops');
  });

  afterAll(async () => {
    await relay?.stop();
    await upstream?.close();
  });

  const spoolRecords = async (): Promise<SpoolRecord[]> =>
    (await relay.records()).filter((r: AuditRecord): r is SpoolRecord => r.type === 'spool' && r.spoolId === id);

  it('lists the spooled message with its sender, recipients and Message-ID', async () => {
    const list = await ops.get<{ items: { id: string; from: string; to: string[]; messageId: string }[]; next: string | null }>('/api/v1/queue');
    expect(list.status).toBe(200);
    expect(list.body.items.find((e) => e.id === id)).toMatchObject({ from: 'app@example.com', to: ['ana@example.org'], messageId: '<spooled-1@example.com>' });
  });

  it('holds it from the console, with a spool record naming the console user and address', async () => {
    const answer = await ops.post<{ results: { id: string; ok: boolean }[] }>('/api/v1/queue/actions', { action: 'hold', ids: [id] });
    expect(answer.status).toBe(200);
    expect(answer.body.results).toEqual([expect.objectContaining({ id, ok: true })]);
    expect((await ops.get<{ state: string }>(`/api/v1/queue/${id}`)).body.state).toBe('held');
    const held = await eventually(async () => (await spoolRecords()).find((r) => r.event === 'held'));
    expect(held.by).toEqual({ channel: 'console', user: 'ops', address: '127.0.0.1' });
  });

  it('releases it from a script with the bearer token, recorded as the api channel', async () => {
    const res = await fetch(`${relay.httpUrl!}/api/v1/queue/actions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'release', ids: [id] }),
    });
    expect(res.status).toBe(200);
    const released = await eventually(async () => (await spoolRecords()).find((r) => r.event === 'released'));
    expect(released.by?.channel).toBe('api');
  });

  it('answers not_found for an id the spool does not hold', async () => {
    const answer = await ops.post<{ results: { id: string; ok: boolean; code: string }[] }>('/api/v1/queue/actions', {
      action: 'hold',
      ids: ['01JZZZZZZZZZZZZZZZZZZZZZZZ'],
    });
    expect(answer.body.results).toEqual([expect.objectContaining({ ok: false, code: 'not_found' })]);
  });
});
