/**
 * Charts (docs/api.md, "GET /api/v1/stats") drawn with uPlot: messages by outcome, success rate,
 * latency p50 and p95 per upstream, failures by class; the last hour per minute or the last day per
 * 15 minutes. Each chart says what it amounts to in its label, for screen readers.
 */
import type { JSX } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Api } from '../api.js';
import { ErrorNote, Link } from '../components.js';
import { usePoll } from '../poll.js';
import { href } from '../router.js';

interface Point {
  readonly time: string;
  readonly outcomes: Readonly<Record<string, number>>;
  readonly messages: number;
  readonly successRate: number | null;
  readonly classes: Readonly<Record<string, number>>;
  readonly latency: Readonly<Record<string, { readonly count: number; readonly p50: number | null; readonly p95: number | null }>>;
}

interface Stats {
  readonly range: string;
  readonly stepSeconds: number;
  readonly points: readonly Point[];
  readonly liveSince: string;
  readonly historyLoaded: boolean;
}

const OUTCOME_COLOURS: Readonly<Record<string, string>> = {
  delivered: '#2e7d32',
  partial: '#9e9d24',
  deferred: '#ef6c00',
  rejected: '#c62828',
  unknown: '#6a1b9a',
  aborted: '#546e7a',
  refused: '#ad1457',
};
const PALETTE = ['#1565c0', '#c62828', '#2e7d32', '#ef6c00', '#6a1b9a', '#00838f', '#ad1457', '#5d4037', '#455a64', '#9e9d24'];

interface Series {
  readonly label: string;
  readonly colour: string;
  readonly values: (number | null)[];
  readonly dash?: number[];
}

export function Charts(props: { api: Api; range: '1h' | '24h' }): JSX.Element {
  const { data, error } = usePoll(() => props.api.get<Stats>('/api/v1/stats', { range: props.range }), props.range === '1h' ? 15_000 : 60_000, [
    props.api,
    props.range,
  ]);
  const step = data?.stepSeconds === 60 ? 'minute' : '15 minutes';
  return (
    <section aria-labelledby="charts-title">
      <div class="bar">
        <h1 id="charts-title">Charts</h1>
        <nav aria-label="Range" class="range">
          <Link href={href({ name: 'charts', range: '1h' })} aria-current={props.range === '1h' ? 'page' : undefined}>
            Last hour
          </Link>
          <Link href={href({ name: 'charts', range: '24h' })} aria-current={props.range === '24h' ? 'page' : undefined}>
            Last day
          </Link>
        </nav>
      </div>
      <ErrorNote error={error} />
      {data === null ? (
        <p class="loading">Loading…</p>
      ) : (
        <>
          {!data.historyLoaded ? (
            <p class="note">Before {new Date(data.liveSince).toISOString()} the charts wait for the search index to catch up with the trail.</p>
          ) : null}
          <div class="charts">
            <Chart title={`Messages per ${step} by outcome`} points={data.points} series={outcomes(data.points)} unit="" />
            <Chart
              title="Success rate"
              points={data.points}
              series={[{ label: 'success', colour: '#2e7d32', values: data.points.map((p) => (p.successRate === null ? null : p.successRate * 100)) }]}
              unit="%"
            />
            <Chart title="Latency per upstream (ms)" points={data.points} series={latency(data.points)} unit="ms" />
            <Chart title={`Failures per ${step} by class`} points={data.points} series={keyed(data.points, (p) => p.classes)} unit="" />
          </div>
        </>
      )}
    </section>
  );
}

function outcomes(points: readonly Point[]): Series[] {
  return keyed(points, (p) => p.outcomes).map((s) => ({ ...s, colour: OUTCOME_COLOURS[s.label] ?? s.colour }));
}

/** One series per key seen in any point (a missing key is 0). */
function keyed(points: readonly Point[], pick: (p: Point) => Readonly<Record<string, number>>): Series[] {
  const keys = [...new Set(points.flatMap((p) => Object.keys(pick(p))))].sort();
  return keys.map((k, i) => ({ label: k, colour: PALETTE[i % PALETTE.length]!, values: points.map((p) => pick(p)[k] ?? 0) }));
}

function latency(points: readonly Point[]): Series[] {
  const names = [...new Set(points.flatMap((p) => Object.keys(p.latency)))].sort();
  return names.flatMap((n, i) => [
    { label: `${n} p50`, colour: PALETTE[i % PALETTE.length]!, values: points.map((p) => p.latency[n]?.p50 ?? null) },
    { label: `${n} p95`, colour: PALETTE[i % PALETTE.length]!, values: points.map((p) => p.latency[n]?.p95 ?? null), dash: [6, 4] },
  ]);
}

function Chart(props: { title: string; points: readonly Point[]; series: readonly Series[]; unit: string }): JSX.Element {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const xs = props.points.map((p) => Date.parse(p.time) / 1000);
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height: 220,
      title: undefined,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      scales: { x: { time: true }, y: props.unit === '%' ? { range: [0, 100] } : { range: (_u, min, max) => [0, Math.max(1, max ?? min)] } },
      // Times of day in UTC, 24-hour, as the trail writes them.
      axes: [
        { values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toISOString().slice(11, 16)) },
        { size: 56, values: (_u, ticks) => ticks.map((t) => `${t}${props.unit === '%' ? ' %' : ''}`) },
      ],
      // Rates and latencies exist only in steps with mail: their points are drawn, so a lone one shows.
      series: [
        { label: 'time (UTC)' },
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.colour,
          width: 2,
          dash: s.dash,
          spanGaps: false,
          points: { show: props.unit !== '', size: 5 },
        })),
      ],
      legend: { live: true },
    };
    const plot = new uPlot(opts, [xs, ...props.series.map((s) => s.values)] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.points, props.series, props.unit]);

  const totals = props.series.map((s) => ({ label: s.label, value: summarise(s.values, props.unit) }));
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      {props.series.length === 0 ? <p class="muted">Nothing in this range yet.</p> : null}
      <div ref={box} class="plot" role="img" aria-label={`${props.title}: ${totals.map((t) => `${t.label} ${t.value}`).join(', ') || 'no data'}`} />
    </figure>
  );
}

/** What a series amounts to over the range: a sum of counts, or the last value of a rate or latency. */
function summarise(values: readonly (number | null)[], unit: string): string {
  const present = values.filter((v): v is number => v !== null);
  if (present.length === 0) return 'none';
  if (unit === '') return `${present.reduce((a, b) => a + b, 0)} in all`;
  const last = present[present.length - 1]!;
  return `latest ${Math.round(last)}${unit === '%' ? ' %' : ' ms'}`;
}
