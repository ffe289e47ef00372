import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { classify } from '../../src/classify/classify.js';
import { CLIENT_REJECT_CLASSES, UPSTREAM_FAILURE_CLASSES } from '../../src/classify/failure-class.js';
import { parseReply } from '../../src/smtp/reply-text.js';
import { ERROR_RULES, REPLY_RULES } from '../../src/classify/rules.js';
import type { UpstreamFacts } from '../../src/classify/upstream-facts.js';

const DOC = readFileSync(new URL('../../docs/failures.md', import.meta.url), 'utf8');

/** Class names from the first column of the tables under the `## heading` (or the whole page). */
function documentedClasses(heading?: string): string[] {
  const section = heading === undefined ? DOC : sectionOf(heading);
  return [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((match) => match[1] ?? '');
}

function sectionOf(heading: string): string {
  const start = DOC.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`docs/failures.md has no "## ${heading}" section`);
  const next = DOC.indexOf('\n## ', start + 1);
  return DOC.slice(start, next < 0 ? undefined : next);
}

const BASE: UpstreamFacts = {
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

describe('docs/failures.md', () => {
  it('lists exactly the upstream and client classes, no more, no less', () => {
    const expected = new Set<string>([...UPSTREAM_FAILURE_CLASSES, ...CLIENT_REJECT_CLASSES]);
    expect(new Set(documentedClasses())).toEqual(expected);
  });

  it('lists each upstream class once in the upstream section, in the code order', () => {
    expect(documentedClasses('Upstream-side classes')).toEqual([...UPSTREAM_FAILURE_CLASSES]);
  });

  it('lists each client class once in the client section, in the code order', () => {
    expect(documentedClasses('Client-side refusals')).toEqual([...CLIENT_REJECT_CLASSES]);
  });
});

describe('coverage of the upstream classes', () => {
  it('every upstream class except internal is produced by at least one rule or branch', () => {
    const produced = new Set<string>();
    for (const rule of REPLY_RULES) {
      const facts = { ...BASE, phase: 'envelope' as const, reply: parseReply(rule.example.code, rule.example.text), replyPhase: rule.example.phase };
      produced.add(classify(facts).failure?.class ?? 'none');
    }
    for (const rule of ERROR_RULES) produced.add(classify({ ...BASE, ...rule.example }).failure?.class ?? 'none');
    // Branch 1: the body was handed over and nothing answered the dot.
    produced.add(classify({ ...BASE, phase: 'sent', errorCode: 'ECONNECTION' }).failure?.class ?? 'none');

    const missing = UPSTREAM_FAILURE_CLASSES.filter((klass) => klass !== 'internal' && !produced.has(klass));
    expect(missing).toEqual([]);
  });
});
