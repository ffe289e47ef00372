/**
 * Real provider replies (test/fixtures/provider-replies) through the classifier, in the form the relay
 * really gives them: nodemailer's error object (`response` is the raw reply, continuation lines kept
 * with their "NNN-" prefixes and joined with "\n"; `command` names the step, and since nodemailer 10.1
 * every 421 is reported as command CONN) turned into facts by the same `failureFacts` the relay uses.
 * Each entry must be classified as its provider's documentation implies, and every 250 must yield the
 * queue id a person would copy from it.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { SMTPError } from 'nodemailer/lib/smtp-connection';
import { classify } from '../../src/classify/classify.js';
import { extractQueueId } from '../../src/smtp/reply-text.js';
import { failureFacts, successFacts } from '../../src/upstream/upstream-attempt.js';
import type { SendInfo } from '../../src/upstream/upstream-connection.js';
import type { AttemptPhase, UpstreamFacts } from '../../src/classify/upstream-facts.js';

type CorpusPhase = 'greeting' | 'EHLO' | 'STARTTLS' | 'AUTH' | 'MAIL' | 'RCPT' | 'DATA' | 'message';

interface CorpusEntry {
  readonly provider: string;
  readonly phase: CorpusPhase;
  readonly reply: string;
  readonly class: string;
  readonly source: string;
  readonly queueId?: string | null;
}

const DIR = fileURLToPath(new URL('../fixtures/provider-replies/', import.meta.url));

function loadCorpus(): CorpusEntry[] {
  return readdirSync(DIR)
    .filter((name) => name.endsWith('.jsonl'))
    .sort()
    .flatMap((name) =>
      readFileSync(DIR + name, 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => ({ provider: name.replace(/\.jsonl$/, ''), ...(JSON.parse(line) as Omit<CorpusEntry, 'provider'>) })),
    );
}

/** nodemailer's error code and command for a refusal at each step, and how far our tracking got. */
const AT_STEP: Readonly<Record<CorpusPhase, { code: string; command: string; phase: AttemptPhase }>> = {
  greeting: { code: 'EPROTOCOL', command: 'CONN', phase: 'connecting' },
  EHLO: { code: 'EPROTOCOL', command: 'EHLO', phase: 'connecting' },
  STARTTLS: { code: 'ETLS', command: 'STARTTLS', phase: 'connecting' },
  AUTH: { code: 'EAUTH', command: 'AUTH PLAIN', phase: 'connecting' },
  MAIL: { code: 'EENVELOPE', command: 'MAIL FROM', phase: 'envelope' },
  RCPT: { code: 'EENVELOPE', command: 'RCPT TO', phase: 'envelope' },
  DATA: { code: 'EENVELOPE', command: 'DATA', phase: 'envelope' },
  message: { code: 'EMESSAGE', command: 'DATA', phase: 'sent' },
};

/** The facts the relay builds for this reply (a 250 goes through the relay's own `successFacts`, as a resolved send). */
function factsFor(entry: CorpusEntry): UpstreamFacts {
  const wire = entry.reply.replace(/\n/g, '\r\n');
  // nodemailer splits on CRLF and joins the lines of one reply with "\n".
  const response = wire.split('\r\n').join('\n');
  if (entry.class === 'delivered') {
    return successFacts({ response, accepted: ['rcpt@example.org'], rejected: [], rejectedErrors: [] } as unknown as SendInfo);
  }
  const step = AT_STEP[entry.phase];
  const code = Number(response.slice(0, 3));
  const err = Object.assign(new Error(`failed: ${response}`), {
    code: step.code,
    response,
    responseCode: code,
    command: code === 421 ? 'CONN' : step.command,
  }) as unknown as SMTPError;
  return failureFacts(err, step.phase);
}

interface Outcome {
  readonly entry: CorpusEntry;
  readonly got: string;
  readonly rule: string;
  readonly queueId: string | null;
}

