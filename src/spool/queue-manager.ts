/**
 * Delivery from the spool (docs/spool.md, "Delivery", "Retry policy", "Parking"): due entries go
 * through the same RelayEngine as pass-through (routes, failover, breakers, rate limits), at most
 * `spool.concurrency` at once; each attempt is recorded (`delivery`), and the retry policy
 * (retry-policy.ts) says what comes next: another attempt later, the upstream parked, the message
 * held, or its end (`spool` record, a DSN to the sender when it was not delivered, then the files go).
 *
 * Every change of one entry (a delivery, an operator's action, the expiry sweep) runs under that
 * entry's lock here, one after the other: an operator's `hold` during an attempt waits for the
 * attempt to return and then holds what is left, never races it.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { AuditEvents } from '../audit/audit-events.js';
import type { Recorder } from '../audit/recorder.js';
import type { Built, DeliveryRecord, NextStep, SpoolActor, SpoolEvent, UpstreamFactsRecord } from '../audit/records.js';
import type { DeliveryOutcome, UpstreamFailureClass } from '../classify/failure-class.js';
import type { UpstreamConfig } from '../config/types.js';
import { ERR } from '../error-codes.js';
import type { EventBus } from '../event-bus.js';
import type { IdGenerator } from '../ids.js';
import type { Logger } from '../logger.js';
import type { RelayDecision } from '../routing/relay-decision.js';
import type { RelayEngine } from '../routing/relay-engine.js';
import type { RoutingEvents } from '../routing/routing-events.js';
import { skipKind } from '../routing/skipped-attempt.js';
import type { SmtpReply } from '../smtp/smtp-reply.js';
import { Deadline, type StopSignal } from '../upstream/deadline.js';
import { deliveryRecord, unansweredDeliveryRecord } from './delivery-record.js';
import type { DeliveryEventType, EventRecipient } from './delivery-event.js';
import type { DeliveryEvents } from './delivery-events.js';
import { buildDsn, MAX_RETURNED_HEADER_BYTES, type DsnRecipient } from './dsn.js';
import type { QueueEntryState, QueueEvents } from './queue-events.js';
import { ACCOUNT_WIDE_CLASSES, nextAction, type NextAction, type RetrySettings } from './retry-policy.js';
import type { SpoolEntry, SpoolState } from './spool-entry.js';
import { spoolRecord } from './spool-records.js';
import { SerialByKey } from './serial-by-key.js';
import { SpoolError, type SpoolStore, type SpoolSummary } from './spool-store.js';

/** The bus as the queue manager sees it: what it publishes, and the events it listens to. */
export type QueueBus = EventBus<QueueEvents & Pick<RoutingEvents, 'probe'> & Pick<AuditEvents, 'relay'>>;

export interface QueueManagerSettings extends RetrySettings {
  /** `spool.concurrency`. */
  readonly concurrency: number;
  /** `spool.dsn`. */
  readonly dsn: boolean;
  /** `hostname`: the DSN's Reporting-MTA. */
  readonly hostname: string;
}

export interface QueueManagerDeps {
  readonly store: SpoolStore;
  readonly engine: RelayEngine;
  readonly recorder: Recorder;
  readonly ids: IdGenerator;
  readonly bus: QueueBus;
  /** Per-message webhooks (`spool.events`); null when none are configured. */
  readonly events: DeliveryEvents | null;
  readonly upstreams: readonly UpstreamConfig[];
  readonly settings: QueueManagerSettings;
  readonly log: Logger;
  /** The clock (ms); Date.now by default. */
  readonly now?: () => number;
  /** The jitter's randomness; Math.random by default. */
  readonly random?: () => number;
  /** How often the expiry sweep runs and the queue is looked at without a reason (ms). Default 1 s. */
  readonly tickMs?: number;
}

/** A recipient in the meta, with what the last attempt at it said (fields the meta's schema lets us add). */
interface RecipientFacts {
  readonly [field: string]: unknown;
  readonly to: string;
  readonly state: 'pending' | 'delivered' | 'bounced';
  readonly reply?: SmtpReply | null;
  readonly class?: string | null;
  readonly remoteMta?: string | null;
  readonly at?: string | null;
}

/** An upstream parked for an account-wide failure. */
interface Parked {
  readonly since: number;
  readonly class: string;
  readonly reason: string;
  /** When one message may try it again (since + retry.max). */
  trialAt: number;
  /** The entry on trial now; null while none is. */
  trial: string | null;
}

/** What an operator's action did. `changed: false` says why nothing was done (`why`). */
export interface QueueActionResult {
  readonly id: string;
  readonly changed: boolean;
  readonly state: QueueEntryState;
  readonly why: string | null;
  /** The id of the `spool` record written; null when nothing changed. */
  readonly record: string | null;
  /** The DSN queued for the sender (a bounce); null when none. */
  readonly dsn: string | null;
  /** EAUDITWRITE when nothing was done because the trail could not take the record; else null. */
  readonly code: typeof ERR.AUDIT_WRITE | null;
}

