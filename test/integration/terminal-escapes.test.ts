/**
 * What a client or an upstream sends ends up in the trail byte for byte, and the trail tools print
 * it: an attacker's ESC / BEL sequences and bidirectional overrides must reach the operator's
 * terminal escaped, through every tool, while `--json` keeps the exact values. The records here are
 * written by a real relay from real SMTP traffic.
 */
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayRecord } from '../../src/audit/records.js';
import { runTrailCommand } from '../../src/tools/trail-commands.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { startRelay, type RunningRelay } from '../helpers/relay-harness.js';
import { smtpTalk, type SmtpTalk } from '../helpers/smtp-client.js';
import { memoryIo, runVerify } from '../helpers/trail-fixtures.js';

const MESSAGE_ID = '<x\u001b]2;pwned\u0007@example.com>';
const SUBJECT = 'Invoice \u001b[2J\u202eexe.pdf';
/** A sender smtp-server takes: a right-to-left override in the local part. */
const SENDER = 'invoice\u202efdp.exe@example.com';
/** An unknown command: its verb is recorded in the refusal. */
const VERB = '\u001b]2;PWNED\u0007';
/** An upstream's refusal with escapes (the SMTP libraries pass on the visible part). */
const REFUSAL = '5.1.1 \u001b[31mUser unknown\u009b0m';
/** What no output may hold: C0 but the newline ending each line, DEL, C1, the bidi controls. */

const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

