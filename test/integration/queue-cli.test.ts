/**
 * `mailtrail queue` as an operator uses it: a relay in spool mode running as a child process, the
 * command run beside it, talking over the data folder's control socket. Every action changes the
 * spool and writes a `spool` record naming the OS user and the channel; with the relay down, list and
 * show read the spool folder and actions refuse. The upstream defers every recipient and the first
 * retry is an hour away, so messages stay in the spool whether or not anything delivers from it.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { AuditRecord, SpoolRecord } from '../../src/audit/records.js';
import type { QueueRow } from '../../src/spool/queue-admin.js';
import type { SpoolEntry } from '../../src/spool/spool-entry.js';
import { askRelay } from '../../src/tools/queue-client.js';
import { runTrailCommand } from '../../src/tools/trail-commands.js';
import { memoryIo } from '../helpers/trail-fixtures.js';
import { freePort } from '../interop/interop-tools.js';
import { CLI, ensureBuilt, startMailtrail, type MailtrailChild } from '../../soak/mailtrail-child.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage } from '../helpers/relay-harness.js';
import { sendMessage } from '../helpers/smtp-client.js';

const run = promisify(execFile);
const QUEUED = /queued as ([0-9A-Z]{26})/;
const ME = userInfo().username;

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe('mailtrail queue', () => {
  let dir: string;
  let config: string;
  let upstream: FakeUpstream;
  let relay: MailtrailChild | null = null;
  let smtpPort: number;

  /** `mailtrail queue ARGS --config <the relay's>` as a process of its own, run to its end. */
  async function queueProcess(...args: string[]): Promise<Ran> {
    try {
      const r = await run(process.execPath, [CLI, 'queue', ...args, '--config', config], {
        cwd: dir,
        timeout: 20_000,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
      });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  /**
   * The same command run in this process (the CLI's own entry, runTrailCommand, with its streams in
   * memory): the relay is still a process of its own, asked over its socket. A process per command
   * costs a second of CPU on a busy machine; the tests that need the binary itself use queueProcess.
   */
  async function queue(...args: string[]): Promise<Ran> {
    const io = memoryIo({ cwd: dir, env: { HOME: dir } });
    const code = await runTrailCommand('queue', [...args, '--config', config], io);
    return { code, stdout: io.out(), stderr: io.err() };
  }

  /** `queue list --json`, run to its end. */
  async function rows(...args: string[]): Promise<QueueRow[]> {
    const r = await queue('list', '--json', ...args);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as QueueRow);
  }

  /** The relay's entries asked over its control socket in this process (quicker than a command). */
  async function entries(): Promise<SpoolEntry[]> {
    const found: SpoolEntry[] = [];
    const answer = await askRelay(join(dir, 'data', 'mailtrail.lock'), { v: 1, op: 'list' }, (e) => void found.push(e as SpoolEntry));
    expect(answer).toMatchObject({ kind: 'answer', end: { ok: true } });
    return found;
  }

  /** Queues a message; resolves with its id once no attempt holds it (`delivering`). */
  async function spool(to = 'ana@example.org', subject = 'Invoice'): Promise<string> {
    const res = await sendMessage({ port: smtpPort, from: 'app@example.com', to: [to], raw: simpleMessage({ to, subject }), startTls: false });
    const id = QUEUED.exec(res.ok ? res.response : '')?.[1];
    if (id === undefined) throw new Error(`not queued: ${JSON.stringify(res)}`);
    const deadline = Date.now() + 15_000;
    while ((await entries()).find((e) => e.id === id)?.state === 'delivering') {
      if (Date.now() > deadline) throw new Error(`${id} still delivering`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return id;
  }

  async function trail(): Promise<AuditRecord[]> {
    const text = await readFile(join(dir, 'data', 'audit.log'), 'utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditRecord);
  }

  async function spoolRecords(spoolId: string): Promise<SpoolRecord[]> {
    return (await trail()).filter((r): r is SpoolRecord => r.type === 'spool' && r.spoolId === spoolId);
  }

  beforeAll(async () => {
    [, dir, upstream] = await Promise.all([
      ensureBuilt(),
      mkdtemp(join(tmpdir(), 'mailtrail-queue-')),
      // Every recipient deferred: whatever delivers from the spool, the messages stay.
      startFakeUpstream({ faults: { rcpt: () => ({ code: 451, text: '4.7.1 Try again later' }) } }),
    ]);
    smtpPort = await freePort();
    config = join(dir, 'mailtrail.yaml');
    await writeFile(
      config,
      YAML.stringify({
        hostname: 'relay.example.org',
        listen: [{ host: '127.0.0.1', port: smtpPort, mode: 'spool' }],
        clients: { networks: ['127.0.0.0/8'] },
        upstreams: [{ name: 'provider', url: `smtp://127.0.0.1:${upstream.port}`, tls: { mode: 'none' }, probe: { enabled: false } }],
        http: null,
        dataDir: './data',
        spool: { retry: { first: '1h', max: '2h' } },
      }),
    );
    relay = await startMailtrail(config, 1);
  }, 120_000);

  afterAll(async () => {
    await relay?.stop(10_000);
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  // Independent of each other (each acts on messages of its own): run side by side.
  describe('with the relay running', { concurrent: true }, () => {
    it('listens for it on the data folder lock, a socket only its owner may use (0600)', async () => {
      const s = await stat(join(dir, 'data', 'mailtrail.lock'));
      expect(s.isSocket()).toBe(true);
      expect(s.mode & 0o777).toBe(0o600);
    });

    it('lists the spooled messages as a table, and as postqueue -j JSON lines', async () => {
      const id = await spool('list-me@example.org');
      const table = await queueProcess('list');
      expect(table.code, table.stderr).toBe(0);
      expect(table.stdout).toMatch(/^ID +STATE +ACCEPTED +SIZE +TRIES +FROM → TO$/m);
      expect(table.stdout).toMatch(new RegExp(`^${id}  queued +.*app@example\\.com → list-me@example\\.org$`, 'm'));
      expect(table.stdout).toMatch(/^-- \d+ message\(s\), .*queued/m);
      const row = (await rows()).find((r) => r.queue_id === id);
      expect(row).toMatchObject({
        queue_name: 'queued',
        queue_id: id,
        sender: 'app@example.com',
        forced_expire: false,
        recipients: [expect.objectContaining({ address: 'list-me@example.org' })],
        held: null,
      });
      expect(row!.arrival_time).toBeGreaterThan(Date.now() / 1000 - 120);
      expect(row!.message_size).toBeGreaterThan(0);
    });

    it('lists by state and by query', async () => {
      const a = await spool('query-one@example.org');
      const b = await spool('query-two@example.org');
      expect((await rows('--query', 'QUERY-TWO')).map((r) => r.queue_id)).toEqual([b]);
      expect(await queue('hold', a)).toMatchObject({ code: 0 });
      expect((await rows('--state', 'held')).map((r) => r.queue_id)).toContain(a);
      expect((await rows('--state', 'held')).map((r) => r.queue_id)).not.toContain(b);
      expect((await rows('--state', 'queued')).map((r) => r.queue_id)).toContain(b);
      expect((await rows('--state', 'queued')).map((r) => r.queue_id)).not.toContain(a);
    });

    it('shows one message, readable and as JSON', async () => {
      const id = await spool('show-me@example.org');
      const text = await queue('show', id.toLowerCase());
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(new RegExp(`^id +${id}$`, 'm'));
      expect(text.stdout).toMatch(/^to +show-me@example\.org \(pending\)$/m);
      expect(text.stdout).toContain(`mailtrail lookup ${id}`);
      const json = await queue('show', id, '--json');
      expect(JSON.parse(json.stdout)).toMatchObject({ id, from: 'app@example.com', rcpt: [{ to: 'show-me@example.org', state: 'pending' }] });
    });

    it('holds a message: held in the spool, a held record naming the OS user on the cli channel; holding again changes nothing', async () => {
      const id = await spool();
      const r = await queueProcess('hold', id, '--reason', 'the customer asked us to wait');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^${id}: held \\(recorded as [0-9A-Z]{26}\\)$`, 'm'));
      const [record] = await spoolRecords(id);
      expect(record).toMatchObject({
        event: 'held',
        spoolId: id,
        reason: 'the customer asked us to wait',
        by: { channel: 'cli', user: ME, address: null },
        dsn: null,
      });
      expect(Date.now() - Date.parse(record!.time)).toBeLessThan(60_000);
      const shown = JSON.parse((await queue('show', id, '--json')).stdout) as { state: string; held: unknown; nextAttemptAt: unknown };
      expect(shown).toMatchObject({ state: 'held', held: { reason: 'the customer asked us to wait', by: ME }, nextAttemptAt: null });

      const again = await queue('hold', id);
      expect(again).toMatchObject({ code: 0, stdout: `${id}: already held\n` });
      expect(await spoolRecords(id)).toHaveLength(1);
    });

    it('refuses to retry a held message (EQUEUESTATE, exit 1) and releases it: queued, due at once, a released record', async () => {
      const id = await spool();
      await queue('hold', id);
      const retry = await queue('retry', id);
      expect(retry.code).toBe(1);
      expect(retry.stderr).toMatch(/is held: release it .*\(EQUEUESTATE\)/);
      const release = await queue('release', id);
      expect(release.code, release.stderr).toBe(0);
      expect((await entries()).find((e) => e.id === id)?.state).not.toBe('held');
      expect((await spoolRecords(id)).map((r) => [r.event, r.by?.user])).toEqual([
        ['held', ME],
        ['released', ME],
      ]);
    });

    it('deletes a message: a deleted record, its files gone, and the id no longer known', async () => {
      const id = await spool();
      const r = await queue('delete', id);
      expect(r.code, r.stderr).toBe(0);
      expect(await spoolRecords(id)).toEqual([expect.objectContaining({ event: 'deleted', by: { channel: 'cli', user: ME, address: null }, dsn: null })]);
      expect(existsSync(join(dir, 'data', 'spool', 'meta', `${id}.json`))).toBe(false);
      expect(existsSync(join(dir, 'data', 'spool', 'msg', `${id}.eml`))).toBe(false);
      const show = await queue('show', id);
      expect(show.code).toBe(1);
      expect(show.stderr).toMatch(/no message .* in the spool .*\(ESPOOLENTRY\)/);
      expect((await queue('delete', id)).code).toBe(1);
    });

    it('bounces a message: a bounced record naming the DSN queued for the sender from <>', async () => {
      const id = await spool('gone@example.org', 'Bounce me');
      const r = await queue('bounce', id);
      expect(r.code, r.stderr).toBe(0);
      const [record] = await spoolRecords(id);
      expect(record).toMatchObject({ event: 'bounced', by: { channel: 'cli', user: ME }, dsn: { id: expect.stringMatching(/^[0-9A-Z]{26}$/) } });
      const dsnId = record!.dsn!.id;
      expect(r.stdout).toContain(`DSN ${dsnId} queued for app@example.com`);
      expect(existsSync(join(dir, 'data', 'spool', 'meta', `${id}.json`))).toBe(false);
      const dsn = JSON.parse((await queue('show', dsnId, '--json')).stdout) as { from: string; rcpt: { to: string }[] };
      expect(dsn).toMatchObject({ from: '', rcpt: [{ to: 'app@example.com' }] });
      const body = await readFile(join(dir, 'data', 'spool', 'msg', `${dsnId}.eml`), 'utf8');
      expect(body).toContain('multipart/report; report-type=delivery-status');
      expect(body).toContain(`X-Mailtrail-Id: ${id}`);
      expect(body).toContain('Final-Recipient: rfc822; gone@example.org');
    });

    it('lookup tells a spooled message’s story: acceptance, operator actions, the end', async () => {
      const id = await spool('story@example.org');
      await queue('hold', id);
      await queue('release', id);
      await queue('delete', id);
      const io = memoryIo({ cwd: dir, env: { HOME: dir } });
      expect(await runTrailCommand('lookup', [id, '--config', config], io)).toBe(0);
      const r = { stdout: io.out() };
      expect(r.stdout).toMatch(/spool: .*ended deleted/);
      expect(r.stdout).toMatch(/◆ held .*by .*\(cli\)/);
      expect(r.stdout).toMatch(/◆ released /);
      expect(r.stdout).toMatch(/◆ deleted /);
    });

    it('answers bad usage like every command: one line, the usage, exit 2', async () => {
      const cases: [readonly string[], string, Promise<Ran>][] = [];
      for (const [args, first] of [
        [[], 'mailtrail queue: give a subcommand: list, show, retry, hold, release, delete, bounce'],
        [['purge'], 'mailtrail queue: unknown subcommand "purge"; it is one of list, show, retry, hold, release, delete, bounce'],
        [['hold'], 'mailtrail queue: give the id of the message (queue hold ID)'],
        [['hold', 'not-an-id'], 'mailtrail queue: not-an-id is not a mailtrail id (26 characters, as in "queued as <id>")'],
        [['list', '--all'], 'mailtrail queue: --all is for queue retry, not queue list'],
        [['list', '--state', 'parked'], 'mailtrail queue: --state parked: it is one of queued, delivering, held'],
        [['retry', '01M94YAFK06VB1GMH80B0ECYC5', '--all'], 'mailtrail queue: give an id or --all, not both'],
      ] as const) {
        // The first as a process of its own: the binary answers as the command does.
        cases.push([args, first, cases.length === 0 ? queueProcess(...args) : queue(...args)]);
      }
      for (const [args, first, ran] of cases) {
        const r = await ran;
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.stderr.split('\n')[0]).toBe(first);
        expect(r.stderr).toMatch(/^usage: mailtrail queue list/m);
        expect(r.stdout).toBe('');
      }
    });
  });

  // After the rest: --all touches every queued message, the other tests' too.
  it('retries one message and every queued one: a retry-now record each', async () => {
    const one = await spool();
    const r = await queue('retry', one);
    expect(r.code, r.stderr).toBe(0);
    expect((await spoolRecords(one)).map((x) => x.event)).toEqual(['retry-now']);
    // The retry made it due: the queue manager's second attempt (deferred again, like the first) ends
    // before --all, so --all finds it queued.
    const settled = async (): Promise<boolean> => {
      const row = (await rows()).find((x) => x.queue_id === one);
      return row?.queue_name === 'queued' && row.attempts >= 2;
    };
    const deadline = Date.now() + 20_000;
    while (!(await settled()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const all = await queue('retry', '--all');
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/^\d+ queued message\(s\) due at once/);
    expect(Number(/^(\d+)/.exec(all.stdout)?.[1])).toBeGreaterThanOrEqual(1);
    expect((await spoolRecords(one)).map((x) => x.event)).toEqual(['retry-now', 'retry-now']);
  });

  it('with the relay down (after the rest), lists and shows the spool folder read-only, and refuses actions (ECONTROL, exit 1)', async () => {
    const id = await spool('after-stop@example.org');
    await relay!.stop(10_000);
    relay = null;
    const list = await queueProcess('list');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stderr).toMatch(/the relay is not running: the spool folder .* read as it is \(read-only\)/);
    expect(list.stdout).toContain(id);
    expect((await queue('show', id)).stdout).toMatch(new RegExp(`^id +${id}$`, 'm'));
    const before = (await trail()).length;
    const hold = await queueProcess('hold', id);
    expect(hold.code).toBe(1);
    expect(hold.stderr).toMatch(/the relay is not running: actions on the queue need it.*\(ECONTROL\)/);
    expect((await trail()).length).toBe(before);
    expect(JSON.parse((await queue('show', id, '--json')).stdout)).toMatchObject({ state: 'queued' });
  });
});
