// The model registry as the Models page shows it (GET /v1/models, docs/models.md), and the
// checks of the register form before anything is sent (the edge checks again).

export interface ModelView {
  model: string;
  provider: string;
  context_window: number;
  input_price_per_1k: number | null;
  output_price_per_1k: number | null;
  enabled: boolean;
}

export interface Registry {
  tenant: string;
  version: number;
  models: ModelView[];
  providers: { provider: string; models: string[] }[];
}

export interface RegisterForm {
  model: string;
  provider: string;
  contextWindow: string;
  inputPrice: string;
  outputPrice: string;
}

export interface RegisterBody {
  model: string;
  provider: string;
  context_window: number;
  input_price_per_1k: number | null;
  output_price_per_1k: number | null;
  expected_version: number;
}

/** A price per 1,000 tokens for display: "—" when unknown, else up to 6 decimals without trailing zeros. */
export function price(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return Number(value.toFixed(6)).toString();
}

/** A cost range of a usage window or forecast point ({low, high}); one number when they are equal. */
export function costText(cost: { low: number; high: number } | null | undefined): string {
  if (!cost) return "—";
  const [low, high] = [price(cost.low), price(cost.high)];
  return low === high ? low : `${low}–${high}`;
}

function parsePrice(raw: string, name: string): number | null | string {
  const text = raw.trim();
  if (!text) return null;
  if (!/^\d+(\.\d+)?$/.test(text)) return `${name}: a number ≥ 0, or empty when unknown`;
  return Number(text);
}

/** The body of POST /v1/models for the form, with the registry version seen (optimistic concurrency), or the first problem. */
export function registerBody(form: RegisterForm, seenVersion: number): { body: RegisterBody } | { error: string } {
  const model = form.model.trim();
  const provider = form.provider.trim();
  if (!model) return { error: "model: required" };
  if (!provider) return { error: "provider: required" };
  if (!/^\d+$/.test(form.contextWindow.trim()) || Number(form.contextWindow) < 1) {
    return { error: "context window: a whole number of tokens ≥ 1" };
  }
  const input = parsePrice(form.inputPrice, "input price");
  if (typeof input === "string") return { error: input };
  const output = parsePrice(form.outputPrice, "output price");
  if (typeof output === "string") return { error: output };
  return {
    body: {
      model,
      provider,
      context_window: Number(form.contextWindow),
      input_price_per_1k: input,
      output_price_per_1k: output,
      expected_version: seenVersion,
    },
  };
}
