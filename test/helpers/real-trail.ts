/**
 * A trail written by a real relay: mailtrail on loopback in front of two fake upstreams, driven
 * through every outcome (delivered, partial, deferred, rejected, unknown and its duplicate-linked
 * resend, aborted, failover, queued into the spool by a user in spool mode), refusals (too many
 * recipients, a protocol violation) and the session records of every connection, with checkpoints;
 * then a restart that finds the queued message without its acceptance record and writes its
 * `recovered` record. For the tools' and the record schema's tests.
 *
 * @example
 * const story = await makeRealTrail(join(dir, 'audit.log'));
 * // story.unknownId is the record whose resend carries duplicateOf
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeUpstream } from './fake-upstream.js';
import { simpleMessage, startRelay, type RelaySpec } from './relay-harness.js';
import { smtpTalk } from './smtp-client.js';

export interface RealTrail {
  readonly auditFile: string;
  /** Message-ID of the message lost after the final dot, then resent. */
  readonly unknownMessageId: string;
  /** Message-ID of the message that failed over from `primary` to `backup`. */
  readonly failoverMessageId: string;
  /** Sender of the transaction the client abandoned mid-DATA. */
  readonly abortedFrom: string;
  /** Message-ID of the message the user in spool mode sent (queued, then recovered at a restart). */
  readonly queuedMessageId: string;
}

const SPOOLER = { user: 'printers', pass: 'Printers-Pa55-w0rd' };

export async function makeRealTrail(auditFile: string): Promise<RealTrail> {
  const primary = await startFakeUpstream({ faults: { queueId: () => `Ok: queued as P${Math.random().toString(36).slice(2, 10).toUpperCase()}` } });
  const backup = await startFakeUpstream({ faults: { queueId: () => `2.0.0 OK id=B${Math.random().toString(36).slice(2, 10)}` } });
  const dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-real-trail-'));
  const spec: RelaySpec = {
    upstreams: [
      { name: 'primary', port: primary.port, breaker: null },
      { name: 'backup', port: backup.port, breaker: null },
    ],
    limits: { maxRecipients: 3 },
    clients: { users: [{ username: SPOOLER.user, password: SPOOLER.pass, passwordHash: null, allowedSenders: [], mode: 'spool' }] },
    auditFile,
    audit: { checkpoint: { every: 5, interval: 60_000, signingKey: null, file: null } },
    dataDir,
  };
  let relay = await startRelay(spec);
  const send = (from: string, to: string[], messageId: string, raw?: Buffer) =>
    relay.send({ from, to, raw: raw ?? simpleMessage({ from, to: to[0], messageId }) });
  try {
    await send('app@example.com', ['ana@example.org'], '<ok-1@example.com>');
    await send('app@example.com', ['bo@example.net', 'cy@example.net'], '<ok-2@example.com>');

    await primary.setFaults({
      rcpt: (a) => (a.startsWith('gone') ? { code: 550, text: '5.1.1 <' + a + '>: Recipient address rejected: User unknown' } : null),
    });
    await send('shop@example.com', ['ana@example.org', 'gone@example.org'], '<partial-1@example.com>');
    await send('shop@example.com', ['gone@example.org'], '<rejected-1@example.com>');
    await primary.resetFaults();

    await primary.setFaults({ data: { code: 554, text: '5.7.1 Message rejected: spam content detected' } });
    await send('news@example.com', ['ana@example.org'], '<spam-1@example.com>');
    await primary.resetFaults();

    const throttle = { code: 454, text: '4.7.0 Throttling failure: Maximum sending rate exceeded.' };
    await primary.setFaults({ mailFrom: throttle });
    await backup.setFaults({ mailFrom: throttle });
    await send('app@example.com', ['ana@example.org'], '<throttled-1@example.com>');
    await primary.resetFaults();
    await backup.resetFaults();

    await primary.refuse();
    const failoverMessageId = '<failover-1@example.com>';
    await send('app@example.com', ['ana@example.org'], failoverMessageId);
    await primary.accept();

    // Lost after the final dot, then the app sends the very same message again.
    const unknownMessageId = '<lost-1@example.com>';
    const lostRaw = simpleMessage({ from: 'billing@example.com', to: 'ana@example.org', messageId: unknownMessageId });
    await primary.setFaults({ data: 'drop-after-dot' });
    const lost = await send('billing@example.com', ['ana@example.org'], unknownMessageId, lostRaw);
    if (lost.code !== 451) throw new Error(`expected 451 for the lost message, got ${lost.code} ${lost.response}`);
    await primary.resetFaults();
    await send('billing@example.com', ['ana@example.org'], unknownMessageId, lostRaw);

    // Refusals: one recipient too many, and a command out of sequence.
    const c = await smtpTalk(relay.port);
    await c.expect(220);
    c.send('EHLO client.test');
    await c.expect(250);
    c.send('MAIL FROM:<app@example.com>');
    await c.expect(250);
    for (const to of ['a@example.org', 'b@example.org', 'c@example.org']) {
      c.send(`RCPT TO:<${to}>`);
      await c.expect(250);
    }
    c.send('RCPT TO:<d@example.org>');
    await c.expect(452);
    c.send('QUIT');
    await c.expect(221);
    c.close();
    const p = await smtpTalk(relay.port);
    await p.expect(220);
    p.send('EHLO client.test');
    await p.expect(250);
    p.send('RCPT TO:<ana@example.org>');
    await p.expect(503);
    p.close();

    // A client that vanishes in the middle of DATA.
    const abortedFrom = 'quitter@example.com';
    const q = await smtpTalk(relay.port);
    await q.expect(220);
    q.send('EHLO client.test');
    await q.expect(250);
    q.send(`MAIL FROM:<${abortedFrom}>`);
    await q.expect(250);
    q.send('RCPT TO:<ana@example.org>');
    await q.expect(250);
    q.send('DATA');
    await q.expect(354);
    q.sendRaw('Subject: half\r\n\r\nhalf a body');
    await new Promise((r) => setTimeout(r, 50));
    q.close();
    await waitUntil(async () => (await relay.relayRecords()).some((r) => r.from === abortedFrom), 'the aborted record');
    // A user in spool mode: queued, 250 at once, nothing relayed.
    const queuedMessageId = '<queued-1@example.com>';
    const queued = await relay.send({
      from: 'printer@example.com',
      to: ['ana@example.org'],
      raw: simpleMessage({ from: 'printer@example.com', messageId: queuedMessageId }),
      auth: SPOOLER,
    });
    if (queued.code !== 250) throw new Error(`expected 250 queued, got ${queued.code}`);
    // Every connection closed: wait for the session records before stopping.
    await waitUntil(async () => (await relay.sessionRecords()).length >= 13, 'the session records');
    // As if the process had died between the commit and the record: the next start recovers it.
    await relay.stop();
    const meta = join(dataDir, 'spool', 'meta');
    for (const name of await readdir(meta)) {
      const path = join(meta, name);
      await writeFile(path, (await readFile(path, 'utf8')).replace('"recorded":true', '"recorded":false'));
    }
    relay = await startRelay(spec);
    return { auditFile, unknownMessageId, failoverMessageId, abortedFrom, queuedMessageId };
  } finally {
    await relay.stop();
    await primary.close();
    await backup.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function waitUntil(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
