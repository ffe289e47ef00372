/** How the pages write times, durations and replies. */
import type { Reply } from './api.js';

export function time(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

/** A short time of day (for the live list), in UTC like the trail. */
export function clock(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(11, 23);
}

export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined) return '–';
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
  return `${(value / 60_000).toFixed(1)} min`;
}

export function reply(r: Reply | null | undefined): string {
  if (!r) return '–';
  return [String(r.code), r.enhanced ?? '', r.text].filter((x) => x !== '').join(' ');
}

export function percent(rate: number | null | undefined): string {
  return rate === null || rate === undefined ? '–' : `${(rate * 100).toFixed(1)} %`;
}

/** The link to a message's page (docs/api.md: a mailtrail id or a Message-ID, URL-encoded). */
export function messageHref(id: string): string {
  return `/messages/${encodeURIComponent(id)}`;
}

/** Any value of a field the page does not know as text (objects as JSON). */
export function plain(v: unknown): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v) ?? '–';
}
