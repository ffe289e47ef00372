/**
 * What a supervisor and its workers say to each other over the cluster channel (IPC). Plain JSON:
 * the channel serialises it.
 */
import type { RunningInfo } from '../app.js';

/** Worker → supervisor. */
export type FromWorker =
  | { readonly t: 'ready'; readonly info: RunningInfo }
  | { readonly t: 'start-failed'; readonly message: string }
  | { readonly t: 'answer'; readonly id: number; readonly value: unknown };

/** What a supervisor may ask a worker (its part of the HTTP endpoint). */
export type Query =
  | { readonly what: 'metrics' }
  | { readonly what: 'readiness' }
  | { readonly what: 'errors' }
  | { readonly what: 'transaction'; readonly key: string }
  | { readonly what: 'byMessageId'; readonly key: string };

/** Supervisor → worker. */
export type ToWorker = { readonly t: 'stop' } | { readonly t: 'reopen' } | { readonly t: 'query'; readonly id: number; readonly query: Query };

export function isMessage<T extends { t: string }>(value: unknown): value is T {
  return typeof value === 'object' && value !== null && typeof (value as { t?: unknown }).t === 'string';
}
