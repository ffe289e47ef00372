/**
 * The usual mistakes behind an upstream login that fails, read from what `mailtrail check-upstream` saw
 * (docs/oauth2.md, "Checking an upstream"): the identity provider's refusal, the claims of the token it
 * issued, the mail server's answer to AUTH. Each mistake is a rule in LOGIN_RULES (data: what it matches,
 * what it says, how to fix it, and the real error, claims or reply it was written for); `loginFindings`
 * is the pure function that applies them. test/unit/login-findings.test.ts runs every rule on its example.
 *
 * A rule may name values the check saw (the tenant, the application's IDs from the token, the mailbox):
 * `{name}` in its text is filled from LoginFacts. These are identifiers, never secrets: nothing here
 * sees a client secret, a password or the token itself.
 */
import { parseResponseLine } from '../smtp/reply-text.js';
import type { TokenClaims } from './token-claims.js';

/** What the check saw, as the rules read it. */
export interface LoginFacts {
  /** How the upstream logs in: `password`, `oauth2`, or null (no AUTH). */
  readonly login: 'password' | 'oauth2' | null;
  readonly provider: 'microsoft' | 'google' | 'generic' | null;
  /** The upstream's host name (or address) as configured. */
  readonly host: string;
  /** `auth.user`: the mailbox (or, with a password, the login name). */
  readonly user: string | null;
  readonly tenantId: string | null;
  /** `auth.clientId`, or a Google service account's `client_id` (the number domain-wide delegation lists). */
  readonly clientId: string | null;
  /** The token request failed: its cause (`invalid_client AADSTS7000215`, `ECONNREFUSED`) and message (token-error.ts). */
  readonly tokenError: { readonly cause: string; readonly message: string } | null;
  /** The token the identity provider issued: a JWT (its claims below) or opaque; null when none was. */
  readonly token: 'jwt' | 'opaque' | null;
  readonly claims: TokenClaims | null;
  /** The AUTH mechanisms the mail server offered in its last EHLO; null when no EHLO was answered. */
  readonly offered: readonly string[] | null;
  /** The mail server's final answer to AUTH; null when AUTH was not tried or got no answer. */
  readonly authReply: { readonly code: number; readonly text: string } | null;
  /** An XOAUTH2 error challenge (a 334 carrying base64 JSON, as Gmail sends), decoded. */
  readonly challenge: Readonly<Record<string, unknown>> | null;
  /** When the check ran (epoch ms), for the token's times. */
  readonly now: number;
}

type Provider = NonNullable<LoginFacts['provider']>;

/** What a rule requires of the facts; every condition given must hold. */
export interface LoginMatch {
  readonly login?: 'password' | 'oauth2';
  readonly provider?: readonly Provider[];
  readonly host?: RegExp;
  /** The token request failed with a cause matching this. */
  readonly tokenCause?: RegExp;
  /** ... and a message (the provider's description) matching this. */
  readonly tokenMessage?: RegExp;
  /** The token is a JWT of Microsoft Entra ID (it names its tenant: `tid`). */
  readonly microsoftToken?: true;
  /** One of the token's audiences matches. */
  readonly audience?: RegExp;
  /** The token has an audience, and none matches. */
  readonly audienceNot?: RegExp;
  readonly appOnly?: boolean;
  readonly rolesHave?: string;
  readonly rolesLack?: string;
  readonly scopesLack?: string;
  /** A user's token, for another user than `auth.user`. */
  readonly tokenUserDiffers?: true;
  /** The token's times are more than CLOCK_SKEW_MS off this machine's clock. */
  readonly clockOff?: true;
  /** The mail server's answer to AUTH. */
  readonly authReply?: { readonly codes?: readonly number[]; readonly text?: RegExp };
  /** The mail server answered XOAUTH2 with an error challenge. */
  readonly challenge?: true;
  /** The mail server's EHLO did not offer this AUTH mechanism (an empty string: no AUTH at all). */
  readonly offeredLacks?: string;
}

/** The real answer a rule was written for, in the form it comes in; the test turns it into LoginFacts. */
export interface LoginExample {
  /** The facts around it (the login, the provider, the mailbox...). */
  readonly facts?: Partial<LoginFacts>;
  /** The identity provider's refusal as it was sent: HTTP status and JSON body. */
  readonly tokenRefusal?: { readonly status: number; readonly body: Readonly<Record<string, unknown>> };
  /** A token's payload as the identity provider issued it. */
  readonly claims?: Readonly<Record<string, unknown>>;
  /** The mail server's reply to AUTH, as sent (lines joined by \n). */
  readonly authReply?: string;
  /** An XOAUTH2 error challenge, as sent (`334 <base64>`). */
  readonly challenge?: string;
  /** Where it was documented or seen. */
  readonly seen: string;
}

export interface LoginRule {
  readonly name: string;
  /** `problem`: it makes the login fail; `warning`: worth fixing, it may not fail today. */
  readonly severity: 'problem' | 'warning';
  readonly match: LoginMatch;
  /** What is wrong, in one sentence; `{name}` placeholders are filled from the facts (see fill). */
  readonly says: string;
  /** What to do, step by step where there are steps. */
  readonly fix: string;
  /** Where to read more: a provider's page or a section of mailtrail's docs. */
  readonly docs: string;
  readonly example: LoginExample;
}

