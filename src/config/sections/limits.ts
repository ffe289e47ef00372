/**
 * `limits`: resource limits, error limits and the connection rate per address (docs/config.md,
 * "Keys": `limits.*`, which says why each default).
 */
import { z } from 'zod';
import { ALWAYS, cidr, count, duration, fromNumericString, isRecord, MiB, size } from '../fields.js';
import type { Loaded } from '../loaded.js';

/**
 * Error limits after Postfix (smtpd_soft_error_limit 10, smtpd_hard_error_limit 20,
 * smtpd_error_sleep_time 1s) and a connection rate after its anvil (smtpd_client_connection_rate_limit);
 * docs/config.md says why each default.
 */
export const limitsSection = z
  .strictObject({
    maxMessageSize: size(35 * MiB),
    maxRecipients: count(100),
    maxConnections: count(500),
    maxConnectionsPerIp: count(50),
    /** DATA is kept in memory up to this many bytes, then spilled to a temp file. */
    memoryBufferSize: size(1 * MiB),
    /** Errors of one connection (refusals, not counting relayed messages) after which every reply waits `errorDelay`. */
    softErrorLimit: count(10),
    /** Errors of one connection after which it gets 421 4.7.0 and is closed. A delivered message forgives them. */
    hardErrorLimit: count(20),
    /** ms each reply waits once a connection reached `softErrorLimit`; 0 = no slow-down. */
    errorDelay: duration(1_000, 0),
    /** Refusals of one connection written as `reject` records; the rest are counted in its `session` record. */
    recordedRefusals: z.preprocess(fromNumericString, z.int().min(0)).default(5),
    /** New connections per minute from one address (token bucket); null = no limit. */
    connectionRatePerIp: z.preprocess(fromNumericString, z.int().min(1).nullable()).default(30),
    // null: the networks of clients.networks, as Postfix exempts $mynetworks.
    connectionRateExempt: z.array(cidr).nullable().default(null),
  })
  .superRefine((value: unknown, ctx) => {
    if (
      isRecord(value) &&
      typeof value.softErrorLimit === 'number' &&
      typeof value.hardErrorLimit === 'number' &&
      value.softErrorLimit > value.hardErrorLimit
    ) {
      ctx.addIssue({ code: 'custom', message: 'must not be above limits.hardErrorLimit', path: ['softErrorLimit'] });
    }
  }, ALWAYS)
  .prefault({});

export type LimitsConfig = Loaded<
  typeof limitsSection,
  {
    /** CIDRs not subject to `connectionRatePerIp`; resolved at load (default: `clients.networks`). */
    connectionRateExempt: readonly string[];
  }
>;

/** `connectionRateExempt` resolved: as configured, else the networks that may relay without AUTH. */
export function toLimits(limits: z.output<typeof limitsSection>, clientNetworks: readonly string[]): LimitsConfig {
  return { ...limits, connectionRateExempt: limits.connectionRateExempt ?? clientNetworks };
}
