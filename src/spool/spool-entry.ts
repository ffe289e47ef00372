/**
 * One queued message as the spool keeps it: the meta file `meta/<id>.json` beside its body
 * `msg/<id>.eml` (docs/spool.md, "On disk"). The body is the message's bytes exactly as received and
 * never changes; the meta is rewritten whole, atomically, at every change of state.
 *
 * The meta is JSON an operator can read. Fields are only ever added: a reader keeps the members it
 * does not know (a newer version's) when it rewrites a meta, so a downgrade loses nothing.
 */
import { z } from 'zod';
import type { SpoolAcceptance } from '../audit/records.js';

/** Version of the meta's layout; a change of meaning would bump it. */
export const SPOOL_ENTRY_VERSION = 1;

/**
 * `queued`: waiting for its next attempt (due at `nextAttemptAt`). `delivering`: an attempt is in
 * flight, held by this process (a process that died left its entries here: see recovery in
 * spool-store.ts). `held`: kept for the operator (by an operator, or an unknown outcome under
 * `spool.unknownOutcome: hold`). The ends (delivered, bounced, expired, deleted) are not states: the
 * entry's files are removed after its end record.
 */
export const SPOOL_STATES = ['queued', 'delivering', 'held'] as const;
export type SpoolState = (typeof SPOOL_STATES)[number];

/** A recipient still to deliver (`pending`), done (`delivered`), or refused for good (`bounced`). */
export const RECIPIENT_STATES = ['pending', 'delivered', 'bounced'] as const;
export type RecipientState = (typeof RECIPIENT_STATES)[number];

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const isoTime = z.iso.datetime();

const entrySchema = z.looseObject({
  v: z.literal(SPOOL_ENTRY_VERSION),
  /** The accepting transaction's id (a ULID): the file names, the 250's "queued as", every later record's `spoolId`. */
  id: z.string().regex(ULID),
  state: z.enum(SPOOL_STATES),
  /** How it was spooled: the mode, and why ("spool mode", "hybrid: no verdict within 10s"...). */
  mode: z.enum(['spool', 'hybrid']),
  reason: z.string(),
  acceptedAt: isoTime,
  /**
   * The acceptance record is known to be in the trail. False from the commit until the transaction
   * wrote its `relay` record: a meta still false at start-up gets a `recovered` record (docs/spool.md).
   */
  recorded: z.boolean(),
  /** MAIL FROM as the client gave it; "" for the null sender. */
  from: z.string(),
  /** The client declared BODY=8BITMIME: the upstream is asked for the same. */
  use8BitMime: z.boolean(),
  rcpt: z.array(z.looseObject({ to: z.string(), state: z.enum(RECIPIENT_STATES) })).min(1),
  /** Facts of the body (msg/<id>.eml), so a listing never reads it. */
  message: z.looseObject({
    size: z.int().min(0),
    sha256: z.string(),
    messageId: z.string().nullable(),
    headerFrom: z.string().nullable(),
  }),
  /** Who sent it, as the route is chosen by (config `routes`: user, sender, network). */
  client: z.looseObject({ ip: z.string(), user: z.string().nullable() }),
  /** Delivery attempts made so far. */
  attempts: z.int().min(0),
  /** When a `queued` entry is due; null when it waits for nothing but an operator. */
  nextAttemptAt: isoTime.nullable(),
  /** The last attempt's result in short, for listings; null before the first. */
  lastAttempt: z
    .looseObject({
      at: isoTime,
      upstream: z.string().nullable(),
      outcome: z.string(),
      class: z.string().nullable(),
      reply: z.string().nullable(),
    })
    .nullable(),
  /**
   * Set (durably) just before an attempt's final dot is written, cleared with the attempt's outcome
   * (docs/spool.md, "Before the final dot"). Still set at start-up: the upstream may have the message.
   */
  dotPendingSince: isoTime.nullable(),
  /** The upstream that final dot went to, with `dotPendingSince`. */
  dotPendingUpstream: z.string().nullable(),
  /** Why the entry is `held`, since when and by whom (null: mailtrail itself). */
  held: z.looseObject({ since: isoTime, reason: z.string(), by: z.string().nullable() }).nullable(),
  updatedAt: isoTime,
});

export type SpoolEntry = Readonly<z.output<typeof entrySchema>>;
export type SpoolRecipient = SpoolEntry['rcpt'][number];

/** What the store needs to make a new entry from an accepted transaction. */
export interface NewSpoolEntry {
  readonly id: string;
  readonly acceptance: SpoolAcceptance;
  readonly from: string;
  readonly to: readonly string[];
  readonly use8BitMime: boolean;
  readonly message: SpoolEntry['message'];
  readonly client: SpoolEntry['client'];
  /** When it was accepted (ms); it is due at once. */
  readonly now: number;
}

/** A fresh `queued` entry, due at once, every recipient pending, its acceptance record not yet written. */
export function newSpoolEntry(input: NewSpoolEntry): SpoolEntry {
  const at = new Date(input.now).toISOString();
  return {
    v: SPOOL_ENTRY_VERSION,
    id: input.id,
    state: 'queued',
    mode: input.acceptance.mode,
    reason: input.acceptance.reason,
    acceptedAt: at,
    recorded: false,
    from: input.from,
    use8BitMime: input.use8BitMime,
    rcpt: input.to.map((to) => ({ to, state: 'pending' as const })),
    message: input.message,
    client: input.client,
    attempts: 0,
    nextAttemptAt: at,
    lastAttempt: null,
    dotPendingSince: null,
    dotPendingUpstream: null,
    held: null,
    updatedAt: at,
  };
}

/** The entry in `text` (a meta file's contents), or why it is not one. */
export function parseSpoolEntry(text: string): { readonly entry: SpoolEntry } | { readonly problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { problem: 'not JSON' };
  }
  const result = entrySchema.safeParse(json);
  if (result.success) return { entry: result.data };
  const issue = result.error.issues[0];
  return { problem: `${issue?.path.join('.') || 'entry'}: ${issue?.message ?? 'invalid'}` };
}

/** An entry as its meta file holds it: one line of JSON (a person can still read it with jq). */
export function serializeSpoolEntry(entry: SpoolEntry): string {
  return JSON.stringify(entry) + '\n';
}

/** Checks an entry a caller changed before it is written: a store never writes a meta it could not read back. */
export function checkSpoolEntry(entry: SpoolEntry): void {
  const result = entrySchema.safeParse(entry);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new Error(`spool entry ${entry.id}: ${issue?.path.join('.') || 'entry'}: ${issue?.message ?? 'invalid'}`);
  }
}
