import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { schemaKeyPaths, yamlKeyPaths } from '../helpers/config-schema.js';
import { makeOAuthCredentials } from '../helpers/oauth-server.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const docPath = join(root, 'docs', 'config.md');
const examplePath = join(root, 'examples', 'mailtrail.yaml');

/** Key paths in the first column of the table under "## Keys". */
function documentedKeyPaths(markdown: string): string[] {
  const section = markdown.split(/^## /m).find((s) => s.startsWith('Keys\n')) ?? '';
  return [...section.matchAll(/^\|\s*`([^`]+)`\s*\|/gm)].map((m) => m[1] ?? '');
}

describe('config documentation', () => {
  const schemaPaths = schemaKeyPaths(configSchema);

  it('finds the nested keys when walking the schema', () => {
    expect(schemaPaths).toEqual(expect.arrayContaining(['listen[].port', 'upstreams[].timeouts.connect', 'log.level']));
  });

  it('documents every key the schema accepts', () => {
    const documented = new Set(documentedKeyPaths(readFileSync(docPath, 'utf8')));
    expect(schemaPaths.filter((p) => !documented.has(p))).toEqual([]);
  });

  it('documents no key the schema does not accept', () => {
    const accepted = new Set(schemaPaths);
    expect(documentedKeyPaths(readFileSync(docPath, 'utf8')).filter((p) => !accepted.has(p))).toEqual([]);
  });

  it('documents each key once', () => {
    const documented = documentedKeyPaths(readFileSync(docPath, 'utf8'));
    expect(documented.filter((p, i) => documented.indexOf(p) !== i)).toEqual([]);
  });

  it('shows every key in the example config', () => {
    const shown = new Set(yamlKeyPaths(YAML.parse(readFileSync(examplePath, 'utf8'))));
    expect(schemaPaths.filter((p) => !shown.has(p))).toEqual([]);
  });

  it('ships an example config that loads', async () => {
    // Its OAuth2 upstreams name credential files, which must exist and be what they claim.
    const dir = await mkdtemp(join(tmpdir(), 'mailtrail-example-'));
    try {
      const creds = await makeOAuthCredentials(dir);
      const env = {
        BILLING_SMTP_PASSWORD: 'example',
        SES_SMTP_USER: 'user',
        SES_SMTP_PASSWORD: 'pass',
        M365_CLIENT_ID: '00000000-0000-0000-0000-000000000001',
        M365_CERT_KEY: creds.certificate.keyPath,
        M365_CERT: creds.certificate.certPath,
        GOOGLE_SERVICE_ACCOUNT_KEY: creds.serviceAccount.file,
        OTHER_IDP_SECRET: 'secret',
        OTHER_IDP_REFRESH: 'refresh',
      };
      expect(() => loadConfig({ file: examplePath, env, cwd: root })).not.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