type EndKind = 'delivered' | 'bounced' | 'expired' | 'deleted';

export class QueueManager {
  readonly #d: QueueManagerDeps;
  readonly #now: () => number;
  readonly #random: () => number;
  /** Per-entry lock: every operation on one entry after the one before it. */
  readonly #locks = new SerialByKey();
  readonly #parked = new Map<string, Parked>();
  /** Entries whose route's upstreams were all parked when they fell due: left out until one is not. */
  readonly #waiting = new Map<string, readonly string[]>();
  /** Deliveries running now. */
  readonly #running = new Set<Promise<void>>();
  /** Hybrid mode's attempts in flight whose entries were spooled before they ended (adopt()). */
  readonly #adopted = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  readonly #signal = Deadline.fromAbortSignal(this.#stop.signal);
  #unsubscribe: (() => void)[] = [];
  #timer: NodeJS.Timeout | null = null;
  #pumpScheduled = false;
  #stopped = true;
  /** When the expiry sweep last ran (ms). */
  #sweptAt = 0;

  constructor(deps: QueueManagerDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    this.#random = deps.random ?? Math.random;
  }

  /** Upstreams parked now, with why and when they get their trial. */
  get parked(): ReadonlyMap<string, Readonly<Parked>> {
    return this.#parked;
  }

  /** Deliveries in flight (from the spool, and hybrid attempts it took over). */
  get delivering(): number {
    return this.#running.size + this.#adopted.size;
  }

  /** Stops at shutdown, after the grace stop() gives: what hybrid relays use, so they end with the queue. */
  get stopSignal(): StopSignal {
    return this.#signal;
  }

