import { auditRefusalText, type AuditRefusal } from '../audit/audit-refusal.js';
import type { RelayBus } from './relay-events.js';
import type { ProbeResult } from '../routing/routing-events.js';
import type { SharedStateStatus } from '../state/state-events.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface ReadinessSources {
  /** Every configured upstream, in order. */
  readonly upstreams: readonly string[];
  /** The upstreams whose probe is enabled. */
  readonly probed: readonly string[];
  /** The listeners bound and accepting now; empty while starting or stopping. */
  readonly listeners: () => readonly { host: string; port: number; implicitTls: boolean }[];
  /**
   * Why the spool cannot accept a message now (below spool.minFreeSpace, its folder not writable), or
   * null when it can; absent when nothing spools.
   */
  readonly spool?: () => string | null;
  /** With `state.redis` (Redis): whether the fleet's state is shared now. */
  readonly sharedState?: () => SharedStateStatus;
}

export interface UpstreamReadiness {
  readonly name: string;
  /** null: not probed (probe disabled) or no probe finished yet. */
  readonly probe: {
    readonly enabled: boolean;
    readonly ok: boolean | null;
    readonly class: string | null;
    readonly time: string | null;
    readonly ms: number | null;
    readonly reply: ProbeResult['reply'];
    readonly error: ProbeResult['error'];
  };
  /** Circuit breaker state once the relay reported a change, else null (closed, or no breaker). */
  readonly breaker: BreakerState | null;
  /** Counts towards readiness: its breaker is not open and, when probed, the latest word on it is good. */
  readonly usable: boolean;
}

export interface ReadinessReport {
  readonly ready: boolean;
  /** Why not ready (empty when ready). */
  readonly reasons: readonly string[];
  readonly listeners: readonly { host: string; port: number; implicitTls: boolean }[];
  readonly upstreams: readonly UpstreamReadiness[];
  /** Whether the spool takes new messages, and why not; null when nothing spools. */
  readonly spool: { readonly accepting: boolean; readonly reason: string | null } | null;
  /**
   * With `state.redis`: `shared`, or `degraded` while Redis cannot be reached (each limit at this instance's
   * share). Degraded is still ready: relaying goes on. Null without `state.redis`.
   */
  readonly sharedState: { readonly mode: 'shared' | 'degraded'; readonly since: string; readonly reason: string | null } | null;
}

/** The latest word on a probed upstream's health: its last probe, or its breaker opening or closing since. */
interface Health {
  readonly ok: boolean;
  readonly from: 'probe' | 'breaker';
}

/**
 * Ready = the SMTP listeners are accepting, the audit trail takes records, the spool (when a listener
 * or user spools) can take messages, and at least one upstream is usable (docs/observability.md, "Readiness"): its circuit breaker is not open, and, when it is
 * probed, the latest word on its health is good: its last probe passed, or its breaker closed after a
 * successful trial since. A breaker change counts the moment it happens (`upstream-state`), so an
 * instance whose every upstream is cut off stops being ready before the next probe, and one whose
 * upstream came back through a trial is ready again without waiting for it. Half-open: an unprobed
 * upstream counts (only a message can try it, and an instance its load balancer sends nothing to
 * would never get one); for a probed one, the failures that opened the breaker still stand until a
 * probe or a trial says otherwise.
 */
export class Readiness {
  #sources: ReadinessSources;
  #probes = new Map<string, ProbeResult>();
  #breakers = new Map<string, BreakerState>();
  #health = new Map<string, Health>();
  /** Why the trail takes no records now, or null. */
  #auditRefusal: AuditRefusal | null = null;
  #unsubscribe: (() => void)[];

  constructor(bus: RelayBus, sources: ReadinessSources) {
    this.#sources = sources;
    this.#unsubscribe = [
      bus.subscribe('probe', (p) => {
        this.#probes.set(p.upstream, p);
        this.#health.set(p.upstream, { ok: p.ok, from: 'probe' });
      }),
      bus.subscribe('upstream-state', (s) => {
        this.#breakers.set(s.upstream, s.state);
        // Opening says attempts failed, closing that a trial went through; half-open says nothing new.
        if (s.state !== 'half-open') this.#health.set(s.upstream, { ok: s.state === 'closed', from: 'breaker' });
      }),
      bus.subscribe('audit-state', (s) => (this.#auditRefusal = s.reason)),
    ];
  }

  report(): ReadinessReport {
    const listeners = this.#sources.listeners();
    const probed = new Set(this.#sources.probed);
    const unusable = new Map(this.#sources.upstreams.map((name) => [name, this.#unusable(name, probed.has(name))]));
    const upstreams = this.#sources.upstreams.map((name) => this.#upstream(name, probed.has(name), unusable.get(name) === null));
    const reasons: string[] = [];
    if (listeners.length === 0) reasons.push('SMTP listeners are not accepting');
    // Every message is answered 451 while the trail takes no records: not ready for traffic.
    if (this.#auditRefusal !== null) reasons.push(auditRefusalText(this.#auditRefusal));
    if (!upstreams.some((u) => u.usable)) {
      reasons.push(`no usable upstream (${[...unusable].map(([name, why]) => `${name}: ${why}`).join('; ')})`);
    }
    // A spool that cannot take messages answers every spooled one 451 or 452: not ready for traffic.
    const spoolProblem = this.#sources.spool?.() ?? null;
    if (spoolProblem !== null) reasons.push(spoolProblem);
    const spool = this.#sources.spool === undefined ? null : { accepting: spoolProblem === null, reason: spoolProblem };
    const shared = this.#sources.sharedState?.() ?? null;
    const sharedState = shared === null ? null : { mode: shared.mode, since: new Date(shared.since).toISOString(), reason: shared.reason };
    return { ready: reasons.length === 0, reasons, listeners, upstreams, spool, sharedState };
  }

  /** Why the upstream does not count towards readiness, or null when it does. */
  #unusable(name: string, probed: boolean): string | null {
    if (this.#breakers.get(name) === 'open') return 'circuit breaker open';
    if (!probed) return null;
    const health = this.#health.get(name);
    if (health === undefined) return 'no probe finished yet';
    if (health.ok) return null;
    return health.from === 'probe' ? 'last probe failed' : 'circuit breaker half-open, not yet tried again';
  }

  close(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
  }

  #upstream(name: string, enabled: boolean, usable: boolean): UpstreamReadiness {
    const p = this.#probes.get(name);
    return {
      name,
      probe: {
        enabled,
        ok: p?.ok ?? null,
        class: p?.class ?? null,
        time: p?.time ?? null,
        ms: p?.ms ?? null,
        reply: p?.reply ?? null,
        error: p?.error ?? null,
      },
      breaker: this.#breakers.get(name) ?? null,
      usable,
    };
  }
}
