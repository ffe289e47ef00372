/**
 * A real HAProxy in front (mode tcp), as docs/fleet.md sets it up: `send-proxy-v2` and `send-proxy`
 * to a mailtrail listener with `proxyProtocol`, and a backend without either. The client connects
 * from 127.0.0.2, HAProxy from 127.0.0.1: only the client's address may relay, so a message that goes
 * through proves the header drove admission, and the record shows both addresses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayRecord } from '../../src/audit/records.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { simpleMessage, startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { sendOver, smtpTalk } from '../helpers/smtp-client.js';
import { findTool, freePort, haveTools, waitForPort } from './interop-tools.js';

const available = haveTools('haproxy');

describe.skipIf(!available)('interop: HAProxy in front, PROXY protocol', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let haproxy: ChildProcess;
  let log = '';
  const ports = { v2: 0, v1: 0, none: 0 };

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    relay = await startRelay({
      upstreams: [{ port: upstream.port }],
      clients: { networks: ['127.0.0.2/32'], requireTls: false },
      proxyListener: { trustedProxies: ['127.0.0.1/32'] },
      proxyHeaderTimeout: 1_000,
    });
    for (const k of ['v2', 'v1', 'none'] as const) ports[k] = await freePort();
    const backend = `127.0.0.1:${relay.proxyPort}`;
    const config = join(relay.dataDir, 'haproxy.cfg');
    await writeFile(
      config,
      [
        'global',
        '  log stdout format raw local0 info',
        'defaults',
        '  mode tcp',
        '  log global',
        '  timeout connect 5s',
        '  timeout client 30s',
        '  timeout server 30s',
        ...(['v2', 'v1', 'none'] as const).flatMap((k) => [`frontend f_${k}`, `  bind 127.0.0.1:${ports[k]}`, `  default_backend b_${k}`]),
        'backend b_v2',
        `  server mt ${backend} send-proxy-v2`,
        'backend b_v1',
        `  server mt ${backend} send-proxy`,
        'backend b_none',
        `  server mt ${backend}`,
        '',
      ].join('\n'),
    );
    haproxy = spawn(findTool('haproxy')!, ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    haproxy.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    for (const k of ['v2', 'v1', 'none'] as const) await waitForPort(ports[k]);
  }, 30_000);

  afterAll(async () => {
    haproxy?.kill('SIGTERM');
    await relay?.stop();
    await upstream?.close();
  });

  const sendThrough = async (port: number, messageId: string): Promise<string> =>
    sendOver(await smtpTalk(port, '127.0.0.1', { localAddress: '127.0.0.2' }), {
      from: 'app@example.com',
      to: 'ana@example.org',
      raw: simpleMessage({ messageId }),
    });

  const recordOf = async (messageId: string): Promise<RelayRecord> => (await relay.relayRecords()).find((r) => r.message.messageId === messageId)!;

  it.each(['v2', 'v1'] as const)('relays for the client behind HAProxy send-proxy%s, recorded with HAProxy as the proxy', async (version) => {
    const messageId = `<haproxy-${version}@example.com>`;
    expect(await sendThrough(ports[version], messageId), log).toMatch(/Ok: relayed/);
    const record = await recordOf(messageId);
    expect(record.client).toMatchObject({ ip: '127.0.0.2', proxy: { ip: '127.0.0.1', version, command: 'proxy' } });
    expect(record.client.port).not.toBe(record.client.proxy!.port);
  });

  it('refuses what HAProxy forwards without a header, and the client behind it reads why', async () => {
    const c = await smtpTalk(ports.none, '127.0.0.1', { localAddress: '127.0.0.2' });
    const reply = await c.expect(421, 5_000);
    expect(reply.text).toMatch(/^4\.3\.5 Load balancer sent no valid PROXY protocol header/);
    c.close();
    expect((await relay.rejectRecords()).filter((r) => r.class === 'proxy_invalid')).toHaveLength(1);
  });
});
