import { classify } from '../classify/classify.js';
import type { ConnectionPool } from '../upstream/connection-pool.js';
import { Deadline, stopReason } from '../upstream/deadline.js';
import { failureFacts } from '../upstream/upstream-attempt.js';
import type { NodemailerError } from '../upstream/upstream-connection.js';
import type { EventPublisher } from '../event-bus.js';
import type { ProbeResult, RoutingEvents } from './routing-events.js';

/** Who hears each probe's result first: the owner of the upstreams' breakers (the router). */
export interface ProbeListener {
  recordProbe(result: ProbeResult): void;
}
import type { Logger } from '../logger.js';
import { ERR } from '../error-codes.js';

/**
 * One probe: connect, greet, EHLO, STARTTLS and AUTH through the upstream's own pool (same connection
 * options, same login: an OAuth2 upstream's probe fetches its token from the token cache the messages
 * use, so /readyz and the alerts know of a refused client secret before the first message), then QUIT.
 * No MAIL command is ever sent, so a probe cannot deliver or count against a sending quota. A failure
 * is classified by the relay's own classifier, so a probe and a real message that fail the same way
 * carry the same class.
 */
export async function probeUpstream(pool: ConnectionPool, timeoutMs: number, outer?: AbortSignal): Promise<ProbeResult> {
  const upstream = pool.upstream;
  const started = performance.now();
  const stopped = outer ? Deadline.fromAbortSignal(outer) : null;
  const limit = Deadline.after(timeoutMs, () => stopReason(`Probe timed out after ${timeoutMs} ms`, 'ETIMEDOUT'), stopped);
  try {
    const connection = await pool.openUnpooled(limit);
    const tls = connection.tls();
    connection.quit();
    return { upstream: upstream.name, ok: true, class: null, time: new Date().toISOString(), ms: elapsed(started), reply: null, error: null, hint: null, tls };
  } catch (err) {
    const facts = failureFacts(err as NodemailerError, 'connecting');
    const verdict = classify(facts);
    return {
      upstream: upstream.name,
      ok: false,
      class: verdict.failure?.class ?? 'internal',
      time: new Date().toISOString(),
      ms: elapsed(started),
      reply: facts.reply,
      error: facts.reply ? null : { code: facts.errorCode, cause: facts.cause },
      hint: verdict.failure?.hint ?? null,
      tls: null,
    };
  } finally {
    limit.dispose();
    stopped?.dispose();
  }
}

function elapsed(since: number): number {
  return Math.round(performance.now() - since);
}

/**
 * Probes every upstream whose `probe.enabled` is on, each on its own schedule: the next probe starts
 * `interval` after the previous one ended, so a slow upstream is never probed twice at once. Results
 * go to the bus only; readiness, metrics and alerts subscribe.
 */
export class UpstreamProbes {
  #pools: readonly ConnectionPool[];
  #health: ProbeListener;
  #bus: EventPublisher<RoutingEvents>;
  #log: Logger;
  #timers = new Set<NodeJS.Timeout>();
  #running = new Set<Promise<void>>();
  #stop = new AbortController();
  #lastOk = new Map<string, boolean>();

  /** `pools`: every upstream's pool (router.ts); those whose `probe.enabled` is on are probed. */
  constructor(pools: readonly ConnectionPool[], health: ProbeListener, bus: EventPublisher<RoutingEvents>, log: Logger) {
    this.#pools = pools.filter((p) => p.upstream.probe.enabled);
    this.#health = health;
    this.#bus = bus;
    this.#log = log;
  }

  /** Names of the upstreams that are probed. */
  get probed(): readonly string[] {
    return this.#pools.map((p) => p.upstream.name);
  }

  /** Starts every schedule with an immediate first probe. */
  start(): void {
    for (const pool of this.#pools) this.#schedule(pool, 0);
  }

  /** Cancels the schedules and aborts probes in flight; resolves once they have settled. */
  async stop(): Promise<void> {
    this.#stop.abort(Object.assign(new Error('mailtrail is shutting down'), { code: ERR.SHUTDOWN }));
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await Promise.allSettled([...this.#running]);
  }

  #schedule(pool: ConnectionPool, delay: number): void {
    if (this.#stop.signal.aborted) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      const run = this.#runOnce(pool).finally(() => {
        this.#running.delete(run);
        this.#schedule(pool, pool.upstream.probe.interval);
      });
      this.#running.add(run);
    }, delay);
    // Probes never keep a process alive on their own.
    timer.unref();
    this.#timers.add(timer);
  }

  async #runOnce(pool: ConnectionPool): Promise<void> {
    const result = await probeUpstream(pool, pool.upstream.probe.timeout, this.#stop.signal);
    if (this.#stop.signal.aborted) return;
    this.#logChange(result);
    // The breaker first, then the observers: readiness and alerts see the probe with the breaker's new state.
    this.#health.recordProbe(result);
    this.#bus.publish('probe', result);
  }

  #logChange(result: ProbeResult): void {
    const before = this.#lastOk.get(result.upstream);
    this.#lastOk.set(result.upstream, result.ok);
    if (before === result.ok) return;
    if (result.ok) this.#log.info({ upstream: result.upstream, ms: result.ms }, 'upstream probe passed');
    else this.#log.warn({ upstream: result.upstream, class: result.class, reply: result.reply, error: result.error }, 'upstream probe failed');
  }
}
