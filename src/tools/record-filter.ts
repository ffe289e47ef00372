/**
 * The record filters of `tail` (and `--json` output): by outcome, failure class, sender, recipient,
 * upstream, or "failures only". A filter on a field leaves out the records that do not have that field
 * (`--from` shows no session records). Values may be comma-separated lists: `--outcome deferred,unknown`.
 */
import type { AuditRecord } from '../audit/records.js';

export interface RecordFilter {
  /** Failed relay and delivery records (any outcome but delivered, and queued: not failed yet) and reject records. */
  readonly failures: boolean;
  /** Relay outcomes; `refused` selects reject records. */
  readonly outcomes: ReadonlySet<string> | null;
  readonly classes: ReadonlySet<string> | null;
  /** Address needles (lower case), any of which may occur in MAIL FROM. */
  readonly from: readonly string[] | null;
  /** Address needles (lower case), any of which may occur in a recipient. */
  readonly to: readonly string[] | null;
  readonly upstreams: ReadonlySet<string> | null;
}

export const NO_FILTER: RecordFilter = { failures: false, outcomes: null, classes: null, from: null, to: null, upstreams: null };

export function listValue(value: string | undefined): ReadonlySet<string> | null {
  if (value === undefined) return null;
  return new Set(
    value
      .split(',')
      .map((v) => v.trim())
      .filter(Boolean),
  );
}

export function isEmptyFilter(f: RecordFilter): boolean {
  return !f.failures && !f.outcomes && !f.classes && !f.from && !f.to && !f.upstreams;
}

export function matchesFilter(record: AuditRecord, f: RecordFilter): boolean {
  switch (record.type) {
    case 'relay': {
      if (f.failures && (record.outcome === 'delivered' || record.outcome === 'queued')) return false;
      if (f.outcomes && !f.outcomes.has(record.outcome)) return false;
      if (f.classes && !(record.failure && f.classes.has(record.failure.class))) return false;
      if (f.from && !containsAny(record.from, f.from)) return false;
      if (f.to && !(record.rcpt ?? []).some((r) => containsAny(r.to, f.to!))) return false;
      if (f.upstreams && !usedUpstream(record, f.upstreams)) return false;
      return true;
    }
    case 'delivery': {
      // A delivery from the spool: filtered like a relay record, but it names no sender.
      if (f.failures && record.outcome === 'delivered') return false;
      if (f.outcomes && !f.outcomes.has(record.outcome)) return false;
      if (f.classes && !(record.failure && f.classes.has(record.failure.class))) return false;
      if (f.from) return false;
      if (f.to && !(record.rcpt ?? []).some((r) => containsAny(r.to, f.to!))) return false;
      if (f.upstreams && !usedUpstream(record, f.upstreams)) return false;
      return true;
    }
    case 'reject': {
      if (f.outcomes && !f.outcomes.has('refused')) return false;
      if (f.classes && !f.classes.has(record.class)) return false;
      if (f.from && !containsAny(record.from, f.from)) return false;
      if (f.to && !containsAny(record.to, f.to)) return false;
      if (f.upstreams) return false;
      return true;
    }
    case 'alert': {
      if (f.failures || f.outcomes || f.from || f.to) return false;
      if (f.classes && !(record.class && f.classes.has(record.class))) return false;
      if (f.upstreams && !(record.upstream && f.upstreams.has(record.upstream))) return false;
      return true;
    }
    default:
      // session, checkpoint and types this version does not know: only when nothing is filtered.
      return isEmptyFilter(f);
  }
}

function containsAny(address: string | null | undefined, needles: readonly string[]): boolean {
  if (address === null || address === undefined) return false;
  const a = address.toLowerCase();
  return needles.some((n) => a.includes(n));
}

function usedUpstream(r: Extract<AuditRecord, { type: 'relay' | 'delivery' }>, names: ReadonlySet<string>): boolean {
  if (r.upstream && names.has(r.upstream.name)) return true;
  return (r.attempts ?? []).some((a) => names.has(a.upstream));
}
