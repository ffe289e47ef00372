import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvents } from '../../src/audit/audit-events.js';
import { AuditWriter } from '../../src/audit/audit-writer.js';
import type { ChainFields } from '../../src/audit/chain.js';
import { Checkpointer } from '../../src/audit/checkpoint.js';
import { RecordPrivacy } from '../../src/audit/privacy.js';
import { Recorder, type RecorderOptions } from '../../src/audit/recorder.js';
import { EventBus } from '../../src/event-bus.js';
import { IdGenerator } from '../../src/ids.js';
import { createLogger } from '../../src/logger.js';
import { alert, delivery, reject, relay, removeDir, session, spoolEvent, tempDir } from '../helpers/trail-fixtures.js';

const log = createLogger('silent');

/**
 * The real writer, with a switch that makes its writes fail the way a full disk does, and one that
 * makes it report a filesystem below the reserve.
 */
class SwitchableWriter {
  failing = false;
  noRoom = false;
  readonly #real: AuditWriter;

  constructor(real: AuditWriter) {
    this.#real = real;
  }
  get file(): string {
    return this.#real.file;
  }
  get freeBytes(): number | null {
    return this.#real.freeBytes;
  }
  get head() {
    return this.#real.head;
  }
  hasRoom(): boolean {
    return !this.noRoom && this.#real.hasRoom();
  }
  write(record: object): ChainFields | null {
    if (this.failing) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return this.#real.write(record);
  }
  close(): void {
    this.#real.close();
  }
}

type Published = { event: keyof AuditEvents; arg: unknown };

