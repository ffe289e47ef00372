import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * A throw-away self-signed X.509 v3 certificate (EC P-256, ECDSA with SHA-256), built from node:crypto
 * alone: a few DER structures (ITU-T X.690) around the key pair, as RFC 5280 §4.1 lays them out.
 * The certificate library this replaces pulled in a dependency-injection container, an ASN.1 schema
 * compiler and about 15 MiB of resident memory for this one start-up task.
 */
export function selfSignedCertificate(commonName: string, altNames: readonly string[], days: number): { key: string; cert: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))), // version: v3
    integer(serialNumber()),
    ECDSA_WITH_SHA256,
    name(commonName), // issuer = subject: self-signed
    seq(time(new Date(now - 60_000)), time(new Date(now + days * 86_400_000))),
    name(commonName),
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(basicConstraintsNotCa(), subjectAltName(altNames))),
  );
  // crypto.sign gives ECDSA signatures DER-encoded (dsaEncoding 'der'), as X.509 wants them.
  const signature = sign('sha256', tbs, privateKey);
  const cert = seq(tbs, ECDSA_WITH_SHA256, bitString(signature));
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    cert: pem('CERTIFICATE', cert),
  };
}

// --- DER (X.690): tag, length, contents ---------------------------------------------------------

function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

const seq = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items);
const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
const octetString = (b: Buffer): Buffer => tlv(0x04, b);
const bitString = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));

/** A non-negative INTEGER: a leading zero byte keeps a high first bit from reading as negative. */
function integer(value: Buffer): Buffer {
  return tlv(0x02, value[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), value]) : value);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const bytes = [a! * 40 + b!];
  for (const part of rest) {
    const base128: number[] = [];
    for (let v = part; ; v = Math.floor(v / 128)) {
      base128.unshift((v & 0x7f) | (base128.length ? 0x80 : 0));
      if (v < 128) break;
    }
    bytes.push(...base128);
  }
  return tlv(0x06, Buffer.from(bytes));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}

// --- X.509 pieces (RFC 5280) ----------------------------------------------------------------------

const ECDSA_WITH_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

function name(commonName: string): Buffer {
  return seq(set(seq(oid('2.5.4.3'), utf8(commonName))));
}

function basicConstraintsNotCa(): Buffer {
  return seq(oid('2.5.29.19'), octetString(seq()));
}

/** DNS names and IP addresses (RFC 5280 §4.2.1.6: dNSName [2], iPAddress [7]). */
function subjectAltName(names: readonly string[]): Buffer {
  const general = names.map((n) => (isIP(n) === 4 ? tlv(0x87, Buffer.from(n.split('.').map(Number))) : tlv(0x82, Buffer.from(n, 'ascii'))));
  return seq(oid('2.5.29.17'), octetString(seq(...general)));
}

/**
 * 16 random bytes, positive and unique enough (RFC 5280 §4.1.2.2: at most 20 octets). The first byte
 * is 0x40–0x7f: its first bit clear (not negative) and never zero, since DER allows no leading zero
 * byte the next byte does not need (X.690 §8.3.2), and OpenSSL refuses such a certificate.
 */
function serialNumber(): Buffer {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x3f) | 0x40;
  return b;
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
