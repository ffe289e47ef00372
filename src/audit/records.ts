import type { Actor, ClientRejectClass, DeliveryOutcome, FailureClass, RelayOutcome, Scope } from '../classify/failure-class.js';
import type { AttemptPhase, ReplyPhase } from '../classify/upstream-facts.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';

/** Audit schema version (docs/audit-record.md). Fields are only ever added, never renamed. */
export const AUDIT_SCHEMA_VERSION = 1;

export interface TlsFacts {
  readonly protocol: string | null;
  readonly cipher: string | null;
}

export interface ClientFacts {
  /** The client: the peer of the connection, or the one a trusted proxy's PROXY header named. */
  readonly ip: string;
  readonly port: number;
  readonly helo: string | null;
  readonly user: string | null;
  readonly tls: TlsFacts | null;
  /** The load balancer the connection came through (PROXY protocol, listener/proxy-gate.ts); null when direct. */
  readonly proxy: ProxyFacts | null;
}

export interface ProxyFacts {
  /** The proxy's own address: the peer of the TCP connection mailtrail accepted. */
  readonly ip: string;
  readonly port: number;
  /** `v1` (text) or `v2` (binary) header; null when the proxy sent none or an unreadable one. */
  readonly version: 'v1' | 'v2' | null;
  /**
   * What the header said: `proxy` (a client's connection, its address in `client`), `local` (the
   * proxy's own connection, a health check: v2 LOCAL or v1 UNKNOWN; `client` is the proxy), or null
   * when there was no valid header.
   */
  readonly command: 'proxy' | 'local' | null;
}

export interface RecipientEntry {
  readonly to: string;
  /** The upstream's verdict on the recipient; `queued`: taken into the spool, its fate in later `delivery` records. */
  readonly status: 'accepted' | 'rejected' | 'deferred' | 'unknown' | 'queued';
  readonly reply: SmtpReply | null;
}

export interface MessageFacts {
  readonly size: number;
  readonly sha256: string;
  readonly messageId: string | null;
  readonly subject: string | null;
  readonly headerFrom: string | null;
}

export interface UpstreamFactsRecord {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly tls: (TlsFacts & { readonly authorized: boolean }) | null;
  readonly reusedConnection: boolean | null;
  readonly queueId: string | null;
}

export interface AttemptEntry {
  readonly upstream: string;
  readonly startedAt: string;
  readonly ms: number;
  readonly phase: AttemptPhase;
  readonly reply: SmtpReply | null;
  readonly error: { readonly code: string | null; readonly cause: string | null; readonly message: string | null } | null;
  readonly class: FailureClass | null;
}

export interface FailureEntry {
  readonly class: FailureClass;
  readonly retryable: boolean | null;
  readonly actor: Actor;
  readonly scope: Scope;
  readonly detail: {
    readonly rule: string | null;
    readonly code: string | null;
    readonly cause: string | null;
    readonly timeoutType: string | null;
    readonly message: string | null;
    /** What the operator must do, from the deciding rule, where the class alone would mislead; else absent. */
    readonly hint?: string;
  };
}

/**
 * The hash chain's fields (audit/chain.ts; docs/audit-record.md, "Integrity"), last in every record
 * when `audit.chain` is on (the default), absent when it is off. Added by the writer: the builders
 * never set them.
 */
/**
 * The fields every record type starts with, whatever its type (types added later too).
 * `instance` is set by the Recorder (audit/recorder.ts) and the Checkpointer, never by the builders,
 * which make a `Built<R>`.
 */
export interface RecordHead {
  readonly v: number;
  readonly type: string;
  readonly time: string;
  readonly id: string;
  /** The relay that wrote the record (`instance.id`; with workers, `<id>.w<N>`): one chain per instance. */
  readonly instance: string;
}

/** A record as its builder makes it: everything but what the recorder and the writer add. */
export type Built<R extends RecordHead> = Omit<R, 'instance' | keyof ChainLinks>;

export interface ChainLinks {
  /** Position in the trail: 1, 2, 3... with no gaps, across files and restarts. */
  readonly seq?: number;
  /** `hash` of the previous record; 64 zeros for seq 1. */
  readonly prev?: string;
  /** SHA-256 (hex) of this record's canonical serialisation without `hash`. */
  readonly hash?: string;
}

