import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { SharedStateConfig } from '../config/types.js';
import type { EventPublisher } from '../event-bus.js';
import type { Logger } from '../logger.js';
import type { SharedMode, SharedPart, SharedStateEvents, SharedStateStatus } from './state-events.js';

/** A Lua script run with EVALSHA (EVAL the first time, and after Redis lost its script cache). */
export interface LuaScript {
  /** Unique per script, and no Redis command's name: ioredis defines the command under it (`mt_...`). */
  readonly name: string;
  /** How many keys it takes; -1 = as many as each call passes. */
  readonly keys: number;
  readonly lua: string;
}

/**
 * Lua that sets `now` to the server's clock in milliseconds (with microseconds as the fraction): every
 * script of the fleet measures time on Redis's clock, never on the instances' (which may differ).
 */
export const LUA_NOW = `local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000`;

/** While degraded, how often Redis is asked whether it is back. */
const HEALTH_INTERVAL_MS = 500;
/** Longest a reconnection waits; ioredis keeps trying for ever, which is what a fleet wants. */
const MAX_RECONNECT_DELAY_MS = 1_000;
/** At start-up, how long the first connection may take before the instance starts degraded. */
const FIRST_CONNECT_WAIT_MS = 2_000;

/**
 * The connection to the fleet's Redis (or Valkey) and whether it can be used now. Every shared part
 * goes through `run`: while Redis answers, the part's Redis operation; when it cannot be asked (not
 * connected, a command that failed or did not answer within `state.timeout`), the part's local
 * fallback, and the link turns degraded: logged, published on the bus (readiness, metrics, the
 * built-in alert) and from then on not asked at all, so a message never waits for a dead Redis more
 * than once. A health check every 500 ms (a write, so a read-only replica does not count as back)
 * turns it shared again; the parts then use Redis from their next decision on.
 *
 * The client is ioredis, with its defaults changed where they would hold messages: no offline queue
 * (a command while disconnected fails at once instead of waiting for a reconnection), no retry of a
 * command after a connection loss, and a per-command timeout. Pub/sub has a connection of its own
 * (a subscribed connection can send nothing else), which resubscribes after a reconnection.
 */
export class RedisLink {
  readonly instanceId: string;
  /** Unique to this process: lease and claim owners stay apart even when two instances share an id. */
  readonly owner: string;
  readonly config: SharedStateConfig;
  readonly client: Redis;
  #events: EventPublisher<SharedStateEvents>;
  #log: Logger;
  #subscriber: Redis | null = null;
  #handlers = new Map<string, ((message: string) => void)[]>();
  #onShared: (() => void)[] = [];
  #status: SharedStateStatus | null = null;
  #healthTimer: NodeJS.Timeout | null = null;
  #checking: Promise<void> | null = null;
  #closed = false;