function run(entry: CorpusEntry): Outcome {
  const verdict = classify(factsFor(entry));
  const got = verdict.failure === null ? 'delivered' : verdict.failure.class;
  const queueId = entry.class === 'delivered' ? extractQueueId(entry.reply) : null;
  return { entry, got, rule: verdict.failure?.rule ?? '-', queueId };
}

/**
 * Replies the classifier gets wrong on purpose, with the reason: a rule for them would be a rule for one
 * site's text, not for a provider's.
 */
const KNOWN_MISSES: ReadonlyMap<string, string> = new Map([
  ['550 "You are not allowed to send email"', "a message written into one Exim configuration's ACL; at RCPT it reads as a recipient refusal"],
  [
    "554 5.7.1 Recipient address rejected: Username admin@risingworld.dk and sender doesn't match",
    'one host\'s own check_recipient_access text; under Postfix\'s "Recipient address rejected" prefix it reads as a recipient refusal',
  ],
  [
    '554 Security failure',
    "Exim's answer to every command after a failed STARTTLS (spec, TLS chapter); nodemailer stops at the failed STARTTLS, so a relay never sends the command this answers",
  ],
]);

const corpus = loadCorpus();
const outcomes = corpus.map(run);

function isRight(o: Outcome): boolean {
  return o.got === o.entry.class && (o.entry.class !== 'delivered' || o.queueId === (o.entry.queueId ?? null));
}

describe('real provider replies', () => {
  it('the corpus is there and every entry names its source', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(300);
    for (const entry of corpus) expect(entry.source).toMatch(/^https:\/\//);
  });

  it('reports accuracy per provider', () => {
    const lines = [...new Set(corpus.map((e) => e.provider))].map((provider) => {
      const mine = outcomes.filter((o) => o.entry.provider === provider);
      const right = mine.filter(isRight).length;
      return `${provider.padEnd(14)} ${String(right).padStart(3)}/${String(mine.length).padEnd(3)} ${((100 * right) / mine.length).toFixed(1)} %`;
    });
    const right = outcomes.filter(isRight).length;
    lines.push(`${'all'.padEnd(14)} ${String(right).padStart(3)}/${String(outcomes.length).padEnd(3)} ${((100 * right) / outcomes.length).toFixed(1)} %`);
    console.log(`reply corpus accuracy\n${lines.join('\n')}`);
    for (const o of outcomes.filter((x) => !isRight(x))) {
      console.log(
        `MISS ${o.entry.provider} ${o.entry.phase} want ${o.entry.class} got ${o.got} (${o.rule}) ${o.queueId ?? ''} :: ${o.entry.reply.split('\n')[0]}`,
      );
    }
  });

  it('classifies at least 98 % of the corpus as labelled', () => {
    expect(outcomes.filter(isRight).length / outcomes.length).toBeGreaterThanOrEqual(0.98);
  });

  it('no reply in the corpus is left unclassified', () => {
    expect(outcomes.filter((o) => o.rule === 'unclassified').map((o) => o.entry.reply)).toEqual([]);
  });

  it('every 250 yields the queue id a person would copy from it', () => {
    const delivered = outcomes.filter((o) => o.entry.class === 'delivered');
    expect(delivered.length).toBeGreaterThan(0);
    for (const o of delivered) expect({ reply: o.entry.reply, id: o.queueId }).toEqual({ reply: o.entry.reply, id: o.entry.queueId });
  });

  for (const o of outcomes) {
    const miss = KNOWN_MISSES.get(o.entry.reply);
    it(`${o.entry.provider} ${o.entry.phase}: ${o.entry.reply.split('\n')[0]!.slice(0, 90)}`, () => {
      if (miss === undefined) expect(o.got).toBe(o.entry.class);
      // A known miss that starts passing should leave the list.
      else expect(o.got, miss).not.toBe(o.entry.class);
    });
  }
});
