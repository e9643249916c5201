import { describe, expect, it } from "vitest";

import { CHART_HISTORY, SHOWN_WINDOWS, forecastPath, modelList, totalOf, windowsTitle, type UsageData } from "./usage";

const w = (model: string, tokens: number) => ({ model, window_start: "", window_end: "", tokens, turns: 1 });

describe("the Usage page's reading of GET /v1/usage", () => {
  it("says how many windows of how many it lists (the read model keeps them all, for ever)", () => {
    const data: UsageData = { models: ["m"], window_count: 43_200, windows: [w("m", 1), w("m", 2)] };
    expect(windowsTitle(data, SHOWN_WINDOWS)).toBe("Usage windows: the newest 40 of 43,200, newest first");
    expect(windowsTitle({ models: ["m"], window_count: 2, windows: [w("m", 1), w("m", 2)] }, SHOWN_WINDOWS)).toBe(
      "Usage windows, newest first",
    );
  });

  it("takes a model's totals and window count over all its windows, not just those listed", () => {
    const data: UsageData = {
      models: ["m"],
      totals: [{ model: "m", windows: 500, tokens: 9_000, turns: 40 }],
      window_count: 500,
      windows: [w("m", 1)],
    };
    expect(totalOf(data, "m")).toEqual({ model: "m", windows: 500, tokens: 9_000, turns: 40 });
    expect(totalOf({ models: ["m"], windows: [w("m", 1), w("m", 2)] }, "m")).toEqual({
      model: "m",
      windows: 2,
      tokens: 3,
      turns: 2,
    });
  });
});

describe("forecastPath", () => {
  it("asks for the newest windows of the history only (the edge kept answering every window ever)", () => {
    expect(forecastPath("a&b|c")).toBe(`/v1/forecast?model=a%26b%7Cc&horizon=5&history=${CHART_HISTORY}`);
  });
});

describe("modelList", () => {
  it("lists the models with the most tokens, keeps the selected one, and counts the rest", () => {
    const models = Array.from({ length: 5000 }, (_, i) => `m${i}`);
    const data: UsageData = {
      models,
      totals: models.map((model, i) => ({ model, windows: 1, tokens: i, turns: 1 })),
      window_count: 5000,
      windows: [],
    };
    const listed = modelList(data, "m7", 3);
    expect(listed.models.map((t) => t.model)).toEqual(["m4999", "m4998", "m4997", "m7"]);
    expect(listed.hidden).toBe(4996);
    expect(modelList(data, "m4999", 3).hidden).toBe(4997);
  });

  it("sums the windows answered when the edge gives no totals", () => {
    const listed = modelList({ models: ["a", "b"], windows: [w("a", 1), w("b", 5), w("b", 1)] }, null, 10);
    expect(listed.models.map((t) => [t.model, t.tokens])).toEqual([
      ["b", 6],
      ["a", 1],
    ]);
    expect(listed.hidden).toBe(0);
  });
});
