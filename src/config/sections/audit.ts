/**
 * `audit`: the audit trail, its hash chain, checkpoints, rotation, privacy and what happens when a
 * record cannot be written (docs/config.md, "Keys": `audit.*`; the records are in docs/audit-record.md).
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { ALWAYS, count, duration, flag, isRecord, MiB, path, quantity, size } from '../fields.js';
import type { Loaded } from '../loaded.js';
import { parseSize } from '../units.js';

/** Built-in rotation (audit/rotation.ts); at least one trigger (size or daily). */
const auditRotate = z
  .strictObject({
    size: quantity(parseSize, 'not a size (e.g. 100MB)', 1, Number.MAX_SAFE_INTEGER).nullable().default(null),
    daily: flag(false),
    keep: count(14),
    compress: flag(false),
  })
  .superRefine((value: unknown, ctx) => {
    if (isRecord(value) && value.size == null && value.daily !== true) {
      ctx.addIssue({ code: 'custom', message: 'needs size and/or daily: true (or leave rotate out)' });
    }
  }, ALWAYS);

export const auditSection = z
  .strictObject({
    /** Path of the JSON-lines trail; "-" = stdout. */
    file: path().optional(),
    /** fsync after each record (survives power loss, costs an fsync per message). */
    fsync: flag(false),
    /** Record the Subject header (off by default: privacy). */
    subject: flag(false),
    /** Hash chain: seq / prev / hash on every record, and checkpoint records (audit/chain.ts). */
    chain: flag(true),
    checkpoint: z
      .strictObject({
        /** A checkpoint after this many records... */
        every: count(1000),
        /** ...or this many ms after the last one when records were written since; and at shutdown. */
        interval: duration(60_000),
        /** PEM Ed25519 private key that signs checkpoints; null = unsigned. */
        signingKey: path().nullable().default(null),
        /** A second file that gets a copy of every checkpoint line; null = none. */
        file: path().nullable().default(null),
      })
      .prefault({}),
    /** Built-in rotation; null = none (SIGHUP reopens the file for logrotate). */
    rotate: auditRotate.nullable().default(null),
    /** When a relay record cannot be written: answer 451 (`refuse`) or relay anyway and log (`continue`). */
    onWriteFailure: z.enum(['refuse', 'continue']).default('refuse'),
    /**
     * With `refuse`: below this much free space on the trail's filesystem, messages are refused
     * before relaying (bytes). The reserve still holds the records of those refusals.
     */
    minFreeSpace: size(8 * MiB),
    /** How addresses appear in the trail (audit/privacy.ts). */
    privacy: z.enum(['clear', 'pseudonymize', 'domain-only']).default('clear'),
    /**
     * HMAC key for `pseudonymize`; null otherwise. A secret: never logged. 16 characters at least: the
     * key is all that stands between a pseudonym and a guessed address.
     */
    hmacKey: z.string().min(16, 'must be at least 16 characters (e.g. 32 random bytes in hex)').nullable().default(null),
    /** How long an unknown/deferred transaction is remembered for `duplicateOf` links (ms). */
    duplicateWindow: duration(24 * 3_600_000),
  })
  .superRefine((value: unknown, ctx) => {
    if (isRecord(value) && value.privacy === 'pseudonymize' && (value.hmacKey == null || value.hmacKey === '')) {
      ctx.addIssue({ code: 'custom', message: 'is required when privacy is pseudonymize', path: ['hmacKey'] });
    }
  }, ALWAYS)
  .prefault({});

export type AuditConfig = Loaded<
  typeof auditSection,
  {
    /** Path of the JSON-lines trail, resolved (default `<dataDir>/audit.log`); "-" = stdout. */
    file: string;
  }
>;

/** Paths resolved: relative ones against `baseDir`, the default trail in `dataDir`. */
export function toAudit(a: z.output<typeof auditSection>, baseDir: string, dataDir: string): AuditConfig {
  return {
    ...a,
    file: auditFile(a.file, baseDir, dataDir),
    checkpoint: {
      ...a.checkpoint,
      signingKey: a.checkpoint.signingKey === null ? null : resolve(baseDir, a.checkpoint.signingKey),
      file: a.checkpoint.file === null ? null : resolve(baseDir, a.checkpoint.file),
    },
  };
}

/** "-" means stdout; no file means `audit.log` in the data folder. */
function auditFile(file: string | undefined, baseDir: string, dataDir: string): string {
  if (file === '-') return file;
  return file === undefined ? resolve(dataDir, 'audit.log') : resolve(baseDir, file);
}
