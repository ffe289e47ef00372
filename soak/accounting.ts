/**
 * The soak's ledger: what the clients saw, what the upstream received and what the trail says,
 * joined by Message-ID and by mailtrail's transaction id, and checked against the promises:
 *
 * 1. every message a client got 250 for was received by the upstream exactly once;
 * 2. every message the upstream received (answered 250, or the connection died after the final
 *    dot) got 250, or its relay record says `unknown_outcome`, or mailtrail was killed (SIGKILL)
 *    before the client got any reply;
 * 3. every reply after the final dot has exactly one `relay` record with that id, whose
 *    clientReply.code is the code the client saw;
 * 4. nothing else: no record for a message whose body was never sent, no message at the upstream
 *    that no client sent or sent twice, no missing reply except where mailtrail was killed.
 */
import type { ReceivedMessage } from '../test/helpers/fake-upstream.js';
import type { ClientMessage } from './soak-client.js';

/** The parts of a relay record the ledger reads. */
export interface TrailRelayRecord {
  readonly id: string;
  readonly type: 'relay';
  readonly message: { readonly messageId: string | null };
  readonly clientReply: { readonly code: number };
  readonly outcome: string;
  readonly failure: { readonly class: string } | null;
}

export interface TrailContents {
  readonly relay: TrailRelayRecord[];
  /** Line numbers (1-based) that are not JSON: a record torn by a kill. */
  readonly tornLines: number[];
  readonly lines: number;
}

export interface Accounting {
  readonly sent: number;
  readonly accepted: number;
  readonly delivered: number;
  readonly lost: number;
  readonly unaccounted: number;
  readonly clientView: Record<string, number>;
  readonly upstreamView: Record<string, number>;
  readonly trailView: Record<string, number>;
  readonly killed: { readonly noReply: number; readonly atUpstream: number; readonly recorded: number; readonly recorded250: number };
  /** One line per problem (capped), naming the Message-ID. */
  readonly problems: string[];
}

const MESSAGE_ID = /^Message-ID:\s*<([^>]+)>/im;

/** The Message-ID of a message as the upstream received it. */
export function upstreamMessageId(m: ReceivedMessage): string | null {
  return MESSAGE_ID.exec(m.raw.subarray(0, 8192).toString('latin1'))?.[1] ?? null;
}

export function parseTrail(text: string): TrailContents {
  const relay: TrailRelayRecord[] = [];
  const tornLines: number[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    let record: { type?: string };
    try {
      record = JSON.parse(line) as { type?: string };
    } catch {
      tornLines.push(i + 1);
      return;
    }
    if (record.type === 'relay') relay.push(record as TrailRelayRecord);
  });
  return { relay, tornLines, lines: lines.length };
}

