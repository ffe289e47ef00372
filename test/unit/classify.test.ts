import { describe, it, expect } from 'vitest';
import { classify as classifyOnly } from '../../src/classify/classify.js';
import { relayReply } from '../../src/reply/relay-reply.js';
import { parseReply } from '../../src/smtp/reply-text.js';
import { ERROR_RULES, REPLY_RULES, type ErrorExample, type ReplyExample } from '../../src/classify/rules.js';
import type { AttemptPhase, ReplyPhase, UpstreamFacts, Verdict } from '../../src/classify/upstream-facts.js';
import type { SmtpReply } from '../../src/smtp/smtp-reply.js';

/** The verdict with the reply the client gets for it (reply/relay-reply.ts), as one value to assert on. */
function classify(f: UpstreamFacts): Verdict & { clientReply: SmtpReply } {
  const verdict = classifyOnly(f);
  return { ...verdict, clientReply: relayReply(verdict, f, { unknownOutcomeReply: { code: 451 } }) };
}

const NO_FACTS: UpstreamFacts = {
  ok: false,
  phase: 'connecting',
  reply: null,
  replyPhase: null,
  errorCode: null,
  cause: null,
  timeoutType: null,
  syscall: null,
  message: null,
  accepted: [],
  rejected: [],
};

function facts(overrides: Partial<UpstreamFacts>): UpstreamFacts {
  return { ...NO_FACTS, ...overrides };
}

/** How far our phase tracking got when a reply to this command arrived. */
function attemptPhaseFor(phase: ReplyPhase): AttemptPhase {
  if (phase === 'data') return 'done';
  if (phase === 'mail' || phase === 'rcpt' || phase === 'data-command') return 'envelope';
  return 'connecting';
}

/** The nodemailer error code that carries a reply to this command. */
function errorCodeFor(phase: ReplyPhase): string {
  const codes: Record<ReplyPhase, string> = {
    greeting: 'EPROTOCOL',
    ehlo: 'EPROTOCOL',
    starttls: 'ETLS',
    auth: 'EAUTH',
    mail: 'EENVELOPE',
    rcpt: 'EENVELOPE',
    'data-command': 'EENVELOPE',
    data: 'EMESSAGE',
  };
  return codes[phase];
}

function replyFacts(example: ReplyExample): UpstreamFacts {
  return facts({
    phase: attemptPhaseFor(example.phase),
    reply: parseReply(example.code, example.text),
    replyPhase: example.phase,
    errorCode: errorCodeFor(example.phase),
    command: example.command ?? null,
  });
}

function errorFacts(example: ErrorExample): UpstreamFacts {
  return facts({ ...example, message: 'not matched on' });
}

function reply(code: number, text: string, phase: ReplyPhase, at: AttemptPhase = attemptPhaseFor(phase)): UpstreamFacts {
  return facts({ phase: at, reply: parseReply(code, text), replyPhase: phase, errorCode: errorCodeFor(phase) });
}

function failureOf(verdict: Verdict) {
  if (verdict.failure === null) throw new Error('expected a failure');
  return verdict.failure;
}

