import { ERR } from '../error-codes.js';
/**
 * When relaying must stop: at a time limit (the message's overall deadline, one attempt's
 * `timeouts.total`), or when something above it stops (shutdown, the overall deadline).
 *
 * The relay path's stand-in for AbortSignal. Every message needs two of them, each with a timer and
 * a listener on its parent; with AbortController and EventTarget that costs 9-13 µs per message,
 * with this under 1 µs (measured on the machines the bench runs on), and the relay path is CPU-bound.
 */
export interface StopSignal {
  /** True once stopped; `reason` then says why (an Error with a stable `code`). */
  readonly stopped: boolean;
  readonly reason: StopReason | null;
  /** Calls `listener` once when this stops; at once if it already has. Returns a detach function. */
  onStop(listener: (reason: StopReason) => void): () => void;
}

export type StopReason = Error & { readonly code: string };

export function stopReason(message: string, code: string): StopReason {
  return Object.assign(new Error(message), { code });
}

export class Deadline implements StopSignal {
  #reason: StopReason | null = null;
  #listeners: Array<(reason: StopReason) => void> = [];
  #timer: NodeJS.Timeout | null = null;
  #detach: (() => void) | null = null;

  private constructor() {}

  /** Stops after `ms` with the reason `onTimeout()` makes, or earlier when `parent` stops (with its reason). */
  static after(ms: number, onTimeout: () => StopReason, parent: StopSignal | null = null): Deadline {
    const d = new Deadline();
    d.#timer = setTimeout(() => d.stop(onTimeout()), ms);
    if (parent) d.#detach = parent.onStop((reason) => d.stop(reason));
    return d;
  }

  /**
   * Stops when `signal` aborts, with its reason when that carries a `code` (ESHUTDOWN), else
   * EDEADLINE. One listener on the AbortSignal for the life of the adapter, not one per message.
   */
  static fromAbortSignal(signal: AbortSignal): Deadline {
    const d = new Deadline();
    const onAbort = (): void => d.stop(asStopReason(signal.reason));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    d.#detach = () => signal.removeEventListener('abort', onAbort);
    return d;
  }

  get stopped(): boolean {
    return this.#reason !== null;
  }

  get reason(): StopReason | null {
    return this.#reason;
  }

  onStop(listener: (reason: StopReason) => void): () => void {
    if (this.#reason) {
      listener(this.#reason);
      return noop;
    }
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i !== -1) this.#listeners.splice(i, 1);
    };
  }

  /** Stops now (the first reason wins) and tells every listener once. */
  stop(reason: StopReason): void {
    if (this.#reason) return;
    this.#reason = reason;
    this.dispose();
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const listener of listeners) listener(reason);
  }

  /** The timer and the link to the parent go; call it when the work it guarded is done. */
  dispose(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#detach?.();
    this.#detach = null;
  }
}

function asStopReason(reason: unknown): StopReason {
  if (reason instanceof Error && typeof (reason as { code?: unknown }).code === 'string') return reason as StopReason;
  return stopReason('Relay deadline reached', ERR.DEADLINE);
}

function noop(): void {}