export interface RelayRecord extends RecordHead, ChainLinks {
  readonly type: 'relay';
  readonly time: string;
  readonly id: string;
  readonly session: { readonly id: string; readonly txn: number };
  readonly client: ClientFacts;
  readonly from: string;
  readonly rcpt: readonly RecipientEntry[];
  readonly message: MessageFacts;
  /** The route that chose the upstreams (`default` when none matched); null when nothing was relayed. */
  readonly route: string | null;
  readonly upstream: UpstreamFactsRecord | null;
  readonly attempts: readonly AttemptEntry[];
  readonly upstreamReply: (SmtpReply & { readonly phase: ReplyPhase | null }) | null;
  readonly clientReply: SmtpReply;
  readonly outcome: RelayOutcome;
  readonly failure: FailureEntry | null;
  readonly timing: {
    readonly totalMs: number;
    readonly receiveMs: number;
    readonly waitMs: number;
    readonly connectMs: number;
    readonly envelopeMs: number;
    readonly dataMs: number;
  };
  readonly duplicateRisk: boolean;
  readonly duplicateOf: string | null;
  /**
   * Only on a record of a message taken into the spool (outcome `queued`): how and why. Absent
   * otherwise, so pass-through records are what they always were.
   */
  readonly spool?: SpoolAcceptance;
}

/** How a message came to be spooled (docs/spool.md). */
export interface SpoolAcceptance {
  /** The mode that spooled it: the listener's, or the user's own. */
  readonly mode: 'spool' | 'hybrid';
  /** Why, in words: "spool mode", "hybrid: no verdict within 10s", "hybrid: upstream_unavailable"... */
  readonly reason: string;
}

/** What happens to a spooled message after a delivery attempt (the queue's retry policy). */
export interface NextStep {
  /** `retry` the message at `at`; `park` the upstream and keep the message queued; `hold` it for the operator; `end` it (delivered or bounced). */
  readonly action: 'retry' | 'park' | 'hold' | 'end';
  /** When the message is due again (`retry`, `park`); null for `hold` and `end`. */
  readonly at: string | null;
}

/**
 * One delivery attempt of a spooled message (docs/spool.md): its own `id`, the message by `spoolId`
 * (the id of the transaction that accepted it). The upstream parts read as in a `relay` record.
 */
export interface DeliveryRecord extends RecordHead, ChainLinks {
  readonly type: 'delivery';
  readonly spoolId: string;
  /** 1 for the first delivery attempt of the message, 2 for the next... */
  readonly attempt: number;
  readonly route: string | null;
  readonly upstream: UpstreamFactsRecord | null;
  readonly attempts: readonly AttemptEntry[];
  readonly upstreamReply: (SmtpReply & { readonly phase: ReplyPhase | null }) | null;
  /** The recipients this attempt was for, and what became of each. */
  readonly rcpt: readonly RecipientEntry[];
  readonly outcome: DeliveryOutcome;
  readonly failure: FailureEntry | null;
  readonly next: NextStep;
  readonly timing: {
    readonly totalMs: number;
    readonly waitMs: number;
    readonly connectMs: number;
    readonly envelopeMs: number;
    readonly dataMs: number;
  };
  readonly duplicateRisk: boolean;
}

/** The events of a `spool` record: a message's end, and every change of it no attempt made. */
export const SPOOL_EVENTS = ['delivered', 'bounced', 'expired', 'deleted', 'held', 'released', 'retry-now', 'recovered', 'parked', 'unparked'] as const;
export type SpoolEvent = (typeof SPOOL_EVENTS)[number];

/** The operator behind a `spool` record. */
export interface SpoolActor {
  readonly channel: 'cli' | 'console' | 'api';
  /** Who, as the channel knows them (a system user, a console login); null when it cannot tell. */
  readonly user: string | null;
  /** Where from (a client address); null for a local channel. */
  readonly address: string | null;
}

