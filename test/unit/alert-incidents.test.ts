import { describe, expect, it } from 'vitest';
import { Incidents, type Incident } from '../../src/observe/alerts/incidents.js';

const KEY = { rule: 'failing', upstream: 'ses', class: null };
const DETAIL = { summary: '5 failures in a row', shownClass: 'connect', sinks: ['ops'] };

function recorder(cooldown: number) {
  const events: string[] = [];
  let open: readonly Incident[] = [];
  const incidents = new Incidents(cooldown, {
    fire: (i) => events.push(`fired ${i.rule}/${i.upstream}/${i.class ?? '*'}`),
    resolve: (i, reason) => events.push(`resolved ${i.rule}/${i.upstream}/${i.class ?? '*'}: ${reason}`),
    elsewhere: (state, i, _text, by) => events.push(`${state} elsewhere (${by}) ${i.rule}/${i.upstream}/${i.class ?? '*'}`),
    changed: (o) => (open = o),
  });
  return { incidents, events, open: () => open };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('alert incidents', () => {
  it('announces an incident once however often its condition holds again', () => {
    const { incidents, events } = recorder(60_000);
    for (let i = 0; i < 50; i++) incidents.raise(KEY, DETAIL, Date.now());
    expect(events).toEqual(['fired failing/ses/*']);
  });

  it('keeps incidents of different upstreams and classes apart', () => {
    const { incidents, events } = recorder(60_000);
    incidents.raise({ rule: 'provider-config', upstream: 'ses', class: 'upstream_auth' }, DETAIL, Date.now());
    incidents.raise({ rule: 'provider-config', upstream: 'ses', class: 'tls' }, DETAIL, Date.now());
    incidents.raise({ rule: 'provider-config', upstream: 'backup', class: 'upstream_auth' }, DETAIL, Date.now());
    expect(events).toHaveLength(3);
  });

  it('sends a resolve when the condition clears, and only for an announced incident', () => {
    const { incidents, events, open } = recorder(60_000);
    incidents.raise(KEY, DETAIL, Date.now());
    incidents.clear(KEY, 'a message was delivered', Date.now());
    incidents.clear(KEY, 'a message was delivered', Date.now());
    expect(events).toEqual(['fired failing/ses/*', 'resolved failing/ses/*: a message was delivered']);
    expect(open()).toEqual([]);
  });

  it('holds back an incident that reopens within the cooldown, and closes it silently if it clears', () => {
    const { incidents, events } = recorder(60_000);
    incidents.raise(KEY, DETAIL, Date.now());
    incidents.clear(KEY, 'ok', Date.now());
    incidents.raise(KEY, DETAIL, Date.now());
    incidents.recheck(Date.now());
    incidents.clear(KEY, 'ok', Date.now());
    expect(events).toEqual(['fired failing/ses/*', 'resolved failing/ses/*: ok']);
  });

  it('announces a held-back incident once the cooldown has passed, so a flapping condition is never silenced for good', async () => {
    const { incidents, events } = recorder(150);
    incidents.raise(KEY, DETAIL, Date.now());
    incidents.clear(KEY, 'ok', Date.now());
    // Reopen and keep raising during the cooldown: raising must not extend it (noUpdateTTL).
    incidents.raise(KEY, DETAIL, Date.now());
    for (let i = 0; i < 5; i++) {
      await sleep(40);
      incidents.raise(KEY, DETAIL, Date.now());
      incidents.recheck(Date.now());
    }
    await sleep(200);
    incidents.recheck(Date.now());
    expect(events).toEqual(['fired failing/ses/*', 'resolved failing/ses/*: ok', 'fired failing/ses/*']);
  });

  it('holds back again after a second announcement: the cooldown re-arms once it has expired', async () => {
    const { incidents, events } = recorder(150);
    incidents.raise(KEY, DETAIL, Date.now());
    incidents.clear(KEY, 'ok', Date.now());
    await sleep(200);
    incidents.raise(KEY, DETAIL, Date.now());
    incidents.clear(KEY, 'ok', Date.now());
    incidents.raise(KEY, DETAIL, Date.now());
    incidents.recheck(Date.now());
    expect(events).toEqual(['fired failing/ses/*', 'resolved failing/ses/*: ok', 'fired failing/ses/*', 'resolved failing/ses/*: ok']);
  });

  it('resolves only the classes a predicate selects', () => {
    const { incidents, events } = recorder(60_000);
    incidents.raise({ rule: 'p', upstream: 'ses', class: 'upstream_auth' }, DETAIL, Date.now());
    incidents.raise({ rule: 'p', upstream: 'ses', class: 'quota' }, DETAIL, Date.now());
    incidents.clearWhere('p', 'ses', (cls) => cls === 'upstream_auth', 'a health probe passed', Date.now());
    expect(events.at(-1)).toBe('resolved p/ses/upstream_auth: a health probe passed');
    expect(incidents.open.map((i) => i.class)).toEqual(['quota']);
  });

  it('restores open incidents with what is left of their cooldown', () => {
    const first = recorder(60_000);
    first.incidents.raise(KEY, DETAIL, Date.now());
    const second = recorder(60_000);
    second.incidents.restore(first.open(), 60_000, Date.now());
    second.incidents.raise(KEY, DETAIL, Date.now());
    second.incidents.recheck(Date.now());
    expect(second.events).toEqual([]);
    second.incidents.clear(KEY, 'fixed', Date.now());
    expect(second.events).toEqual(['resolved failing/ses/*: fixed']);
  });
});
