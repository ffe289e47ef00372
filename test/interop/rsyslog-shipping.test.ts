/**
 * Shipping the trail with an existing shipper, as docs/fleet.md shows: rsyslog (imfile +
 * omelasticsearch) running deploy/rsyslog/mailtrail-ship.conf as shipped (only its three CHANGE
 * values and a work folder set), reading a trail a real relay writes, posting to a loopback server
 * that answers as Elasticsearch's bulk API does. Every record must arrive once, byte for byte, keyed
 * by its id, also across a restart of rsyslog.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, renameSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { smtpTalk } from '../helpers/smtp-client.js';
import { findTool, haveTools, runTool } from './interop-tools.js';

const SHIPPED = new URL('../../deploy/rsyslog/mailtrail-ship.conf', import.meta.url);
const OMES = [
  '/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so',
  '/usr/lib/aarch64-linux-gnu/rsyslog/omelasticsearch.so',
  '/usr/lib/rsyslog/omelasticsearch.so',
];
const available = haveTools('rsyslogd') && hasOmElasticsearch();

function hasOmElasticsearch(): boolean {
  const found = OMES.some((p) => {
    try {
      readFileSync(p);
      return true;
    } catch {
      return false;
    }
  });
  if (!found && process.env.CI) throw new Error('rsyslog-elasticsearch is not installed (.ci/run installs it)');
  return found;
}

interface Received {
  readonly index: string;
  readonly id: string;
  readonly doc: string;
}

/** Elasticsearch's `_bulk` as far as omelasticsearch uses it: action line, document line, a reply per item. */
function startBulkServer(received: Received[]): Promise<Server> {
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ version: { number: '7.17.0' } }));
        return;
      }
      const lines = body.split('\n').filter(Boolean);
      const items = [];
      for (let i = 0; i + 1 < lines.length; i += 2) {
        const action = JSON.parse(lines[i]!) as Record<string, { _index: string; _id?: string }>;
        const [op, meta] = Object.entries(action)[0]!;
        received.push({ index: meta._index, id: meta._id ?? '', doc: lines[i + 1]! });
        items.push({ [op]: { _index: meta._index, _id: meta._id, status: 201, result: 'created' } });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ took: 1, errors: false, items }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe.skipIf(!available)('interop: rsyslog ships the trail to an Elasticsearch bulk endpoint', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let bulk: Server;
  let rsyslog: ChildProcess | null = null;
  let confFile = '';
  const received: Received[] = [];

  const startRsyslog = () => {
    rsyslog = spawn(findTool('rsyslogd')!, ['-n', '-f', confFile, '-i', join(relay.dataDir, 'rsyslogd.pid')], { stdio: 'ignore' });
  };
  const stopRsyslog = async () => {
    const proc = rsyslog;
    rsyslog = null;
    if (!proc || proc.exitCode !== null) return;
    await new Promise((resolve) => {
      proc.once('exit', resolve);
      proc.kill('SIGTERM');
    });
  };
  /** Every line of the trail, rotated files first (they are older). */
  const rotated: string[] = [];
  const trailLines = () => [...rotated, relay.auditFile].flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
  const waitForAll = async (ms = 20_000) => {
    const end = Date.now() + ms;
    while (new Set(received.map((r) => r.id)).size < trailLines().length) {
      if (Date.now() > end) throw new Error(`received ${received.length} of ${trailLines().length} records`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const traffic = async (n: number, tag: string) => {
    for (let i = 0; i < n; i++)
      await relay.send({ from: 'app@example.com', to: ['ana@example.org'], raw: simpleMessage({ messageId: `<ship-${tag}-${i}@example.com>` }) });
    // A refusal too, with its reject and session records.
    const c = await smtpTalk(relay.port);
    await c.expect(220);
    c.send('RCPT TO:<x@example.org>');
    await c.expect(503);
    c.send('QUIT');
    await c.expect(221);
    await c.waitClosed();
  };

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({ upstreams: [{ port: upstream.port }], audit: { checkpoint: { every: 5, interval: 60_000, signingKey: null, file: null } } });
    bulk = await startBulkServer(received);
    const work = join(relay.dataDir, 'rsyslog');
    await mkdir(work);
    const shipped = readFileSync(SHIPPED, 'utf8');
    const conf = shipped
      .replace('File="/var/log/mailtrail/audit.log*"', `File="${relay.auditFile}*"`)
      .replace('server="127.0.0.1"', 'server="127.0.0.1"')
      .replace('serverport="9200"', `serverport="${(bulk.address() as AddressInfo).port}"`);
    expect(conf).not.toBe(shipped);
    confFile = join(work, 'rsyslog.conf');
    await writeFile(confFile, `global(workDirectory="${work}")\n${conf}`);
    const check = await runTool(findTool('rsyslogd')!, ['-N1', '-f', confFile]);
    expect(check.code, check.stderr + check.stdout).toBe(0);
    await traffic(6, 'before');
  }, 30_000);

  afterAll(async () => {
    await stopRsyslog();
    await new Promise((r) => bulk?.close(r));
    await relay?.stop();
    await upstream?.close();
  });

  it('ships every record once, as written, keyed by its id, into a monthly index', async () => {
    startRsyslog();
    await waitForAll();
    await traffic(4, 'while-running');
    await waitForAll();
    const lines = trailLines();
    expect(received).toHaveLength(lines.length);
    expect(received.map((r) => r.doc)).toEqual(lines);
    for (const r of received) {
      const record = JSON.parse(r.doc) as { id: string; time: string };
      expect(r.id).toBe(record.id);
      expect(r.index).toBe(`mailtrail-${record.time.slice(0, 7)}`);
    }
    expect(new Set(received.map((r) => (JSON.parse(r.doc) as { type: string }).type))).toEqual(new Set(['relay', 'reject', 'session', 'checkpoint']));
  }, 60_000);

  it('after rsyslog restarts, goes on where it stopped: nothing twice, nothing missing', async () => {
    await stopRsyslog();
    await traffic(3, 'while-stopped');
    startRsyslog();
    await waitForAll();
    // A moment for anything sent twice to arrive too.
    await new Promise((r) => setTimeout(r, 500));
    const ids = received.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(received.map((r) => r.doc)).toEqual(trailLines());
  }, 60_000);

  it('follows the trail across a rotation (logrotate renames, mailtrail reopens on SIGHUP): the store holds every record once', async () => {
    const old = `${relay.auditFile}-20261206-1764979200`;
    const before = new Set(trailLines().map((l) => (JSON.parse(l) as { id: string }).id));
    renameSync(relay.auditFile, old);
    rotated.push(old);
    relay.app.reopenAudit();
    await traffic(3, 'after-rotation');
    await waitForAll();
    await new Promise((r) => setTimeout(r, 500));
    // As Elasticsearch keeps them: one document per _id, the last one sent.
    const store = new Map(received.map((r) => [r.id, r.doc]));
    expect([...store.values()].sort()).toEqual([...trailLines()].sort());
    // imfile may take the renamed file for a new one and send some of it again (it did, under load):
    // only records of the rotated file, the same bytes each time, which the _id makes one document.
    const seen = new Map<string, number>();
    for (const r of received) seen.set(r.id, (seen.get(r.id) ?? 0) + 1);
    const resent = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
    for (const id of resent) expect(before.has(id), id).toBe(true);
  }, 60_000);
});