/**
 * A spooled message ended (delivered, bounced, expired, deleted) or changed state without an attempt
 * (held, released, retried now, recovered at start-up), or an upstream's queue was parked or unparked.
 */
export interface SpoolRecord extends RecordHead, ChainLinks {
  readonly type: 'spool';
  /** The message; null for an event about an upstream (`parked`, `unparked`). */
  readonly spoolId: string | null;
  readonly event: SpoolEvent;
  /** The upstream a `parked` or `unparked` event is about; null otherwise. */
  readonly upstream: string | null;
  /** Why, in words; null when the event says it all. */
  readonly reason: string | null;
  /** The operator who did it; null for mailtrail itself. */
  readonly by: SpoolActor | null;
  /** The delivery status notification queued for the sender (its spool id); null when none. */
  readonly dsn: { readonly id: string } | null;
}

/** mailtrail refused the client before relaying (docs/failures.md, client-side table). */
export interface RejectRecord extends RecordHead, ChainLinks {
  readonly type: 'reject';
  readonly time: string;
  readonly id: string;
  readonly session: { readonly id: string; readonly txn: number };
  readonly client: ClientFacts;
  /** The SMTP command that was refused (CONNECT, AUTH, MAIL, RCPT, DATA, or the raw verb). */
  readonly command: string;
  readonly from: string | null;
  readonly to: string | null;
  /**
   * The username a failed AUTH gave (class `auth_failed`), null otherwise. Kept apart from
   * `client.user`, which is only ever an authenticated identity.
   */
  readonly authUser: string | null;
  readonly class: ClientRejectClass;
  readonly clientReply: SmtpReply;
  /** Who produced the refusal: mailtrail's policy, or smtp-server's own protocol checks. */
  readonly source: 'policy' | 'protocol';
  /**
   * Refusals this record stands for: 1, except class `connection_rate`, where one record per address
   * and window counts every connection refused in it (admission/connection-rate.ts).
   */
  readonly count: number;
}

export interface SessionRecord extends RecordHead, ChainLinks {
  readonly type: 'session';
  readonly time: string;
  readonly id: string;
  readonly session: { readonly id: string };
  readonly client: ClientFacts;
  readonly transactions: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly bytes: number;
  readonly durationMs: number;
  /** Every refusal of the connection by class, whether it has a `reject` record of its own or not. */
  readonly refusals: Readonly<Partial<Record<ClientRejectClass, number>>>;
  /**
   * Those of them that have no `reject` record, by class: past `limits.recordedRefusals` they are only
   * counted here (so reject records plus these count every refusal exactly once).
   */
  readonly refusalsSummarised: Readonly<Partial<Record<ClientRejectClass, number>>>;
}

/**
 * An alert fired or resolved, so the trail shows what operators were told. Reserved here; the
 * alerting code writes them.
 */
export interface AlertRecord extends RecordHead, ChainLinks {
  readonly type: 'alert';
  readonly time: string;
  readonly id: string;
  readonly state: 'fired' | 'resolved';
  /** Name of the alert rule. */
  readonly rule: string;
  /** The upstream the alert is about, or null when it is not about one. */
  readonly upstream: string | null;
  /** The failure class the alert is about, or null. */
  readonly class: FailureClass | null;
  /** The human-readable text that was sent. */
  readonly message: string;
  /** Names of the sinks (webhook, email, log...) the alert was sent to. */
  readonly sinks: readonly string[];
}

/**
 * The chain head at a point in time, written every `audit.checkpoint.every` records, every
 * `audit.checkpoint.interval` and at shutdown (audit/checkpoint.ts); optionally Ed25519-signed.
 */
export interface CheckpointRecord extends RecordHead, ChainLinks {
  readonly type: 'checkpoint';
  readonly time: string;
  readonly id: string;
  /** The record this checkpoint follows: its seq and hash. */
  readonly head: { readonly seq: number; readonly hash: string };
  /** Records written since the previous checkpoint of this process. */
  readonly count: number;
  /** First 16 hex digits of SHA-256 over the signing key's DER public key; null when unsigned. */
  readonly keyId: string | null;
  /** Base64 Ed25519 signature over the record without `signature` and `hash`; null when unsigned. */
  readonly signature: string | null;
}