  /**
   * Hybrid mode's hand-over (docs/spool.md, "Hybrid mode"): entry `id` was spooled `delivering` while
   * its relay was in flight; when `attempt` ends, its result is the entry's first delivery (recorded,
   * then retried, held, or ended like any other). `attempt` resolving null: nothing to take over (the
   * entry was not spooled after all).
   */
  adopt(id: string, attempt: Promise<{ readonly decision: RelayDecision; readonly ms: number } | null>): void {
    const run: Promise<void> = attempt
      .then((a) =>
        a === null
          ? undefined
          : this.#locked(id, async () => {
              const entry = await this.#d.store.get(id);
              if (entry === null || entry.state !== 'delivering') return;
              const owed = entry.rcpt.filter((r) => r.state === 'pending').map((r) => r.to);
              await this.#afterAttempt(entry, owed, a.decision, a.ms, new Set());
            }),
      )
      .catch((err: unknown) => this.#d.log.error({ err, id }, 'could not take over the result of a hybrid attempt'))
      .finally(() => {
        this.#adopted.delete(run);
        this.kick();
      });
    this.#adopted.add(run);
  }

  /**
   * Settles what the process before left (entries whose final dot got no answer: an unknown outcome,
   * held or sent again by `spool.unknownOutcome`), then starts delivering.
   */
  async start(): Promise<void> {
    const { store, bus } = this.#d;
    for (const s of store.unknownOutcomes()) {
      await this.#locked(s.id, () => this.#settleUnanswered(s.id)).catch((err: unknown) =>
        this.#d.log.error({ err, id: s.id }, 'could not settle a spool entry whose final dot got no answer'),
      );
    }
    this.#stopped = false;
    this.#unsubscribe.push(
      bus.subscribe('relay', (r) => {
        if (r.outcome !== 'queued') return;
        const s = store.summary(r.id);
        // A hybrid message spooled with its relay in flight starts `delivering`.
        this.#publish(r.id, null, s?.state ?? 'queued', s ?? null, { reason: r.spool?.reason ?? null });
        this.#emitQueued(r.id);
        this.kick();
      }),
      bus.subscribe('probe', (p) => {
        const parked = this.#parked.get(p.upstream);
        // A probe logs in (AUTH, STARTTLS) but sends no mail: it disproves credentials and TLS, never a quota.
        if (p.ok && parked && parked.class !== 'quota') this.#unpark(p.upstream, 'its health probe passed');
      }),
    );
    this.kick();
  }

  /**
   * Stops taking entries; attempts in flight get `graceMs` to finish, then are stopped (an attempt
   * stopped after its final dot is an unknown outcome, settled like any other).
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopped = true;
    for (const off of this.#unsubscribe.splice(0)) off();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const inFlight = (): Promise<void>[] => [...this.#running, ...this.#adopted];
    if (inFlight().length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(inFlight()), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    this.#stop.abort(Object.assign(new Error('mailtrail is shutting down'), { code: ERR.SHUTDOWN }));
    await Promise.allSettled(inFlight());
    await this.#locks.idle();
    this.#signal.dispose();
  }

  /** Looks at the queue soon (a message was accepted, an upstream unparked, an operator asked). */
  kick(): void {
    if (this.#stopped || this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  // -----------------------------------------------------------------------------------------------
  // Operator actions (docs/spool.md, "Operating the queue"): each under the entry's lock, so it waits
  // for an attempt in flight and acts on what the attempt left. Each writes a `spool` record naming
  // the operator. Rejects with SpoolError ESPOOLENTRY when the spool does not have the entry.

  /** Due now: a queued entry's next attempt, or a held one released and tried at once. */
  retryNow(id: string, by: SpoolActor | null): Promise<QueueActionResult> {
    return this.#act(id, by, async (e) => {
      const next = { ...e, state: 'queued' as const, nextAttemptAt: this.#iso(this.#now()), held: null };
      return { event: 'retry-now', change: next, reason: e.state === 'held' ? `released from hold (${e.held?.reason ?? 'held'}) and due now` : 'due now' };
    });
  }

  /** Kept for the operator: not attempted until released (or expired at spool.maxAge). */
  hold(id: string, by: SpoolActor | null, reason = 'held by an operator'): Promise<QueueActionResult> {
    return this.#act(id, by, async (e) => {
      if (e.state === 'held') return { why: 'already held' };
      const held = { since: this.#iso(this.#now()), reason, by: by?.user ?? by?.channel ?? null };
      return { event: 'held', change: { ...e, state: 'held' as const, nextAttemptAt: null, held }, reason };
    });
  }

  /** A held entry queued again, due now. */
  release(id: string, by: SpoolActor | null): Promise<QueueActionResult> {
    return this.#act(id, by, async (e) => {
      if (e.state !== 'held') return { why: `not held (${e.state})` };
      const was = e.held?.reason ?? 'held';
      return { event: 'released', change: { ...e, state: 'queued' as const, nextAttemptAt: this.#iso(this.#now()), held: null }, reason: `was: ${was}` };
    });
  }

  /** Removed without delivery and without a DSN. */
  delete(id: string, by: SpoolActor | null, reason = 'deleted by an operator'): Promise<QueueActionResult> {
    return this.#act(id, by, async (e) => {
      return { ended: 'deleted', done: await this.#end(e, 'deleted', reason, by, null) };
    });
  }

  /** Given up now, as at its expiry: the recipients still owed are reported to the sender (DSN). */
  bounce(id: string, by: SpoolActor | null, reason = 'bounced by an operator'): Promise<QueueActionResult> {
    return this.#act(id, by, async (e) => {
      return { ended: 'bounced', done: await this.#end(e, 'bounced', reason, by, null) };
    });
  }

  // -----------------------------------------------------------------------------------------------

  #pump(): void {
    if (this.#stopped) return;
    const now = this.#now();
    // A pass over the whole index: once a tick, not on every accepted or delivered message.
    if (now - this.#sweptAt >= (this.#d.tickMs ?? 1_000)) {
      this.#sweptAt = now;
      this.#sweepExpired(now);
    }
    const free = this.#d.settings.concurrency - this.#running.size;
    if (free > 0) {
      for (const s of this.#d.store.due(now, free, (s) => this.#locks.busy(s.id) || this.#stillWaiting(s.id, now))) {
        const run = this.#locked(s.id, () => this.#deliver(s.id))
          .catch((err: unknown) => this.#d.log.error({ err, id: s.id }, 'spool delivery failed unexpectedly'))
          .finally(() => {
            this.#running.delete(run);
            this.kick();
          });
        this.#running.add(run);
      }
    }
    this.#arm(now);
  }

  /** The next look: when the next entry falls due, at most a tick away (the expiry sweep, parked trials). */
  #arm(now: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    const tick = this.#d.tickMs ?? 1_000;
    const next = this.#d.store.nextDueAt();
    const wait = next === null ? tick : Math.max(0, Math.min(tick, next - now));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#pump();
    }, wait);
    this.#timer.unref();
  }

  /** Entries past spool.maxAge, in any state but an attempt in flight (which expires when it returns). */
  #sweepExpired(now: number): void {
    const maxAge = this.#d.settings.maxAge;
    for (const s of this.#d.store.list()) {
      if (s.acceptedAt + maxAge > now || s.state === 'delivering' || this.#locks.busy(s.id)) continue;
      void this.#locked(s.id, async () => {
        const e = await this.#d.store.get(s.id);
        if (e === null || e.state === 'delivering') return;
        await this.#end(e, 'expired', `not delivered within spool.maxAge (${describeAge(maxAge)})`, null, null);
      }).catch((err: unknown) => this.#d.log.error({ err, id: s.id }, 'could not expire a spool entry'));
    }
  }

  /** True while every upstream of the entry's route is parked (no trial open). */
  #stillWaiting(id: string, now: number): boolean {
    const ups = this.#waiting.get(id);
    if (ups === undefined) return false;
    if (ups.every((u) => this.#isParked(u, now))) return true;
    this.#waiting.delete(id);
    return false;
  }

  #isParked(upstream: string, now: number): boolean {
    const p = this.#parked.get(upstream);
    return p !== undefined && (now < p.trialAt || p.trial !== null);
  }

  /** One delivery attempt of a due entry, under its lock. */
  async #deliver(id: string): Promise<void> {
    const { store, engine, settings } = this.#d;
    const queued = await store.get(id);
    if (queued === null || queued.state !== 'queued') return;
    const key = { user: queued.client.user, from: queued.from, ip: queued.client.ip };
    const now = this.#now();
    if (Date.parse(queued.acceptedAt) + settings.maxAge <= now) {
      await this.#end(queued, 'expired', `not delivered within spool.maxAge (${describeAge(settings.maxAge)})`, null, null);
      return;
    }
    const owed = queued.rcpt.filter((r) => r.state === 'pending').map((r) => r.to);
    if (owed.length === 0) {
      // Its last attempt was recorded and the process stopped before the end: end it now.
      await this.#end(queued, endOf(queued), 'every recipient was settled before the last stop', null, null);
      return;
    }
    const route = engine.upstreamsOf(key);
    if (route.every((u) => this.#isParked(u, now))) {
      this.#waiting.set(id, route);
      return;
    }
    const entry = await store.lease(id);
    this.#publish(id, 'queued', 'delivering', entry);
    const started = performance.now();
    const trials = new Set<string>();
    const decision = await engine.relay(
      { from: entry.from, to: owed, use8BitMime: entry.use8BitMime, size: entry.message.size },
      { path: store.bodyPath(id) },
      this.#signal,
      key,
      {
        skip: (u) => this.#skip(u.name, id, trials),
        // The durable mark (docs/spool.md, "Before the final dot"): a crash from here on is an unknown outcome.
        beforeFinalDot: async (u) => {
          await store.markDotPending(id, u.name);
        },
      },
    );
    await this.#afterAttempt(entry, owed, decision, performance.now() - started, trials);
  }

  /** Why a delivery must skip `upstream` (it is parked), or null; the first after its trial time is its trial. */
  #skip(upstream: string, id: string, trials: Set<string>): string | null {
    const p = this.#parked.get(upstream);
    if (p === undefined) return null;
    if (this.#now() >= p.trialAt && p.trial === null) {
      p.trial = id;
      trials.add(upstream);
      return null;
    }
    return `parked since ${new Date(p.since).toISOString()} after ${p.class}: ${p.reason}`;
  }

  async #afterAttempt(entry: SpoolEntry, owed: readonly string[], decision: RelayDecision, ms: number, trials: ReadonlySet<string>): Promise<void> {
    const { store, settings, ids, recorder, log } = this.#d;
    const id = entry.id;
    const deciding = decision.deciding;
    const verdict = deciding.verdict;
    const allParked = decision.attempts.every((a) => skipKind(a) === 'parked');
    this.#settleParking(decision, trials);
    if (allParked) {
      // Parked while it waited for its turn: not an attempt. Queued as it was, left out until one unparks.
      const back = await store.update(id, (e) => ({ ...e, state: 'queued' }));
      this.#waiting.set(id, this.#d.engine.upstreamsOf({ user: entry.client.user, from: entry.from, ip: entry.client.ip }));
      this.#publish(id, 'delivering', 'queued', back);
      return;
    }
    const outcome: DeliveryOutcome = verdict.outcome === 'aborted' ? 'deferred' : verdict.outcome;
    const now = this.#now();
    const n = entry.attempts + 1;
    const record = deliveryRecord({ id: ids.next(), spoolId: id, attempt: n, to: owed, next: { action: 'end', at: null }, totalMs: ms }, decision, outcome);
    const remoteMta = deciding.result.facts.reply !== null ? deciding.result.upstream.host : null;
    const fates = new Map(record.rcpt.map((r) => [r.to, r]));
    const rcpt: RecipientFacts[] = entry.rcpt.map((r) => {
      const fate = fates.get(r.to);
      if (fate === undefined || r.state !== 'pending') return r;
      const state = fate.status === 'accepted' ? 'delivered' : fate.status === 'rejected' ? 'bounced' : 'pending';
      return { to: r.to, state, reply: fate.reply ?? deciding.result.facts.reply, class: record.failure?.class ?? null, remoteMta, at: this.#iso(now) };
    });
    const action = nextAction(
      {
        attempt: n,
        outcome,
        class: record.failure?.class ?? null,
        stillPending: rcpt.filter((r) => r.state === 'pending').length,
        bounced: rcpt.filter((r) => r.state === 'bounced').length,
        acceptedAt: Date.parse(entry.acceptedAt),
        now,
      },
      settings,
      this.#random,
    );
    const withNext: Built<DeliveryRecord> = { ...record, next: nextStep(action) };
    try {
      recorder.delivery(withNext);
    } catch (err) {
      // Never moved on without its record: held (the dot mark kept as evidence), for the operator.
      log.error({ err, id }, 'the delivery record could not be written; the entry is held');
      const held = { since: this.#iso(now), reason: `attempt ${n} ended ${outcome} but its record could not be written`, by: null };
      const e = await store.update(id, (x) => ({ ...x, state: 'held', attempts: n, nextAttemptAt: null, held }));
      this.#publish(id, 'delivering', 'held', e, { reason: held.reason });
      return;
    }
    if (action.action === 'park')
      this.#park(deciding.result.upstream.name, record.failure?.class ?? 'upstream_auth', evidenceOf(deciding.result.facts.reply, record));
    const lastAttempt = {
      at: this.#iso(now),
      upstream: deciding.result.upstream.name,
      outcome,
      class: record.failure?.class ?? null,
      reply: deciding.result.facts.reply ? replyText(deciding.result.facts.reply) : null,
    };
    const held =
      action.action === 'hold'
        ? {
            since: this.#iso(now),
            reason: `${action.reason} (${deciding.result.upstream.name}, attempt ${n}, record ${record.id})`,
            by: null,
          }
        : null;
    const state: SpoolState = action.action === 'hold' ? 'held' : 'queued';
    // An entry about to end is due at once: should the process stop before its end, the next one ends it.
    const at = action.action === 'retry' || action.action === 'park' ? this.#iso(action.at) : action.action === 'end' ? this.#iso(now) : null;
    // Not flushed when it ends now: its removal flushes the folder (spool-store.ts, clearDotPending).
    const updated = await store.clearDotPending(id, (e) => ({ ...e, state, rcpt, attempts: n, nextAttemptAt: at, lastAttempt, held }), action.action !== 'end');
    if (action.action === 'end') {
      await this.#end({ ...updated, state: 'delivering' }, action.end, null, null, withNext);
      return;
    }
    this.#publish(id, 'delivering', state, updated, { class: record.failure?.class ?? null, reason: held?.reason ?? null });
    this.#emit(action.action === 'hold' ? 'held' : 'deferred', updated, withNext, held?.reason ?? null);
  }

  /** Parks, re-parks or unparks upstreams after an attempt, from what each one that was tried said. */
  #settleParking(decision: RelayDecision, trials: ReadonlySet<string>): void {
    for (const a of decision.attempts) {
      const name = a.result.upstream.name;
      if (!trials.has(name)) continue;
      const p = this.#parked.get(name);
      if (p === undefined) continue;
      const cls = a.verdict.failure?.class ?? null;
      if (cls !== null && ACCOUNT_WIDE_CLASSES.has(cls)) {
        // The trial failed the same way: another retry.max parked, no new alert.
        p.trialAt = this.#now() + this.#d.settings.max;
        p.trial = null;
      } else if (skipKind(a) === null) {
        this.#unpark(name, `a trial delivery after spool.retry.max was not refused for ${p.class}`);
      }
    }
    // A trial slot taken by an entry that never reached the upstream (an earlier one delivered) is freed.
    for (const name of trials) {
      const p = this.#parked.get(name);
      if (p && decision.attempts.every((a) => a.result.upstream.name !== name || skipKind(a) !== null)) p.trial = null;
    }
  }

  #park(upstream: string, cls: string, reason: string): void {
    const now = this.#now();
    const existing = this.#parked.get(upstream);
    if (existing !== undefined) {
      existing.trialAt = Math.max(existing.trialAt, now + this.#d.settings.max);
      return;
    }
    const until = now + this.#d.settings.max;
    this.#parked.set(upstream, { since: now, class: cls, reason, trialAt: until, trial: null });
    this.#d.log.warn({ upstream, class: cls, reason, until: new Date(until).toISOString() }, 'spool: upstream parked');
    this.#spoolRecord(
      null,
      'parked',
      `${cls}: ${reason}; deliveries from the spool skip it until its health probe passes or one trial at ${new Date(until).toISOString()}`,
      null,
      null,
      upstream,
    );
    this.#d.bus.publish('spool-parked', { upstream, class: cls, reason, until });
  }

  #unpark(upstream: string, reason: string): void {
    if (!this.#parked.delete(upstream)) return;
    this.#d.log.info({ upstream, reason }, 'spool: upstream unparked');
    this.#spoolRecord(null, 'unparked', reason, null, null, upstream);
    this.#d.bus.publish('spool-unparked', { upstream, reason });
    this.kick();
  }

  /**
   * The end of an entry (docs/spool.md, "The end"): the DSN queued first when one is owed, then the
   * `spool` record, then the files. A record that cannot be written keeps the entry (held).
   */
  async #end(
    entry: SpoolEntry,
    end: EndKind,
    reason: string | null,
    by: SpoolActor | null,
    attempt: Built<DeliveryRecord> | null,
  ): Promise<{ readonly record: string; readonly dsn: string | null } | null> {
    const { store, log } = this.#d;
    const id = entry.id;
    const dsn = end === 'bounced' || end === 'expired' ? await this.#queueDsn(entry, end, reason) : null;
    const written = this.#spoolRecordId(id, end, reason, by, dsn, null);
    if (written === null) {
      const held = { since: this.#iso(this.#now()), reason: `its end (${end}) could not be recorded: kept until it can be`, by: null };
      await store.update(id, (e) => ({ ...e, state: 'held', nextAttemptAt: null, held })).catch(() => undefined);
      this.#publish(id, entry.state, 'held', store.summary(id) ?? null, { reason: held.reason });
      return null;
    }
    if (dsn !== null) await store.markRecorded(dsn).catch((err: unknown) => log.warn({ err, id: dsn }, 'could not mark a DSN recorded'));
    await store.remove(id);
    this.#waiting.delete(id);
    this.#publish(id, entry.state, end, null, {
      reason,
      by,
      attempts: entry.attempts,
      acceptedAt: Date.parse(entry.acceptedAt),
      cls: attempt?.failure?.class ?? null,
    });
    if (end !== 'deleted') this.#emit(end, entry, attempt, reason);
    if (dsn !== null) this.kick();
    return { record: written, dsn };
  }

  /**
   * The delivery status notification to the sender of a message that was not delivered to all
   * (docs/spool.md, "Bounces (DSN)"), queued as a spool entry of its own from the null sender (so it
   * is never bounced itself), through the original's route. Its spool id, or null when none is owed
   * or it could not be queued (logged: the end goes on).
   */
  async #queueDsn(entry: SpoolEntry, end: 'bounced' | 'expired', reason: string | null): Promise<string | null> {
    const { store, settings, ids, log } = this.#d;
    if (!settings.dsn) return null;
    try {
      const headers = await readHeaderBlock(store.bodyPath(entry.id));
      const now = this.#now();
      const recipients: DsnRecipient[] = (entry.rcpt as readonly RecipientFacts[]).map((r) => ({
        address: r.to,
        status: r.state === 'delivered' ? 'delivered' : r.state === 'bounced' ? 'failed' : end === 'expired' ? 'expired' : 'failed',
        reply: r.reply ?? (r.state === 'pending' && end === 'bounced' && reason ? { code: 550, enhanced: '5.0.0', text: reason } : null),
        remoteMta: r.remoteMta ?? null,
        lastAttemptAt: r.at ? new Date(r.at) : null,
        class: (r.class ?? null) as UpstreamFailureClass | null,
      }));
      const dsnId = ids.next(now);
      const result = await buildDsn({
        id: dsnId,
        spoolId: entry.id,
        reportingHost: settings.hostname,
        from: entry.from,
        recipients,
        originalHeaders: headers,
        arrivedAt: new Date(entry.acceptedAt),
        expiresAt: new Date(Date.parse(entry.acceptedAt) + settings.maxAge),
        reportedAt: new Date(now),
      });
      if (result.dsn === null) {
        log.info({ id: entry.id, refused: result.refused }, 'no DSN for a spooled message: ' + result.reason);
        return null;
      }
      const dsn = result.dsn;
      const queued = await store.accept({
        id: dsnId,
        acceptance: { mode: 'spool', reason: `delivery status notification for ${entry.id}` },
        from: '',
        to: [dsn.envelope.to],
        use8BitMime: false,
        message: { size: dsn.raw.length, sha256: sha256(dsn.raw), messageId: dsn.messageId, headerFrom: null },
        client: entry.client,
        body: dsn.raw,
      });
      this.#publish(queued.id, null, 'queued', store.summary(queued.id) ?? null, { reason: `DSN for ${entry.id}` });
      return queued.id;
    } catch (err) {
      log.error({ err, id: entry.id }, 'could not queue the DSN of a spooled message; it ends without one');
      return null;
    }
  }

  /**
   * An entry found at start-up with its dot mark set: the final dot went out and no answer was
   * recorded. Recorded as an unknown outcome (a possible duplicate), then held or queued again.
   */
  async #settleUnanswered(id: string): Promise<void> {
    const { store, settings, ids, recorder } = this.#d;
    const entry = await store.get(id);
    if (entry === null || entry.dotPendingSince === null) return;
    const now = this.#now();
    const n = entry.attempts + 1;
    const owed = entry.rcpt.filter((r) => r.state === 'pending').map((r) => r.to);
    const action = nextAction(
      {
        attempt: n,
        outcome: 'unknown',
        class: 'unknown_outcome',
        stillPending: owed.length,
        bounced: entry.rcpt.filter((r) => r.state === 'bounced').length,
        acceptedAt: Date.parse(entry.acceptedAt),
        now,
      },
      settings,
      this.#random,
    );
    const upstream = this.#upstreamFacts(entry.dotPendingUpstream);
    const record = unansweredDeliveryRecord({ id: ids.next(), spoolId: id, attempt: n, to: owed, next: nextStep(action) }, upstream, entry.dotPendingSince);
    recorder.delivery(record);
    const since = entry.dotPendingSince;
    const held =
      action.action === 'hold'
        ? { since: this.#iso(now), reason: `${action.reason} (${entry.dotPendingUpstream ?? 'upstream'}, dot at ${since}, record ${record.id})`, by: null }
        : null;
    const lastAttempt = { at: since, upstream: entry.dotPendingUpstream, outcome: 'unknown', class: 'unknown_outcome', reply: null };
    const at = action.action === 'retry' || action.action === 'park' ? this.#iso(action.at) : null;
    const updated = await store.clearDotPending(id, (e) => ({ ...e, state: held ? 'held' : 'queued', attempts: n, nextAttemptAt: at, lastAttempt, held }));
    if (action.action === 'end') {
      await this.#end(updated, action.end, null, null, record);
      return;
    }
    this.#publish(id, entry.state, updated.state, updated, {
      class: 'unknown_outcome',
      reason: held?.reason ?? 'unknown outcome: sent again (spool.unknownOutcome: resend)',
    });
    this.#emit(held ? 'held' : 'deferred', updated, record, held?.reason ?? null);
  }

  #upstreamFacts(name: string | null): UpstreamFactsRecord | null {
    const u = this.#d.upstreams.find((x) => x.name === name);
    if (u === undefined) return null;
    return { name: u.name, host: u.host, port: u.port, tls: null, reusedConnection: null, queueId: null };
  }

  /** An operator's action under the entry's lock, with its `spool` record. */
  #act(
    id: string,
    by: SpoolActor | null,
    decide: (
      e: SpoolEntry,
    ) => Promise<
      | { event: SpoolEvent; change: SpoolEntry; reason: string }
      | { why: string }
      | { ended: 'deleted' | 'bounced'; done: { readonly record: string; readonly dsn: string | null } | null }
    >,
  ): Promise<QueueActionResult> {
    return this.#locked(id, async () => {
      const { store } = this.#d;
      const e = await store.get(id);
      if (e === null) throw new SpoolError(ERR.SPOOL_ENTRY, `no entry ${id} in the spool`);
      const d = await decide(e);
      if ('ended' in d) {
        if (d.done === null)
          return { id, changed: false, state: 'held', why: 'the audit trail could not record it', record: null, dsn: null, code: ERR.AUDIT_WRITE };
        return { id, changed: true, state: d.ended, why: null, record: d.done.record, dsn: d.done.dsn, code: null };
      }
      if ('why' in d) return { id, changed: false, state: e.state, why: d.why, record: null, dsn: null, code: null };
      const record = this.#spoolRecordId(id, d.event, d.reason, by, null, null);
      if (record === null)
        return { id, changed: false, state: e.state, why: 'the audit trail could not record it', record: null, dsn: null, code: ERR.AUDIT_WRITE };
      const next = await store.update(id, () => d.change);
      this.#waiting.delete(id);
      this.#publish(id, e.state, next.state, next, { reason: d.reason, by });
      if (d.event === 'held') this.#emit('held', next, null, d.reason);
      this.kick();
      return { id, changed: true, state: next.state, why: null, record, dsn: null, code: null };
    });
  }

  /** Runs `op` after every operation of `id` queued before it. */
  #locked<T>(id: string, op: () => Promise<T>): Promise<T> {
    return this.#locks.run(id, op);
  }

  /** Writes a `spool` record; false (logged) when the trail could not take it. */
  #spoolRecord(spoolId: string | null, event: SpoolEvent, reason: string | null, by: SpoolActor | null, dsn: string | null, upstream: string | null): boolean {
    return this.#spoolRecordId(spoolId, event, reason, by, dsn, upstream) !== null;
  }

  /** Writes a `spool` record; its id, or null (logged) when the trail could not take it. */
  #spoolRecordId(
    spoolId: string | null,
    event: SpoolEvent,
    reason: string | null,
    by: SpoolActor | null,
    dsn: string | null,
    upstream: string | null,
  ): string | null {
    const id = this.#d.ids.next();
    try {
      return this.#d.recorder.spool(spoolRecord({ id, spoolId, event, reason, by, dsn, upstream })) ? id : null;
    } catch (err) {
      this.#d.log.error({ err, spoolId, event }, 'could not write a spool record');
      return null;
    }
  }

  #publish(
    id: string,
    previous: SpoolState | null,
    state: QueueEntryState,
    now: Pick<SpoolEntry, 'attempts' | 'nextAttemptAt' | 'acceptedAt'> | SpoolSummary | null,
    extra: { reason?: string | null; by?: SpoolActor | null; class?: string | null; cls?: string | null; attempts?: number; acceptedAt?: number } = {},
  ): void {
    const nextAt = now === null ? null : typeof now.nextAttemptAt === 'string' ? Date.parse(now.nextAttemptAt) : now.nextAttemptAt;
    const acceptedAt = extra.acceptedAt ?? (now === null ? 0 : typeof now.acceptedAt === 'string' ? Date.parse(now.acceptedAt) : now.acceptedAt);
    this.#d.bus.publish('spool-entry', {
      id,
      previous,
      state,
      attempts: extra.attempts ?? now?.attempts ?? 0,
      nextAttemptAt: state === 'queued' ? nextAt : null,
      acceptedAt,
      class: extra.class ?? extra.cls ?? null,
      reason: extra.reason ?? null,
      by: extra.by ?? null,
    });
  }

  /** A delivery event to the application's webhooks (`spool.events`); never holds the queue up. */
  #emit(type: DeliveryEventType, entry: SpoolEntry, attempt: Built<DeliveryRecord> | null, reason: string | null): void {
    const events = this.#d.events;
    if (events === null) return;
    const recipients: EventRecipient[] = (entry.rcpt as readonly RecipientFacts[]).map((r) => ({
      address: r.to,
      status:
        r.state === 'delivered'
          ? 'delivered'
          : r.state === 'bounced'
            ? 'bounced'
            : type === 'expired'
              ? 'expired'
              : type === 'held'
                ? 'held'
                : type === 'bounced'
                  ? 'bounced'
                  : 'deferred',
      reply: r.reply ?? null,
    }));
    events
      .emit({
        type,
        ...(attempt ? { id: attempt.id } : {}),
        spoolId: entry.id,
        messageId: entry.message.messageId,
        from: entry.from,
        recipients,
        attempt: attempt?.attempt ?? entry.attempts,
        upstream: attempt?.upstream?.name ?? null,
        reply: attempt?.upstreamReply ?? null,
        class: attempt?.failure?.class ?? null,
        nextAttemptAt: type === 'deferred' && entry.nextAttemptAt ? new Date(entry.nextAttemptAt) : null,
        reason,
      })
      .catch((err: unknown) => this.#d.log.error({ err, id: entry.id, type }, 'could not write a delivery event'));
  }

  #emitQueued(id: string): void {
    if (this.#d.events === null) return;
    this.#d.store
      .get(id)
      .then((e) => {
        if (e === null) return;
        const recipients = e.rcpt.map((r) => ({ address: r.to, status: 'queued' as const, reply: null }));
        return this.#d.events!.emit({
          type: 'queued',
          id,
          spoolId: id,
          messageId: e.message.messageId,
          from: e.from,
          recipients,
          attempt: 0,
          upstream: null,
          reply: null,
          class: null,
          nextAttemptAt: null,
          reason: e.reason,
        });
      })
      .catch((err: unknown) => this.#d.log.error({ err, id }, 'could not write a delivery event'));
  }

  #iso(ms: number): string {
    return new Date(ms).toISOString();
  }
}