describe('the recorder', () => {
  let dir: string;
  let file: string;
  let real: AuditWriter;
  let writer: SwitchableWriter;
  let bus: EventBus<AuditEvents>;
  let published: Published[];

  beforeEach(async () => {
    dir = await tempDir();
    file = join(dir, 'audit.log');
    real = await AuditWriter.open({ file, fsync: false, chain: true, rotate: null, log });
    writer = new SwitchableWriter(real);
    bus = new EventBus<AuditEvents>((err) => {
      throw err;
    });
    published = [];
    for (const event of ['relay', 'reject', 'session', 'alert', 'delivery', 'spool', 'audit-write-error', 'audit-state'] as const) {
      bus.subscribe(event, (arg: unknown) => published.push({ event, arg }));
    }
  });
  afterEach(async () => {
    real.close();
    await removeDir(dir);
  });

  const recorder = (opts: Partial<RecorderOptions> = {}) => new Recorder(writer as unknown as AuditWriter, bus, log, opts);
  const lines = (): Array<Record<string, unknown>> =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const events = () => published.map((p) => p.event);

  describe('writes, then publishes', () => {
    it('has a relay record in the file by the time observers hear of it, with the same chain fields', () => {
      const r = recorder();
      const record = relay();
      let inFileWhenPublished: Record<string, unknown> | undefined;
      bus.subscribe('relay', (published) => {
        inFileWhenPublished = lines().find((l) => l.id === published.id);
      });
      r.relay(record);
      expect(inFileWhenPublished).toMatchObject({ id: record.id, seq: 1 });
      expect(published).toEqual([{ event: 'relay', arg: { ...record, ...pick(inFileWhenPublished!, 'seq', 'prev', 'hash') } }]);
    });

    it('writes and publishes reject, session and alert records the same way', () => {
      const r = recorder();
      const records = [reject(), session(), alert()] as const;
      r.reject(records[0]);
      r.session(records[1]);
      r.alert(records[2]);
      expect(lines().map((l) => [l.type, l.id, l.seq])).toEqual(records.map((x, i) => [x.type, x.id, i + 1]));
      expect(published.map((p) => [p.event, (p.arg as { id: string; seq: number }).id, (p.arg as { seq: number }).seq])).toEqual(
        records.map((x, i) => [x.type, x.id, i + 1]),
      );
    });
  });

  describe("the spool's records", () => {
    it('writes and publishes delivery and spool records in the chain, each saying it was written', () => {
      const r = recorder();
      const d = delivery('01M8C00000000000000000000Q');
      const e = spoolEvent('01M8C00000000000000000000Q');
      expect(r.delivery(d)).toBe(true);
      expect(r.spool(e)).toBe(true);
      expect(lines().map((l) => [l.type, l.id, l.seq])).toEqual([
        ['delivery', d.id, 1],
        ['spool', e.id, 2],
      ]);
      expect(events()).toEqual(['delivery', 'spool']);
    });

    it('throws when one cannot be written with onWriteFailure refuse, so the spool does not move the message on', () => {
      const r = recorder({ onWriteFailure: 'refuse' });
      writer.failing = true;
      expect(() => r.spool(spoolEvent('01M8C00000000000000000000Q'))).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
      expect(() => r.delivery(delivery('01M8C00000000000000000000Q'))).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
      expect(events()).toEqual(['audit-write-error', 'audit-state', 'audit-write-error']);
    });

    it('says false with onWriteFailure continue, and still publishes', () => {
      const r = recorder({ onWriteFailure: 'continue' });
      writer.failing = true;
      expect(r.spool(spoolEvent('01M8C00000000000000000000Q'))).toBe(false);
      expect(events()).toEqual(['audit-write-error', 'audit-state', 'spool']);
    });

    it('masks the recipients and reply texts of a delivery record and the reason of a spool record', () => {
      const r = recorder({ privacy: new RecordPrivacy('domain-only', null) });
      const refused = { code: 550, enhanced: '5.1.1', text: '<gone@example.org>: User unknown' };
      r.delivery(delivery('01M8C00000000000000000000Q', { rcpt: [{ to: 'gone@example.org', status: 'rejected', reply: refused }], outcome: 'rejected' }));
      r.spool(spoolEvent('01M8C00000000000000000000Q', { event: 'bounced', reason: '550 5.1.1 <gone@example.org>: User unknown' }));
      const text = readFileSync(file, 'utf8') + JSON.stringify(published.map((p) => p.arg));
      expect(text).not.toContain('gone@');
      expect(lines()[0]).toMatchObject({ rcpt: [{ to: '@example.org', reply: { text: '<@example.org>: User unknown' } }] });
    });
  });

  describe('a relay record that cannot be written', () => {
    it('throws with onWriteFailure refuse, publishes audit-write-error and audit-state, and not the record', () => {
      const r = recorder({ onWriteFailure: 'refuse' });
      writer.failing = true;
      const record = relay();
      expect(() => r.relay(record)).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
      expect(r.writeErrors).toBe(1);
      expect(published).toEqual([
        { event: 'audit-write-error', arg: { id: record.id } },
        { event: 'audit-state', arg: { writable: false, reason: 'write-failed', refusing: true } },
      ]);
    });

    it('is kept in the operational log, so the operator can still find it', () => {
      const logged: Array<Record<string, unknown>> = [];
      const r = new Recorder(
        writer as unknown as AuditWriter,
        bus,
        createLogger('error', { write: (s: string) => void logged.push(JSON.parse(s) as Record<string, unknown>) }),
      );
      writer.failing = true;
      const record = relay();
      expect(() => r.relay(record)).toThrow();
      expect(logged.find((l) => l.msg === 'relay record not written to the audit trail; it follows here')).toMatchObject({
        record: { id: record.id, type: 'relay' },
      });
    });

    it('does not throw with onWriteFailure continue, and observers still hear of the record, without chain fields', () => {
      const r = recorder({ onWriteFailure: 'continue' });
      writer.failing = true;
      const record = relay();
      r.relay(record);
      expect(r.writeErrors).toBe(1);
      expect(events()).toEqual(['audit-write-error', 'audit-state', 'relay']);
      expect(published[2]!.arg).toEqual(record);
    });
  });

  describe('reject, session and alert records are best effort', () => {
    it('never throws when one cannot be written, counts it, and still publishes it', () => {
      const r = recorder({ onWriteFailure: 'refuse' });
      writer.failing = true;
      const records = [reject(), session(), alert()] as const;
      r.reject(records[0]);
      r.session(records[1]);
      r.alert(records[2]);
      expect(r.writeErrors).toBe(3);
      const heard = published.filter((p) => p.event !== 'audit-state');
      expect(heard.map((p) => p.event)).toEqual(['audit-write-error', 'reject', 'audit-write-error', 'session', 'audit-write-error', 'alert']);
      expect(heard.filter((p) => p.event !== 'audit-write-error').map((p) => p.arg)).toEqual(records);
    });
  });

  describe('says whether a transaction must be refused before relaying', () => {
    it('says nothing while the trail takes records', () => {
      const r = recorder();
      r.relay(relay());
      expect(r.refusal()).toBeNull();
      expect(events()).toEqual(['relay']);
    });

    it('says write-failed after a relay record could not be written, until a record is written again', () => {
      const r = recorder();
      writer.failing = true;
      expect(() => r.relay(relay())).toThrow();
      expect(r.refusal()).toBe('write-failed');
      expect(r.refusal()).toBe('write-failed');
      writer.failing = false;
      r.relay(relay());
      expect(r.refusal()).toBeNull();
      // Observers heard each change once.
      expect(published.filter((p) => p.event === 'audit-state').map((p) => p.arg)).toEqual([
        { writable: false, reason: 'write-failed', refusing: true },
        { writable: true, reason: null, refusing: false },
      ]);
    });

    it.each([
      { kind: 'a reject', write: (r: Recorder) => r.reject(reject()) },
      { kind: 'a session', write: (r: Recorder) => r.session(session()) },
      { kind: 'an alert', write: (r: Recorder) => r.alert(alert()) },
    ])('says write-failed after $kind record could not be written too: it is the same trail', ({ write }) => {
      const r = recorder();
      writer.failing = true;
      write(r);
      expect(r.refusal()).toBe('write-failed');
      expect(published.filter((p) => p.event === 'audit-state').map((p) => p.arg)).toEqual([{ writable: false, reason: 'write-failed', refusing: true }]);
      writer.failing = false;
      r.relay(relay());
      expect(r.refusal()).toBeNull();
    });

    it('says low-space while the trail’s filesystem is below the reserve, and tells observers of each change once', () => {
      const r = recorder();
      writer.noRoom = true;
      expect(r.refusal()).toBe('low-space');
      expect(r.refusal()).toBe('low-space');
      writer.noRoom = false;
      expect(r.refusal()).toBeNull();
      expect(published.map((p) => p.arg)).toEqual([
        { writable: false, reason: 'low-space', refusing: true },
        { writable: true, reason: null, refusing: false },
      ]);
    });

    it('sees a real filesystem below audit.minFreeSpace', async () => {
      const low = await AuditWriter.open({ file: join(dir, 'low.log'), fsync: false, chain: true, rotate: null, log, minFreeSpace: Number.MAX_SAFE_INTEGER });
      try {
        const r = new Recorder(low, bus, log);
        expect(r.refusal()).toBe('low-space');
      } finally {
        low.close();
      }
    });

    it('never refuses with onWriteFailure continue', () => {
      const r = recorder({ onWriteFailure: 'continue' });
      writer.failing = true;
      writer.noRoom = true;
      r.relay(relay());
      expect(r.refusal()).toBeNull();
    });

    it('tells observers the trail failed but messages are not refused, with onWriteFailure continue', () => {
      const r = recorder({ onWriteFailure: 'continue' });
      writer.failing = true;
      r.relay(relay());
      expect(published.filter((p) => p.event === 'audit-state').map((p) => p.arg)).toEqual([{ writable: false, reason: 'write-failed', refusing: false }]);
    });
  });

  describe('applies audit.privacy before writing and publishing', () => {
    const privacy = new RecordPrivacy('pseudonymize', 'test-hmac-key-0123456789');

    it('masks the addresses of a relay record alike in the file and on the bus', () => {
      const r = recorder({ privacy });
      r.relay(relay({ from: 'invoices@example.com', rcpt: [{ to: 'Ana@Example.org', status: 'accepted', reply: null }] }));
      const [line] = lines();
      const heard = published[0]!.arg as Record<string, unknown>;
      expect(line).toMatchObject({
        from: expect.stringMatching(/^[0-9a-f]{16}@example\.com$/),
        rcpt: [{ to: expect.stringMatching(/^[0-9a-f]{16}@example\.org$/) }],
      });
      expect(JSON.stringify(line)).not.toMatch(/invoices@|ana@/i);
      expect(heard).toEqual(line);
    });

    it('masks the addresses of a reject record and the text of an alert record', () => {
      const r = recorder({ privacy });
      r.reject(reject({ from: 'app@example.com', to: 'bo@example.org' }));
      r.alert(alert({ message: 'rejected: 550 5.1.1 <bo@example.org>: User unknown' }));
      const text = readFileSync(file, 'utf8') + JSON.stringify(published.map((p) => p.arg));
      expect(text).not.toMatch(/app@|bo@/);
      expect(lines()[0]).toMatchObject({ to: expect.stringMatching(/^[0-9a-f]{16}@example\.org$/) });
    });

    it('masks what it keeps in the operational log of a relay record it could not write', () => {
      const logged: string[] = [];
      const r = new Recorder(writer as unknown as AuditWriter, bus, createLogger('error', { write: (s: string) => void logged.push(s) }), { privacy });
      writer.failing = true;
      expect(() => r.relay(relay({ from: 'invoices@example.com' }))).toThrow();
      expect(logged.join('')).toContain('@example.com');
      expect(logged.join('')).not.toContain('invoices@');
    });
  });

  describe('checkpoints', () => {
    const checkpointer = (every: number) =>
      new Checkpointer(real, new IdGenerator(), log, { every, interval: 60_000, signer: null, copyFile: null, instance: 'test' });

    it('writes a checkpoint after every `every` records, naming the record before it', () => {
      const r = recorder({ checkpoints: checkpointer(2) });
      r.relay(relay());
      r.session(session());
      r.relay(relay());
      expect(lines().map((l) => [l.type, l.seq])).toEqual([
        ['relay', 1],
        ['session', 2],
        ['checkpoint', 3],
        ['relay', 4],
      ]);
      expect(lines()[2]).toMatchObject({ head: { seq: 2, hash: lines()[1]!.hash }, count: 2 });
    });

    it('does not count a record that could not be written', () => {
      const r = recorder({ checkpoints: checkpointer(2) });
      r.relay(relay());
      writer.failing = true;
      r.session(session());
      writer.failing = false;
      expect(lines().map((l) => l.type)).toEqual(['relay']);
      r.session(session());
      expect(lines().map((l) => l.type)).toEqual(['relay', 'session', 'checkpoint']);
    });

    it('writes a final checkpoint on close and closes the trail', () => {
      const r = recorder({ checkpoints: checkpointer(1_000) });
      r.relay(relay());
      r.close();
      expect(lines().map((l) => l.type)).toEqual(['relay', 'checkpoint']);
      expect(() => real.write(relay())).toThrow(expect.objectContaining({ code: 'EAUDITCLOSED' }));
    });
  });
});

function pick(o: Record<string, unknown>, ...keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, o[k]]));
}