function bump(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

const stripAngles = (id: string | null): string | null => (id === null ? null : id.replace(/^<|>$/g, ''));

export function account(
  clients: readonly ClientMessage[],
  upstream: readonly ReceivedMessage[],
  trail: TrailContents,
  killedGenerations: ReadonlySet<number>,
): Accounting {
  const problems: string[] = [];
  let unaccounted = 0;
  const problem = (text: string): void => {
    unaccounted += 1;
    if (problems.length < 50) problems.push(text);
  };

  const byMessageId = new Map<string, ClientMessage>();
  for (const c of clients) byMessageId.set(c.messageId, c);

  // The upstream's side: every final dot it received, by Message-ID.
  const upstreamView: Record<string, number> = {};
  const finalDots = new Map<string, ReceivedMessage[]>();
  for (const m of upstream) {
    const id = upstreamMessageId(m);
    const verdict = typeof m.verdict === 'string' ? m.verdict : String(m.verdict.code);
    bump(upstreamView, `final dot, then ${verdict}`);
    if (id === null || !byMessageId.has(id)) {
      problem(`upstream received a message no client sent (Message-ID ${id ?? 'none'})`);
      continue;
    }
    finalDots.set(id, [...(finalDots.get(id) ?? []), m]);
  }
  const acceptedUpstream = (id: string): number => (finalDots.get(id) ?? []).filter((m) => typeof m.verdict !== 'string' && m.verdict.code === 250).length;
  /** The upstream may have the message: it answered 250, or the connection died after the final dot. */
  const mayHave = (id: string): boolean => (finalDots.get(id) ?? []).some((m) => typeof m.verdict === 'string' || m.verdict.code === 250);

  // The trail's side.
  const trailView: Record<string, number> = {};
  const recordsById = new Map<string, TrailRelayRecord[]>();
  const recordsByMessageId = new Map<string, TrailRelayRecord[]>();
  for (const r of trail.relay) {
    bump(trailView, r.failure ? `${r.outcome} (${r.failure.class})` : r.outcome);
    recordsById.set(r.id, [...(recordsById.get(r.id) ?? []), r]);
    const mid = stripAngles(r.message.messageId);
    if (mid !== null) recordsByMessageId.set(mid, [...(recordsByMessageId.get(mid) ?? []), r]);
  }
  for (const [id, records] of recordsById) if (records.length > 1) problem(`${records.length} relay records share the id ${id}`);
  for (const [mid] of recordsByMessageId) if (!byMessageId.has(mid)) problem(`a relay record names a message no client sent (${mid})`);

  const clientView: Record<string, number> = {};
  const killed = { noReply: 0, atUpstream: 0, recorded: 0, recorded250: 0 };
  let sent = 0;
  let accepted = 0;
  let lost = 0;

  for (const c of clients) {
    const dots = finalDots.get(c.messageId) ?? [];
    const records = recordsByMessageId.get(c.messageId) ?? [];
    if (dots.length > 1) problem(`${c.messageId}: the upstream received it ${dots.length} times`);
    if (c.dotSent) sent += 1;

    if (c.stage === 'refused') {
      bump(clientView, `refused before the body${c.code === null ? ' (connection closed)' : ` (${c.code})`}`);
      if (dots.length > 0) problem(`${c.messageId}: never sent, yet the upstream received it`);
      if (records.length > 0) problem(`${c.messageId}: never sent, yet it has a relay record`);
      continue;
    }

    if (c.stage === 'no-reply') {
      if (killedGenerations.has(c.generation)) {
        bump(clientView, 'no reply: mailtrail killed (SIGKILL) in flight');
        killed.noReply += 1;
        if (mayHave(c.messageId)) killed.atUpstream += 1;
        if (records.length > 0) killed.recorded += 1;
        if (records.some((r) => r.clientReply.code === 250)) killed.recorded250 += 1;
        if (records.length > 1) problem(`${c.messageId}: ${records.length} relay records`);
      } else {
        bump(clientView, 'no reply (mailtrail was not killed)');
        problem(`${c.messageId}: the connection ended after the final dot without a reply, and mailtrail was not killed`);
      }
      continue;
    }

    // A reply after the final dot.
    const code = c.code ?? 0;
    bump(clientView, `reply ${code}`);
    if (code >= 200 && code < 300) {
      accepted += 1;
      const n = acceptedUpstream(c.messageId);
      if (n === 0) {
        lost += 1;
        problem(`${c.messageId}: LOST: the client got ${code}, the upstream never accepted it`);
      } else if (n > 1) {
        problem(`${c.messageId}: the client got ${code}, the upstream accepted it ${n} times`);
      }
    }
    if (c.id === null) {
      problem(`${c.messageId}: the reply "${code} ${c.text}" carries no mailtrail id`);
      continue;
    }
    const withId = recordsById.get(c.id) ?? [];
    if (withId.length !== 1) {
      problem(`${c.messageId}: ${withId.length} relay records with id ${c.id}`);
      continue;
    }
    const record = withId[0]!;
    if (record.clientReply.code !== code) problem(`${c.messageId}: the client saw ${code}, the record says ${record.clientReply.code}`);
    if (stripAngles(record.message.messageId) !== c.messageId) problem(`${c.messageId}: record ${c.id} is for ${record.message.messageId}`);
    if (records.length !== 1) problem(`${c.messageId}: ${records.length} relay records for one transaction`);
    // Rule 2: the upstream may have it, so either the client knows (2xx) or the trail says unknown.
    if (mayHave(c.messageId) && !(code >= 200 && code < 300) && record.failure?.class !== 'unknown_outcome') {
      problem(
        `${c.messageId}: the upstream has it, the client got ${code} and the record says ${record.failure?.class ?? record.outcome}, not unknown_outcome`,
      );
    }
  }

  const delivered = [...finalDots.keys()].filter((id) => acceptedUpstream(id) > 0).length;
  return { sent, accepted, delivered, lost, unaccounted, clientView, upstreamView, trailView, killed, problems };
}

export function formatAccounting(a: Accounting): string {
  const list = (title: string, m: Record<string, number>): string[] => [
    title,
    ...Object.entries(m)
      .sort((x, y) => y[1] - x[1])
      .map(([k, v]) => `  ${String(v).padStart(7)}  ${k}`),
  ];
  return [
    ...list('clients saw:', a.clientView),
    ...list('the upstream received:', a.upstreamView),
    ...list('relay records:', a.trailView),
    `in flight when mailtrail was killed: ${a.killed.noReply} message(s) without a reply (the clients keep them); ` +
      `${a.killed.atUpstream} of them reached the upstream, ${a.killed.recorded} were recorded (${a.killed.recorded250} as 250 just before the kill)`,
    ...(a.problems.length ? ['problems:', ...a.problems.map((p) => `  ${p}`)] : []),
    `sent ${a.sent}, accepted ${a.accepted}, delivered ${a.delivered}, lost ${a.lost}, unaccounted ${a.unaccounted}`,
  ].join('\n');
}
