import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Admission } from '../../src/admission/admission.js';
import { ClientRateLimits } from '../../src/admission/client-rate-limits.js';
import type { Recorder } from '../../src/audit/recorder.js';
import type { RejectRecord, SessionRecord } from '../../src/audit/records.js';
import type { ClientsConfig, LimitsConfig } from '../../src/config/types.js';
import { IdGenerator } from '../../src/ids.js';
import { SmtpListeners } from '../../src/listener/listener.js';
import { createLogger } from '../../src/logger.js';
import { withId } from '../../src/reply/client-replies.js';
import type { SmtpReply } from '../../src/smtp/smtp-reply.js';
import type { ClientSession } from '../../src/transaction/client-session.js';
import type { TransactionProcessor, TransactionReply } from '../../src/transaction/transaction.js';
import { waitFor } from '../helpers/fake-upstream.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { relayConfig, simpleMessage } from '../helpers/relay-harness.js';
import { smtpTalk, type SmtpTalk, type TalkReply } from '../helpers/smtp-client.js';
import { EventBus } from '../../src/event-bus.js';
import type { RelayEvents } from '../../src/observe/relay-events.js';
import { AuthLockout } from '../../src/admission/auth-lockout.js';
import { MemoryLockoutStore } from '../../src/admission/lockout-store.js';

const ID = /\(id ([0-9A-Z]{26})\)$/;
const USER = { username: 'billing', password: 'Billing-Pa55-7f3kq', passwordHash: null, allowedSenders: [], mode: null };

/** The recorder as the listener sees it: reject and session records, kept in order. */
class RecordsStub {
  readonly rejects: RejectRecord[] = [];
  readonly sessions: SessionRecord[] = [];
  reject(r: RejectRecord): void {
    this.rejects.push(r);
  }
  session(r: SessionRecord): void {
    this.sessions.push(r);
  }
}

/** A transaction processor that reads the body, counts like the real one and answers `reply` with an id. */
class ProcessorStub {
  reply: SmtpReply = { code: 250, enhanced: '2.0.0', text: 'Ok: relayed' };
  readonly ids: string[] = [];
  readonly sessionIds: string[] = [];
  #ids = new IdGenerator();

  async process(stream: Readable, _session: SMTPServerSession, state: ClientSession): Promise<TransactionReply> {
    let size = 0;
    for await (const chunk of stream) size += (chunk as Buffer).length;
    const id = this.#ids.next();
    this.ids.push(id);
    this.sessionIds.push(state.id);
    state.transactions += 1;
    state.bytes += size;
    if (this.reply.code < 300) state.accepted += 1;
    else state.rejected += 1;
    return { id, reply: withId(this.reply, id) };
  }
}

async function command(c: SmtpTalk, line: string): Promise<TalkReply> {
  c.send(line);
  return c.expect();
}

/** MAIL, RCPT, DATA and the body; returns the reply to the final dot. */
async function transaction(c: SmtpTalk, body = simpleMessage()): Promise<TalkReply> {
  expect((await command(c, 'MAIL FROM:<app@example.com>')).code).toBe(250);
  expect((await command(c, 'RCPT TO:<ana@example.org>')).code).toBe(250);
  expect((await command(c, 'DATA')).code).toBe(354);
  c.sendRaw(Buffer.concat([body, Buffer.from('.\r\n')]));
  return c.expect();
}

function authPlain(username: string, password: string): string {
  return `AUTH PLAIN ${Buffer.from(`\0${username}\0${password}`).toString('base64')}`;
}

