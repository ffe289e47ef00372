/**
 * Real SMTP clients against mailtrail: swaks (plain, STARTTLS, implicit TLS, AUTH PLAIN and LOGIN,
 * pipelining), curl (smtp:// with and without STARTTLS, smtps://), Python's smtplib (STARTTLS +
 * login) and nodemailer. Each one's message must reach the upstream once, byte for byte as the trail
 * hashed it, with a record that names the TLS and the user the client really used.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RelayRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream, type ReceivedMessage } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { haveTools, runTool, type ToolRun } from './interop-tools.js';

const USER = 'app';
const PASS = 'correct horse battery';
const ID_IN_REPLY = /\(id ([0-9A-HJKMNP-TV-Z]{26})\)/;

const available = haveTools('swaks', 'curl', 'python3');

describe.skipIf(!available)('interop: real clients', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let dir: string;
  let caPath: string;
  let seq = 0;

  /**
   * A message file with a unique Message-ID; returns its path, the bytes the upstream must receive,
   * and the id. swaks always ends the data with its own CRLF before the dot, so its file leaves the
   * message's last CRLF out.
   */
  const messageFile = async (label: string): Promise<{ path: string; raw: Buffer; messageId: string }> => {
    const messageId = `${label}-${Date.now()}-${seq++}@clients.example`;
    const raw = simpleMessage({
      from: 'app@app.example',
      to: 'ana@dest.example',
      messageId: `<${messageId}>`,
      subject: `interop ${label}`,
      body: `Sent by ${label}.`,
    });
    const path = join(dir, `${label}-${seq}.eml`);
    await writeFile(path, label.startsWith('swaks') ? raw.subarray(0, raw.length - 2) : raw);
    return { path, raw, messageId };
  };

  const received = (messageId: string): ReceivedMessage[] => upstream.messages.filter((m) => m.raw.includes(`<${messageId}>`));

  const recordFromOutput = async (output: string): Promise<RelayRecord> => {
    const id = ID_IN_REPLY.exec(output)?.[1];
    if (!id) throw new Error(`no mailtrail id in the client's output:\n${output}`);
    const record = (await relay.relayRecords()).find((r) => r.id === id);
    if (!record) throw new Error(`no relay record ${id}`);
    return record;
  };

  /** The common promises: one copy upstream, byte-exact, hashed as recorded, and 250 in the trail. */
  const expectRelayed = async (run: ToolRun, messageId: string, raw: Buffer | null): Promise<RelayRecord> => {
    const output = run.stdout + run.stderr;
    expect(run.code, output).toBe(0);
    const copies = received(messageId);
    expect(copies).toHaveLength(1);
    if (raw) expect(copies[0]!.raw.equals(raw)).toBe(true);
    const record = await recordFromOutput(output);
    expect(record.clientReply.code).toBe(250);
    expect(record.message.sha256).toBe(copies[0]!.sha256);
    expect(record.message.messageId).toBe(`<${messageId}>`);
    return record;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailtrail-interop-'));
    upstream = await startFakeUpstream();
    relay = await startRelay({
      upstreams: [{ port: upstream.port }],
      implicitTlsListener: true,
      clients: { users: [{ username: USER, password: PASS, passwordHash: null, allowedSenders: [], mode: null }] },
    });
    caPath = join(dir, 'ca.pem');
    await writeFile(caPath, relay.pki!.ca);
  });

  afterAll(async () => {
    await relay?.stop();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => upstream.clearRecords());

  describe('swaks', () => {
    const swaks = (args: string[]) => runTool('swaks', ['--from', 'app@app.example', '--to', 'ana@dest.example', '--server', '127.0.0.1', ...args]);

    it('sends over plain SMTP from loopback', async () => {
      const m = await messageFile('swaks-plain');
      const record = await expectRelayed(await swaks(['--port', String(relay.port), '--data', m.path]), m.messageId, m.raw);
      expect(record.client.tls).toBeNull();
    });

    it('upgrades with STARTTLS and verifies the certificate', async () => {
      const m = await messageFile('swaks-starttls');
      const run = await swaks(['--port', String(relay.port), '--tls', '--tls-verify', '--tls-ca-path', caPath, '--tls-sni', 'localhost', '--data', m.path]);
      const record = await expectRelayed(run, m.messageId, m.raw);
      expect(record.client.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
    });

    it('speaks TLS from the first byte on the implicit-TLS listener', async () => {
      const m = await messageFile('swaks-implicit');
      const run = await swaks([
        '--port',
        String(relay.tlsPort),
        '--tls-on-connect',
        '--tls-verify',
        '--tls-ca-path',
        caPath,
        '--tls-sni',
        'localhost',
        '--data',
        m.path,
      ]);
      const record = await expectRelayed(run, m.messageId, m.raw);
      expect(record.client.tls).not.toBeNull();
    });

    for (const mech of ['PLAIN', 'LOGIN']) {
      it(`authenticates with AUTH ${mech} after STARTTLS`, async () => {
        const m = await messageFile(`swaks-auth-${mech.toLowerCase()}`);
        const run = await swaks([
          '--port',
          String(relay.port),
          '--tls',
          '--tls-ca-path',
          caPath,
          '--auth',
          mech,
          '--auth-user',
          USER,
          '--auth-password',
          PASS,
          '--data',
          m.path,
        ]);
        const record = await expectRelayed(run, m.messageId, m.raw);
        expect(record.client.user).toBe(USER);
        expect(record.client.tls).not.toBeNull();
      });
    }

    it('is not offered AUTH over plaintext, so it never sends the password', async () => {
      const run = await swaks(['--port', String(relay.port), '--auth', 'PLAIN', '--auth-user', USER, '--auth-password', PASS, '--quit-after', 'AUTH']);
      expect(run.code).not.toBe(0);
      expect(run.stdout + run.stderr).toMatch(/Host did not advertise authentication/);
      expect(run.stdout).not.toMatch(/-> +AUTH/);
    });

    it('pipelines the envelope (--pipeline) to two recipients', async () => {
      const m = await messageFile('swaks-pipeline');
      const run = await swaks(['--port', String(relay.port), '--pipeline', '--to', 'ana@dest.example,bob@dest.example', '--data', m.path]);
      expect(run.stdout).toContain('PIPELINING');
      const record = await expectRelayed(run, m.messageId, m.raw);
      expect(record.rcpt.map((r) => r.to)).toEqual(['ana@dest.example', 'bob@dest.example']);
      expect(received(m.messageId)[0]!.to).toEqual(['ana@dest.example', 'bob@dest.example']);
    });
  });

  describe('curl', () => {
    const curl = (url: string, file: string, extra: string[] = []) =>
      runTool('curl', ['-sS', '-v', '--url', url, '--mail-from', 'app@app.example', '--mail-rcpt', 'ana@dest.example', '--upload-file', file, ...extra]);

    it('sends with smtp:// in plain text', async () => {
      const m = await messageFile('curl-plain');
      await expectRelayed(await curl(`smtp://127.0.0.1:${relay.port}`, m.path), m.messageId, m.raw);
    });

    it('sends with smtp:// upgraded by STARTTLS (--ssl-reqd) and logs in (--user)', async () => {
      const m = await messageFile('curl-starttls');
      const run = await curl(`smtp://127.0.0.1:${relay.port}`, m.path, ['--ssl-reqd', '--cacert', caPath, '--user', `${USER}:${PASS}`]);
      const record = await expectRelayed(run, m.messageId, m.raw);
      expect(record.client.user).toBe(USER);
      expect(record.client.tls).not.toBeNull();
    });

    it('sends with smtps:// (implicit TLS) and logs in', async () => {
      const m = await messageFile('curl-smtps');
      const run = await curl(`smtps://127.0.0.1:${relay.tlsPort}`, m.path, ['--cacert', caPath, '--user', `${USER}:${PASS}`]);
      const record = await expectRelayed(run, m.messageId, m.raw);
      expect(record.client.user).toBe(USER);
    });
  });

  describe("Python's smtplib", () => {
    it('upgrades with starttls(), logs in and sends; the DATA reply carries the id', async () => {
      const m = await messageFile('python-smtplib');
      const script = [
        'import json, smtplib, ssl, sys',
        'port, ca, user, pw, path = sys.argv[1:6]',
        "s = smtplib.SMTP('127.0.0.1', int(port), timeout=20)",
        "s.ehlo('python.example')",
        's.starttls(context=ssl.create_default_context(cafile=ca))',
        "s.ehlo('python.example')",
        's.login(user, pw)',
        "s.mail('app@app.example')",
        "s.rcpt('ana@dest.example')",
        "code, text = s.data(open(path, 'rb').read())",
        's.quit()',
        "print(json.dumps({'code': code, 'text': text.decode()}))",
      ].join('\n');
      const run = await runTool('python3', ['-c', script, String(relay.port), caPath, USER, PASS, m.path]);
      const reply = JSON.parse(run.stdout.trim()) as { code: number; text: string };
      expect(reply.code).toBe(250);
      // smtplib normalises line endings itself, so compare what the trail hashed with the upstream copy only.
      const record = await expectRelayed(run, m.messageId, null);
      expect(record.client.user).toBe(USER);
      expect(record.client.tls).not.toBeNull();
    });
  });

  describe('nodemailer', () => {
    it('sends with requireTLS and AUTH, and gets the id in info.response', async () => {
      const m = await messageFile('nodemailer');
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: relay.port,
        secure: false,
        requireTLS: true,
        auth: { user: USER, pass: PASS },
        tls: { ca: relay.pki!.ca, servername: 'localhost' },
      });
      try {
        const info = await transport.sendMail({ envelope: { from: 'app@app.example', to: ['ana@dest.example'] }, raw: m.raw });
        const record = await expectRelayed({ code: 0, stdout: String(info.response), stderr: '' }, m.messageId, m.raw);
        expect(record.client.user).toBe(USER);
      } finally {
        transport.close();
      }
    });
  });
});
