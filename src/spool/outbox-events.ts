import type { DeliveryEventType } from './delivery-event.js';

/**
 * What the delivery-event outbox publishes (spool/delivery-events.ts), per endpoint: the hooks for
 * metrics and alerts. `endpoint` is the endpoint's label: its configured name, else its URL's host
 * (never the URL itself, which may carry a token).
 */
export interface DeliveryOutboxEvents {
  /** The endpoint took an event (a 2xx answer); `attempts` counts the tries since start-up. */
  'delivery-event-sent': [{ readonly endpoint: string; readonly id: string; readonly type: DeliveryEventType; readonly attempts: number; readonly ms: number }];
  /** A try failed: the event is tried again at `retryAt` (epoch ms), or, past the age limit, dropped (`retryAt` null, then `delivery-event-dropped`). */
  'delivery-event-failed': [
    {
      readonly endpoint: string;
      readonly id: string;
      readonly type: DeliveryEventType;
      readonly attempt: number;
      readonly error: string;
      readonly retryAt: number | null;
    },
  ];
  /** Given up: the event failed past the age limit, and was removed from the outbox. */
  'delivery-event-dropped': [
    { readonly endpoint: string; readonly id: string; readonly type: DeliveryEventType; readonly attempts: number; readonly reason: 'max-age' },
  ];
  /** The number of events waiting in the outbox for the endpoint changed (a gauge). */
  'delivery-event-pending': [{ readonly endpoint: string; readonly pending: number }];
}
