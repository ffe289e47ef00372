import type { DeliveryMode } from '../config/fields.js';
import type { UserConfig } from '../config/types.js';
import type { ClientSession } from './client-session.js';

/**
 * Which delivery mode a transaction runs in (docs/spool.md): a logged-in user's own `mode` when it
 * has one, else the `mode` of the listener the client connected to. A client relaying by network has
 * no user, so it always gets the listener's.
 */
export class DeliveryModes {
  readonly #byUser: ReadonlyMap<string, DeliveryMode>;

  constructor(users: readonly UserConfig[]) {
    this.#byUser = new Map(users.flatMap((u) => (u.mode === null ? [] : [[u.username, u.mode] as const])));
  }

  of(session: Pick<ClientSession, 'listenerMode' | 'client'>): DeliveryMode {
    const user = session.client().user;
    return (user === null ? undefined : this.#byUser.get(user)) ?? session.listenerMode;
  }
}

/** True when some listener or user is in spool or hybrid mode: only then does the spool exist. */
export function usesSpool(listeners: readonly { readonly mode: DeliveryMode }[], users: readonly UserConfig[]): boolean {
  return [...listeners.map((l) => l.mode), ...users.map((u) => u.mode)].some((m) => m === 'spool' || m === 'hybrid');
}
