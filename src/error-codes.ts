/**
 * mailtrail's own error codes, one constant each, used wherever such an error is made or matched:
 * match on these, never on message text. docs/failures.md ("Error codes") says what each means and
 * what to do, and a test keeps the two lists the same. The codes nodemailer and the system give
 * (ESOCKET, ETIMEDOUT, ECONNREFUSED...) are theirs; the classifier's rules match those.
 */
export const ERR = {
  /** A record was offered to the audit trail after it was closed (shutdown). */
  AUDIT_CLOSED: 'EAUDITCLOSED',
  /** The audit trail cannot take records (a write failed, or the disk is below audit.minFreeSpace): refused before relaying. */
  AUDIT_WRITE: 'EAUDITWRITE',
  /** An upstream skipped because its circuit breaker is open (no connection made). */
  BREAKER_OPEN: 'EBREAKEROPEN',
  /** A record was committed to the hash chain out of order (a bug, never data). */
  CHAIN_ORDER: 'ECHAINORDER',
  /** The checkpoint signing or public key could not be read or used. */
  CHECKPOINT_KEY: 'ECHECKPOINTKEY',
  /** The client went away before the final dot. */
  CLIENT_ABORT: 'ECLIENTABORT',
  /** Message data arrived under timeouts.dataMinRate: the client was cut off. */
  CLIENT_SLOW: 'ECLIENTSLOW',
  /** The configuration has problems (each with its key path). */
  CONFIG: 'ECONFIG',
  /** Another mailtrail process uses this dataDir. */
  DATA_DIR_IN_USE: 'EDATADIRINUSE',
  /** A relay deadline (timeouts.relay, an upstream's timeouts.total) ended the attempt. */
  DEADLINE: 'EDEADLINE',
  /** A tool was asked to read standard input, and none was given. */
  NO_STDIN: 'ENOSTDIN',
  /** Every pooled connection to an upstream stayed busy for pool.maxWait. */
  POOL_WAIT: 'EPOOLWAIT',
  /** audit.privacy needs audit.hmacKey, and it is missing or too short. */
  PRIVACY_KEY: 'EPRIVACYKEY',
  /** An upstream skipped because its sending rate left no slot in time. */
  RATE_LIMIT: 'ERATELIMIT',
  /** A trail file shrank while a tool followed it (truncated, or replaced). */
  SHRANK: 'ESHRANK',
  /** mailtrail is shutting down: the work in flight was stopped. */
  SHUTDOWN: 'ESHUTDOWN',
  /** An alert sink refused a notification for good (retrying would not help). */
  SINK_PERMANENT: 'ESINKPERMANENT',
  /** The installed smtp-server no longer has an internal mailtrail relies on. */
  SMTP_SERVER_INTERNALS: 'ESMTPSERVERINTERNALS',
  /** The message could not be written to its spill file. */
  SPILL: 'ESPILL',
  /** No such message in the spool: it ended (delivered, bounced, expired, deleted), or never was. */
  SPOOL_ENTRY: 'ESPOOLENTRY',
  /** The spool's filesystem is below spool.minFreeSpace: a message for the spool was refused with 452 4.3.1. */
  SPOOL_FULL: 'ESPOOLFULL',
  /** Another mailtrail process uses this spool.dir. */
  SPOOL_IN_USE: 'ESPOOLINUSE',
  /** A message could not be written to the spool durably (a write, fsync or rename failed): refused with 451. */
  SPOOL_WRITE: 'ESPOOLWRITE',
  /** A part of the configuration could not be brought up at start-up (a port in use, an unwritable folder). */
  START: 'ESTART',
  /**
   * No OAuth2 access token for an upstream: the identity provider could not be reached, refused the
   * request (its error in the message and the cause), or answered with something unusable.
   */
  TOKEN: 'ETOKEN',
  /** A command was used wrongly (unknown option, unexpected argument). */
  USAGE: 'EUSAGE',
} as const;

export type ErrorCode = (typeof ERR)[keyof typeof ERR];