describe('trail tools on hostile text from real traffic', () => {
  let upstream: FakeUpstream;
  let relay: RunningRelay;
  let dataDir: string;
  let file: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'mailtrail-escapes-'));
    upstream = await startFakeUpstream({ faults: { rcpt: (a) => (a.startsWith('gone') ? { code: 550, text: REFUSAL } : null) } });
    relay = await startRelay({
      upstreams: [{ name: 'primary', port: upstream.port, breaker: null }],
      limits: { maxMessageSize: 4096 },
      audit: { subject: true },
      dataDir,
    });
    file = relay.auditFile;
    const c = await smtpTalk(relay.port);
    await c.expect(220);
    c.send('EHLO client.test');
    await c.expect(250);
    c.send(VERB);
    await c.expect(500);
    // A message with a hostile Message-ID and Subject; the upstream refuses one recipient with a
    // reply that carries escapes too (partial delivery).
    const hostile = `From: App <app@example.com>\r\nSubject: ${SUBJECT}\r\nMessage-ID: ${MESSAGE_ID}\r\n\r\nHello.\r\n`;
    await transaction(c, SENDER, ['ana@example.org', 'gone@example.org'], hostile, 250);
    // A 38 MB message in miniature: over limits.maxMessageSize, refused by mailtrail itself.
    await transaction(c, 'app@example.com', ['ana@example.org'], `Subject: big\r\nMessage-ID: <big-1@example.com>\r\n\r\n${'x'.repeat(8000)}\r\n`, 552);
    c.send('QUIT');
    await c.expect(221);
    c.close();
    await relay.stop();
  });

  afterAll(async () => {
    await upstream?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps the exact bytes in the trail', async () => {
    const relays = (await readFile(file, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as RelayRecord)
      .filter((r) => r.type === 'relay');
    expect(relays[0]!.message).toMatchObject({ messageId: MESSAGE_ID, subject: SUBJECT });
    expect(relays[0]!.from).toBe(SENDER);
    expect(relays[0]!.rcpt[1]!.reply).toMatchObject({ code: 550, enhanced: '5.1.1', text: expect.stringContaining('User unknown') });
  });

  it('lookup shows the Message-ID, Subject and sender escaped, and --json the exact values', async () => {
    const human = await tool('lookup', [MESSAGE_ID, file]);
    expect(human.code).toBe(0);
    expect(human.out + human.err).not.toMatch(RAW_CONTROL);
    expect(human.out).toContain('<x\\x1b]2;pwned\\x07@example.com>');
    expect(human.out).toContain('Subject: Invoice \\x1b[2J\\u202eexe.pdf');
    expect(human.out).toContain('invoice\\u202efdp.exe@example.com → ana@example.org (accepted)');
    expect(human.out).toMatch(/550 5\.1\.1 .*User unknown/);

    const json = await tool('lookup', [MESSAGE_ID, file, '--json']);
    expect(json.out).not.toMatch(RAW_CONTROL);
    const records = json.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as RelayRecord);
    expect(records.find((r) => r.type === 'relay')!.message.messageId).toBe(MESSAGE_ID);
    expect(records.find((r) => r.type === 'relay')!.message.subject).toBe(SUBJECT);
  });

  it('lookup escapes the key it quotes when nothing matches', async () => {
    const r = await tool('lookup', ['<nothing\u001b[2J@example.com>', file]);
    expect(r.code).toBe(1);
    expect(r.err).not.toMatch(RAW_CONTROL);
    expect(r.err).toContain('no record mentions <nothing\\x1b[2J@example.com>');
  });

  it('tail shows the sender and the refused command escaped, and --json prints nothing raw', async () => {
    const human = await tool('tail', [file, '-n', 'all']);
    expect(human.out).toContain('invoice\\u202efdp.exe@example.com → ana@example.org +1');
    expect(human.out).toContain('\\x1b]2;PWNED\\x07 500');
    for (const args of [
      [file, '-n', 'all'],
      [file, '-n', 'all', '--json'],
    ]) {
      const r = await tool('tail', args);
      expect(r.code).toBe(0);
      expect(r.out).not.toMatch(RAW_CONTROL);
    }
    // With colours, the only escapes are mailtrail's own colour codes.
    const coloured = await tool('tail', [file, '-n', 'all'], { FORCE_COLOR: '1' });
    expect(coloured.out.replace(/\u001b\[\d+m/g, '')).not.toMatch(RAW_CONTROL);
    const json = await tool('tail', [file, '-n', 'all', '--json']);
    const parsed = json.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { from?: string; command?: string });
    expect(parsed.map((r) => r.from)).toContain(SENDER);
    expect(parsed.map((r) => r.command)).toContain(VERB);
  });

  it('report prints nothing raw, and counts the oversize message as mailtrail’s own', async () => {
    const human = await tool('report', [file, '--by', 'upstream']);
    expect(human.code).toBe(0);
    expect(human.out).not.toMatch(RAW_CONTROL);
    expect(human.out).toMatch(/recipient_rejected {2}primary {2}550 5\.1\.1 .*User unknown/);
    expect(human.out).toMatch(/^ {2}rejected by an upstream +0/m);
    expect(human.out).toMatch(/^ {2}rejected by mailtrail +1 {2}after DATA, no upstream tried/m);
    expect(human.out).toMatch(/too_large {2}mailtrail \(no upstream tried\) {2}message exceeds limits\.maxMessageSize/);

    const json = await tool('report', [file, '--json']);
    expect(json.out).not.toMatch(RAW_CONTROL);
    expect(json.out.split('\n').length).toBeGreaterThan(50); // still pretty-printed
    const report = JSON.parse(json.out) as { rejections: object };
    expect(report.rejections).toEqual({ byUpstream: 0, byMailtrail: 1, refusals: 1 });
  });

  it('verify finds the chain intact and prints a hostile file name escaped', async () => {
    const hostile = join(dataDir, 'audit\u001b]2;pwned\u0007.log');
    await copyFile(file, hostile);
    const r = await runVerify([hostile, join(dataDir, 'gone\u001b[2J.log')]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('gone\\x1b[2J.log');
    expect(r.err).not.toMatch(RAW_CONTROL);
    const ok = await runVerify([hostile]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^intact: \d+ record\(s\)/);
  });

  it('tail and report escape a file name they complain about', async () => {
    for (const name of ['tail', 'report', 'lookup'] as const) {
      const args = name === 'lookup' ? ['<x@example.com>', join(dataDir, 'no\u001b[2J.log')] : [join(dataDir, 'no\u001b[2J.log')];
      const r = await tool(name, args);
      expect(r.code).toBe(1);
      expect(r.err).toContain('no such file: ');
      expect(r.err).toContain('no\\x1b[2J.log');
      expect(r.err).not.toMatch(RAW_CONTROL);
    }
  });
});

async function tool(name: 'tail' | 'report' | 'lookup', args: string[], env: NodeJS.ProcessEnv = {}) {
  const io = memoryIo({ env });
  const code = await runTrailCommand(name, args, io);
  return { code, out: io.out(), err: io.err() };
}

/** One transaction on an open connection: the message (UTF-8) and the reply expected after it. */
async function transaction(c: SmtpTalk, from: string, to: string[], message: string, reply: number): Promise<void> {
  c.send(`MAIL FROM:<${from}>`);
  await c.expect(250);
  for (const rcpt of to) {
    c.send(`RCPT TO:<${rcpt}>`);
    await c.expect(250);
  }
  c.send('DATA');
  await c.expect(354);
  c.sendRaw(Buffer.from(`${message}.\r\n`, 'utf8'));
  await c.expect(reply);
}