export type AuditRecord = RelayRecord | RejectRecord | SessionRecord | AlertRecord | CheckpointRecord | DeliveryRecord | SpoolRecord;

/**
 * The field names of each record type at run time, for the docs test (docs/audit-record.md lists the
 * same). `satisfies` + the exhaustiveness types below make the compiler reject a list that drifts
 * from the TypeScript types.
 */
export const RECORD_FIELDS = {
  relay: [
    'v',
    'type',
    'time',
    'id',
    'instance',
    'session',
    'client',
    'from',
    'rcpt',
    'message',
    'route',
    'upstream',
    'attempts',
    'upstreamReply',
    'clientReply',
    'outcome',
    'failure',
    'timing',
    'duplicateRisk',
    'duplicateOf',
    'spool',
    'seq',
    'prev',
    'hash',
  ],
  reject: [
    'v',
    'type',
    'time',
    'id',
    'instance',
    'session',
    'client',
    'command',
    'from',
    'to',
    'authUser',
    'class',
    'clientReply',
    'source',
    'count',
    'seq',
    'prev',
    'hash',
  ],
  session: [
    'v',
    'type',
    'time',
    'id',
    'instance',
    'session',
    'client',
    'transactions',
    'accepted',
    'rejected',
    'bytes',
    'durationMs',
    'refusals',
    'refusalsSummarised',
    'seq',
    'prev',
    'hash',
  ],
  alert: ['v', 'type', 'time', 'id', 'instance', 'state', 'rule', 'upstream', 'class', 'message', 'sinks', 'seq', 'prev', 'hash'],
  checkpoint: ['v', 'type', 'time', 'id', 'instance', 'head', 'count', 'keyId', 'signature', 'seq', 'prev', 'hash'],
  delivery: [
    'v',
    'type',
    'time',
    'id',
    'instance',
    'spoolId',
    'attempt',
    'route',
    'upstream',
    'attempts',
    'upstreamReply',
    'rcpt',
    'outcome',
    'failure',
    'next',
    'timing',
    'duplicateRisk',
    'seq',
    'prev',
    'hash',
  ],
  spool: ['v', 'type', 'time', 'id', 'instance', 'spoolId', 'event', 'upstream', 'reason', 'by', 'dsn', 'seq', 'prev', 'hash'],
} as const satisfies {
  relay: readonly (keyof RelayRecord)[];
  reject: readonly (keyof RejectRecord)[];
  session: readonly (keyof SessionRecord)[];
  alert: readonly (keyof AlertRecord)[];
  checkpoint: readonly (keyof CheckpointRecord)[];
  delivery: readonly (keyof DeliveryRecord)[];
  spool: readonly (keyof SpoolRecord)[];
};

/** Fields a record of the type may leave out: the chain's (with `audit.chain: false`) and the relay record's `spool`. */
export const OPTIONAL_FIELDS: ReadonlySet<string> = new Set(['seq', 'prev', 'hash', 'spool']);

/**
 * Fields added to schema v1 after records were first written: every record written now has them, but
 * trails written before do not, so the JSON Schema does not require them (readers take them as
 * absent; the trail tools group such records by file, docs/fleet.md).
 */
export const LATER_FIELDS: readonly string[] = ['instance'];

type Missing<T, L extends readonly unknown[]> = Exclude<keyof T, L[number]>;
/** Compile-time check: every field of each type is listed above (an error here names the missing one). */
export const RECORD_FIELDS_COMPLETE: [
  Missing<RelayRecord, typeof RECORD_FIELDS.relay>,
  Missing<RejectRecord, typeof RECORD_FIELDS.reject>,
  Missing<SessionRecord, typeof RECORD_FIELDS.session>,
  Missing<AlertRecord, typeof RECORD_FIELDS.alert>,
  Missing<CheckpointRecord, typeof RECORD_FIELDS.checkpoint>,
  Missing<DeliveryRecord, typeof RECORD_FIELDS.delivery>,
  Missing<SpoolRecord, typeof RECORD_FIELDS.spool>,
] extends [never, never, never, never, never, never, never]
  ? true
  : never = true;
