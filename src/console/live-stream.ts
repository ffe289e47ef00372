/**
 * `GET /api/v1/stream`: Server-Sent Events of each transaction as it is recorded (docs/api.md, "Live
 * stream"), fed by the same bus as the metrics. One summary per record is serialised once and written
 * to every stream whose scope allows it.
 *
 * A browser that reads slower than mail arrives never makes memory grow: past BUFFER_LIMIT bytes
 * waiting in a stream's socket, events for it are dropped and counted, and once it has drained it gets
 * `event: dropped` with the count (the page then reloads the list). A stream that stays behind for
 * STALL_MS is closed (the browser reconnects). A comment line every HEARTBEAT_MS keeps proxies from
 * closing an idle stream and tells the page the server is there.
 */
import type { ServerResponse } from 'node:http';
import type { RejectRecord, RelayRecord } from '../audit/records.js';
import type { RelayBus } from '../observe/relay-events.js';
import type { Scope } from './search/sql-query.js';
import { inScope } from './story-view.js';
import { summarise } from './summary.js';

export interface StreamOptions {
  readonly heartbeatMs: number;
  /** Bytes queued in one stream beyond which its events are dropped. */
  readonly bufferLimit: number;
  /** How long a stream may stay over the limit before it is closed. */
  readonly stallMs: number;
  /** Streams open at once, at most. */
  readonly maxStreams: number;
  /**
   * Streams of one console user (all their sessions; the bearer token and the local user count as one
   * user each), at most: one user, however limited their scope, cannot take every stream.
   */
  readonly maxPerUser: number;
}

export const STREAM_DEFAULTS: StreamOptions = { heartbeatMs: 15_000, bufferLimit: 256 * 1024, stallMs: 60_000, maxStreams: 100, maxPerUser: 20 };

interface Stream {
  readonly res: ServerResponse;
  readonly user: string;
  readonly scope: Scope;
  /** Still allowed (the session is alive); checked at each heartbeat. */
  readonly alive: () => boolean;
  dropped: number;
  behindSince: number | null;
}

export class LiveStream {
  readonly #streams = new Set<Stream>();
  readonly #options: StreamOptions;
  readonly #unsubscribe: (() => void)[];
  readonly #heartbeat: NodeJS.Timeout;

  constructor(bus: RelayBus, options: StreamOptions = STREAM_DEFAULTS) {
    this.#options = options;
    this.#unsubscribe = [bus.subscribe('relay', (r) => this.#publish(r)), bus.subscribe('reject', (r) => this.#publish(r))];
    this.#heartbeat = setInterval(() => this.#beat(), options.heartbeatMs);
    this.#heartbeat.unref();
  }

  get size(): number {
    return this.#streams.size;
  }

  /** Takes over `res` as an event stream of `user`; false (nothing written) when too many are open, in all or of theirs. */
  open(res: ServerResponse, user: string, scope: Scope, alive: () => boolean): boolean {
    if (this.#streams.size >= this.#options.maxStreams) return false;
    if ([...this.#streams].filter((s) => s.user === user).length >= this.#options.maxPerUser) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // nginx: pass events through as they come.
      'x-accel-buffering': 'no',
    });
    res.write(`retry: 3000\n: mailtrail live stream\n\n`);
    const stream: Stream = { res, user, scope, alive, dropped: 0, behindSince: null };
    this.#streams.add(stream);
    res.on('close', () => this.#streams.delete(stream));
    return true;
  }

  close(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
    clearInterval(this.#heartbeat);
    for (const s of this.#streams) s.res.end();
    this.#streams.clear();
  }

  #publish(record: RelayRecord | RejectRecord): void {
    if (this.#streams.size === 0) return;
    const event = `event: transaction\nid: ${record.id}\ndata: ${JSON.stringify(summarise(record))}\n\n`;
    for (const s of this.#streams) if (inScope(record, s.scope)) this.#write(s, event);
  }

  /** Writes `event`, or drops it (counted when `counted`) while the stream is behind. */
  #write(s: Stream, event: string, counted = true): void {
    const behind = s.res.writableLength > this.#options.bufferLimit;
    if (behind) {
      if (counted) s.dropped += 1;
      s.behindSince ??= Date.now();
      if (Date.now() - s.behindSince > this.#options.stallMs) s.res.destroy();
      return;
    }
    if (s.dropped > 0) {
      s.res.write(`event: dropped\ndata: ${JSON.stringify({ count: s.dropped })}\n\n`);
      s.dropped = 0;
    }
    s.behindSince = null;
    s.res.write(event);
  }

  #beat(): void {
    for (const s of this.#streams) {
      if (!s.alive()) {
        s.res.end('event: ended\ndata: {"reason":"session"}\n\n');
        this.#streams.delete(s);
        continue;
      }
      this.#write(s, ': heartbeat\n\n', false);
    }
  }
}
