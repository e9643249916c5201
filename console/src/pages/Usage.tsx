import { useEffect, useMemo, useState } from "react";

import { Chart, Legend } from "../components/Chart";
import { Card, Problem, td, tdText, th } from "../components/ui";
import { call } from "../lib/api";
import type { Session } from "../lib/auth";
import { timeValue } from "../lib/conversation";
import { when } from "../lib/format";
import { usePoll } from "../lib/hooks";
import { costText } from "../lib/models";
import { SHOWN_MODELS, SHOWN_WINDOWS, forecastPath, modelList, totalOf, windowsTitle, type UsageData } from "../lib/usage";

interface Forecast {
  history: { window_start: string; tokens: number }[];
  forecast: { window_start: string; expected: number; lower: number; upper: number }[];
}

export function Usage({ session }: { session: Session }) {
  // Only the newest windows: the read model keeps every window for ever (a field per minute per model).
  const usage = usePoll(() => call<UsageData>(session.token, `/v1/usage?limit=${SHOWN_WINDOWS}`), 5000);
  const [model, setModel] = useState<string | null>(null);
  // Anyone who produces turns names their model: list the most used, never thousands of buttons.
  const listed = useMemo(() => modelList(usage.data, model, SHOWN_MODELS), [usage.data, model]);
  const first = listed.models[0]?.model ?? null;
  useEffect(() => {
    if (model === null && first !== null) setModel(first);
  }, [model, first]);
  const enough = totalOf(usage.data, model).windows >= 3; // the forecast needs three windows
  const forecast = usePoll(
    () =>
      model && enough
        ? call<Forecast>(session.token, forecastPath(model))
        : Promise.resolve(null),
    5000,
    [model, enough],
  );
  const f = forecast.data;
  const series = f
    ? [
        { name: "tokens", color: "#0f172a", points: f.history.map((h) => ({ x: timeValue(h.window_start), y: h.tokens })) },
        {
          name: "forecast",
          color: "#7c3aed",
          dashed: true,
          points: f.forecast.map((p) => ({ x: timeValue(p.window_start), y: p.expected })),
        },
      ]
    : [];
  return (
    <>
      {usage.error && <Problem message={usage.error.message} />}
      <div className="grid grid-cols-3 gap-4">
        <Card
          title={
            listed.hidden > 0
              ? `Models seen in traffic: the ${listed.models.length} with the most tokens of ${(listed.models.length + listed.hidden).toLocaleString("en")}`
              : "Models seen in traffic"
          }
        >
          <ul className="space-y-1 text-sm" data-testid="models">
            {listed.models.map(({ model: m, tokens }) => (
              <li key={m}>
                <button
                  type="button"
                  className={`rounded px-2 py-0.5 wrap-anywhere ${m === model ? "bg-slate-900 text-white" : "hover:bg-slate-100"}`}
                  onClick={() => setModel(m)}
                >
                  {m}
                </button>
                <span className="ml-2 text-xs text-slate-500">{tokens} tokens</span>
              </li>
            ))}
          </ul>
          {usage.data && listed.models.length === 0 && <p className="text-sm text-slate-500">No traffic yet.</p>}
        </Card>
        <div className="col-span-2">
          <Card title={`Forecast for ${model ?? "—"} (Holt's linear trend, 5 windows, with interval)`} actions={<Legend series={[...series, { name: "interval", color: "#c4b5fd" }]} />}>
            {f ? (
              <Chart
                series={series}
                band={{ color: "#a78bfa", points: f.forecast.map((p) => ({ x: timeValue(p.window_start), lo: Math.max(0, p.lower), hi: p.upper })) }}
                yLabel="tokens per window"
                xFormat={(x) => new Date(x).toISOString().slice(11, 19)}
                testId="forecast-chart"
              />
            ) : (
              <p className="text-sm text-slate-500">{enough ? "Loading…" : "A forecast needs at least three usage windows of this model."}</p>
            )}
            {forecast.error && <Problem message={forecast.error.message} />}
          </Card>
        </div>
      </div>
      <Card title={windowsTitle(usage.data, SHOWN_WINDOWS)}>
        <table className="w-full" data-testid="windows">
          <thead>
            <tr>
              <th className={th}>model</th>
              <th className={th}>window start</th>
              <th className={th}>window end</th>
              <th className={th}>tokens</th>
              <th className={th}>turns</th>
              <th className={th}>cost</th>
            </tr>
          </thead>
          <tbody>
            {(usage.data?.windows ?? []).slice(-SHOWN_WINDOWS).reverse().map((w) => (
              <tr key={`${w.model}|${w.window_start}`}>
                <td className={tdText}>{w.model}</td>
                <td className={td}>{when(w.window_start)}</td>
                <td className={td}>{when(w.window_end)}</td>
                <td className={td}>{w.tokens}</td>
                <td className={td}>{w.turns}</td>
                <td className={td} data-testid="window-cost">
                  {costText(w.cost)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Card>
    </>
  );
}