export interface LoginFinding {
  readonly rule: string;
  readonly severity: LoginRule['severity'];
  readonly says: string;
  readonly fix: string;
  readonly docs: string;
}

/** Clock difference the identity providers tolerate (Microsoft Entra ID: 5 minutes). */
export const CLOCK_SKEW_MS = 5 * 60_000;

/** Exchange Online as an audience: its resource URIs (public and sovereign clouds) and its application ID. */
const OUTLOOK_AUDIENCE =
  /^(?:https:\/\/outlook\.office(?:365)?\.com|https:\/\/outlook\.office365\.us|https:\/\/partner\.outlook\.cn|00000002-0000-0ff1-ce00-000000000000)\/?$/i;
/** Microsoft Graph as an audience: its resource URI or application ID. */
const GRAPH_AUDIENCE = /^(?:https:\/\/graph\.microsoft\.(?:com|us)|https:\/\/microsoftgraph\.chinacloudapi\.cn|00000003-0000-0000-c000-000000000000)\/?$/i;
const OUTLOOK_OR_GRAPH = new RegExp(`${OUTLOOK_AUDIENCE.source}|${GRAPH_AUDIENCE.source}`, 'i');

const MS_ERRORS = 'https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes';
const MS_SMTP_OAUTH =
  'https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth';
const MS_SMTP_AUTH = 'https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission';
const MS_CLAIMS = 'https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference';
const GOOGLE_SA = 'https://developers.google.com/identity/protocols/oauth2/service-account';
const GOOGLE_DWD = 'https://support.google.com/a/answer/162106';
const GOOGLE_XOAUTH2 = 'https://developers.google.com/workspace/gmail/imap/xoauth2-protocol';

/** An app-only token as Exchange Online accepts it (v1.0, as login.microsoftonline.com issues it for `https://outlook.office365.com/.default`). */
const APP_ONLY_OUTLOOK = {
  aud: 'https://outlook.office365.com',
  iss: 'https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/',
  iat: 1764568980,
  nbf: 1764568980,
  exp: 1764572880,
  app_displayname: 'mailtrail',
  appid: '5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60',
  appidacr: '1',
  idp: 'https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/',
  idtyp: 'app',
  oid: '6d0e8f2a-3b4c-4d5e-8f9a-0b1c2d3e4f5a',
  roles: ['SMTP.SendAsApp'],
  sub: '6d0e8f2a-3b4c-4d5e-8f9a-0b1c2d3e4f5a',
  tid: '72f988bf-86f1-41af-91ab-2d7cd011db47',
  ver: '1.0',
};

const M365_OAUTH2 = { login: 'oauth2', provider: 'microsoft', host: 'smtp.office365.com', user: 'printer@contoso.com', tenantId: 'contoso.com' } as const;
const GOOGLE_OAUTH2 = { login: 'oauth2', provider: 'google', host: 'smtp.gmail.com', user: 'app@example.com' } as const;