  constructor(config: SharedStateConfig, instanceId: string, events: EventPublisher<SharedStateEvents>, log: Logger) {
    this.config = config;
    this.instanceId = instanceId;
    this.owner = `${instanceId}/${randomBytes(6).toString('hex')}`;
    this.#events = events;
    this.#log = log;
    this.client = new Redis(config.redis, {
      keyPrefix: config.prefix,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: config.timeout,
      connectTimeout: Math.max(config.timeout, 1_000),
      retryStrategy: (times) => Math.min(times * 100, MAX_RECONNECT_DELAY_MS),
      connectionName: `mailtrail ${instanceId}`,
    });
    // Connection errors come as events too; the state change is what matters, and it is logged once.
    this.client.on('error', (err: Error) => log.debug({ err }, 'Redis connection error'));
    this.client.on('close', () => this.#degrade('connection to Redis lost'));
    this.client.on('ready', () => void this.#check());
  }

  /** Shared or degraded, since when and why; `degraded` before the first connection. */
  get status(): SharedStateStatus {
    return this.#status ?? { mode: 'degraded', since: Date.now(), reason: 'not connected yet' };
  }

  get mode(): SharedMode {
    return this.#status?.mode ?? 'degraded';
  }

  /**
   * Connects, waiting at most two seconds: a Redis that is down at start-up does not stop the
   * instance, which starts degraded and turns shared once Redis answers.
   */
  async start(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const connected = this.client.connect().then(
      () => true,
      (err: Error) => {
        this.#degrade(err.message);
        return false;
      },
    );
    const waited = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), FIRST_CONNECT_WAIT_MS)));
    const ok = await Promise.race([connected, waited]);
    clearTimeout(timer);
    if (ok) await this.#check();
    else this.#degrade('no connection to Redis within 2 s');
  }

  /**
   * The Redis operation of `part` while shared, else (and when it fails) `fallback`, this instance's
   * own decision. Never throws what `op` throws.
   */
  async run<T>(part: SharedPart, op: () => Promise<T>, fallback: () => T | Promise<T>): Promise<T> {
    if (this.mode === 'shared') {
      try {
        return await op();
      } catch (err) {
        this.#failed(err as Error, part);
      }
    }
    this.#events.publish('shared-state-fallback', { part });
    return fallback();
  }

  /** Sends and forgets (a release, a mark whose loss costs nothing but precision); skipped while degraded. */
  send(part: SharedPart, op: () => Promise<unknown>): void {
    if (this.mode !== 'shared') return;
    op().catch((err: Error) => this.#failed(err, part));
  }

  /** Runs a Lua script; its keys get `state.prefix` like every other key. Throws as the command does. */
  eval(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    const commands = this.client as unknown as Record<string, ((...a: (string | number)[]) => Promise<unknown>) | undefined>;
    const variable = script.keys < 0;
    if (commands[script.name] === undefined)
      this.client.defineCommand(script.name, variable ? { lua: script.lua } : { numberOfKeys: script.keys, lua: script.lua });
    return variable ? commands[script.name]!(keys.length, ...keys, ...args) : commands[script.name]!(...keys, ...args);
  }

  /** Publishes on a channel of this fleet (`state.prefix` + channel); lost while degraded. */
  publish(part: SharedPart, channel: string, message: string): void {
    this.send(part, () => this.client.publish(this.config.prefix + channel, message));
  }

  /** Calls `handler` for each message on a channel of this fleet, its own messages included. */
  subscribe(channel: string, handler: (message: string) => void): void {
    const full = this.config.prefix + channel;
    const handlers = this.#handlers.get(full);
    if (handlers) {
      handlers.push(handler);
      return;
    }
    this.#handlers.set(full, [handler]);
    const subscriber = this.#subscriberConnection();
    subscriber.subscribe(full).catch((err: Error) => this.#log.debug({ err, channel }, 'Redis subscribe failed; retried on reconnection'));
  }

  /**
   * Called each time the link turns shared: at the first connection and after each degraded spell
   * (to read state other instances changed meanwhile).
   */
  onShared(handler: () => void): void {
    this.#onShared.push(handler);
  }

  /**
   * At shutdown, after the pools gave their leases back: QUIT where connected (the commands sent
   * before it are answered first), for at most `state.timeout`; then the sockets are closed. A Redis
   * that is down or silent never holds the shutdown.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopHealthChecks();
    const quit = async (connection: Redis | null): Promise<void> => {
      if (connection === null || connection.status !== 'ready') return;
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.config.timeout)));
      await Promise.race([connection.quit().catch(() => undefined), waited]);
      clearTimeout(timer);
    };
    await Promise.all([quit(this.client), quit(this.#subscriber)]);
    this.client.disconnect();
    this.#subscriber?.disconnect();
  }

  #subscriberConnection(): Redis {
    if (this.#subscriber) return this.#subscriber;
    // Subscriptions wait for the connection (they are few, one per channel) and are renewed after a
    // reconnection; nothing on the relay path waits for them.
    const subscriber = this.client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined, keyPrefix: '' });
    subscriber.on('error', (err: Error) => this.#log.debug({ err }, 'Redis subscriber connection error'));
    subscriber.on('message', (channel: string, message: string) => {
      for (const handler of this.#handlers.get(channel) ?? []) {
        try {
          handler(message);
        } catch (err) {
          this.#log.error({ err, channel }, 'shared state message handler failed');
        }
      }
    });
    this.#subscriber = subscriber;
    if (!this.#closed) subscriber.connect().catch(() => undefined);
    return subscriber;
  }

  #failed(err: Error, part: SharedPart): void {
    this.#degrade(`${part}: ${err.message}`);
  }

  #degrade(reason: string): void {
    if (this.#closed) return;
    if (this.#status?.mode !== 'degraded') {
      this.#status = { mode: 'degraded', since: Date.now(), reason };
      this.#log.warn({ reason }, 'shared state degraded: Redis unreachable, each limit falls back to its local share');
      this.#events.publish('shared-state', this.#status);
    }
    this.#startHealthChecks();
  }

  #resume(): void {
    if (this.#closed || this.#status?.mode === 'shared') return;
    const wasDegraded = this.#status !== null;
    const downMs = this.#status ? Date.now() - this.#status.since : 0;
    this.#status = { mode: 'shared', since: Date.now(), reason: null };
    this.#stopHealthChecks();
    if (wasDegraded) this.#log.info({ downMs }, 'shared state through Redis resumed');
    this.#events.publish('shared-state', this.#status);
    for (const handler of this.#onShared) handler();
  }

  /** A write with a short expiry: answers only from a primary that can take writes. */
  #check(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#checking ??= this.client
      .set('health', this.owner, 'PX', 10_000)
      .then(
        () => this.#resume(),
        (err: Error) => this.#degrade(err.message),
      )
      .finally(() => (this.#checking = null));
    return this.#checking;
  }

  #startHealthChecks(): void {
    if (this.#healthTimer !== null || this.#closed) return;
    this.#healthTimer = setInterval(() => {
      if (this.client.status === 'ready') void this.#check();
    }, HEALTH_INTERVAL_MS);
    this.#healthTimer.unref();
  }

  #stopHealthChecks(): void {
    if (this.#healthTimer !== null) clearInterval(this.#healthTimer);
    this.#healthTimer = null;
  }
}
