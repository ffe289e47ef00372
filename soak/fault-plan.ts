/**
 * Random faults for the fake upstream, drawn afresh for every connection, command and message, so
 * one soak run meets every failure of docs/failures.md many times, mixed with healthy traffic:
 * refused connections, greetings that hang or refuse, throttling and 4xx/5xx at MAIL, RCPT and
 * after the body, resets mid-DATA, drops before the 354 and after the final dot, hangs after the
 * final dot, slow replies, partial recipient rejects, and pooled connections dropped under the relay.
 *
 * The fake upstream reads each knob once per event (see test/helpers/fake-upstream.ts), so the knobs
 * become getters that roll the dice on every read.
 */
import type { DataFault, FakeUpstream, GreetingFault, Reply } from '../test/helpers/fake-upstream.js';

type Weighted<T> = readonly (readonly [number, T])[];

/** Every fault injected, by name, for the report. */
export type FaultCounts = Record<string, number>;

const GREETING: Weighted<GreetingFault> = [
  [0.94, 'ok'],
  [0.01, 'hang'],
  [0.02, '421'],
  [0.01, '554'],
  [0.02, { code: 421, text: '4.7.0 Too many concurrent connections, try again later' }],
];

const MAIL_FROM: Weighted<Reply | 'drop' | undefined> = [
  [0.93, undefined],
  [0.02, { code: 451, text: '4.7.0 Throttling failure: Maximum sending rate exceeded.' }],
  [0.01, { code: 421, text: '4.7.0 Temporary System Problem. Try again later.' }],
  [0.01, { code: 452, text: '4.3.1 Insufficient system storage' }],
  [0.01, { code: 550, text: '5.7.1 Sender address rejected: not owned by user' }],
  [0.01, { code: 554, text: '5.2.0 Daily message quota exceeded' }],
  [0.01, 'drop'],
];

const RCPT: Weighted<Reply | null> = [
  [0.93, null],
  [0.04, { code: 550, text: '5.1.1 The email account that you tried to reach does not exist' }],
  [0.02, { code: 450, text: '4.2.1 Mailbox temporarily unavailable' }],
  [0.01, { code: 452, text: '4.5.3 Too many recipients' }],
];

const DATA: Weighted<DataFault | undefined> = [
  [0.83, undefined],
  [0.02, 'drop-before-reply'],
  [0.03, 'reset-mid-data'],
  [0.03, 'drop-after-dot'],
  [0.01, 'hang-after-dot'],
  [0.02, { code: 554, text: '5.7.1 Message rejected as spam' }],
  [0.02, { code: 451, text: '4.3.0 Local error in processing' }],
  [0.02, { code: 451, text: '4.7.0 You are sending mail too quickly, slow down' }],
  [0.02, { code: 552, text: '5.3.4 Message size exceeds fixed limit' }],
];

/** The name under which each fault of the tables above is counted, e.g. "after DATA: drop-after-dot". */
export function everyFault(): string[] {
  const names = (kind: string, table: Weighted<unknown>): string[] =>
    table
      .map(([, v]) => nameOf(v))
      .filter((n) => n !== 'none' && n !== 'ok')
      .map((n) => `${kind}: ${n}`);
  return [...names('greeting', GREETING), ...names('MAIL FROM', MAIL_FROM), ...names('RCPT', RCPT), ...names('after DATA', DATA)];
}

function pick<T>(table: Weighted<T>, random: () => number): T {
  let r = random();
  for (const [weight, value] of table) {
    r -= weight;
    if (r < 0) return value;
  }
  return table[table.length - 1]![1];
}

function nameOf(value: unknown): string {
  if (value === undefined || value === null) return 'none';
  if (typeof value === 'string') return value;
  const reply = value as Reply;
  return `${reply.code} ${reply.text.split(' ')[0]}`;
}

export interface FaultInjector {
  readonly counts: FaultCounts;
  /** Stop the timers (refusal windows, connection drops). */
  stop(): Promise<void>;
}

/**
 * Turns the upstream's knobs into dice. Every ~`refuseEveryMs` the upstream stops listening for a
 * moment (refused connections); every ~`dropEveryMs` it drops every open connection (the relay's
 * pooled connections die under it, some mid-transaction).
 */
export function injectFaults(upstream: FakeUpstream, opts: { random?: () => number; refuseEveryMs?: number; dropEveryMs?: number } = {}): FaultInjector {
  const random = opts.random ?? Math.random;
  const counts: FaultCounts = {};
  const count = (kind: string, value: unknown): void => {
    const name = nameOf(value);
    if (name === 'none' || name === 'ok') return;
    const key = `${kind}: ${name}`;
    counts[key] = (counts[key] ?? 0) + 1;
  };
  // Every fault of each table is served once early on, so even a short run meets each of them;
  // after that the dice decide.
  const forced = new Map<string, unknown[]>();
  const roll = <T>(kind: string, table: Weighted<T>): T => {
    if (!forced.has(kind))
      forced.set(
        kind,
        table.map(([, v]) => v).filter((v) => nameOf(v) !== 'none' && nameOf(v) !== 'ok'),
      );
    const queue = forced.get(kind)!;
    const value = queue.length > 0 && random() < 0.5 ? (queue.shift() as T) : pick(table, random);
    count(kind, value);
    return value;
  };

  const faults = upstream.faults;
  Object.defineProperty(faults, 'greeting', { configurable: true, enumerable: true, get: () => roll('greeting', GREETING) });
  Object.defineProperty(faults, 'mailFrom', { configurable: true, enumerable: true, get: () => roll('MAIL FROM', MAIL_FROM) });
  Object.defineProperty(faults, 'data', { configurable: true, enumerable: true, get: () => roll('after DATA', DATA) });
  faults.rcpt = () => roll('RCPT', RCPT);
  faults.delayMs = {
    get data() {
      // A slow final reply now and then (well inside the relay's socket timeout).
      if (random() >= 0.05) return 0;
      count('slow reply after the final dot', 'slow');
      return 100 + Math.floor(random() * 500);
    },
  };

  const timers: NodeJS.Timeout[] = [];
  let stopped = false;
  const every = (ms: number, fn: () => Promise<void> | void): void => {
    const tick = (): void => {
      if (stopped) return;
      timers.push(
        setTimeout(
          () => {
            void Promise.resolve(fn()).finally(tick);
          },
          ms * (0.5 + random()),
        ),
      );
    };
    tick();
  };
  /** The refusal window in progress: stop() waits for it, so a window never outlives the faults. */
  let window: Promise<void> = Promise.resolve();
  every(opts.refuseEveryMs ?? 2_500, () => {
    window = (async () => {
      count('refused connections (window)', 'refuse');
      await upstream.refuse();
      await new Promise((r) => setTimeout(r, 150 + random() * 250));
      if (!stopped) await upstream.accept();
    })();
    return window;
  });
  every(opts.dropEveryMs ?? 3_000, () => {
    count('all upstream connections dropped', 'drop');
    upstream.dropConnections();
  });

  return {
    counts,
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      await window;
      for (const key of ['greeting', 'mailFrom', 'data'] as const) {
        Object.defineProperty(faults, key, { configurable: true, enumerable: true, writable: true, value: key === 'greeting' ? 'ok' : undefined });
      }
      faults.rcpt = undefined;
      faults.delayMs = {};
      await upstream.accept();
    },
  };
}