/** The end of an entry whose recipients are all settled. */
function endOf(e: SpoolEntry): 'delivered' | 'bounced' {
  return e.rcpt.some((r) => r.state === 'bounced') ? 'bounced' : 'delivered';
}

function nextStep(a: NextAction): NextStep {
  if (a.action === 'end' || a.action === 'hold') return { action: a.action, at: null };
  return { action: a.action, at: new Date(a.at).toISOString() };
}

function replyText(r: SmtpReply): string {
  return `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''} ${r.text}`.trim();
}

/** What made the upstream park, for its record and alert: the reply, or the failure's message. */
function evidenceOf(reply: SmtpReply | null, record: Built<DeliveryRecord>): string {
  if (reply) return replyText(reply);
  return record.failure?.detail.message ?? record.failure?.class ?? 'refused';
}

/** "5 days", "2 hours", "90 seconds". */
function describeAge(ms: number): string {
  const units: [number, string][] = [
    [86_400_000, 'day'],
    [3_600_000, 'hour'],
    [60_000, 'minute'],
    [1_000, 'second'],
  ];
  for (const [size, name] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${name}${ms / size === 1 ? '' : 's'}`;
  }
  return `${ms} ms`;
}

/** The header block of a message (up to the blank line), as much of it as a DSN returns. */
async function readHeaderBlock(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(MAX_RETURNED_HEADER_BYTES + 4);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    const head = buf.subarray(0, bytesRead);
    const end = head.indexOf('\r\n\r\n');
    return end === -1 ? head : head.subarray(0, end + 2);
  } finally {
    await handle.close();
  }
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
