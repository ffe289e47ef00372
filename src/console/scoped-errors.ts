/**
 * Error groups for console users limited to some SMTP users (`GET /api/v1/errors`): the same groups
 * as observe/error-groups.ts, kept once per SMTP user named in a console scope, each fed the relay
 * records of its user only; a scoped user sees the groups of their users merged. Bounded: the users
 * come from the configuration, and each ErrorGroups is bounded.
 */
import { EventBus } from '../event-bus.js';
import { ErrorGroups, type ErrorGroup } from '../observe/error-groups.js';
import type { RelayBus, RelayEvents } from '../observe/relay-events.js';
import type { Scope } from './search/sql-query.js';

export class ScopedErrors {
  readonly #all: () => ErrorGroup[];
  readonly #perUser = new Map<string, { bus: RelayBus; groups: ErrorGroups }>();
  readonly #unsubscribe: () => void;

  /** `all`: the groups of every message (the endpoint's own); `users`: the SMTP users of the scopes. */
  constructor(bus: RelayBus, all: () => ErrorGroup[], users: readonly string[]) {
    this.#all = all;
    for (const user of new Set(users)) {
      const own: RelayBus = new EventBus<RelayEvents>(() => undefined);
      this.#perUser.set(user, { bus: own, groups: new ErrorGroups(own) });
    }
    this.#unsubscribe = bus.subscribe('relay', (r) => {
      const user = r.client?.user;
      if (user) this.#perUser.get(user)?.bus.publish('relay', r);
    });
  }

  list(scope: Scope): ErrorGroup[] {
    if (scope === null) return this.#all();
    const merged = new Map<string, ErrorGroup>();
    for (const user of scope.users) {
      for (const g of this.#perUser.get(user)?.groups.list() ?? []) {
        const seen = merged.get(g.fingerprint);
        if (!seen) {
          merged.set(g.fingerprint, g);
          continue;
        }
        const latest = g.lastSeen > seen.lastSeen ? g : seen;
        merged.set(g.fingerprint, {
          ...latest,
          count: seen.count + g.count,
          firstSeen: g.firstSeen < seen.firstSeen ? g.firstSeen : seen.firstSeen,
        });
      }
    }
    return [...merged.values()].sort((a, b) => b.lastSeen.localeCompare(a.lastSeen));
  }

  close(): void {
    this.#unsubscribe();
    for (const { groups } of this.#perUser.values()) groups.close();
  }
}
