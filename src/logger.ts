import pino, { type Logger } from 'pino';
import { REDACTED, secretLogPaths } from './config/secrets.js';

export type { Logger };

/**
 * The operational log (start-up, warnings, errors): JSON lines on stderr, apart from the audit trail.
 * Secrets are redacted by path as a second line of defence; the first is never logging them.
 */
export function createLogger(level: string, destination: pino.DestinationStream | number = 2, instance: string | null = null): Logger {
  return pino(
    {
      level,
      // The instance (instance.id) names the relay in a fleet's merged logs, as in its records.
      base: instance === null ? { service: 'mailtrail' } : { service: 'mailtrail', instance },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...secretLogPaths(), 'auth.pass', '*.auth.pass', 'config.upstreams[*].auth.pass'], censor: REDACTED },
    },
    typeof destination === 'number' ? pino.destination({ dest: destination, sync: true }) : destination,
  );
}
