/**
 * What the console's main thread and the index worker say to each other (structured-clone data
 * only). Each request carries an id; the answer carries it back.
 */
import type { LookupPrivacy } from '../../tools/address-forms.js';
import type { Query } from '../query.js';
import type { Page, Scope } from './sql-query.js';

export interface WorkerSetup {
  readonly trail: string;
  readonly indexPath: string;
  readonly pollMs: number;
  /** How addresses are written in the trail, for looking one up (audit.privacy, audit.hmacKey). */
  readonly privacy: LookupPrivacy | null;
}

export type WorkerRequest =
  | { readonly kind: 'search'; readonly query: Query; readonly scope: Scope; readonly page: Page }
  | { readonly kind: 'story'; readonly key: string; readonly scope: Scope; readonly limit: number }
  | { readonly kind: 'history'; readonly since: number; readonly until: number }
  | { readonly kind: 'status' };

export interface IndexStatus {
  /** `building`: reading the trail for the first time (or again); `following`: caught up. */
  readonly state: 'starting' | 'building' | 'following';
  /** Relay and reject records in the index. */
  readonly records: number;
}

export type WorkerMessage =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: { readonly code: string; readonly message: string } }
  | { readonly id: null; readonly notice: string; readonly level: 'info' | 'warn' | 'error'; readonly fields?: Record<string, unknown> };
