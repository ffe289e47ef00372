/**
 * The usual mistakes check-upstream names (src/tools/login-findings.ts): every rule on the real answer
 * it was written for, read through the same code the command reads it with (the identity provider's
 * refusal through token-error.ts, a token's payload through token-claims.ts, a reply through
 * replyFacts); and what the token decoder makes of JWTs and of everything else.
 */
import { describe, expect, it } from 'vitest';
import { tokenError } from '../../src/upstream/oauth2/token-error.js';
import { LOGIN_RULES, decodeChallenge, loginFindings, replyFacts, type LoginExample, type LoginFacts } from '../../src/tools/login-findings.js';
import { readClaims, tokenShape } from '../../src/tools/token-claims.js';

const TOKEN_URL = 'https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token';

/** The facts the command would have gathered from what the example shows. */
function factsOf(example: LoginExample): LoginFacts {
  const claims = example.claims === undefined ? null : readClaims(example.claims);
  const refusal = example.tokenRefusal;
  const error =
    refusal === undefined ? null : tokenError(TOKEN_URL, { url: TOKEN_URL, error: null, status: refusal.status, body: JSON.stringify(refusal.body) }, null);
  return {
    login: null,
    provider: null,
    host: 'smtp.example.com',
    user: null,
    tenantId: null,
    clientId: null,
    tokenError: error === null ? null : { cause: error.originalCode, message: error.message },
    token: claims === null ? null : 'jwt',
    claims,
    offered: null,
    authReply: example.authReply === undefined ? null : replyFacts(example.authReply),
    challenge: example.challenge === undefined ? null : decodeChallenge(example.challenge),
    // A minute into the example token's life, unless the example says when it was seen.
    now: claims?.issuedAt != null ? claims.issuedAt + 60_000 : Date.now(),
    ...example.facts,
  };
}

function exampleOf(name: string): LoginExample {
  const rule = LOGIN_RULES.find((r) => r.name === name);
  if (rule === undefined) throw new Error(`no rule ${name}`);
  return rule.example;
}

describe('login findings', () => {
  it('have unique names', () => {
    const names = LOGIN_RULES.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it.each(LOGIN_RULES.map((r) => [r.name, r] as const))('%s matches the answer it was written for, and fills every placeholder', (name, rule) => {
    const findings = loginFindings(factsOf(rule.example));
    const finding = findings.find((f) => f.rule === name);
    expect(finding, `matched instead: ${findings.map((f) => f.rule).join(', ')}`).toBeDefined();
    expect(`${finding!.says} ${finding!.fix}`).not.toMatch(/\{\w+\}/);
  });

  it('a good app-only login to Exchange Online has nothing to say', () => {
    const example = exampleOf('exchange-service-principal-or-mailbox-permission');
    expect(loginFindings(factsOf({ ...example, authReply: '235 2.7.0 Authentication successful' }))).toEqual([]);
  });

  it('a refused good token names the service principal and the mailbox permission with the IDs from the token', () => {
    const [finding] = loginFindings(factsOf(exampleOf('exchange-service-principal-or-mailbox-permission')));
    expect(finding!.fix).toContain('New-ServicePrincipal -AppId 5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60 -ObjectId 6d0e8f2a-3b4c-4d5e-8f9a-0b1c2d3e4f5a');
    expect(finding!.fix).toContain('Add-MailboxPermission -Identity printer@contoso.com -User 6d0e8f2a-3b4c-4d5e-8f9a-0b1c2d3e4f5a -AccessRights FullAccess');
  });

  it('SMTP AUTH off (535 5.7.139) is not mistaken for a missing service principal', () => {
    expect(loginFindings(factsOf(exampleOf('smtp-auth-disabled'))).map((f) => f.rule)).toEqual(['smtp-auth-disabled']);
  });

  it('a Graph token is told as such, not as a token for another audience', () => {
    expect(loginFindings(factsOf(exampleOf('token-for-graph'))).map((f) => f.rule)).toEqual(['token-for-graph']);
  });

  it('a wrong secret names the application from the config', () => {
    const [finding] = loginFindings(factsOf(exampleOf('entra-secret-wrong')));
    expect(finding!.says).toBe('Microsoft Entra ID does not take auth.clientSecret as a secret of application 5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60');
  });
});

describe('token claims', () => {
  const jwt = (payload: object, header: object = { alg: 'RS256', typ: 'JWT' }) =>
    `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.c2lnbmF0dXJl`;

  it('reads an app-only Microsoft token: audience, tenant, application, roles, times', () => {
    const shape = tokenShape(
      jwt({
        aud: 'https://outlook.office365.com',
        tid: 't',
        appid: 'a',
        app_displayname: 'n',
        oid: 'o',
        idtyp: 'app',
        roles: ['SMTP.SendAsApp'],
        iat: 10,
        exp: 3610,
      }),
    );
    expect(shape).toEqual({
      kind: 'jwt',
      claims: expect.objectContaining({
        audiences: ['https://outlook.office365.com'],
        tenant: 't',
        appId: 'a',
        appName: 'n',
        objectId: 'o',
        roles: ['SMTP.SendAsApp'],
        appOnly: true,
        issuedAt: 10_000,
        expiresAt: 3_610_000,
      }) as unknown,
    });
  });

  it("reads a user's token: its scopes and its user", () => {
    const shape = tokenShape(jwt({ aud: ['https://outlook.office.com', 'x'], scp: 'SMTP.Send offline_access', upn: 'ana@contoso.com' }));
    expect(shape.kind === 'jwt' && shape.claims).toMatchObject({
      audiences: ['https://outlook.office.com', 'x'],
      scopes: ['SMTP.Send', 'offline_access'],
      appOnly: false,
      user: 'ana@contoso.com',
    });
  });

  it('takes anything else for opaque: a random string, an encrypted JWT, a header without alg, a payload that is not an object', () => {
    expect(tokenShape('ya29.a0AfB_byC-opaque-google-token').kind).toBe('opaque');
    expect(tokenShape('a.b.c.d.e').kind).toBe('opaque');
    expect(tokenShape(jwt({ aud: 'x' }, { typ: 'JWT' })).kind).toBe('opaque');
    expect(tokenShape(jwt([1, 2])).kind).toBe('opaque');
    expect(tokenShape(`${jwt({ aud: 'x' })}${'A'.repeat(70_000)}`).kind).toBe('opaque');
  });

  it('ignores claims of the wrong type instead of failing', () => {
    expect(readClaims({ aud: 7, roles: 'SMTP.SendAsApp', exp: 'soon', tid: '' })).toMatchObject({ audiences: [], roles: [], expiresAt: null, tenant: null });
  });
});
