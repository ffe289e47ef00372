/**
 * The limits each process keeps in its own memory. With `workers.count` above 1 (or several
 * instances behind one load balancer) every process would allow the full limit, so N processes allow
 * N times what the operator wrote. docs/fleet.md, "What is shared and what is not".
 */
import type { Config } from './types.js';

/** Key paths of the limits in force that would be multiplied by the number of processes. */
export function multipliedLimits(config: Pick<Config, 'clients' | 'limits' | 'upstreams'>): string[] {
  const keys: string[] = [];
  const { perUser, perIp } = config.clients.rateLimits;
  for (const [scope, limits] of [
    ['perUser', perUser],
    ['perIp', perIp],
  ] as const) {
    for (const [name, value] of Object.entries(limits)) if (value !== null) keys.push(`clients.rateLimits.${scope}.${name}`);
  }
  config.upstreams.forEach((u, i) => {
    if (u.rateLimit.messagesPerSecond !== null) keys.push(`upstreams[${i}].rateLimit.messagesPerSecond`);
  });
  if (config.limits.connectionRatePerIp !== null) keys.push('limits.connectionRatePerIp');
  // Without users there is no AUTH, so nothing to lock out.
  if (config.clients.authLockout !== null && config.clients.users.length > 0) keys.push('clients.authLockout');
  return keys;
}

/**
 * Why `count` processes may not start with this config, or null when they may: more than one with
 * the trail on standard output; with `state.redis`, more than `state.expectedInstances`; or more
 * than one, no `state.redis`, no `workers.allowLocalLimits`, and limits kept per process.
 */
export function workersProblem(config: Pick<Config, 'clients' | 'limits' | 'upstreams' | 'state' | 'workers' | 'audit'>, count: number): string | null {
  if (count <= 1) return null;
  // Records of several processes on one stream would interleave (a record can be longer than a pipe's atomic write).
  if (config.audit.file === '-') return `audit.file "-" (standard output) cannot be shared by ${count} processes; give the trail a file`;
  if (config.state.redis !== null) {
    // While Redis is unreachable each process keeps 1/expectedInstances of every fleet-wide limit; fewer
    // expected than there are processes here would multiply the limits exactly then (docs/fleet.md).
    if (config.state.expectedInstances >= count) return null;
    return (
      `state.expectedInstances is ${config.state.expectedInstances}, fewer than the ${count} processes: while Redis is unreachable each would keep ` +
      `1/${config.state.expectedInstances} of every fleet-wide limit; set it to the number of processes in the fleet (every worker of every machine)`
    );
  }
  if (config.workers.allowLocalLimits) return null;
  const keys = multipliedLimits(config);
  if (keys.length === 0) return null;
  return (
    `${count} processes would each allow the full limit of ${keys.join(', ')} (kept in each process's memory); ` +
    'set state.redis to share them, or workers.allowLocalLimits: true to accept that, or turn those limits off'
  );
}
