import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RecordPrivacy, maskAddress, maskAddressesInText, maskHeaderFrom } from '../../src/audit/privacy.js';
import type { RelayRecord } from '../../src/audit/records.js';

const KEY = 'k3y-for-tests-0123456789';
const pseudonym = (local: string) => createHmac('sha256', KEY).update(local).digest('hex').slice(0, 16);

describe('masking one address', () => {
  it('leaves addresses as they are in clear mode', () => {
    expect(maskAddress('Ana@Example.org', 'clear', null)).toBe('Ana@Example.org');
  });

  it('pseudonymizes the local part with the first 16 hex digits of HMAC-SHA256 and keeps the domain', () => {
    expect(maskAddress('ana@example.org', 'pseudonymize', KEY)).toBe(`${pseudonym('ana')}@example.org`);
  });

  it('gives the same pseudonym whatever the capitalisation, so a lookup finds it', () => {
    expect(maskAddress('Ana@Example.ORG', 'pseudonymize', KEY)).toBe(maskAddress('ana@example.org', 'pseudonymize', KEY));
  });

  it('gives different pseudonyms under different keys', () => {
    expect(maskAddress('ana@example.org', 'pseudonymize', KEY)).not.toBe(maskAddress('ana@example.org', 'pseudonymize', `${KEY}x`));
  });

  it('keeps only the domain in domain-only mode', () => {
    expect(maskAddress('Ana@Example.org', 'domain-only', null)).toBe('@example.org');
  });

  it('keeps the null sender empty', () => {
    expect(maskAddress('', 'pseudonymize', KEY)).toBe('');
    expect(maskAddress('', 'domain-only', null)).toBe('');
  });

  it('refuses to pseudonymize without a key', () => {
    expect(() => maskAddress('ana@example.org', 'pseudonymize', null)).toThrow(/hmacKey/);
  });
});

describe('masking addresses inside texts', () => {
  it.each([
    ['5.1.1 <ana@example.org>: Recipient address rejected: User unknown', `5.1.1 <${pseudonym('ana')}@example.org>: Recipient address rejected: User unknown`],
    [
      "5.1.1 The email account that you tried to reach does not exist: 'bo.li+tag@mail.example.net'",
      `5.1.1 The email account that you tried to reach does not exist: '${pseudonym('bo.li+tag')}@mail.example.net'`,
    ],
    [
      'Requested action not taken: mailbox unavailable (ana@example.org, bo@example.net).',
      `Requested action not taken: mailbox unavailable (${pseudonym('ana')}@example.org, ${pseudonym('bo')}@example.net).`,
    ],
    ['2.0.0 Ok: queued as 4XyZ12AbC', '2.0.0 Ok: queued as 4XyZ12AbC'],
  ])('masks %j', (text, masked) => {
    expect(maskAddressesInText(text, 'pseudonymize', KEY)).toBe(masked);
  });

  it('drops local parts inside texts in domain-only mode', () => {
    expect(maskAddressesInText('550 <ana@example.org> unknown', 'domain-only', null)).toBe('550 <@example.org> unknown');
  });

  it('keeps only the masked address of the header From, not the display name', () => {
    expect(maskHeaderFrom('Ana López <ana@example.org>', 'pseudonymize', KEY)).toBe(`${pseudonym('ana')}@example.org`);
    expect(maskHeaderFrom('Ana López <ana@example.org>', 'domain-only', null)).toBe('@example.org');
    expect(maskHeaderFrom('undisclosed', 'domain-only', null)).toBeNull();
    expect(maskHeaderFrom('Ana <ana@example.org>', 'clear', null)).toBe('Ana <ana@example.org>');
  });
});

describe('masking a relay record', () => {
  const reply = (text: string) => ({ code: 550, enhanced: '5.1.1', text });
  const record: RelayRecord = {
    v: 1,
    type: 'relay',
    time: '2026-11-25T10:00:00.000Z',
    id: '01M89VY4NJS1FRFYGK283MN4GR',
    instance: 'mt-a',
    session: { id: 's1', txn: 1 },
    client: { ip: '127.0.0.1', port: 1, helo: 'app', user: 'billing', tls: null, proxy: null },
    from: 'invoices@example.com',
    rcpt: [
      { to: 'ana@example.org', status: 'rejected', reply: reply('<ana@example.org>: User unknown') },
      { to: 'bo@example.net', status: 'accepted', reply: null },
    ],
    message: { size: 10, sha256: 'x', messageId: '<m1@example.com>', subject: null, headerFrom: 'Billing <invoices@example.com>' },
    route: 'default',
    upstream: null,
    attempts: [
      {
        upstream: 'ses',
        startedAt: '2026-11-25T10:00:00.000Z',
        ms: 5,
        phase: 'done',
        reply: reply('ana@example.org rejected'),
        error: { code: 'EENVELOPE', cause: null, message: 'Recipient ana@example.org rejected' },
        class: 'recipient_rejected',
      },
    ],
    upstreamReply: { ...reply('<ana@example.org>: User unknown'), phase: 'rcpt' },
    clientReply: reply('<ana@example.org>: User unknown (id 01M89VY4NJS1FRFYGK283MN4GR)'),
    outcome: 'partial',
    failure: {
      class: 'recipient_rejected',
      retryable: false,
      actor: 'none',
      scope: 'recipient',
      detail: { rule: null, code: 'EENVELOPE', cause: null, timeoutType: null, message: "Can't send mail - recipient ana@example.org" },
    },
    timing: { totalMs: 1, receiveMs: 1, waitMs: 0, connectMs: 0, envelopeMs: 0, dataMs: 0 },
    duplicateRisk: false,
    duplicateOf: null,
  };

  it('leaves no local part in clear anywhere in the record, and keeps the AUTH user and the field order', () => {
    const masked = new RecordPrivacy('pseudonymize', KEY).relay(record);
    const text = JSON.stringify(masked);
    for (const local of ['invoices@', 'ana@', 'bo@', 'Billing']) expect(text).not.toContain(local);
    expect(masked.client.user).toBe('billing');
    expect(masked.from).toBe(`${pseudonym('invoices')}@example.com`);
    expect(masked.rcpt.map((r) => r.to)).toEqual([`${pseudonym('ana')}@example.org`, `${pseudonym('bo')}@example.net`]);
    // A Message-ID is an identifier, not an address: lookup by Message-ID needs it as it is.
    expect(masked.message.messageId).toBe('<m1@example.com>');
    expect(Object.keys(masked)).toEqual(Object.keys(record));
  });

  it('masks addresses in a recorded Subject too (audit.subject: true)', () => {
    const withSubject = { ...record, message: { ...record.message, subject: 'Invoice for ana.smith@example.org' } } as RelayRecord;
    expect(new RecordPrivacy('pseudonymize', KEY).relay(withSubject).message.subject).toBe(`Invoice for ${pseudonym('ana.smith')}@example.org`);
    expect(new RecordPrivacy('domain-only', null).relay(withSubject).message.subject).toBe('Invoice for @example.org');
  });

  it('returns the very same record in clear mode (no cost on the relay path)', () => {
    expect(new RecordPrivacy('clear', null).relay(record)).toBe(record);
  });

  it('needs a key for pseudonymize', () => {
    expect(() => new RecordPrivacy('pseudonymize', null)).toThrow(/hmacKey/);
  });
});
