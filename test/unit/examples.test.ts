/**
 * The provider examples in examples/ are configs an operator copies as they are: each must pass
 * `mailtrail check-config` once its environment variables are set, must take every secret from the
 * environment, and must speak TLS to its provider. The systemd unit must carry its hardening.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { CLI, ensureBuilt, ROOT } from '../../soak/mailtrail-child.js';

const run = promisify(execFile);

/** Every provider example, with the environment variables it reads. */
const EXAMPLES: Record<string, string[]> = {
  'amazon-ses.yaml': ['APP_SMTP_PASSWORD', 'SES_SMTP_USER', 'SES_SMTP_PASSWORD'],
  'sendgrid.yaml': ['APP_SMTP_PASSWORD', 'SENDGRID_API_KEY'],
  'postmark.yaml': ['APP_SMTP_PASSWORD', 'NEWSLETTER_SMTP_PASSWORD', 'POSTMARK_SERVER_TOKEN', 'POSTMARK_BROADCAST_TOKEN'],
  'mailgun.yaml': ['APP_SMTP_PASSWORD', 'MAILGUN_SMTP_USER', 'MAILGUN_SMTP_PASSWORD'],
  'microsoft-365.yaml': ['APP_SMTP_PASSWORD', 'M365_SMTP_USER', 'M365_SMTP_PASSWORD'],
  'google-workspace.yaml': ['APP_SMTP_PASSWORD', 'GOOGLE_SMTP_USER', 'GOOGLE_SMTP_APP_PASSWORD'],
  'microsoft-365-oauth2.yaml': ['APP_SMTP_PASSWORD', 'M365_CLIENT_ID', 'M365_CLIENT_SECRET'],
  'google-workspace-oauth2.yaml': ['APP_SMTP_PASSWORD', 'GOOGLE_SERVICE_ACCOUNT_KEY_FILE'],
  'gmail-refresh-token.yaml': ['APP_SMTP_PASSWORD', 'GMAIL_CLIENT_ID', 'GMAIL_CLIENT_SECRET', 'GMAIL_REFRESH_TOKEN'],
};

/** Variables that name a file check-config reads: a real one, written in beforeAll. */
const FILES: Record<string, string> = {};

const examplePath = (name: string): string => join(ROOT, 'examples', name);
const envFor = (vars: string[]): Record<string, string> => Object.fromEntries(vars.map((v) => [v, FILES[v] ?? `example-${v.toLowerCase()}`]));

