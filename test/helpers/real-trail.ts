/**
 * A trail written by a real relay: mailtrail on loopback in front of two fake upstreams, driven
 * through every outcome (delivered, partial, deferred, rejected, unknown and its duplicate-linked
 * resend, aborted, failover), refusals (too many recipients, a protocol violation) and the session
 * records of every connection, with checkpoints. For the tools' and the record schema's tests.
 *
 * @example
 * const story = await makeRealTrail(join(dir, 'audit.log'));
 * // story.unknownId is the record whose resend carries duplicateOf
 */
import { startFakeUpstream } from './fake-upstream.js';
import { simpleMessage, startRelay } from './relay-harness.js';
import { smtpTalk } from './smtp-client.js';

export interface RealTrail {
  readonly auditFile: string;
  /** Message-ID of the message lost after the final dot, then resent. */
  readonly unknownMessageId: string;
  /** Message-ID of the message that failed over from `primary` to `backup`. */
  readonly failoverMessageId: string;
  /** Sender of the transaction the client abandoned mid-DATA. */
  readonly abortedFrom: string;
}

export async function makeRealTrail(auditFile: string): Promise<RealTrail> {
  const primary = await startFakeUpstream({ faults: { queueId: () => `Ok: queued as P${Math.random().toString(36).slice(2, 10).toUpperCase()}` } });
  const backup = await startFakeUpstream({ faults: { queueId: () => `2.0.0 OK id=B${Math.random().toString(36).slice(2, 10)}` } });
  const relay = await startRelay({
    upstreams: [
      { name: 'primary', port: primary.port, breaker: null },
      { name: 'backup', port: backup.port, breaker: null },
    ],
    limits: { maxRecipients: 3 },
    auditFile,
    audit: { checkpoint: { every: 5, interval: 60_000, signingKey: null, file: null } },
  });
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
    // Every connection closed: wait for the session records before stopping.
    await waitUntil(async () => (await relay.sessionRecords()).length >= 12, 'the session records');
    return { auditFile, unknownMessageId, failoverMessageId, abortedFrom };
  } finally {
    await relay.stop();
    await primary.close();
    await backup.close();
  }
}

async function waitUntil(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
