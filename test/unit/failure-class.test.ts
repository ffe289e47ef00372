import { describe, expect, it } from 'vitest';
import { isInfrastructureClass, isProviderSideClass, mayFailOverClass, UPSTREAM_FAILURE_CLASSES } from '../../src/classify/failure-class.js';

const where = (test: (cls: string) => boolean): string[] => UPSTREAM_FAILURE_CLASSES.filter(test);

describe('the class groups read off the failure traits', () => {
  it('fails over on the infrastructure, service and account classes, never on a verdict or an unknown outcome', () => {
    expect(where(mayFailOverClass).sort()).toEqual(
      ['dns', 'connect', 'tls', 'timeout', 'connection_lost', 'protocol', 'upstream_unavailable', 'throttled', 'quota', 'upstream_auth'].sort(),
    );
  });

  it('counts only an unreachable or broken upstream against its circuit breaker', () => {
    expect(where(isInfrastructureClass).sort()).toEqual(['dns', 'connect', 'tls', 'timeout', 'connection_lost', 'protocol', 'upstream_unavailable'].sort());
  });

  it('counts for alert streaks every class the operator or the provider must act on', () => {
    expect(where(isProviderSideClass).sort()).toEqual(
      [
        'dns',
        'connect',
        'tls',
        'timeout',
        'connection_lost',
        'unknown_outcome',
        'protocol',
        'upstream_unavailable',
        'throttled',
        'quota',
        'upstream_auth',
        'internal',
      ].sort(),
    );
  });

  it('knows no class outside the closed list', () => {
    for (const test of [mayFailOverClass, isInfrastructureClass, isProviderSideClass]) {
      expect(test('rate_limited')).toBe(false);
      expect(test('toString')).toBe(false);
    }
  });
});