async function checkConfig(file: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, 'check-config', '--config', file], { env: { PATH: process.env.PATH ?? '', ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A Google service account key file as the Cloud console downloads it (a fresh RSA key), in a temp folder. */
async function serviceAccountKeyFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mailtrail-examples-'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const file = join(dir, 'service-account.json');
  const key = {
    type: 'service_account',
    project_id: 'example',
    private_key_id: 'a1b2c3',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: 'mailtrail@example.iam.gserviceaccount.com',
    client_id: '100000000000000000001',
  };
  await writeFile(file, JSON.stringify(key), { mode: 0o600 });
  return file;
}

beforeAll(async () => {
  FILES.GOOGLE_SERVICE_ACCOUNT_KEY_FILE = await serviceAccountKeyFile();
});

afterAll(async () => {
  if (FILES.GOOGLE_SERVICE_ACCOUNT_KEY_FILE) await rm(dirname(FILES.GOOGLE_SERVICE_ACCOUNT_KEY_FILE), { recursive: true, force: true });
});

describe('provider examples', () => {
  /** check-config of each example with and without its environment, run side by side up front. */
  const checked = new Map<string, { withEnv: Awaited<ReturnType<typeof checkConfig>>; withoutEnv: Awaited<ReturnType<typeof checkConfig>> }>();

  beforeAll(async () => {
    await ensureBuilt();
    await Promise.all(
      Object.entries(EXAMPLES).map(async ([name, vars]) => {
        const [withEnv, withoutEnv] = await Promise.all([checkConfig(examplePath(name), envFor(vars)), checkConfig(examplePath(name), {})]);
        checked.set(name, { withEnv, withoutEnv });
      }),
    );
  }, 120_000);

  for (const [name, vars] of Object.entries(EXAMPLES)) {
    describe(name, () => {
      it('passes mailtrail check-config with its environment set', () => {
        const r = checked.get(name)!.withEnv;
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/^config ok: /);
      });

      it('takes every secret from the environment (check-config names each one when unset)', () => {
        const r = checked.get(name)!.withoutEnv;
        expect(r.code).toBe(1);
        for (const v of vars) expect(r.stderr).toContain(`environment variable ${v} is not set`);
        // No literal password or token in the file.
        const text = readFileSync(examplePath(name), 'utf8');
        for (const m of text.matchAll(/^\s*(?:password|pass|clientSecret|refreshToken|serviceAccountKeyFile):\s*(.+)$/gm)) expect(m[1]).toMatch(/^"?\$\{/);
      });

      it('speaks TLS to the provider and offers it to clients', () => {
        const config = loadConfig({ file: examplePath(name), env: envFor(vars), cwd: ROOT });
        for (const u of config.upstreams) expect(u.implicitTls || u.tls.mode === 'required').toBe(true);
        for (const u of config.upstreams) expect(u.tls.verify).toBe(true);
        expect(config.tls).not.toBeNull();
      });
    });
  }
});

describe('OAuth2 examples', () => {
  it.each([
    ['microsoft-365-oauth2.yaml', 'microsoft', 'client_credentials', 'https://outlook.office365.com/.default'],
    ['google-workspace-oauth2.yaml', 'google', 'jwt_bearer', 'https://mail.google.com/'],
    ['gmail-refresh-token.yaml', 'generic', 'refresh_token', 'https://mail.google.com/'],
  ])('%s logs in with OAuth2: %s, %s grant, scope %s', (name, provider, grant, scope) => {
    const config = loadConfig({ file: examplePath(name), env: envFor(EXAMPLES[name]!), cwd: ROOT });
    const auth = config.upstreams[0]!.auth;
    expect(auth).toMatchObject({ type: 'oauth2', provider, grant, scope });
  });
});

describe('systemd unit (examples/mailtrail.service)', () => {
  const unit = readFileSync(examplePath('mailtrail.service'), 'utf8');
  const directives = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) directives.set(m[1]!, [...(directives.get(m[1]!) ?? []), m[2]!]);
  }
  const value = (key: string): string | undefined => directives.get(key)?.at(-1);

  it('runs as its own unprivileged user, allowed only to bind low ports', () => {
    expect(value('User')).toBe('mailtrail');
    expect(value('NoNewPrivileges')).toBe('yes');
    expect(value('CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
  });

  it('makes the system read-only but for the data folder', () => {
    expect(value('ProtectSystem')).toBe('strict');
    expect(value('ReadWritePaths')).toBe('/var/lib/mailtrail');
    expect(value('StateDirectory')).toBe('mailtrail');
  });

  it('serves with the checked config, reloads with SIGHUP and stops with SIGTERM', () => {
    expect(value('ExecStartPre')).toMatch(/dist\/cli\.js check-config --config \/etc\/mailtrail\/mailtrail\.yaml$/);
    expect(value('ExecStart')).toMatch(/dist\/cli\.js serve --config \/etc\/mailtrail\/mailtrail\.yaml$/);
    expect(value('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(value('KillSignal')).toBe('SIGTERM');
  });

  it('is accepted by systemd-analyze verify, where systemd is installed', async () => {
    let out: { stdout: string; stderr: string };
    try {
      out = await run('systemd-analyze', ['verify', examplePath('mailtrail.service')], { timeout: 20_000 });
    } catch (err) {
      const e = err as { code?: string | number; stdout?: string; stderr?: string };
      if (e.code === 'ENOENT') return; // no systemd on this machine
      out = { stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
    expect(`${out.stdout}${out.stderr}`).not.toMatch(/Unknown key|Invalid|Failed to parse|unknown lvalue/i);
  });
});
