import { useEffect, useRef, useState } from "react";

import { Chart, Legend } from "../components/Chart";
import { Banner, Card, OUTCOME_COLORS, td, tdText, th } from "../components/ui";
import { call } from "../lib/api";
import type { Session } from "../lib/auth";
import { usePoll } from "../lib/hooks";
import { OUTCOMES, rate, type Counters, type RatePoint, type Sample } from "../lib/rates";

interface OverviewData {
  health: Record<string, string>;
  counters: Counters;
  lag: { group: string; topic: string; partition: number; committed: number | null; end: number; lag: number }[];
  projection_lag: number | null;
  at: string;
}

const POLL_MS = 1000;
const KEEP = 90;

export function Overview({ session }: { session: Session }) {
  const { data, error } = usePoll(() => call<OverviewData>(session.token, "/v1/overview"), POLL_MS);
  const last = useRef<Sample | null>(null);
  const [rates, setRates] = useState<RatePoint[]>([]);

  useEffect(() => {
    if (!data) return;
    const sample: Sample = { at: Date.parse(data.at) || Date.now(), counters: data.counters };
    const prev = last.current;
    if (prev && prev.at === sample.at) return;
    last.current = sample;
    const point = prev ? rate(prev, sample) : null;
    if (point) setRates((r) => [...r.slice(-KEEP + 1), point]);
  }, [data]);

  const totalDecisions = data ? OUTCOMES.reduce((n, o) => n + (data.counters.decisions[o] ?? 0), 0) : 0;
  const latest = rates[rates.length - 1];
  const series = [
    { name: "turns/s", color: "#0f172a", points: rates.map((r) => ({ x: r.at, y: r.turns })) },
    ...OUTCOMES.map((o) => ({
      name: `${o}/s`,
      color: OUTCOME_COLORS[o],
      points: rates.map((r) => ({ x: r.at, y: r.decisions[o] })),
      dashed: true,
    })),
  ];

  return (
    <>
      {error && (
        <Banner tone="error" testId="overview-error">
          {error.status === 0 ? "The edge is unreachable; retrying every second." : `Overview failed: ${error.message}`}
        </Banner>
      )}
      <div className="grid grid-cols-4 gap-4">
        <Stat label="turns" value={data?.counters.turns} testId="counter-turns" sub={latest && `${latest.turns.toFixed(1)}/s`} />
        <Stat label="decisions" value={data ? totalDecisions : undefined} testId="counter-decisions" />
        <Stat label="dead letters" value={data?.counters.dead_letters} testId="counter-dead-letters" />
        <Stat label="projection lag" value={data?.projection_lag ?? undefined} testId="projection-lag" sub="records" />
      </div>
      <Card title="Throughput (from successive polls)" actions={<Legend series={series} />}>
        {rates.length < 2 ? (
          <p className="text-sm text-slate-500">Collecting samples…</p>
        ) : (
          <Chart series={series} yLabel="per second" xFormat={(x) => new Date(x).toISOString().slice(11, 19)} testId="rate-chart" />
        )}
      </Card>
      <div className="grid grid-cols-3 gap-4">
        <Card title="Health">
          <ul className="space-y-1 text-sm" data-testid="health">
            {Object.entries(data?.health ?? {}).map(([k, v]) => (
              <li key={k} className="flex justify-between">
                <span>{k}</span>
                <span className={v === "ok" ? "text-green-700" : "text-red-700"}>{v}</span>
              </li>
            ))}
          </ul>
          {data && (
            <ul className="mt-3 space-y-1 text-sm">
              {OUTCOMES.map((o) => (
                <li key={o} className="flex justify-between">
                  <span style={{ color: OUTCOME_COLORS[o] }}>{o}</span>
                  <span>{data.counters.decisions[o] ?? 0}</span>
                </li>
              ))}
            </ul>
          )}
        </Card>
        <div className="col-span-2">
          <Card title="Consumer lag">
            <table className="w-full" data-testid="lag">
              <thead>
                <tr>
                  <th className={th}>group</th>
                  <th className={th}>topic</th>
                  <th className={th}>partition</th>
                  <th className={th}>committed</th>
                  <th className={th}>end</th>
                  <th className={th}>lag</th>
                </tr>
              </thead>
              <tbody>
                {(data?.lag ?? []).map((l) => (
                  <tr key={`${l.group}|${l.topic}|${l.partition}`}>
                    <td className={tdText}>{l.group}</td>
                    <td className={tdText}>{l.topic}</td>
                    <td className={td}>{l.partition}</td>
                    <td className={td}>{l.committed ?? "—"}</td>
                    <td className={td}>{l.end}</td>
                    <td className={`${td} ${l.lag > 0 ? "font-semibold text-amber-700" : ""}`}>{l.lag}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Card>
        </div>
      </div>
    </>
  );
}

function Stat({ label, value, sub, testId }: { label: string; value: number | undefined; sub?: string; testId: string }) {
  return (
    <div className="rounded-lg border border-slate-200 bg-white p-4 shadow-sm">
      <div className="text-xs uppercase tracking-wide text-slate-500">{label}</div>
      <div className="text-2xl font-semibold" data-testid={testId}>
        {value === undefined ? "—" : value.toLocaleString("en")}
      </div>
      {sub && <div className="text-xs text-slate-500">{sub}</div>}
    </div>
  );
}
