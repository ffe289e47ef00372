import { createHmac } from 'node:crypto';
import type { AlertRecord, DeliveryRecord, RejectRecord, RelayRecord, SpoolRecord } from './records.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';
import { ERR } from '../error-codes.js';

/**
 * `audit.privacy`: how e-mail addresses appear in the trail (docs/audit-record.md, "Privacy").
 *
 * - `clear` (default): as the client sent them. Operators must be able to answer "did the mail to
 *   ana@ go out?".
 * - `pseudonymize`: the domain in clear (lowercased), the local part replaced by the first 16 hex
 *   digits (64 bits) of HMAC-SHA256 under `audit.hmacKey` over the local part lowercased:
 *   `Ana@Example.org` → `5f0c…e1@example.org`. Stable, so `mailtrail lookup` holding the key finds an
 *   address by masking it the same way; without the key the local part cannot be recovered or
 *   confirmed by guessing. Lowercased first because providers treat local parts case-insensitively
 *   and a lookup should not depend on how an app capitalised an address.
 * - `domain-only`: the local part dropped: `@example.org`.
 *
 * The null sender `""` stays `""`. The pure functions here are also what the read-side tools use.
 */
export type PrivacyMode = 'clear' | 'pseudonymize' | 'domain-only';

/** Hex digits of the HMAC kept in a pseudonym. */
export const PSEUDONYM_HEX_DIGITS = 16;

/**
 * One address as it appears in the trail under `mode`. `key` is the HMAC key (required for
 * `pseudonymize`). An address without `@` (RCPT TO:<postmaster>) is all local part.
 */
export function maskAddress(address: string, mode: PrivacyMode, key: string | null): string {
  if (mode === 'clear' || address === '') return address;
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  const domain = at < 0 ? '' : address.slice(at + 1).toLowerCase();
  if (mode === 'domain-only') return `@${domain}`;
  if (key === null || key === '') {
    throw Object.assign(new Error('audit.privacy pseudonymize needs audit.hmacKey'), { code: ERR.PRIVACY_KEY });
  }
  const pseudonym = createHmac('sha256', key).update(local.toLowerCase(), 'utf8').digest('hex').slice(0, PSEUDONYM_HEX_DIGITS);
  return at < 0 ? pseudonym : `${pseudonym}@${domain}`;
}

/*
 * An address inside free text (reply texts, error messages): a dot-atom local part (RFC 5322 §3.4.1
 * atext, letters and digits of any script for SMTPUTF8; quote characters left out so that
 * 'ana@example.org' does not take the quote into the local part), `@`, and a domain of one or more
 * labels or an address literal.
 */
const LOCAL = String.raw`[\p{L}\p{N}!#$%&*+/=?^_{|}~.-]+`;
const LABEL = String.raw`[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?`;
const ADDRESS_IN_TEXT = new RegExp(String.raw`${LOCAL}@(?:${LABEL}(?:\.${LABEL})*|\[[^\]\s]+\])`, 'gu');

/** `text` with every address in it masked as `maskAddress` does. */
export function maskAddressesInText(text: string, mode: PrivacyMode, key: string | null): string {
  if (mode === 'clear' || !text.includes('@')) return text;
  return text.replace(ADDRESS_IN_TEXT, (address) => maskAddress(address, mode, key));
}

/**
 * The header From under `mode`: only its masked address(es), comma-separated. The display name goes
 * too ("Ana López <ana@…>" would name the person the pseudonym hides); null when no address is found.
 */
export function maskHeaderFrom(value: string | null, mode: PrivacyMode, key: string | null): string | null {
  if (mode === 'clear' || value === null) return value;
  const addresses = value.match(ADDRESS_IN_TEXT);
  return addresses ? addresses.map((a) => maskAddress(a, mode, key)).join(', ') : null;
}

/** Applies `audit.privacy` to records before they are written and published. */
export class RecordPrivacy {
  readonly mode: PrivacyMode;
  #key: string | null;

  constructor(mode: PrivacyMode, key: string | null) {
    if (mode === 'pseudonymize' && !key) {
      throw Object.assign(new Error('audit.privacy pseudonymize needs audit.hmacKey'), { code: ERR.PRIVACY_KEY });
    }
    this.mode = mode;
    this.#key = key;
  }

  relay(r: RelayRecord): RelayRecord {
    if (this.mode === 'clear') return r;
    // Object.assign keeps the field order and is much cheaper than a spread of the whole record.
    return Object.assign({}, r, {
      from: this.#address(r.from),
      rcpt: r.rcpt.map((x) => ({ ...x, to: this.#address(x.to), reply: x.reply && this.#reply(x.reply) })),
      message: { ...r.message, subject: this.#text(r.message.subject), headerFrom: maskHeaderFrom(r.message.headerFrom, this.mode, this.#key) },
      attempts: r.attempts.map((a) => ({
        ...a,
        reply: a.reply && this.#reply(a.reply),
        error: a.error && { ...a.error, message: this.#text(a.error.message) },
      })),
      upstreamReply: r.upstreamReply && { ...r.upstreamReply, text: this.#text(r.upstreamReply.text) ?? '' },
      clientReply: this.#reply(r.clientReply),
      failure: r.failure && { ...r.failure, detail: { ...r.failure.detail, message: this.#text(r.failure.detail.message) } },
    });
  }

  /** A delivery from the spool: its recipients and every reply and error text, as in a relay record. */
  delivery(r: DeliveryRecord): DeliveryRecord {
    if (this.mode === 'clear') return r;
    return Object.assign({}, r, {
      rcpt: r.rcpt.map((x) => ({ ...x, to: this.#address(x.to), reply: x.reply && this.#reply(x.reply) })),
      attempts: r.attempts.map((a) => ({
        ...a,
        reply: a.reply && this.#reply(a.reply),
        error: a.error && { ...a.error, message: this.#text(a.error.message) },
      })),
      upstreamReply: r.upstreamReply && { ...r.upstreamReply, text: this.#text(r.upstreamReply.text) ?? '' },
      failure: r.failure && { ...r.failure, detail: { ...r.failure.detail, message: this.#text(r.failure.detail.message) } },
    });
  }

  /** A spool record's reason may quote a reply, addresses included. */
  spool(r: SpoolRecord): SpoolRecord {
    if (this.mode === 'clear') return r;
    return { ...r, reason: this.#text(r.reason) };
  }

  reject(r: RejectRecord): RejectRecord {
    if (this.mode === 'clear') return r;
    return {
      ...r,
      from: r.from === null ? null : this.#address(r.from),
      to: r.to === null ? null : this.#address(r.to),
      clientReply: this.#reply(r.clientReply),
    };
  }

  /** An alert's text may quote an upstream reply, addresses included. */
  alert(r: AlertRecord): AlertRecord {
    if (this.mode === 'clear') return r;
    return { ...r, message: maskAddressesInText(r.message, this.mode, this.#key) };
  }

  #address(a: string): string {
    return maskAddress(a, this.mode, this.#key);
  }

  #text(t: string | null): string | null {
    return t === null ? null : maskAddressesInText(t, this.mode, this.#key);
  }

  #reply<R extends SmtpReply>(reply: R): R {
    return { ...reply, text: maskAddressesInText(reply.text, this.mode, this.#key) };
  }
}