describe('every rule decides the real reply or error it was written for', () => {
  it.each(REPLY_RULES.map((rule) => [rule.name, rule] as const))('reply rule %s', (_name, rule) => {
    const verdict = classify(replyFacts(rule.example));
    expect(failureOf(verdict)).toMatchObject({ class: rule.class, rule: rule.name });
  });

  it.each(ERROR_RULES.map((rule) => [rule.name, rule] as const))('error rule %s', (_name, rule) => {
    const verdict = classify(errorFacts(rule.example));
    expect(failureOf(verdict)).toMatchObject({ class: rule.class, rule: rule.name });
  });

  it('rule names are unique, so a record names exactly one rule', () => {
    const names = [...REPLY_RULES, ...ERROR_RULES].map((rule) => rule.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it('no example ever makes mailtrail answer 421 or 535', () => {
    const verdicts = [...REPLY_RULES.map((r) => classify(replyFacts(r.example))), ...ERROR_RULES.map((r) => classify(errorFacts(r.example)))];
    for (const verdict of verdicts) {
      expect([421, 535]).not.toContain(verdict.clientReply.code);
      expect(verdict.clientReply.enhanced).toMatch(/^[245]\.\d{1,3}\.\d{1,3}$/);
      expect(String(verdict.clientReply.code).charAt(0)).toBe(verdict.clientReply.enhanced?.charAt(0));
    }
  });
});

describe('step 1: the body was handed over and no final reply came', () => {
  it('a connection lost after the final dot is an unknown outcome, never a failover', () => {
    const verdict = classify(facts({ phase: 'sent', errorCode: 'ECONNECTION' }));
    expect(verdict.outcome).toBe('unknown');
    expect(verdict.failure).toEqual({
      class: 'unknown_outcome',
      retryable: null,
      actor: 'upstream',
      scope: 'message',
      rule: 'no-reply-after-dot',
    });
    expect(verdict.clientReply).toMatchObject({ code: 451, enhanced: '4.4.2' });
    expect(verdict.mayFailOver).toBe(false);
  });

  it('an idle timeout while waiting for the reply to the dot is an unknown outcome, not a timeout', () => {
    const verdict = classify(facts({ phase: 'sent', errorCode: 'ETIMEDOUT', timeoutType: 'SOCKET_TIMEOUT' }));
    expect(failureOf(verdict).class).toBe('unknown_outcome');
    expect(verdict.clientReply.text).toContain('(no reply)');
  });

  it('a stale reply to an earlier command does not count as the answer to the dot', () => {
    const verdict = classify(
      facts({ phase: 'sent', errorCode: 'ECONNECTION', reply: parseReply(354, 'End data with <CR><LF>.<CR><LF>'), replyPhase: 'data-command' }),
    );
    expect(failureOf(verdict).class).toBe('unknown_outcome');
  });

  it('our own deadline firing after the dot is an unknown outcome', () => {
    expect(failureOf(classify(facts({ phase: 'sent', errorCode: 'EDEADLINE' }))).class).toBe('unknown_outcome');
  });

  it('a 421 in answer to the dot is a real refusal, not an unknown outcome, and still no failover', () => {
    const verdict = classify(reply(421, '4.3.2 System not accepting network messages', 'data', 'sent'));
    expect(failureOf(verdict).class).toBe('upstream_unavailable');
    expect(verdict.outcome).toBe('deferred');
    expect(verdict.mayFailOver).toBe(false);
  });
});

describe('success', () => {
  it('a message every recipient accepted is delivered, with the upstream queue id in the reply', () => {
    const verdict = classify(
      facts({
        ok: true,
        phase: 'done',
        reply: parseReply(250, 'Ok 0102019a3e4b5c6d-7e8f9a0b-1c2d-3e4f-5a6b-7c8d9e0f1a2b-000000'),
        replyPhase: 'data',
        accepted: ['ana@example.org'],
      }),
    );
    expect(verdict).toEqual({
      outcome: 'delivered',
      failure: null,
      clientReply: { code: 250, enhanced: '2.0.0', text: 'Ok: relayed as 0102019a3e4b5c6d-7e8f9a0b-1c2d-3e4f-5a6b-7c8d9e0f1a2b-000000' },
      mayFailOver: false,
    });
  });

  it('a delivered message whose reply names no id just says relayed', () => {
    const verdict = classify(facts({ ok: true, phase: 'done', reply: parseReply(250, 'Great success'), replyPhase: 'data' }));
    expect(verdict.clientReply).toEqual({ code: 250, enhanced: '2.0.0', text: 'Ok: relayed' });
  });

  it('some recipients refused permanently gives partial with 250 and the recipient_rejected class', () => {
    const verdict = classify(
      facts({
        ok: true,
        phase: 'done',
        reply: parseReply(250, '2.0.0 Ok: queued as 4XyZ12'),
        replyPhase: 'data',
        accepted: ['ana@example.org'],
        rejected: [
          { recipient: 'bob@example.org', reply: parseReply(550, '5.1.1 <bob@example.org>: Recipient address rejected: User unknown') },
          { recipient: 'eve@example.org', reply: parseReply(452, '4.2.2 Mailbox full') },
        ],
      }),
    );
    expect(verdict.outcome).toBe('partial');
    expect(verdict.clientReply).toEqual({ code: 250, enhanced: '2.0.0', text: 'Ok: relayed as 4XyZ12' });
    expect(verdict.failure).toEqual({
      class: 'recipient_rejected',
      retryable: false,
      actor: 'recipient',
      scope: 'recipient',
      rule: 'some-recipients-refused',
    });
  });

  it('some recipients only deferred gives partial with the recipient_deferred class', () => {
    const verdict = classify(
      facts({
        ok: true,
        phase: 'done',
        reply: parseReply(250, '2.0.0 Ok: queued as 4XyZ12'),
        replyPhase: 'data',
        accepted: ['ana@example.org'],
        rejected: [{ recipient: 'eve@example.org', reply: parseReply(452, '4.2.2 The email account that you tried to reach is over quota.') }],
      }),
    );
    expect(verdict.outcome).toBe('partial');
    expect(failureOf(verdict)).toMatchObject({ class: 'recipient_deferred', retryable: true });
  });
});

describe('step 2: an upstream reply decides', () => {
  it('a recipient refused with 5xx is passed through as the upstream said it', () => {
    const verdict = classify(reply(550, '5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual mailbox table', 'rcpt'));
    expect(verdict.outcome).toBe('rejected');
    expect(verdict.clientReply).toEqual({
      code: 550,
      enhanced: '5.1.1',
      text: '<x@example.org>: Recipient address rejected: User unknown in virtual mailbox table',
    });
    expect(verdict.mayFailOver).toBe(false);
  });

  it('a recipient deferral passes through as a 4xx so the client retries', () => {
    const verdict = classify(reply(452, '4.2.2 The email account that you tried to reach is over quota.', 'rcpt'));
    expect(failureOf(verdict).class).toBe('recipient_deferred');
    expect(verdict.outcome).toBe('deferred');
    expect(verdict.clientReply).toMatchObject({ code: 452, enhanced: '4.2.2' });
  });

  it('a pass-through reply without an enhanced code gets X.0.0', () => {
    const verdict = classify(reply(550, 'Requested action not taken: mailbox unavailable', 'rcpt'));
    expect(verdict.clientReply).toEqual({ code: 550, enhanced: '5.0.0', text: 'Requested action not taken: mailbox unavailable' });
  });

  it('a message refused after the body keeps the upstream code, enhanced code and text', () => {
    const verdict = classify(reply(554, "Transaction failed: Duplicate header 'DKIM-Signature'.", 'data'));
    expect(failureOf(verdict).class).toBe('content_rejected');
    expect(verdict.clientReply).toEqual({ code: 554, enhanced: '5.0.0', text: "Transaction failed: Duplicate header 'DKIM-Signature'." });
  });

  it('a daily quota sent as a permanent 550 is demoted to 451 so the mail stays queued', () => {
    const verdict = classify(reply(550, '5.4.5 Daily user sending quota exceeded.', 'data'));
    expect(failureOf(verdict)).toMatchObject({ class: 'quota', retryable: true, actor: 'operator', scope: 'account' });
    expect(verdict.outcome).toBe('deferred');
    expect(verdict.clientReply.code).toBe(451);
    expect(verdict.clientReply.enhanced).toBe('4.7.0');
  });

  it('the SES daily quota and the SES rate limit share a 454 but not a class', () => {
    expect(failureOf(classify(reply(454, 'Throttling failure: Daily message quota exceeded.', 'data'))).class).toBe('quota');
    expect(failureOf(classify(reply(454, 'Throttling failure: Maximum sending rate exceeded.', 'data'))).class).toBe('throttled');
  });

  it('a 535 from the upstream is never passed through: the client gets 451 4.7.0 and the operator is the actor', () => {
    const verdict = classify(reply(535, '5.7.8 Username and Password not accepted.', 'auth'));
    expect(failureOf(verdict)).toMatchObject({ class: 'upstream_auth', actor: 'operator', retryable: true });
    expect(verdict.clientReply).toMatchObject({ code: 451, enhanced: '4.7.0' });
    expect(verdict.clientReply.text).not.toMatch(/password/i);
    expect(verdict.mayFailOver).toBe(true);
  });

  it('a 530 at MAIL FROM means the relay never logged in, not that the sender is refused', () => {
    const verdict = classify(reply(530, '5.7.0 Authentication required', 'mail'));
    expect(failureOf(verdict).class).toBe('upstream_auth');
    expect(verdict.clientReply.code).toBe(451);
  });

  it('a 530 asking for STARTTLS is a TLS problem', () => {
    expect(failureOf(classify(reply(530, '5.7.0 Must issue a STARTTLS command first.', 'mail'))).class).toBe('tls');
  });

  it('a 421 is never passed through: it becomes 451 keeping the upstream enhanced code', () => {
    const verdict = classify(reply(421, '4.4.5 Server busy, try again later.', 'mail'));
    expect(failureOf(verdict).class).toBe('upstream_unavailable');
    expect(verdict.clientReply).toMatchObject({ code: 451, enhanced: '4.4.5' });
    expect(verdict.mayFailOver).toBe(true);
  });

  it('a 421 without an enhanced code becomes 451 4.3.0', () => {
    const verdict = classify(
      facts({ phase: 'envelope', reply: parseReply(421, 'Service not available, closing transmission channel'), errorCode: 'ECONNECTION' }),
    );
    expect(failureOf(verdict).class).toBe('upstream_unavailable');
    expect(verdict.clientReply).toMatchObject({ code: 451, enhanced: '4.3.0' });
  });

  it('a throttling reply before the body may fail over; the same after the body may not', () => {
    expect(classify(reply(450, '4.2.1 Peak SMTP relay limit exceeded for customer.', 'mail')).mayFailOver).toBe(true);
    expect(classify(reply(451, '4.7.1 Delivery not authorized, try again later', 'data')).mayFailOver).toBe(false);
  });

  it('a 503 bad sequence is a protocol error, not a permanent refusal', () => {
    const verdict = classify(reply(503, '5.5.1 Error: need RCPT command', 'data-command'));
    expect(failureOf(verdict).class).toBe('protocol');
    expect(verdict.clientReply).toMatchObject({ code: 451, enhanced: '4.5.0' });
  });

  it('too many recipients at RCPT answers 452 4.5.3 whatever the upstream code', () => {
    const verdict = classify(reply(552, 'Too many recipients', 'rcpt'));
    expect(failureOf(verdict).class).toBe('too_many_recipients');
    expect(verdict.clientReply).toEqual({ code: 452, enhanced: '4.5.3', text: 'Too many recipients' });
    expect(verdict.outcome).toBe('deferred');
  });

  it('a size refusal answers 552 5.3.4 with the upstream text', () => {
    const verdict = classify(reply(552, '5.2.3 Message length exceeds administrative limit', 'data'));
    expect(failureOf(verdict).class).toBe('too_large');
    expect(verdict.clientReply).toEqual({ code: 552, enhanced: '5.3.4', text: 'Message length exceeds administrative limit' });
    expect(verdict.outcome).toBe('rejected');
  });

  it("SendGrid's non-standard 403 is a permanent sender refusal answered with 550 5.0.0", () => {
    const verdict = classify(reply(403, 'You are not authorized to send from that email address', 'mail'));
    expect(failureOf(verdict)).toMatchObject({ class: 'sender_rejected', retryable: false });
    expect(verdict.clientReply).toEqual({ code: 550, enhanced: '5.0.0', text: 'You are not authorized to send from that email address' });
  });

  it("Microsoft's mailbox-full is the sender's own mailbox, so it is a quota, not a recipient problem", () => {
    const verdict = classify(reply(554, '5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded', 'data'));
    expect(failureOf(verdict).class).toBe('quota');
  });

  it('a 5xx with an unknown phase and no rule for its code is counted as unclassified', () => {
    const verdict = classify(facts({ phase: 'envelope', reply: parseReply(550, '5.7.1 Refused'), replyPhase: null, errorCode: 'EENVELOPE' }));
    expect(failureOf(verdict)).toMatchObject({ class: 'internal', rule: 'unclassified' });
    expect(verdict.clientReply).toMatchObject({ code: 451, enhanced: '4.3.0' });
  });
});

describe('step 3: no reply, the error decides', () => {
  it('a refused connection says so in the client reply without leaking anything else', () => {
    const verdict = classify(facts({ errorCode: 'ESOCKET', cause: 'ECONNREFUSED', syscall: 'connect', message: 'connect ECONNREFUSED 10.0.0.1:587' }));
    expect(failureOf(verdict)).toMatchObject({ class: 'connect', actor: 'upstream', scope: 'connection' });
    expect(verdict.clientReply).toEqual({ code: 451, enhanced: '4.4.1', text: 'Upstream unreachable (connection refused); try again later' });
    expect(verdict.outcome).toBe('deferred');
    expect(verdict.mayFailOver).toBe(true);
  });

  it('a DNS server refusing the query is a DNS failure, not a refused SMTP connection', () => {
    const verdict = classify(facts({ errorCode: 'ESOCKET', cause: 'ECONNREFUSED', syscall: 'queryA' }));
    expect(failureOf(verdict).class).toBe('dns');
    expect(verdict.clientReply.enhanced).toBe('4.4.3');
  });

  it('an expired upstream certificate is a TLS failure the operator must fix', () => {
    const verdict = classify(facts({ errorCode: 'ESOCKET', cause: 'CERT_HAS_EXPIRED' }));
    expect(failureOf(verdict)).toMatchObject({ class: 'tls', actor: 'operator' });
    expect(verdict.clientReply).toEqual({ code: 451, enhanced: '4.7.5', text: 'TLS with upstream failed (certificate expired); try again later' });
  });

  it('EPROTO during the handshake is TLS, but mid-session it is a lost connection', () => {
    expect(failureOf(classify(facts({ errorCode: 'ESOCKET', cause: 'EPROTO', phase: 'connecting' }))).class).toBe('tls');
    expect(failureOf(classify(facts({ errorCode: 'ESOCKET', cause: 'EPROTO', phase: 'body' }))).class).toBe('connection_lost');
  });

  it("nodemailer's connect timeout is a connect failure, its greeting timeout a timeout", () => {
    expect(failureOf(classify(facts({ errorCode: 'ETIMEDOUT', timeoutType: 'CONNECT_TIMEOUT' }))).class).toBe('connect');
    const greeting = classify(facts({ errorCode: 'ETIMEDOUT', timeoutType: 'GREETING_TIMEOUT' }));
    expect(failureOf(greeting).class).toBe('timeout');
    expect(greeting.clientReply.text).toBe('Upstream timed out (no greeting); try again later');
  });

  it('a reset while the body is being written is a lost connection that may fail over', () => {
    const verdict = classify(facts({ phase: 'body', errorCode: 'ESOCKET', cause: 'ECONNRESET', syscall: 'read' }));
    expect(failureOf(verdict).class).toBe('connection_lost');
    expect(verdict.clientReply.enhanced).toBe('4.4.2');
    expect(verdict.mayFailOver).toBe(true);
  });

  it('missing upstream credentials are an upstream_auth failure, never a 535', () => {
    const verdict = classify(facts({ errorCode: 'EAUTH', phase: 'connecting' }));
    expect(failureOf(verdict).class).toBe('upstream_auth');
    expect(verdict.clientReply.code).toBe(451);
  });

  it("nodemailer's own SIZE check without a reply is too_large with 552 5.3.4", () => {
    const verdict = classify(facts({ errorCode: 'EMESSAGE', phase: 'envelope', message: 'Message size larger than allowed 10485760' }));
    expect(failureOf(verdict).class).toBe('too_large');
    expect(verdict.clientReply).toEqual({ code: 552, enhanced: '5.3.4', text: 'Message size exceeds the upstream limit' });
    expect(verdict.outcome).toBe('rejected');
  });

  it('shutting down is our own internal failure, answered 451 4.3.0', () => {
    const verdict = classify(facts({ errorCode: 'ESHUTDOWN', phase: 'envelope' }));
    expect(failureOf(verdict)).toMatchObject({ class: 'internal', actor: 'operator', rule: 'local-fault' });
    expect(verdict.clientReply).toEqual({ code: 451, enhanced: '4.3.0', text: 'Local error in processing (shutting down); try again later' });
    expect(verdict.mayFailOver).toBe(false);
  });

  it('a stray 2xx reply does not decide: the error under it does', () => {
    const verdict = classify(facts({ phase: 'envelope', reply: parseReply(250, 'Ok'), replyPhase: null, errorCode: 'EPROTOCOL' }));
    expect(failureOf(verdict).class).toBe('protocol');
  });

  it('a client that went away makes the outcome aborted', () => {
    const verdict = classify(facts({ phase: 'envelope', errorCode: 'ECLIENTABORT' }));
    expect(verdict.outcome).toBe('aborted');
    expect(failureOf(verdict)).toMatchObject({ class: 'internal', actor: 'none', rule: 'client-aborted' });
    expect(verdict.mayFailOver).toBe(false);
  });
});

describe('step 4: nothing matched', () => {
  it('an error no rule knows is internal with rule unclassified, so the gap is counted', () => {
    const verdict = classify(facts({ errorCode: 'ESOMETHINGNEW', phase: 'envelope' }));
    expect(verdict.failure).toEqual({ class: 'internal', retryable: true, actor: 'operator', scope: 'message', rule: 'unclassified' });
    expect(verdict.clientReply).toEqual({ code: 451, enhanced: '4.3.0', text: 'Local error in processing; try again later' });
    expect(verdict.outcome).toBe('deferred');
  });

  it('no error and no reply at all is unclassified too', () => {
    expect(failureOf(classify(facts({ phase: 'done' }))).rule).toBe('unclassified');
  });
});

describe('purity', () => {
  it('gives the same verdict for the same facts and does not touch them', () => {
    const input = Object.freeze(reply(550, '5.4.5 Daily user sending quota exceeded.', 'data'));
    const first = classify(input);
    expect(classify(input)).toEqual(first);
  });
});

describe('password login switched off, and OAuth2 logins refused', () => {
  it('tells the operator to configure auth.type: oauth2 when the provider takes no password', () => {
    const verdict = classify(reply(550, '5.7.30 Basic authentication is not supported for Client Submission.', 'auth'));
    expect(failureOf(verdict)).toMatchObject({ class: 'upstream_auth', rule: 'password-auth-disabled' });
    expect(failureOf(verdict).hint).toMatch(/auth\.type: oauth2/);
    expect(verdict.clientReply).toMatchObject({ code: 451, enhanced: '4.7.0' });
  });

  it('says SMTP AUTH is off, not "move to OAuth2", when an XOAUTH2 login meets it', () => {
    const text =
      '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.';
    expect(failureOf(classify(facts({ ...reply(535, text, 'auth'), command: 'AUTH XOAUTH2' }))).rule).toBe('xoauth2-smtp-auth-disabled');
    expect(failureOf(classify(facts({ ...reply(535, text, 'auth'), command: 'AUTH PLAIN' }))).rule).toBe('password-auth-disabled');
  });

  it('answers a refused access token with 451, never 535', () => {
    const verdict = classify(
      facts({ ...reply(535, '5.7.3 Authentication unsuccessful [SN4PR0601CA0002.namprd06.prod.outlook.com]', 'auth'), command: 'AUTH XOAUTH2' }),
    );
    expect(failureOf(verdict)).toMatchObject({ class: 'upstream_auth', rule: 'xoauth2-token-refused' });
    expect(verdict.clientReply).toMatchObject({
      code: 451,
      enhanced: '4.7.0',
      text: 'Relay not authorised by upstream (upstream replied 535 5.7.3); try again later',
    });
  });

  it('names the identity provider, not the upstream, when the token endpoint cannot be reached', () => {
    const verdict = classify(facts({ errorCode: 'ETOKEN', cause: 'ECONNREFUSED', syscall: 'connect' }));
    expect(failureOf(verdict)).toMatchObject({ class: 'connect', rule: 'identity-provider-unreachable' });
    expect(failureOf(verdict).hint).toMatch(/identity provider/);
    expect(verdict.clientReply.text).toBe('Upstream login failed: identity provider unreachable (connection refused); try again later');
  });
});
