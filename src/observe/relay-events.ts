import type { AuditEvents } from '../audit/audit-events.js';
import type { EventBus } from '../event-bus.js';
import type { ListenerEvents } from '../listener/listener-events.js';
import type { AuthEvents } from '../admission/auth-lockout.js';
import type { RoutingEvents } from '../routing/routing-events.js';
import type { AlertDeliveryEvents } from './alerts/delivery-queue.js';
import type { SharedStateEvents } from '../state/state-events.js';
import type { TokenEvents } from '../upstream/oauth2/token-events.js';
import type { QueueEvents } from '../spool/queue-events.js';
import type { DeliveryOutboxEvents } from '../spool/outbox-events.js';

/** Everything observers can subscribe to: the union of what each producer publishes. */
export type RelayEvents = AuditEvents &
  ListenerEvents &
  AuthEvents &
  RoutingEvents &
  TokenEvents &
  AlertDeliveryEvents &
  QueueEvents &
  DeliveryOutboxEvents &
  SharedStateEvents;

/** The bus the composition root builds and observers subscribe to. */
export type RelayBus = EventBus<RelayEvents>;
