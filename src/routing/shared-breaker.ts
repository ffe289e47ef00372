import type { UpstreamConfig } from '../config/types.js';
import type { LuaScript, RedisLink } from '../state/redis-link.js';
import {
  CircuitBreaker,
  type BreakerAdmission,
  type BreakerEvidence,
  type BreakerState,
  type BreakerTransition,
  type UpstreamBreaker,
} from './circuit-breaker.js';

/** What an instance tells the others when its breaker of an upstream opens or closes. */
interface BreakerNews {
  readonly state: 'open' | 'closed';
  /** The process that decided (RedisLink.owner): its own news is not taken on twice. */
  readonly owner: string;
  readonly instance: string;
  readonly reason: string;
  /** What is left of the cooldown, for `open`. */
  readonly cooldownMs: number;
}

/** KEYS: trial. ARGV: owner. Frees the fleet's half-open trial if this process holds it. */
const RELEASE_TRIAL: LuaScript = {
  name: 'mt_breaker_trial_release',
  keys: 1,
  lua: `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0`,
};

/** Margin over an attempt's `timeouts.total` before a trial whose instance vanished may be taken again. */
const TRIAL_MARGIN_MS = 5_000;

/**
 * One upstream's circuit breaker shared by the fleet. Each instance keeps counting its own evidence
 * in a CircuitBreaker; when one opens it, the opening (with what is left of its cooldown) is kept in
 * Redis and published, and every other instance opens too within milliseconds, without a failure of
 * its own. The cooldowns end together, and the half-open trial is one for the fleet: the instance
 * that takes the trial key (SET NX) tries, the others skip the upstream until the trial's outcome
 * closes or reopens the breaker everywhere. A passing health probe closes it for all as well.
 *
 * While Redis is unreachable each instance's breaker works alone, as without `state.redis`; when Redis
 * returns, an opening kept there is taken on.
 */
export class SharedBreaker implements UpstreamBreaker {
  readonly upstream: string;
  #link: RedisLink;
  #local: CircuitBreaker;
  #trialMs: number;
  #adopting = false;
  #holdsTrial = false;

  constructor(link: RedisLink, upstream: UpstreamConfig, onChange: (transition: BreakerTransition) => void) {
    this.upstream = upstream.name;
    this.#link = link;
    this.#trialMs = upstream.timeouts.total + TRIAL_MARGIN_MS;
    this.#local = new CircuitBreaker(upstream.name, upstream.breaker, (t) => {
      onChange(t);
      if (!this.#adopting) this.#announce(t);
    });
    if (upstream.breaker !== null) {
      link.subscribe(this.#key(), (message) => this.#heard(message));
      link.onShared(() => void this.#sync());
    }
  }

  get state(): BreakerState {
    return this.#local.state;
  }

  get retryInMs(): number {
    return this.#local.retryInMs;
  }

  admit(): BreakerAdmission | Promise<BreakerAdmission> {
    const local = this.#local.admit();
    return local === 'probe' ? this.#claimTrial() : local;
  }

  record(evidence: BreakerEvidence, probe: boolean, why?: string): void {
    if (probe && this.#holdsTrial) {
      this.#holdsTrial = false;
      // The outcome (if any) is announced by the transition; a neutral one leaves the trial to whoever comes next.
      this.#link.send('breaker', () => this.#link.eval(RELEASE_TRIAL, [this.#trialKey()], [this.#link.owner]));
    }
    this.#local.record(evidence, probe, why);
  }

  recordProbe(ok: boolean, why?: string): void {
    this.#local.recordProbe(ok, why);
  }

  close(): void {
    this.#local.close();
  }

  /** The local breaker gave this instance the probe; the fleet's trial decides whether it is used. */
  async #claimTrial(): Promise<BreakerAdmission> {
    const claimed = await this.#link.run(
      'breaker',
      async () => (await this.#link.client.set(this.#trialKey(), this.#link.owner, 'PX', this.#trialMs, 'NX')) === 'OK',
      () => true,
    );
    if (claimed) {
      this.#holdsTrial = this.#link.mode === 'shared';
      return 'probe';
    }
    this.#local.withdrawProbe();
    return 'skip';
  }

  /** This instance's breaker opened or closed on its own evidence: the fleet follows. */
  #announce(t: BreakerTransition): void {
    if (t.state === 'half-open') return;
    const news: BreakerNews = {
      state: t.state,
      owner: this.#link.owner,
      instance: this.#link.instanceId,
      reason: t.reason,
      cooldownMs: t.state === 'open' ? this.#local.retryInMs : 0,
    };
    const text = JSON.stringify(news);
    this.#link.send('breaker', async () => {
      if (news.state === 'open') await this.#link.client.set(this.#key(), text, 'PX', Math.max(1, news.cooldownMs));
      else await this.#link.client.del(this.#key());
      await this.#link.client.publish(this.#link.config.prefix + this.#key(), text);
    });
  }

  #heard(message: string): void {
    let news: BreakerNews;
    try {
      news = JSON.parse(message) as BreakerNews;
    } catch {
      return;
    }
    if (news.owner === this.#link.owner) return;
    this.#adopt(news);
  }

  /** After (re)connecting: an opening another instance kept in Redis is taken on. */
  async #sync(): Promise<void> {
    const text = await this.#link.run(
      'breaker',
      () => this.#link.client.get(this.#key()),
      () => null,
    );
    if (text === null) return;
    try {
      const news = JSON.parse(text) as BreakerNews;
      const left = await this.#link.run(
        'breaker',
        () => this.#link.client.pttl(this.#key()),
        () => 0,
      );
      if (news.owner !== this.#link.owner && left > 0 && this.#local.state !== 'open') this.#adopt({ ...news, cooldownMs: left });
    } catch {
      // Not ours to read; ignored.
    }
  }

  #adopt(news: BreakerNews): void {
    const verb = news.state === 'open' ? 'opened' : 'closed';
    this.#adopting = true;
    try {
      this.#local.adopt(news.state, `${verb} by instance ${news.instance}: ${news.reason}`, news.cooldownMs);
    } finally {
      this.#adopting = false;
    }
  }

  #key(): string {
    return `upstream:${this.upstream}:breaker`;
  }

  #trialKey(): string {
    return `upstream:${this.upstream}:breaker-trial`;
  }
}
