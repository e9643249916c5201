// GET /v1/usage as the Usage page reads it (docs/api.md): the newest windows, the count of all,
// and each model's totals over all its windows.

export interface UsageWindow {
  model: string;
  window_start: string;
  window_end: string;
  tokens: number;
  turns: number;
  cost?: { low: number; high: number } | null;
}

export interface ModelTotal {
  model: string;
  windows: number;
  tokens: number;
  turns: number;
}

export interface UsageData {
  models: string[];
  totals?: ModelTotal[]; // absent from older edges: then summed from the windows answered
  window_count?: number;
  windows: UsageWindow[];
}

/** Windows the page lists (and asks the edge for): the read model keeps every window for ever. */
export const SHOWN_WINDOWS = 40;

/** A model's totals: the edge's over all its windows, else those of the windows answered. */
export function totalOf(data: UsageData | null, model: string | null): ModelTotal {
  const found = data?.totals?.find((t) => t.model === model);
  if (found) return found;
  const mine = (data?.windows ?? []).filter((w) => w.model === model);
  return {
    model: model ?? "",
    windows: mine.length,
    tokens: mine.reduce((n, w) => n + w.tokens, 0),
    turns: mine.reduce((n, w) => n + w.turns, 0),
  };
}

/** The title of the windows table: how many of how many, newest first. */
export function windowsTitle(data: UsageData | null, shown: number): string {
  const all = data?.window_count ?? data?.windows.length ?? 0;
  if (all <= shown) return "Usage windows, newest first";
  return `Usage windows: the newest ${shown} of ${all.toLocaleString("en")}, newest first`;
}

/** History windows the forecast chart shows (an hour of 60 s windows); the edge fits them all. */
export const CHART_HISTORY = 60;

/** The forecast the Usage page asks for: 5 windows ahead, the newest CHART_HISTORY windows back. */
export function forecastPath(model: string): string {
  const q = new URLSearchParams({ model, horizon: "5", history: String(CHART_HISTORY) });
  return `/v1/forecast?${q}`;
}

/** Models the page lists: anyone who produces turns names their model, so there may be thousands. */
export const SHOWN_MODELS = 50;

export interface ModelList {
  models: ModelTotal[]; // the most tokens first (then by name), the selected one always among them
  hidden: number; // models seen in traffic that are not listed
}

/** The ``max`` models with the most tokens, plus ``selected`` when it is not one of them. */
export function modelList(data: UsageData | null, selected: string | null, max: number): ModelList {
  const byModel = new Map((data?.totals ?? []).map((t) => [t.model, t])); // one pass: thousands of models
  const all = (data?.models ?? []).map((m) => byModel.get(m) ?? totalOf(data?.totals ? null : data, m));
  all.sort((a, b) => b.tokens - a.tokens || (a.model < b.model ? -1 : a.model > b.model ? 1 : 0));
  const models = all.slice(0, max);
  const chosen = all.find((t) => t.model === selected);
  if (chosen && !models.includes(chosen)) models.push(chosen);
  return { models, hidden: all.length - models.length };
}
