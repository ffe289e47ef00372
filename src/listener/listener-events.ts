import type { ClientRejectClass } from '../classify/failure-class.js';

/** What the listener publishes beyond the records it writes. */
export interface ListenerEvents {
  /**
   * A client was refused: every refusal once, whether it has a `reject` record of its own or is only
   * counted (in its session record, or in a connection-rate window's record).
   */
  refusal: [{ readonly class: ClientRejectClass }];
}
