/**
 * A listener behind a TCP load balancer (PROXY protocol, listener/proxy-gate.ts): the client the
 * header names drives admission, limits and the trail; anything else is refused before a greeting.
 * The "load balancer" here is the test itself, writing the header HAProxy would, from 127.0.0.1
 * (trusted) or 127.0.0.2 (any other loopback address: not trusted).
 */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { RejectRecord, RelayRecord, SessionRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { proxyV1, proxyV2 } from '../helpers/proxy-protocol.js';
import { simpleMessage, startRelay, type RelaySpec, type RunningRelay } from '../helpers/relay-harness.js';
import { sendOver, smtpTalk, type SmtpTalk } from '../helpers/smtp-client.js';

const validate = new Ajv2020({ allErrors: true, strict: true }).compile(
  JSON.parse(readFileSync(new URL('../../docs/audit-record.schema.json', import.meta.url), 'utf8')) as object,
);

/** Every record the relay wrote, checked against the audit record's JSON Schema (client.proxy included). */
async function expectValidRecords(r: RunningRelay): Promise<void> {
  for (const record of await r.records()) expect(validate(record), `${record.type}: ${JSON.stringify(validate.errors?.slice(0, 3))}`).toBe(true);
}

let upstream: FakeUpstream | null = null;
let relay: RunningRelay | null = null;

afterEach(async () => {
  await relay?.stop();
  await upstream?.close();
  relay = null;
  upstream = null;
});

/** Relays without AUTH for 192.0.2.0/24 and 2001:db8::/32 only; the load balancer is 127.0.0.1. */
async function start(over: Partial<RelaySpec> = {}): Promise<RunningRelay> {
  upstream = await startFakeUpstream();
  relay = await startRelay({
    upstreams: [{ port: upstream.port }],
    clients: { networks: ['192.0.2.0/24', '2001:db8::/32'], requireTls: false },
    proxyListener: { trustedProxies: ['127.0.0.1/32'] },
    proxyHeaderTimeout: 500,
    ...over,
  });
  return relay;
}

/** Connects to the proxy listener from `from`, writes `header`, and expects the greeting. */
async function through(header: Buffer, from = '127.0.0.1'): Promise<SmtpTalk> {
  const c = await smtpTalk(relay!.proxyPort!, '127.0.0.1', { localAddress: from });
  c.sendRaw(header);
  return c;
}

const sendMessageOver = async (c: SmtpTalk, from: string, to: string, messageId: string): Promise<void> =>
  void (await sendOver(c, { from, to, raw: simpleMessage({ from, to, messageId }) }));

async function until<T>(read: () => Promise<T | undefined>, what: string, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sessionOf = (r: RunningRelay, sessionId: string) =>
  until(async () => (await r.sessionRecords()).find((s) => s.session.id === sessionId), 'the session record');

describe('a PROXY protocol listener', () => {
  it('relays for the client a v1 header names, recording it and the load balancer', async () => {
    const r = await start();
    const c = await through(proxyV1('192.0.2.10', 51000));
    await sendMessageOver(c, 'app@example.com', 'ana@example.org', '<v1@example.com>');
    const [record] = (await r.relayRecords()) as [RelayRecord];
    expect(record.outcome).toBe('delivered');
    expect(record.client).toMatchObject({ ip: '192.0.2.10', port: 51000, proxy: { ip: '127.0.0.1', version: 'v1', command: 'proxy' } });
    expect((await sessionOf(r, record.session.id)).client).toMatchObject({ ip: '192.0.2.10', proxy: { ip: '127.0.0.1' } });
    expect(upstream!.messages).toHaveLength(1);
    await expectValidRecords(r);
  });

  it('relays for the client a v2 header names, TLVs and all, IPv4 and IPv6', async () => {
    const r = await start();
    const tlv = { type: 0xea, value: Buffer.from('\x01vpce-0123456789abcdef0') };
    await sendMessageOver(await through(proxyV2({ src: '192.0.2.20', sport: 40001, tlvs: [tlv] })), 'app@example.com', 'ana@example.org', '<v2@example.com>');
    await sendMessageOver(await through(proxyV2({ src: '2001:db8::7', sport: 40002 })), 'app@example.com', 'bo@example.org', '<v2-6@example.com>');
    const records = await r.relayRecords();
    expect(records.map((x) => [x.outcome, x.client.ip, x.client.port, x.client.proxy?.version])).toEqual([
      ['delivered', '192.0.2.20', 40001, 'v2'],
      ['delivered', '2001:db8::7', 40002, 'v2'],
    ]);
  });

  it('admits by the real client: an unlisted one behind the same load balancer may not relay', async () => {
    const r = await start();
    const c = await through(proxyV2({ src: '198.51.100.7', sport: 40003 }));
    await c.expect(220);
    c.send('EHLO app.example');
    await c.expect(250);
    c.send('MAIL FROM:<app@example.com>');
    const refused = await c.expect(554);
    expect(refused.text).toMatch(/^5\.7\.1 Relaying denied/);
    c.close();
    const [reject] = (await until(async () => {
      const rs = await r.rejectRecords();
      return rs.length > 0 ? rs : undefined;
    }, 'the reject record')) as [RejectRecord];
    expect(reject).toMatchObject({ class: 'relay_denied', client: { ip: '198.51.100.7', proxy: { ip: '127.0.0.1', version: 'v2' } } });
  });

  it('counts the connection rate per real client, not per load balancer', async () => {
    await start({ limits: { connectionRatePerIp: 2, connectionRateExempt: [] } });
    const greeting = async (ip: string) => {
      const c = await through(proxyV1(ip, 40000));
      const reply = await c.expect();
      c.close();
      return `${reply.code} ${reply.text}`;
    };
    const replies = [await greeting('198.51.100.1'), await greeting('198.51.100.1'), await greeting('198.51.100.1'), await greeting('198.51.100.2')];
    expect(replies.map((x) => x.slice(0, 3))).toEqual(['220', '220', '421', '220']);
    expect(replies[2]).toContain('Too many connections from 198.51.100.1');
  });

  it('locks out AUTH guesses per real client, not per load balancer', async () => {
    await start({
      clients: {
        networks: [],
        requireTls: false,
        allowInsecureAuth: true,
        users: [{ username: 'app', password: 'right-password', passwordHash: null, allowedSenders: [], mode: null }],
        authLockout: { failures: 2, window: 600_000, lockout: 300_000, maxLockout: 3_600_000, maxTracked: 100 },
      },
    });
    const auth = async (ip: string, user: string) => {
      const c = await through(proxyV2({ src: ip, sport: 40000 }));
      await c.expect(220);
      c.send('EHLO app.example');
      await c.expect(250);
      c.send(`AUTH PLAIN ${Buffer.from(`\0${user}\0wrong-password`).toString('base64')}`);
      const reply = await c.expect();
      c.close();
      return reply.code;
    };
    // The second failure from one client locks its address (that attempt is answered 454 already);
    // another client behind the same balancer is not held.
    expect([await auth('198.51.100.20', 'u1'), await auth('198.51.100.20', 'u2'), await auth('198.51.100.20', 'u3')]).toEqual([535, 454, 454]);
    expect(await auth('198.51.100.21', 'u4')).toBe(535);
  });

  it('refuses a peer outside trustedProxies at once, header or not, before any greeting; recorded and counted', async () => {
    const r = await start({ http: { port: 0 } });
    const c = await through(proxyV1('192.0.2.10', 51000), '127.0.0.2');
    const reply = await c.expect();
    expect(reply.code).toBe(554);
    expect(reply.text).toMatch(/^5\.7\.1 This port takes connections from its load balancers only \(id (\w{26})\)$/);
    await c.waitClosed();
    const silent = await smtpTalk(r.proxyPort!, '127.0.0.1', { localAddress: '127.0.0.3' });
    expect((await silent.expect()).code).toBe(554);
    const rejects = await r.rejectRecords();
    expect(rejects.map((x) => [x.class, x.command, x.client.ip, x.client.proxy])).toEqual([
      ['proxy_untrusted', 'CONNECT', '127.0.0.2', null],
      ['proxy_untrusted', 'CONNECT', '127.0.0.3', null],
    ]);
    expect(reply.text).toContain(rejects[0]!.id);
    // No session ever started: no session record.
    expect(await r.sessionRecords()).toEqual([]);
    const metrics = await (await fetch(`${r.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^mailtrail_client_rejects_total\{class="proxy_untrusted"\} 2$/m);
    await expectValidRecords(r);
  });

  it('refuses a trusted peer that sends no header, after timeouts.proxyHeader, without a greeting', async () => {
    const r = await start();
    const started = Date.now();
    const c = await smtpTalk(r.proxyPort!, '127.0.0.1', { localAddress: '127.0.0.1' });
    const reply = await c.expect(421, 5_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(reply.text).toMatch(/^4\.3\.5 Load balancer sent no valid PROXY protocol header/);
    await c.waitClosed();
    const [reject] = (await r.rejectRecords()) as [RejectRecord];
    expect(reject).toMatchObject({ class: 'proxy_invalid', client: { ip: '127.0.0.1', proxy: { ip: '127.0.0.1', version: null, command: null } } });
    await expectValidRecords(r);
  });

  it.each([
    ['an SMTP command instead of a header', Buffer.from('EHLO app.example\r\n')],
    ['a v1 header with a host name for the address', Buffer.from('PROXY TCP4 evil.example 127.0.0.1 1 25\r\n')],
    ['a v2 header of version 3', proxyV2({ src: '192.0.2.1', verCmd: 0x31 })],
    ['binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff])],
  ])('refuses %s from a trusted peer at once, without a greeting', async (_what, garbage) => {
    const r = await start({ proxyHeaderTimeout: 10_000 });
    const c = await through(garbage);
    const reply = await c.expect(421, 3_000);
    expect(reply.text).toMatch(/^4\.3\.5 /);
    await c.waitClosed();
    expect((await r.rejectRecords()).map((x) => x.class)).toEqual(['proxy_invalid']);
  });

  it('records nothing for a trusted peer that closes before sending a byte (a port check)', async () => {
    const r = await start();
    const c = await smtpTalk(r.proxyPort!, '127.0.0.1', { localAddress: '127.0.0.1' });
    c.close();
    const later = await through(proxyV1('192.0.2.50', 40000));
    await later.expect(220);
    later.close();
    await until(async () => ((await r.sessionRecords()).length > 0 ? true : undefined), 'the later session record');
    expect(await r.rejectRecords()).toEqual([]);
  });

  it('reads a header that arrives a byte at a time', async () => {
    const r = await start();
    const c = await smtpTalk(r.proxyPort!, '127.0.0.1', { localAddress: '127.0.0.1' });
    for (const byte of proxyV2({ src: '192.0.2.30', sport: 40004 })) {
      c.sendRaw(Buffer.from([byte]));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await sendMessageOver(c, 'app@example.com', 'ana@example.org', '<slow@example.com>');
    expect((await r.relayRecords())[0]?.client.ip).toBe('192.0.2.30');
  });

  it('takes a v2 LOCAL health check and a v1 UNKNOWN as the load balancer itself talking', async () => {
    const r = await start();
    for (const header of [proxyV2({ command: 'local' }), Buffer.from('PROXY UNKNOWN\r\n')]) {
      const c = await through(header);
      await c.expect(220);
      c.send('QUIT');
      await c.expect(221);
      await c.waitClosed();
    }
    const sessions = await until(async () => {
      const s = await r.sessionRecords();
      return s.length === 2 ? s : undefined;
    }, 'two session records');
    expect(sessions.map((s: SessionRecord) => [s.client.ip, s.client.proxy?.version, s.client.proxy?.command])).toEqual([
      ['127.0.0.1', 'v2', 'local'],
      ['127.0.0.1', 'v1', 'local'],
    ]);
    await expectValidRecords(r);
  });

  it('takes the header before the TLS handshake on an implicit-TLS listener', async () => {
    const r = await start({ proxyListener: { trustedProxies: ['127.0.0.1/32'], implicitTls: true } });
    const { connect } = await import('node:tls');
    const { connect: tcp } = await import('node:net');
    const raw = tcp({ host: '127.0.0.1', port: r.proxyPort! });
    await new Promise((resolve) => raw.once('connect', resolve));
    raw.write(proxyV2({ src: '192.0.2.40', sport: 40005 }));
    const secure = connect({ socket: raw, ca: r.pki!.ca, servername: 'localhost' });
    const greeting = await new Promise<string>((resolve, reject) => {
      secure.once('data', (d: Buffer) => resolve(d.toString()));
      secure.once('error', reject);
    });
    expect(greeting).toMatch(/^220 /);
    secure.end('QUIT\r\n');
    await new Promise((resolve) => secure.once('close', resolve));
    const [session] = await until(async () => {
      const s = await r.sessionRecords();
      return s.length > 0 ? s : undefined;
    }, 'the session record');
    expect(session!.client).toMatchObject({ ip: '192.0.2.40', tls: { protocol: expect.stringMatching(/^TLS/) as string }, proxy: { version: 'v2' } });
  });
});
