import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { configWarnings, STARTUP_WARNING_CODES, startupWarnings } from '../../src/observe/startup-warnings.js';

const DOC = readFileSync(new URL('../../docs/observability.md', import.meta.url), 'utf8');

/** A valid configuration with `extra` keys merged in. */
function config(extra: Record<string, unknown> = {}) {
  return parseConfig(
    {
      listen: [{ host: '127.0.0.1', port: 2525 }],
      tls: { cert: 'server.crt', key: 'server.key' },
      upstreams: [{ name: 'provider', url: 'smtp://smtp.example.net:587' }],
      ...extra,
    },
    { env: {}, baseDir: '/srv/mailtrail' },
  );
}

function codes(extra: Record<string, unknown> = {}): string[] {
  return configWarnings(config(extra)).map((w) => w.code);
}

describe('start-up warnings', () => {
  it('has none for a configuration with a certificate and an upstream reached with verified TLS', () => {
    expect(codes()).toEqual([]);
  });

  it('warns of the ephemeral certificate when tls.cert / tls.key are not set', () => {
    expect(codes({ tls: null })).toEqual(['tls_ephemeral']);
  });

  it('warns of an upstream beyond loopback without TLS, naming it and its credentials', () => {
    const [w] = configWarnings(config({ upstreams: [{ name: 'relay', url: 'smtp://u:Secret-9z@mx.example.net:25', tls: { mode: 'none' } }] }));
    expect(w?.code).toBe('upstream_plaintext');
    expect(w?.message).toMatch(/^upstream relay \(mx\.example\.net:25\) without TLS .*messages and its credentials/);
    expect(JSON.stringify(w)).not.toContain('Secret-9z');
  });

  it('does not warn of a plain upstream on loopback (a local catcher)', () => {
    expect(codes({ upstreams: [{ name: 'catcher', url: 'smtp://127.0.0.1:1025', tls: { mode: 'none' } }] })).toEqual([]);
  });

  it('warns of an upstream whose certificate is not verified', () => {
    expect(codes({ upstreams: [{ name: 'provider', url: 'smtp://smtp.example.net:587', tls: { verify: false } }] })).toEqual(['upstream_unverified']);
  });

  it('warns of an HTTP endpoint beyond loopback without a token, not of one with a token', () => {
    expect(codes({ http: { host: '0.0.0.0', port: 8025 } })).toEqual(['http_without_token']);
    expect(codes({ http: { host: '0.0.0.0', port: 8025, token: 'a-long-enough-token-1234567890' } })).toEqual([]);
  });

  it('says why the HTTP endpoint did not start, instead of warning about its token', () => {
    const c = config({ http: { host: '0.0.0.0', port: 8025 } });
    const facts = {
      ephemeralCert: false,
      upstreams: c.upstreams,
      httpNotStarted: 'EADDRINUSE',
      auditTornTail: false,
      auditUnchained: null,
      dataDirUnlocked: null,
    };
    expect(startupWarnings(c, facts).map((w) => w.code)).toEqual(['http_not_started']);
  });

  it('are listed in docs/observability.md, exactly', () => {
    const start = DOC.indexOf('\n## Start-up output and the log\n');
    expect(start, 'no "Start-up output and the log" section').toBeGreaterThan(0);
    const section = DOC.slice(start, DOC.indexOf('\n## ', start + 1));
    expect([...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1])).toEqual([...STARTUP_WARNING_CODES]);
  });
});
