/**
 * The console's search over a real trail (docs/console.md, "The search index"): a trail of a few
 * thousand records of every kind, its older half rotated and gzipped, indexed by a running relay's
 * index worker; every key of the query syntax answers exactly what the trail holds; the index
 * follows what the relay writes, and is rebuilt from the trail when deleted or corrupt.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trailRecords } from '../../bench/make-trail.mjs';
import type { RejectRecord, RelayRecord } from '../../src/audit/records.js';
import type { TransactionSummary } from '../../src/console/summary.js';
import { ConsoleClient, eventually } from '../helpers/console-client.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';

const TOKEN = 'console-search-token-0123456789';
const START = Date.now() - 3 * 3_600_000;

type Listed = RelayRecord | RejectRecord;

describe('searching a real trail', () => {
  let dir: string;
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let client: ConsoleClient;
  let listed: Listed[];
  let rotatedIds: Set<string>;

  const start = async (): Promise<void> => {
    relay = await startRelay({ upstreams: [{ name: 'ses', port: upstream.port }], dataDir: dir, http: { port: 0, token: TOKEN }, console: { enabled: true } });
    client = new ConsoleClient(relay.httpUrl!);
    await client.login(TOKEN);
  };

  /** Every page of `q`, newest first. */
  const all = async (q: string): Promise<TransactionSummary[]> => {
    const items: TransactionSummary[] = [];
    let cursor: string | null = null;
    do {
      const path: string = `/api/v1/transactions?limit=500&q=${encodeURIComponent(q)}${cursor ? `&cursor=${cursor}` : ''}`;
      const answer = await client.get<{ items: TransactionSummary[]; next: string | null }>(path);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      items.push(...answer.body.items);
      cursor = answer.body.next;
    } while (cursor !== null);
    return items;
  };

  const ids = (records: readonly { id: string }[]): string[] => records.map((r) => r.id).sort();

  const indexed = async (count: number): Promise<void> => {
    await eventually(
      async () => {
        const answer = await client.get<{ index: { records: number; state: string } }>('/api/v1/transactions?limit=1');
        return answer.body.index?.records >= count && answer.body.index.state === 'following' ? true : undefined;
      },
      60_000,
      `${count} records in the index`,
    );
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-console-search-'));
    const records = [...trailRecords({ records: 4_000, seed: 11, start: START })];
    const lines = records.map((r) => JSON.stringify(r));
    const half = Math.floor(lines.length / 2);
    await writeFile(join(dir, 'audit.log.1.gz'), gzipSync(`${lines.slice(0, half).join('\n')}\n`));
    await writeFile(join(dir, 'audit.log'), `${lines.slice(half).join('\n')}\n`);
    listed = records.filter((r) => r.type === 'relay' || r.type === 'reject') as unknown as Listed[];
    rotatedIds = new Set(records.slice(0, half).map((r) => r.id as string));
    upstream = await startFakeUpstream();
    await start();
    await indexed(listed.length);
  });
  afterAll(async () => {
    await relay.stop();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('indexes every relay and reject record of the rotated gzip file and of the current one', async () => {
    expect(ids(await all(''))).toEqual(ids(listed));
  });

  it('lists newest first and pages without losing or repeating a record', async () => {
    const items = await all('');
    const times = items.map((t) => Date.parse(t.time));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(new Set(items.map((t) => t.id)).size).toBe(items.length);
  });

  it('finds a message by Message-ID, with or without angle brackets', async () => {
    const r = listed.find((x): x is RelayRecord => x.type === 'relay' && rotatedIds.has(x.id) && x.message.messageId !== null)!;
    const expected = ids(listed.filter((x) => x.type === 'relay' && x.message.messageId === r.message.messageId));
    expect(ids(await all(`msgid:${r.message.messageId}`))).toEqual(expected);
    expect(ids(await all(`msgid:${r.message.messageId!.slice(1, -1)}`))).toEqual(expected);
  });

  it('finds by id', async () => {
    expect(ids(await all(`id:${listed[7]!.id}`))).toEqual([listed[7]!.id]);
  });

  it('finds by recipient address and by recipient domain', async () => {
    const r = listed.find((x): x is RelayRecord => x.type === 'relay' && x.rcpt.length > 1)!;
    const address = r.rcpt[1]!.to;
    const toOf = (x: Listed): string[] => (x.type === 'relay' ? x.rcpt.map((y) => y.to) : x.to ? [x.to] : []);
    expect(ids(await all(`to:${address}`))).toEqual(ids(listed.filter((x) => toOf(x).includes(address))));
    expect(ids(await all('to:@gmail.com'))).toEqual(ids(listed.filter((x) => toOf(x).some((a) => a.endsWith('@gmail.com')))));
  });

  it('finds by sender', async () => {
    const r = listed.find((x): x is RelayRecord => x.type === 'relay')!;
    expect(ids(await all(`from:${r.from}`))).toEqual(ids(listed.filter((x) => x.from === r.from)));
  });

  it('finds by class, outcome, type, upstream, user, client and code', async () => {
    const relays = listed.filter((x): x is RelayRecord => x.type === 'relay');
    expect(ids(await all('class:throttled'))).toEqual(ids(relays.filter((x) => x.failure?.class === 'throttled')));
    expect(ids(await all('outcome:deferred'))).toEqual(ids(relays.filter((x) => x.outcome === 'deferred')));
    expect(ids(await all('type:reject'))).toEqual(ids(listed.filter((x) => x.type === 'reject')));
    expect(ids(await all('upstream:backup'))).toEqual(ids(relays.filter((x) => x.upstream?.name === 'backup')));
    expect(ids(await all('user:billing'))).toEqual(ids(listed.filter((x) => x.client.user === 'billing')));
    expect(ids(await all('client:10.0.5.*'))).toEqual(ids(listed.filter((x) => x.client.ip.startsWith('10.0.5.'))));
    const code = (x: Listed): number[] =>
      [x.clientReply?.code, x.type === 'relay' ? x.upstreamReply?.code : undefined].filter((c): c is number => c !== undefined);
    expect(ids(await all('code:550'))).toEqual(ids(listed.filter((x) => code(x).includes(550))));
    expect(ids(await all('code:4xx'))).toEqual(ids(listed.filter((x) => code(x).some((c) => c >= 400 && c < 500))));
  });

  it('finds by time range', async () => {
    const from = Date.parse(listed[1000]!.time);
    const to = Date.parse(listed[2000]!.time);
    const q = `after:${new Date(from).toISOString()} before:${new Date(to).toISOString()}`;
    expect(ids(await all(q))).toEqual(ids(listed.filter((x) => Date.parse(x.time) >= from && Date.parse(x.time) < to)));
  });

  it('combines keys, negation and a time range', async () => {
    const from = Date.parse(listed[500]!.time);
    const q = `-outcome:delivered upstream:ses after:${new Date(from).toISOString()}`;
    const expected = listed.filter((x) => x.type === 'relay' && x.outcome !== 'delivered' && x.upstream?.name === 'ses' && Date.parse(x.time) >= from);
    expect(ids(await all(q))).toEqual(ids(expected));
  });

  it('finds a bare word in addresses', async () => {
    const r = listed.find((x): x is RelayRecord => x.type === 'relay' && rotatedIds.has(x.id))!;
    const local = r.rcpt[0]!.to.split('@')[0]!.split('.')[0]!;
    expect(ids(await all(local))).toContain(r.id);
  });

  it('answers a query it cannot read with 400 bad_query naming the problem', async () => {
    const answer = await client.get<{ error: { code: string; message: string } }>(`/api/v1/transactions?q=${encodeURIComponent('color:red')}`);
    expect([answer.status, answer.body.error.code]).toEqual([400, 'bad_query']);
    expect(answer.body.error.message).toMatch(/unknown key "color:"/);
  });

  it('tells the story of a message of the gzipped file, verified against the chain', async () => {
    const r = listed.find((x): x is RelayRecord => x.type === 'relay' && rotatedIds.has(x.id) && x.outcome === 'delivered')!;
    const story = await client.get<{ transactions: { id: string }[]; records: { record: { type: string } }[]; verified: { ok: boolean } }>(
      `/api/v1/messages/${r.id}`,
    );
    expect(story.status).toBe(200);
    expect(story.body.transactions.map((t) => t.id)).toContain(r.id);
    expect(story.body.records.map((x) => x.record.type)).toContain('session');
    expect(story.body.verified.ok).toBe(true);
  });

  it('fills the statistics of the day before the start from the index', async () => {
    type Stats = { historyLoaded: boolean; points: { messages: number; outcomes: Record<string, number> }[] };
    const stats = await eventually(async () => {
      const answer = await client.get<Stats>('/api/v1/stats?range=24h');
      return answer.body.historyLoaded ? answer.body : undefined;
    });
    expect(stats.points.reduce((s, p) => s + p.messages, 0)).toBe(listed.filter((x) => x.type === 'relay').length);
    expect(stats.points.reduce((s, p) => s + (p.outcomes.refused ?? 0), 0)).toBe(listed.filter((x) => x.type === 'reject').length);
  });

  it('follows what the relay writes', async () => {
    await relay.send({ from: 'app@example.com', to: ['followed@example.org'], raw: simpleMessage({ messageId: '<followed@example.com>' }) });
    const found = await eventually(async () => {
      const items = await all('to:followed@example.org');
      return items.length === 1 ? items : undefined;
    });
    expect(found[0]).toMatchObject({ outcome: 'delivered', messageId: '<followed@example.com>' });
  });

  it('resumes where it was after a restart, caught up at once', async () => {
    const before = ids(await all(''));
    await relay.stop();
    await start();
    const answer = await client.get<{ index: { state: string; records: number } }>('/api/v1/transactions?limit=1');
    expect(answer.body.index.records).toBe(before.length);
    await indexed(before.length);
    expect(ids(await all(''))).toEqual(before);
  });

  it('is rebuilt from the trail when the index file is corrupt, and when it is deleted', async () => {
    const before = ids(await all(''));
    await relay.stop();
    await writeFile(join(dir, 'audit.log.search.db'), Buffer.alloc(64 * 1024, 0x5a));
    await start();
    await indexed(before.length);
    expect(ids(await all(''))).toEqual(before);
    await relay.stop();
    for (const suffix of ['', '-wal', '-shm']) await rm(join(dir, `audit.log.search.db${suffix}`), { force: true });
    await start();
    await indexed(before.length);
    expect(ids(await all(''))).toEqual(before);
  });
});
