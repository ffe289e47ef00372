import { auditRefusalText, type AuditRefusal } from '../audit/audit-refusal.js';
import type { RelayBus } from './relay-events.js';
import type { ProbeResult } from '../routing/routing-events.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface ReadinessSources {
  /** Every configured upstream, in order. */
  readonly upstreams: readonly string[];
  /** The upstreams whose probe is enabled. */
  readonly probed: readonly string[];
  /** The listeners bound and accepting now; empty while starting or stopping. */
  readonly listeners: () => readonly { host: string; port: number; implicitTls: boolean }[];
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
}

export interface ReadinessReport {
  readonly ready: boolean;
  /** Why not ready (empty when ready). */
  readonly reasons: readonly string[];
  readonly listeners: readonly { host: string; port: number; implicitTls: boolean }[];
  readonly upstreams: readonly UpstreamReadiness[];
}

/**
 * Ready = the SMTP listeners are accepting, the audit trail takes records, and at least one probed
 * upstream passed its last probe (with no upstream probed, the listeners and the trail decide). The circuit breaker state is shown, not
 * counted: a probe that passes is what says an upstream can take mail. Fed by `probe` and
 * `upstream-state` events.
 */
export class Readiness {
  #sources: ReadinessSources;
  #probes = new Map<string, ProbeResult>();
  #breakers = new Map<string, BreakerState>();
  /** Why the trail takes no records now, or null. */
  #auditRefusal: AuditRefusal | null = null;
  #unsubscribe: (() => void)[];

  constructor(bus: RelayBus, sources: ReadinessSources) {
    this.#sources = sources;
    this.#unsubscribe = [
      bus.subscribe('probe', (p) => this.#probes.set(p.upstream, p)),
      bus.subscribe('upstream-state', (s) => this.#breakers.set(s.upstream, s.state)),
      bus.subscribe('audit-state', (s) => (this.#auditRefusal = s.reason)),
    ];
  }

  report(): ReadinessReport {
    const listeners = this.#sources.listeners();
    const probed = new Set(this.#sources.probed);
    const upstreams = this.#sources.upstreams.map((name) => this.#upstream(name, probed.has(name)));
    const reasons: string[] = [];
    if (listeners.length === 0) reasons.push('SMTP listeners are not accepting');
    // Every message is answered 451 while the trail takes no records: not ready for traffic.
    if (this.#auditRefusal !== null) reasons.push(auditRefusalText(this.#auditRefusal));
    if (probed.size > 0 && !upstreams.some((u) => u.probe.ok === true)) {
      reasons.push(upstreams.some((u) => u.probe.ok === false) ? 'no upstream passed its last probe' : 'no upstream probe has finished yet');
    }
    return { ready: reasons.length === 0, reasons, listeners, upstreams };
  }

  close(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
  }

  #upstream(name: string, enabled: boolean): UpstreamReadiness {
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
    };
  }
}
