import { describe, it, expect } from 'vitest';
import { extractQueueId, parseReply, parseResponseLine } from '../../src/smtp/reply-text.js';

describe('parseReply', () => {
  it('takes the enhanced code off the front of the text', () => {
    expect(parseReply(550, '5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual mailbox table')).toEqual({
      code: 550,
      enhanced: '5.1.1',
      text: '<x@example.org>: Recipient address rejected: User unknown in virtual mailbox table',
    });
  });

  it('strips the reply code prefix when the raw text still carries it', () => {
    expect(parseReply(452, '452 4.5.3 Error: too many recipients')).toEqual({
      code: 452,
      enhanced: '4.5.3',
      text: 'Error: too many recipients',
    });
  });

  it('leaves the enhanced code null when the reply has none', () => {
    expect(parseReply(454, 'Throttling failure: Maximum sending rate exceeded.')).toEqual({
      code: 454,
      enhanced: null,
      text: 'Throttling failure: Maximum sending rate exceeded.',
    });
  });

  it('joins a multi-line reply with newlines and drops the repeated code and enhanced code of every line', () => {
    const raw =
      "552-5.3.4 Your message exceeded Google's message size limits. Please visit\r\n" +
      '552-5.3.4 https://support.google.com/mail/?p=MaxSizeError to view our size\r\n' +
      '552 5.3.4 guidelines. abc123 - gsmtp\r\n';
    expect(parseReply(552, raw)).toEqual({
      code: 552,
      enhanced: '5.3.4',
      text:
        "Your message exceeded Google's message size limits. Please visit\n" +
        'https://support.google.com/mail/?p=MaxSizeError to view our size\n' +
        'guidelines. abc123 - gsmtp',
    });
  });

  it('does not take an IP address or a version number for an enhanced code', () => {
    expect(parseReply(554, '5.7.1.2 looks like a code but is not').enhanced).toBeNull();
    expect(parseReply(421, '4.3.2.1 closing').enhanced).toBeNull();
    expect(parseReply(550, '1.2.3 is not a valid class').enhanced).toBeNull();
  });

  it('keeps three digits that are not the reply code as part of the text', () => {
    expect(parseReply(451, '500 messages per hour allowed').text).toBe('500 messages per hour allowed');
  });

  it('gives an empty text for a bare code', () => {
    expect(parseReply(250, '250')).toEqual({ code: 250, enhanced: null, text: '' });
  });
});

describe('parseResponseLine', () => {
  it('parses a nodemailer error response with code, enhanced code and text', () => {
    expect(parseResponseLine('550 5.1.1 <x@y>: Recipient address rejected')).toEqual({
      code: 550,
      enhanced: '5.1.1',
      text: '<x@y>: Recipient address rejected',
    });
  });

  it('parses a multi-line 250 reply as nodemailer joins it', () => {
    expect(parseResponseLine('250-first line\n250 2.0.0 second line')).toEqual({
      code: 250,
      enhanced: null,
      text: 'first line\n2.0.0 second line',
    });
  });

  it('parses a non-standard provider code as it is (SendGrid 403)', () => {
    expect(parseResponseLine('403 You are not authorized to send from that email address')).toEqual({
      code: 403,
      enhanced: null,
      text: 'You are not authorized to send from that email address',
    });
  });

  it('returns null for anything that is not a reply', () => {
    expect(parseResponseLine('')).toBeNull();
    expect(parseResponseLine('Connection closed unexpectedly')).toBeNull();
    expect(parseResponseLine('1234 not a code')).toBeNull();
    expect(parseResponseLine('650 out of range')).toBeNull();
  });
});

describe('extractQueueId', () => {
  it('reads the Message-ID local part Amazon SES returns', () => {
    expect(extractQueueId('Ok 0102019a3e4b5c6d-7e8f9a0b-1c2d-3e4f-5a6b-7c8d9e0f1a2b-000000')).toBe(
      '0102019a3e4b5c6d-7e8f9a0b-1c2d-3e4f-5a6b-7c8d9e0f1a2b-000000',
    );
  });

  it('reads the Postfix queue id', () => {
    expect(extractQueueId('Ok: queued as 4XyZ12')).toBe('4XyZ12');
  });

  it('reads the SendGrid id from the whole response line', () => {
    expect(extractQueueId('250 Ok: queued as KKSBgGoYTYeaKDsNU8TEHA')).toBe('KKSBgGoYTYeaKDsNU8TEHA');
  });

  it('reads an id given in angle brackets after "queued as"', () => {
    expect(extractQueueId('Ok: queued as <6f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f>')).toBe('6f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f');
  });

  it('reads the Exim message id', () => {
    expect(extractQueueId('OK id=1tX2bC-0004Yz-5Q')).toBe('1tX2bC-0004Yz-5Q');
  });

  it('reads the transaction id Haraka gives in brackets after "Message Queued"', () => {
    expect(extractQueueId('250 Message Queued (51DE505A-C5B4-4ED3-9FA0-45ED43F49E96.1)')).toBe('51DE505A-C5B4-4ED3-9FA0-45ED43F49E96.1');
  });

  it("finds no id in a Haraka acceptance without a transaction id, nor in Mailgun's", () => {
    expect(extractQueueId('250 Message Queued')).toBeNull();
    expect(extractQueueId('250 Great success')).toBeNull();
  });

  it('reads the Microsoft 365 Message-ID inside the angle brackets', () => {
    const reply = parseReply(
      250,
      '2.0.0 OK <DM6PR11MB4107A1B2C3D4@DM6PR11MB4107.namprd11.prod.outlook.com> [Hostname=DM6PR11MB4107.namprd11.prod.outlook.com]',
    );
    expect(extractQueueId(reply.text)).toBe('DM6PR11MB4107A1B2C3D4@DM6PR11MB4107.namprd11.prod.outlook.com');
  });

  it('reads the Gmail id that follows the timestamp', () => {
    const reply = parseReply(250, '2.0.0 OK  1732530000 a1b2c3-xyz.123 - gsmtp');
    expect(extractQueueId(reply.text)).toBe('a1b2c3-xyz.123');
    expect(extractQueueId('250 2.0.0 OK  1732530000 a1b2c3-xyz.123 - gsmtp')).toBe('a1b2c3-xyz.123');
  });

  it('returns null when the reply names no id in a known format', () => {
    expect(extractQueueId('Great success')).toBeNull(); // Mailgun
    expect(extractQueueId('2.0.0 Ok')).toBeNull();
    expect(extractQueueId('OK')).toBeNull();
    expect(extractQueueId('')).toBeNull();
  });
});