describe('the SMTP listeners', () => {
  let pki: TestPki;
  let dataDir: string;
  let listeners: SmtpListeners | null = null;
  let records: RecordsStub;
  let processor: ProcessorStub;
  const open: SmtpTalk[] = [];

  beforeAll(async () => {
    [pki, dataDir] = await Promise.all([makeTestPki(), mkdtemp(join(tmpdir(), 'mailtrail-listener-'))]);
  });
  afterAll(async () => {
    await pki.cleanup();
    await rm(dataDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const c of open.splice(0)) c.close();
    await listeners?.stop();
    listeners = null;
  });

  async function start(spec: { clients?: Partial<ClientsConfig>; limits?: Partial<LimitsConfig> } = {}): Promise<number> {
    const config = relayConfig({ upstreams: [{ port: 1 }], ...spec }, dataDir);
    records = new RecordsStub();
    processor = new ProcessorStub();
    listeners = new SmtpListeners({
      config,
      admission: new Admission(config.clients),
      clientLimits: new ClientRateLimits(config.clients.rateLimits),
      processor: processor as unknown as TransactionProcessor,
      recorder: records as unknown as Recorder,
      bus: new EventBus<RelayEvents>(() => undefined),
      authLockout: new AuthLockout(
        config.clients.authLockout,
        config.clients.authLockout && new MemoryLockoutStore(config.clients.authLockout.maxTracked),
        () => undefined,
      ),
      ids: new IdGenerator(),
      log: createLogger('silent'),
      tls: { key: pki.server.key, cert: pki.server.cert },
    });
    await listeners.start();
    return listeners.addresses[0]!.port;
  }

  /** Connects and reads the first reply (the greeting, or a refusal). */
  async function connect(port: number): Promise<{ c: SmtpTalk; first: TalkReply }> {
    const c = await smtpTalk(port);
    open.push(c);
    return { c, first: await c.expect() };
  }

  async function ehlo(port: number): Promise<{ c: SmtpTalk; features: string[] }> {
    const { c, first } = await connect(port);
    expect(first.code).toBe(220);
    const reply = await command(c, 'EHLO client.test');
    return { c, features: reply.lines.map((l) => l.slice(4)) };
  }

  async function startTls(c: SmtpTalk): Promise<string[]> {
    expect((await command(c, 'STARTTLS')).code).toBe(220);
    await c.startTls({ ca: pki.ca });
    return (await command(c, 'EHLO client.test')).lines.map((l) => l.slice(4));
  }

  it('binds each configured listener on the port it was given, resolving port 0', async () => {
    const port = await start();
    expect(listeners!.addresses).toEqual([{ host: '127.0.0.1', port, implicitTls: false, mode: 'passthrough' }]);
    expect(port).toBeGreaterThan(0);
    const { first } = await connect(port);
    expect(first.code).toBe(220);
  });

  describe('session records', () => {
    it('writes one session record when a client leaves, with the counters of its connection', async () => {
      const port = await start({ limits: { maxRecipients: 1 } });
      const { c } = await ehlo(port);
      const body = simpleMessage();
      expect((await transaction(c, body)).code).toBe(250);
      processor.reply = { code: 554, enhanced: '5.7.1', text: 'Message rejected as spam' };
      expect((await transaction(c, body)).code).toBe(554);
      // A refusal of the listener's own counts too.
      expect((await command(c, 'MAIL FROM:<app@example.com>')).code).toBe(250);
      expect((await command(c, 'RCPT TO:<ana@example.org>')).code).toBe(250);
      expect((await command(c, 'RCPT TO:<bo@example.org>')).code).toBe(452);
      expect(listeners!.activeSessions).toBe(1);
      await command(c, 'QUIT');
      await waitFor(() => records.sessions.length === 1, 5_000);
      expect(records.sessions[0]).toMatchObject({
        type: 'session',
        session: { id: processor.sessionIds[0] },
        client: { ip: '127.0.0.1', helo: 'client.test', user: null, tls: null },
        transactions: 2,
        accepted: 1,
        rejected: 2,
        bytes: 2 * body.length,
      });
      expect(records.sessions[0]!.id).toMatch(/^[0-9A-Z]{26}$/);
      expect(listeners!.activeSessions).toBe(0);
    });

    it('writes a session record for every connection, one each, also for a client that sent nothing', async () => {
      const port = await start();
      const a = await connect(port);
      const b = await connect(port);
      a.c.close();
      b.c.close();
      await waitFor(() => records.sessions.length === 2, 5_000);
      expect(new Set(records.sessions.map((s) => s.session.id)).size).toBe(2);
      expect(records.sessions.map((s) => s.transactions)).toEqual([0, 0]);
      expect(records.rejects).toEqual([]);
    });
  });

  describe('refusals', () => {
    it('puts the id of its reject record in its own refusal and writes exactly one reject record', async () => {
      const port = await start({ clients: { networks: [] } });
      const { c } = await ehlo(port);
      const reply = await command(c, 'MAIL FROM:<app@example.com>');
      expect(reply.code).toBe(554);
      expect(reply.text).toMatch(/^5\.7\.1 Relaying denied: client not allowed to relay \(id [0-9A-Z]{26}\)$/);
      await command(c, 'QUIT');
      await waitFor(() => records.sessions.length === 1, 5_000);
      expect(records.rejects).toHaveLength(1);
      const id = ID.exec(reply.text)![1];
      expect(records.rejects[0]).toMatchObject({
        id,
        class: 'relay_denied',
        command: 'MAIL',
        from: 'app@example.com',
        source: 'policy',
        clientReply: { code: 554, enhanced: '5.7.1', text: `Relaying denied: client not allowed to relay (id ${id})` },
      });
      expect(records.sessions[0]).toMatchObject({ rejected: 1 });
    });

    it('passes a transaction’s refusal on with the transaction’s id, and writes no reject record for it', async () => {
      const port = await start();
      processor.reply = { code: 451, enhanced: '4.3.0', text: 'Cannot record the transaction; message not accepted, try again later' };
      const { c } = await ehlo(port);
      const reply = await transaction(c);
      expect(reply.code).toBe(451);
      expect(reply.text).toBe(`4.3.0 Cannot record the transaction; message not accepted, try again later (id ${processor.ids[0]})`);
      await command(c, 'QUIT');
      await waitFor(() => records.sessions.length === 1, 5_000);
      expect(records.rejects).toEqual([]);
    });

    it('passes a transaction’s 250 on with the transaction’s id', async () => {
      const port = await start();
      const { c } = await ehlo(port);
      const reply = await transaction(c);
      expect(reply.code).toBe(250);
      expect(reply.text).toBe(`2.0.0 Ok: relayed (id ${processor.ids[0]})`);
    });
  });

  describe('connection limits', () => {
    it('refuses a connection over limits.maxConnectionsPerIp with 421 4.7.0 and one reject record with its id', async () => {
      const port = await start({ limits: { maxConnectionsPerIp: 1 } });
      await connect(port);
      const { c, first } = await connect(port);
      await c.waitClosed();
      expect(first.code).toBe(421);
      expect(first.text).toMatch(/^4\.7\.0 Too many connections, try again later \(id [0-9A-Z]{26}\)$/);
      expect(records.rejects).toHaveLength(1);
      expect(records.rejects[0]).toMatchObject({ id: ID.exec(first.text)![1], class: 'too_many_connections', command: 'CONNECT', source: 'policy' });
    });

    it('does not give back a per-IP slot that a refused connection never had', async () => {
      const port = await start({ limits: { maxConnectionsPerIp: 1 } });
      const held = await connect(port);
      const refused = await connect(port);
      expect(refused.first.code).toBe(421);
      await refused.c.waitClosed();
      // The refused connection's session record is out once its close has been handled.
      await waitFor(() => records.sessions.length === 1, 5_000);
      expect((await connect(port)).first.code).toBe(421);
      held.c.close();
      await waitFor(() => records.sessions.length === 3, 5_000);
      expect((await connect(port)).first.code).toBe(220);
    });

    it('refuses a connection over limits.maxConnections, whatever the address, with 421 4.7.0', async () => {
      const port = await start({ limits: { maxConnections: 1, maxConnectionsPerIp: 50 } });
      await connect(port);
      const { first } = await connect(port);
      expect(first.code).toBe(421);
      expect(records.rejects.map((r) => r.class)).toEqual(['too_many_connections']);
    });

    it('counts only admitted connections toward limits.maxConnections, not refused ones that have not closed yet', async () => {
      const port = await start({ limits: { maxConnections: 1, maxConnectionsPerIp: 50 } });
      const a = await connect(port);
      // Refused, and kept half-open: the server has answered 421, but the connection is not gone yet.
      const refused = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      refused.on('error', () => undefined);
      const firstLine = await new Promise<string>((resolve) => refused.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
      expect(firstLine).toMatch(/^421 /);
      await command(a.c, 'QUIT');
      await waitFor(() => records.sessions.length === 1, 5_000);
      const next = await connect(port);
      expect(next.first.code).toBe(220);
      refused.destroy();
    });
  });

  describe('AUTH and TLS', () => {
    it('does not advertise AUTH on a plaintext connection, and advertises it after STARTTLS', async () => {
      const port = await start({ clients: { users: [USER] } });
      const { c, features } = await ehlo(port);
      expect(features).toContain('STARTTLS');
      expect(features.some((f) => f.startsWith('AUTH'))).toBe(false);
      expect(await startTls(c)).toContain('AUTH PLAIN LOGIN');
    });

    it('answers AUTH on a plaintext connection with 538 5.7.11 carrying the id of its one reject record', async () => {
      const port = await start({ clients: { users: [USER] } });
      const { c } = await ehlo(port);
      const reply = await command(c, authPlain(USER.username, USER.password));
      expect(reply.code).toBe(538);
      expect(reply.text).toMatch(/^5\.7\.11 Encryption required: issue STARTTLS before AUTH \(id [0-9A-Z]{26}\)$/);
      // The session goes on: the client may still upgrade and authenticate.
      await startTls(c);
      expect((await command(c, authPlain(USER.username, USER.password))).code).toBe(235);
      expect(records.rejects).toHaveLength(1);
      expect(records.rejects[0]).toMatchObject({ id: ID.exec(reply.text)![1], class: 'tls_required', command: 'AUTH', source: 'policy' });
    });

    it('advertises and accepts AUTH on plaintext when clients.allowInsecureAuth is set', async () => {
      const port = await start({ clients: { users: [USER], allowInsecureAuth: true } });
      const { c, features } = await ehlo(port);
      expect(features).toContain('AUTH PLAIN LOGIN');
      expect((await command(c, authPlain(USER.username, USER.password))).code).toBe(235);
      expect(records.rejects).toEqual([]);
    });

    it('offers no AUTH at all, even after STARTTLS, when no users are configured', async () => {
      const port = await start();
      const { c } = await ehlo(port);
      const features = await startTls(c);
      expect(features.some((f) => f.startsWith('AUTH'))).toBe(false);
    });
  });

  it('tells idle sessions 421 4.3.2 and closes them at shutdown, without recording a refusal', async () => {
    const port = await start();
    const { c } = await ehlo(port);
    const stopped = listeners!.stop();
    listeners!.closeIdleSessions();
    const reply = await c.expect();
    expect(reply).toMatchObject({ code: 421, text: expect.stringMatching(/^4\.3\.2 Service shutting down, try again later \(id [0-9A-HJKMNP-TV-Z]{26}\)$/) });
    await c.waitClosed();
    await stopped;
    await waitFor(() => records.sessions.length === 1, 5_000);
    expect(records.rejects).toEqual([]);
  });
});