export const LOGIN_RULES: readonly LoginRule[] = [
  // --- The token request, refused by Microsoft Entra ID (token-error.ts puts the AADSTS number in the cause).
  {
    name: 'entra-tenant-not-found',
    severity: 'problem',
    match: { tokenCause: /\bAADSTS90002\b/ },
    says: 'Microsoft Entra ID knows no tenant {tenantId}',
    fix:
      "set auth.tenantId to the Directory (tenant) ID shown on the app registration's Overview page (a GUID), or a domain verified in that tenant " +
      '(contoso.onmicrosoft.com); a tenant in a government or China cloud needs its login host in auth.tokenUrl',
    docs: MS_ERRORS,
    example: {
      facts: { ...M365_OAUTH2, tenantId: '12345678-1234-1234-1234-123456789012' },
      tokenRefusal: {
        status: 400,
        body: {
          error: 'invalid_request',
          error_description:
            "AADSTS90002: Tenant '12345678-1234-1234-1234-123456789012' not found. This may happen if there are no active subscriptions for the tenant. " +
            'Check to make sure you have the correct tenant ID. Check with your subscription administrator.\r\nTrace ID: c07bcae7-ba0e-4a79-a071-a56335343000\r\n' +
            'Correlation ID: f6d0f194-0ceb-4f50-9d1c-0c3c4e5d6f70\r\nTimestamp: 2022-08-02 11:19:53Z',
          error_codes: [90002],
        },
      },
      seen: 'login.microsoftonline.com, client credentials request for an unknown tenant (recorded in the Azure SDK tests)',
    },
  },
  {
    name: 'entra-secret-wrong',
    severity: 'problem',
    match: { tokenCause: /\bAADSTS7000215\b/ },
    says: 'Microsoft Entra ID does not take auth.clientSecret as a secret of application {clientId}',
    fix:
      "auth.clientSecret must be the secret's Value, shown once when the secret is added (App registrations > the application > Certificates & secrets), " +
      'not its Secret ID; a lost Value cannot be shown again: add a new secret',
    docs: MS_ERRORS,
    example: {
      facts: { ...M365_OAUTH2, clientId: '5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60' },
      tokenRefusal: {
        status: 401,
        body: {
          error: 'invalid_client',
          error_description:
            'AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, ' +
            "for a secret added to app '5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60'.\r\nTrace ID: 6f6c4645-0202-4486-b625-fa957dfc4700\r\n" +
            'Correlation ID: 5fc87507-4086-4e77-b415-cee677eb232e\r\nTimestamp: 2026-12-01 06:03:00Z',
          error_codes: [7000215],
        },
      },
      seen: 'microsoft-365-agents-toolkit#8621',
    },
  },
  {
    name: 'entra-secret-expired',
    severity: 'problem',
    match: { tokenCause: /\bAADSTS7000222\b/ },
    says: 'the client secret of application {clientId} has expired',
    fix:
      'add a new client secret (App registrations > the application > Certificates & secrets > New client secret), put its Value where ' +
      'auth.clientSecret reads it, restart mailtrail, then delete the expired one; a secret lasts 24 months at most: note the date, or use a certificate (auth.clientCertificate)',
    docs: MS_ERRORS,
    example: {
      facts: { ...M365_OAUTH2, clientId: '6b2d1d92-7018-4182-b70e-821127bec509' },
      tokenRefusal: {
        status: 401,
        body: {
          error: 'invalid_client',
          error_description:
            "AADSTS7000222: The provided client secret keys for app '6b2d1d92-7018-4182-b70e-821127bec509' are expired. Visit the Azure portal to create new keys " +
            'for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.\r\n' +
            'Trace ID: 7d8fc6a9-2d93-4df0-99de-412c5a1d1700\r\nCorrelation ID: 0e4c2f3a-5b6d-4e7f-8a9b-0c1d2e3f4a5b\r\nTimestamp: 2026-08-10 08:19:37Z',
          error_codes: [7000222],
        },
      },
      seen: 'login.microsoftonline.com, client credentials request with a secret past its end date',
    },
  },
  {
    name: 'entra-application-not-found',
    severity: 'problem',
    match: { tokenCause: /\bAADSTS700016\b/ },
    says: 'tenant {tenantId} has no application with client ID {clientId}',
    fix:
      "auth.clientId must be the Application (client) ID from the app registration's Overview page, and auth.tenantId the tenant it is registered in " +
      '(an application registered in another tenant needs admin consent in this one first)',
    docs: MS_ERRORS,
    example: {
      facts: { ...M365_OAUTH2, clientId: '82bc3e1b-ed77-476a-8723-623a747f8739' },
      tokenRefusal: {
        status: 400,
        body: {
          error: 'unauthorized_client',
          error_description:
            "AADSTS700016: Application with identifier '82bc3e1b-ed77-476a-8723-623a747f8739' was not found in the directory 'Contoso'. This can happen if the " +
            'application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your ' +
            'authentication request to the wrong tenant.',
          error_codes: [700016],
        },
      },
      seen: 'login.microsoftonline.com, client credentials request with a client ID of another tenant',
    },
  },
  {
    name: 'entra-certificate-not-registered',
    severity: 'problem',
    match: { tokenCause: /\bAADSTS700027\b/ },
    says: 'application {clientId} has no such certificate registered (its signature on the request was not accepted)',
    fix:
      'upload the certificate (the file auth.clientCertificate.cert names, without the key) under App registrations > the application > ' +
      'Certificates & secrets > Certificates; auth.clientCertificate.key must be its private key',
    docs: MS_ERRORS,
    example: {
      facts: { ...M365_OAUTH2, clientId: '5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60' },
      tokenRefusal: {
        status: 401,
        body: {
          error: 'invalid_client',
          error_description: 'AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was not found.]',
          error_codes: [700027],
        },
      },
      seen: "Microsoft's MSAL.NET migration guide (troubleshooting a certificate credential)",
    },
  },
  {
    name: 'entra-scope-not-default',
    severity: 'problem',
    match: { tokenCause: /\bAADSTS1002012\b/ },
    says: 'an app-only token request must ask for a resource with /.default, not for a permission by name',
    fix:
      'remove auth.scope (the default is https://outlook.office365.com/.default) or end it in /.default: the token then carries every application ' +
      'permission granted with admin consent (SMTP.SendAsApp)',
    docs: MS_SMTP_OAUTH,
    example: {
      facts: M365_OAUTH2,
      tokenRefusal: {
        status: 400,
        body: {
          error: 'invalid_scope',
          error_description:
            'AADSTS1002012: The provided value for scope https://outlook.office365.com/SMTP.SendAsApp is not valid. Client credential flows must have a scope ' +
            'value with /.default suffixed to the resource identifier (application ID URI).',
          error_codes: [1002012],
        },
      },
      seen: 'login.microsoftonline.com, client credentials request for a permission by name',
    },
  },
  {
    name: 'entra-resource-not-found',
    severity: 'problem',
    match: { tokenCause: /\bAADSTS500011\b/ },
    says: 'the tenant does not have the resource the scope names (for SMTP: Exchange Online, https://outlook.office365.com)',
    fix:
      'check auth.scope for a typing mistake (or remove it), and that auth.tenantId is the tenant whose mailboxes are in Exchange Online: ' +
      'a tenant without Exchange Online has no such resource',
    docs: MS_ERRORS,
    example: {
      facts: M365_OAUTH2,
      tokenRefusal: {
        status: 400,
        body: {
          error: 'invalid_resource',
          error_description:
            'AADSTS500011: The resource principal named https://outlook.office365.us was not found in the tenant named Contoso. This can happen if the ' +
            'application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your ' +
            'authentication request to the wrong tenant.',
          error_codes: [500011],
        },
      },
      seen: 'login.microsoftonline.com, a token request for a resource of another cloud',
    },
  },
  {
    name: 'entra-refresh-token-expired',
    severity: 'problem',
    match: { tokenCause: /\bAADSTS700082\b/ },
    says: 'the refresh token has expired (unused for 90 days) or was revoked',
    fix: 'sign in once more to get a new refresh token (docs/oauth2.md, "Setting up the provider") and set it in auth.refreshToken',
    docs: MS_ERRORS,
    example: {
      facts: { login: 'oauth2', provider: 'generic', host: 'smtp.office365.com', user: 'printer@contoso.com' },
      tokenRefusal: {
        status: 400,
        body: {
          error: 'invalid_grant',
          error_description:
            'AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2022-03-02T03:54:33.8043551Z and was inactive for 90.00:00:00.',
          error_codes: [700082],
        },
      },
      seen: 'login.microsoftonline.com, refresh token grant with a refresh token unused for 90 days',
    },
  },

  // --- The token request, refused by Google (developers.google.com/identity/protocols/oauth2/service-account, "JWT error codes").
  {
    name: 'google-delegation-missing',
    severity: 'problem',
    match: { provider: ['google'], tokenCause: /^(?:unauthorized_client|access_denied)\b/ },
    says: 'the service account may not act for {user}: domain-wide delegation is not set up for its client ID and https://mail.google.com/',
    fix:
      'in the Google Admin console (a super administrator): Security > Access and data control > API controls > Manage Domain Wide Delegation > Add new: ' +
      "Client ID {clientId} (the service account's numeric client_id, not its email address), OAuth scope https://mail.google.com/; it takes effect within minutes, at most 24 hours",
    docs: GOOGLE_DWD,
    example: {
      facts: { ...GOOGLE_OAUTH2, clientId: '100000000000000000001' },
      tokenRefusal: {
        status: 401,
        body: {
          error: 'unauthorized_client',
          error_description: 'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
        },
      },
      seen: `${GOOGLE_SA} (JWT error codes)`,
    },
  },
  {
    name: 'google-user-not-found',
    severity: 'problem',
    match: { provider: ['google'], tokenCause: /^invalid_grant\b/, tokenMessage: /Invalid email or User ID|Not a valid email/i },
    says: '{user} is not a user of the Google Workspace domain',
    fix: 'auth.user must be the primary address of a user of the domain (not an alias, a group or a gmail.com account): the service account acts as that user',
    docs: GOOGLE_SA,
    example: {
      facts: GOOGLE_OAUTH2,
      tokenRefusal: { status: 400, body: { error: 'invalid_grant', error_description: 'Invalid email or User ID' } },
      seen: `${GOOGLE_SA} (JWT error codes)`,
    },
  },
  {
    name: 'google-key-invalid',
    severity: 'problem',
    match: { provider: ['google'], tokenCause: /^invalid_grant\b/, tokenMessage: /Invalid JWT Signature/i },
    says: 'Google does not accept the key in auth.serviceAccountKeyFile: it was deleted, disabled or expired',
    fix: 'create a new key for the service account (Google Cloud console > IAM & Admin > Service accounts > Keys > Add key > JSON) and point auth.serviceAccountKeyFile at it',
    docs: GOOGLE_SA,
    example: {
      facts: GOOGLE_OAUTH2,
      tokenRefusal: { status: 400, body: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' } },
      seen: `${GOOGLE_SA} (JWT error codes)`,
    },
  },
  {
    name: 'google-clock',
    severity: 'problem',
    match: { provider: ['google'], tokenCause: /^invalid_grant\b/, tokenMessage: /short-lived token/i },
    says: "this machine's clock is off: Google refuses an assertion whose times are not now",
    fix: 'set the clock right and keep it so (NTP: timedatectl set-ntp true)',
    docs: GOOGLE_SA,
    example: {
      facts: GOOGLE_OAUTH2,
      tokenRefusal: {
        status: 400,
        body: {
          error: 'invalid_grant',
          error_description:
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your 'iat' and 'exp' values and use a clock with skew to account for clock differences between systems.",
        },
      },
      seen: `${GOOGLE_SA} (JWT error codes)`,
    },
  },
  {
    name: 'google-refresh-token-expired',
    severity: 'problem',
    match: { provider: ['generic'], tokenCause: /^invalid_grant\b/, tokenMessage: /Token has been expired or revoked/i },
    says: 'Google no longer takes the refresh token: it was revoked, or it expired',
    fix:
      'a refresh token of an OAuth app whose publishing status is Testing expires after 7 days: set the app to In production (Google Auth Platform > Audience), ' +
      'then get a new refresh token and set it in auth.refreshToken; a token also ends when the user revokes access or changes the password',
    docs: 'https://developers.google.com/identity/protocols/oauth2#expiration',
    example: {
      facts: { login: 'oauth2', provider: 'generic', host: 'smtp.gmail.com', user: 'someone@gmail.com' },
      tokenRefusal: { status: 400, body: { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' } },
      seen: 'oauth2.googleapis.com, refresh token grant 8 days after consent to an app in Testing',
    },
  },
  {
    name: 'google-client-unknown',
    severity: 'problem',
    match: {
      provider: ['generic'],
      tokenCause: /^(?:invalid_client|deleted_client|disabled_client)\b/,
      tokenMessage: /Unauthorized|client was not found|client was (?:deleted|disabled)/i,
    },
    says: 'Google does not know the OAuth client auth.clientId, or auth.clientSecret is not its secret',
    fix: 'copy the client ID and secret of the OAuth client (Google Auth Platform > Clients) into auth.clientId and auth.clientSecret; a deleted client can be restored for 30 days',
    docs: 'https://developers.google.com/identity/protocols/oauth2',
    example: {
      facts: { login: 'oauth2', provider: 'generic', host: 'smtp.gmail.com', user: 'someone@gmail.com' },
      tokenRefusal: { status: 401, body: { error: 'invalid_client', error_description: 'The OAuth client was not found.' } },
      seen: 'oauth2.googleapis.com, refresh token grant with a mistyped client ID',
    },
  },

  // --- The token the identity provider issued: its claims (learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
  {
    name: 'token-for-graph',
    severity: 'problem',
    match: { microsoftToken: true, audience: GRAPH_AUDIENCE },
    says: "the token is for Microsoft Graph (audience {audience}); Exchange Online's SMTP takes only tokens for Outlook (https://outlook.office365.com)",
    fix:
      'remove auth.scope (the default asks for https://outlook.office365.com/.default) or set it to it; the permission is Office 365 Exchange Online > ' +
      'SMTP.SendAsApp, not Microsoft Graph > Mail.Send',
    docs: MS_SMTP_OAUTH,
    example: {
      facts: M365_OAUTH2,
      claims: { ...APP_ONLY_OUTLOOK, aud: 'https://graph.microsoft.com', roles: ['Mail.Send'] },
      seen: `${MS_CLAIMS}; PHPMailer#2988 ("wrong audience (the AUD claim in the token)")`,
    },
  },
  {
    name: 'token-for-other-audience',
    severity: 'problem',
    match: { microsoftToken: true, audienceNot: OUTLOOK_OR_GRAPH },
    says: "the token's audience is {audience}, not Exchange Online (https://outlook.office365.com)",
    fix: 'remove auth.scope (the default asks for https://outlook.office365.com/.default) or set it to it',
    docs: MS_SMTP_OAUTH,
    example: { facts: M365_OAUTH2, claims: { ...APP_ONLY_OUTLOOK, aud: 'https://management.azure.com/', roles: [] }, seen: MS_CLAIMS },
  },
  {
    name: 'app-token-without-smtp-role',
    severity: 'problem',
    match: { microsoftToken: true, appOnly: true, audience: OUTLOOK_AUDIENCE, rolesLack: 'SMTP.SendAsApp' },
    says: 'the app-only token has no SMTP.SendAsApp role (roles: {roles}): the application may not send mail over SMTP',
    fix:
      'App registrations > the application > API permissions > Add a permission > APIs my organization uses > Office 365 Exchange Online > ' +
      'Application permissions > SMTP.SendAsApp > Add permissions, then Grant admin consent for the tenant; a token fetched before the consent lacks it',
    docs: MS_SMTP_OAUTH,
    example: { facts: M365_OAUTH2, claims: { ...APP_ONLY_OUTLOOK, roles: ['IMAP.AccessAsApp', 'POP.AccessAsApp'] }, seen: `${MS_SMTP_OAUTH}; MailKit#1126` },
  },
  {
    name: 'user-token-without-smtp-send',
    severity: 'problem',
    match: { microsoftToken: true, appOnly: false, audience: OUTLOOK_AUDIENCE, scopesLack: 'SMTP.Send' },
    says: "the user's token has no SMTP.Send scope (scopes: {scopes})",
    fix:
      'add the delegated permission SMTP.Send (API permissions > Microsoft Graph or Office 365 Exchange Online > Delegated permissions > SMTP.Send), ' +
      'sign in again asking for https://outlook.office.com/SMTP.Send offline_access, and set the new refresh token in auth.refreshToken',
    docs: MS_SMTP_OAUTH,
    example: {
      facts: { login: 'oauth2', provider: 'generic', host: 'smtp.office365.com', user: 'printer@contoso.com' },
      claims: {
        aud: 'https://outlook.office.com',
        iss: 'https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/',
        appid: '5c7a3e1d-2f4b-4c8e-9d0a-1b2c3d4e5f60',
        scp: 'IMAP.AccessAsUser.All User.Read',
        tid: '72f988bf-86f1-41af-91ab-2d7cd011db47',
        upn: 'printer@contoso.com',
        ver: '1.0',
      },
      seen: MS_SMTP_OAUTH,
    },
  },
  {
    name: 'token-user-differs',
    severity: 'warning',
    match: { appOnly: false, tokenUserDiffers: true },
    says: 'the token is for {tokenUser}, and mailtrail logs in as {user} (auth.user)',
    fix: 'set auth.user to {tokenUser}; another mailbox works only where {tokenUser} has FullAccess to it (a shared mailbox)',
    docs: MS_SMTP_OAUTH,
    example: {
      facts: { login: 'oauth2', provider: 'generic', host: 'smtp.office365.com', user: 'printer@contoso.com' },
      claims: {
        aud: 'https://outlook.office.com',
        scp: 'SMTP.Send',
        tid: '72f988bf-86f1-41af-91ab-2d7cd011db47',
        upn: 'it-admin@contoso.com',
        ver: '1.0',
      },
      seen: MS_SMTP_OAUTH,
    },
  },
  {
    name: 'token-clock',
    severity: 'warning',
    match: { clockOff: true },
    says: "the token's times are more than 5 minutes off this machine's clock",
    fix: 'set the clock right and keep it so (NTP: timedatectl set-ntp true): tokens are renewed by their expiry time',
    docs: MS_CLAIMS,
    example: { facts: { ...M365_OAUTH2, now: (APP_ONLY_OUTLOOK.iat + 7200) * 1000 }, claims: APP_ONLY_OUTLOOK, seen: MS_CLAIMS },
  },

  // --- The mail server's answer to AUTH.
  {
    name: 'exchange-service-principal-or-mailbox-permission',
    severity: 'problem',
    match: {
      login: 'oauth2',
      microsoftToken: true,
      appOnly: true,
      audience: OUTLOOK_AUDIENCE,
      rolesHave: 'SMTP.SendAsApp',
      authReply: { codes: [535], text: /^5\.7\.3 / },
    },
    says:
      'Exchange Online refused a good app-only token: the application is not registered in Exchange Online as a service principal, or it has no ' +
      'permission on {user}',
    fix:
      'in Exchange Online PowerShell (Connect-ExchangeOnline -Organization {tenantId}): New-ServicePrincipal -AppId {appId} -ObjectId {objectId} ' +
      "(the object ID is the enterprise application's, not the app registration's: using the wrong one is the most common mistake), then " +
      'Add-MailboxPermission -Identity {user} -User {objectId} -AccessRights FullAccess; Get-ServicePrincipal shows what is registered. ' +
      'Exchange can take a while to apply a change: run check-upstream again after some minutes',
    docs: MS_SMTP_OAUTH,
    example: {
      facts: M365_OAUTH2,
      claims: APP_ONLY_OUTLOOK,
      authReply: '535 5.7.3 Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]',
      seen: `${MS_SMTP_OAUTH}; MailKit#1126`,
    },
  },
  {
    name: 'smtp-auth-disabled',
    severity: 'problem',
    match: { authReply: { text: /SmtpClientAuthentication is disabled/i } },
    says: 'SMTP AUTH is switched off for {user} or for the whole tenant, and XOAUTH2 is SMTP AUTH too',
    fix:
      'in Exchange Online PowerShell: Set-CASMailbox -Identity {user} -SmtpClientAuthenticationDisabled $false (the mailbox setting overrides the ' +
      "tenant's, Set-TransportConfig -SmtpClientAuthenticationDisabled); security defaults turn SMTP AUTH off for the whole tenant",
    docs: MS_SMTP_AUTH,
    example: {
      facts: M365_OAUTH2,
      claims: APP_ONLY_OUTLOOK,
      authReply:
        '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more ' +
        'information. [BN9PR03CA0383.namprd03.prod.outlook.com 2024-05-21T09:12:31.412Z 08DC78A8F6F2E7C1]',
      seen: 'https://aka.ms/smtp_auth_disabled',
    },
  },
  {
    name: 'password-login-retired',
    severity: 'problem',
    match: { login: 'password', authReply: { text: /5\.7\.30|basic authentication is (?:disabled|not supported)|security defaults policy/i } },
    says: 'the provider no longer takes a password for SMTP AUTH',
    fix: 'log in with OAuth2 instead: auth.type oauth2 (docs/oauth2.md, "Migrating from a password"); check-upstream tells whether the new login works',
    docs: 'https://techcommunity.microsoft.com/blog/exchange/updated-exchange-online-smtp-auth-basic-authentication-deprecation-timeline/4489835',
    example: {
      facts: { login: 'password', provider: null, host: 'smtp.office365.com', user: 'printer@contoso.com' },
      authReply: '550 5.7.30 Basic authentication is not supported for Client Submission.',
      seen: 'https://techcommunity.microsoft.com/blog/exchange/exchange-online-to-retire-basic-auth-for-client-submission-smtp-auth/4114750',
    },
  },
  {
    name: 'microsoft-password-refused',
    severity: 'problem',
    match: { login: 'password', authReply: { codes: [535], text: /5\.7\.3 Authentication unsuccessful/i } },
    says: 'Exchange Online refused the password',
    fix:
      'a wrong password, an account with multi-factor authentication, or a Conditional Access policy blocking legacy authentication; Exchange Online ' +
      'turns password logins for SMTP AUTH off at the end of December 2026: move to OAuth2 (docs/oauth2.md, "Migrating from a password")',
    docs: MS_SMTP_AUTH,
    example: {
      facts: { login: 'password', provider: null, host: 'smtp.office365.com', user: 'printer@contoso.com' },
      authReply: '535 5.7.3 Authentication unsuccessful [VI1PR0902CA0036.eurprd09.prod.outlook.com 2024-03-20T10:27:56.998Z 08DC48BEE95C08E5]',
      seen: 'MailKit#700',
    },
  },
  {
    name: 'google-app-password-required',
    severity: 'problem',
    match: { login: 'password', authReply: { text: /Application-specific password required/i } },
    says: 'the Google account has 2-Step Verification: it takes an app password, not the account password',
    fix: 'create an app password (myaccount.google.com > Security > App passwords) for auth.pass, or better log in with OAuth2 (examples/gmail-refresh-token.yaml)',
    docs: 'https://support.google.com/mail/answer/185833',
    example: {
      facts: { login: 'password', provider: null, host: 'smtp.gmail.com', user: 'someone@gmail.com' },
      authReply:
        '534-5.7.9 Application-specific password required. For more information, go to\n534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor',
      seen: 'smtp.gmail.com, AUTH PLAIN with the account password of an account with 2-Step Verification',
    },
  },
  {
    name: 'google-password-refused',
    severity: 'problem',
    match: { login: 'password', authReply: { text: /Username and Password not accepted/i } },
    says: 'Google refused the password',
    fix: 'Google takes an app password (or OAuth2), not the account password: check auth.pass, or log in with OAuth2 (examples/gmail-refresh-token.yaml)',
    docs: 'https://support.google.com/mail/?p=BadCredentials',
    example: {
      facts: { login: 'password', provider: null, host: 'smtp.gmail.com', user: 'someone@gmail.com' },
      authReply: '535-5.7.8 Username and Password not accepted. For more information, go to\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials',
      seen: 'smtp.gmail.com, AUTH PLAIN with a wrong password',
    },
  },
  {
    name: 'gmail-token-refused',
    severity: 'problem',
    match: { login: 'oauth2', challenge: true },
    says: 'Gmail refused the token for {user} (its error: {challenge})',
    fix:
      'the token must carry the scope https://mail.google.com/ (domain-wide delegation: exactly this scope for the client ID; a refresh token: granted ' +
      'with it) and be for {user} itself: the service account acts as auth.user; a refresh token belongs to the account that signed in',
    docs: GOOGLE_XOAUTH2,
    example: {
      facts: GOOGLE_OAUTH2,
      challenge: '334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0cHM6Ly9tYWlsLmdvb2dsZS5jb20vIn0K',
      authReply: '535-5.7.1 Username and Password not accepted. Learn more at\n535 5.7.1 http://support.google.com/mail/bin/answer.py?answer=14257',
      seen: GOOGLE_XOAUTH2,
    },
  },
  {
    name: 'xoauth2-not-offered',
    severity: 'problem',
    match: { login: 'oauth2', offeredLacks: 'XOAUTH2' },
    says: 'the mail server does not offer AUTH XOAUTH2 (it offers: {offered})',
    fix:
      'check the upstream url: Microsoft 365 is smtp://smtp.office365.com:587, Gmail and Google Workspace smtp://smtp.gmail.com:587; servers ' +
      'offer AUTH only after STARTTLS, so keep tls.mode required',
    docs: 'docs/oauth2.md',
    example: {
      facts: { ...M365_OAUTH2, host: 'example-com.mail.protection.outlook.com', offered: ['LOGIN', 'PLAIN'] },
      seen: 'a submission server that takes passwords only',
    },
  },
  {
    name: 'auth-not-offered',
    severity: 'problem',
    match: { offeredLacks: '' },
    says: 'the mail server offers no AUTH at all',
    fix:
      'this is a receiving (MX) host, not a submission one: Microsoft 365 takes logins at smtp://smtp.office365.com:587, Google at smtp://smtp.gmail.com:587; ' +
      'a host that relays by IP address (a connector, smtp-relay.gmail.com) needs no auth: remove it',
    docs: MS_SMTP_AUTH,
    example: { facts: { ...M365_OAUTH2, host: 'example-com.mail.protection.outlook.com', offered: [] }, seen: 'example-com.mail.protection.outlook.com:25' },
  },
];

/** Every rule that matches `facts`, in the table's order, with its text filled in. */
export function loginFindings(facts: LoginFacts, rules: readonly LoginRule[] = LOGIN_RULES): LoginFinding[] {
  return rules
    .filter((rule) => matches(rule.match, facts))
    .map((rule) => ({ rule: rule.name, severity: rule.severity, says: fill(rule.says, facts), fix: fill(rule.fix, facts), docs: rule.docs }));
}

function matches(m: LoginMatch, f: LoginFacts): boolean {
  const claims = f.claims;
  const needsClaims =
    m.microsoftToken !== undefined ||
    m.audience !== undefined ||
    m.audienceNot !== undefined ||
    m.appOnly !== undefined ||
    m.rolesHave !== undefined ||
    m.rolesLack !== undefined ||
    m.scopesLack !== undefined ||
    m.tokenUserDiffers !== undefined ||
    m.clockOff !== undefined;
  if (needsClaims && claims === null) return false;
  const checks: boolean[] = [
    m.login === undefined || f.login === m.login,
    m.provider === undefined || (f.provider !== null && m.provider.includes(f.provider)),
    m.host === undefined || m.host.test(f.host),
    m.tokenCause === undefined || (f.tokenError !== null && m.tokenCause.test(f.tokenError.cause)),
    m.tokenMessage === undefined || (f.tokenError !== null && m.tokenMessage.test(f.tokenError.message)),
    m.microsoftToken === undefined || claims?.tenant != null,
    m.audience === undefined || (claims?.audiences ?? []).some((a) => m.audience!.test(a)),
    m.audienceNot === undefined || ((claims?.audiences.length ?? 0) > 0 && !(claims?.audiences ?? []).some((a) => m.audienceNot!.test(a))),
    m.appOnly === undefined || claims?.appOnly === m.appOnly,
    m.rolesHave === undefined || (claims?.roles ?? []).includes(m.rolesHave),
    m.rolesLack === undefined || !(claims?.roles ?? []).includes(m.rolesLack),
    m.scopesLack === undefined || !(claims?.scopes ?? []).some((s) => s === m.scopesLack || s.endsWith(`/${m.scopesLack}`)),
    m.tokenUserDiffers === undefined || (claims?.user != null && f.user !== null && claims.user.toLowerCase() !== f.user.toLowerCase()),
    m.clockOff === undefined || (claims !== null && clockOff(claims, f.now)),
    m.authReply === undefined || replyMatches(m.authReply, f.authReply),
    m.challenge === undefined || f.challenge !== null,
    m.offeredLacks === undefined || offeredLacks(m.offeredLacks, f.offered),
  ];
  return checks.every(Boolean);
}

function replyMatches(want: NonNullable<LoginMatch['authReply']>, reply: LoginFacts['authReply']): boolean {
  if (reply === null) return false;
  return (want.codes === undefined || want.codes.includes(reply.code)) && (want.text === undefined || want.text.test(reply.text));
}

function offeredLacks(mechanism: string, offered: LoginFacts['offered']): boolean {
  if (offered === null) return false;
  return mechanism === '' ? offered.length === 0 : offered.length > 0 && !offered.some((o) => o.toUpperCase() === mechanism);
}

/** A token that expired or starts more than CLOCK_SKEW_MS from now: this machine's clock or the provider's is off. */
function clockOff(claims: TokenClaims, now: number): boolean {
  return (
    (claims.expiresAt !== null && claims.expiresAt <= now) ||
    (claims.issuedAt !== null && claims.issuedAt > now + CLOCK_SKEW_MS) ||
    (claims.notBefore !== null && claims.notBefore > now + CLOCK_SKEW_MS)
  );
}

/** `{name}` placeholders: the facts, or what to look for where a fact is unknown. */
function fill(text: string, f: LoginFacts): string {
  const c = f.claims;
  const values: Record<string, string> = {
    user: f.user ?? '<mailbox>',
    tenantId: f.tenantId ?? c?.tenant ?? '<tenant ID>',
    clientId: f.clientId ?? c?.appId ?? '<client ID>',
    appId: c?.appId ?? f.clientId ?? '<Application (client) ID>',
    objectId: c?.objectId ?? "<the enterprise application's Object ID>",
    audience: c?.audiences.join(', ') || '(none)',
    roles: c && c.roles.length > 0 ? c.roles.join(', ') : 'none',
    scopes: c && c.scopes.length > 0 ? c.scopes.join(' ') : 'none',
    tokenUser: c?.user ?? '<the signed-in user>',
    offered: f.offered && f.offered.length > 0 ? f.offered.join(' ') : 'nothing',
    challenge: f.challenge ? JSON.stringify(f.challenge) : '',
  };
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole);
}

/** An XOAUTH2 error challenge: `334 <base64 JSON>` decoded (RFC 7628 §3.2.2); null for anything else. */
export function decodeChallenge(reply: string): Record<string, unknown> | null {
  const payload = /^334[ -](\S+)\s*$/.exec(reply.trim())?.[1];
  if (payload === undefined) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(payload, 'base64').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The final answer to AUTH as the rules read it: the code, and the text with its enhanced code. */
export function replyFacts(raw: string): LoginFacts['authReply'] {
  const reply = parseResponseLine(raw);
  if (reply === null) return null;
  return { code: reply.code, text: reply.enhanced ? `${reply.enhanced} ${reply.text}` : reply.text };
}
