import type { ClientFacts } from '../audit/records.js';
import type { DeliveryMode } from '../config/fields.js';

/**
 * What a transaction needs from the client connection it runs on: who the client is, for the record
 * and the route, and the connection's counters for its `session` record. The listener's session
 * state provides it; the transaction knows nothing else of the listener.
 */
export interface ClientSession {
  readonly id: string;
  readonly ip: string;
  /** `listen[].mode` of the listener the client connected to (a logged-in user's own mode goes over it). */
  readonly listenerMode: DeliveryMode;
  transactions: number;
  accepted: number;
  rejected: number;
  bytes: number;
  client(): ClientFacts;
}
