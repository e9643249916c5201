import { describe, expect, it } from "vitest";

import { costText, price, registerBody } from "./models";

const form = { model: "slm-1", provider: "local", contextWindow: "8192", inputPrice: "0.5", outputPrice: "" };

describe("registerBody", () => {
  it("builds the body with the version seen and unknown prices as null", () => {
    expect(registerBody(form, 3)).toEqual({
      body: {
        model: "slm-1",
        provider: "local",
        context_window: 8192,
        input_price_per_1k: 0.5,
        output_price_per_1k: null,
        expected_version: 3,
      },
    });
  });

  it.each([
    [{ model: "  " }, "model"],
    [{ provider: "" }, "provider"],
    [{ contextWindow: "0" }, "context window"],
    [{ contextWindow: "12.5" }, "context window"],
    [{ contextWindow: "-1" }, "context window"],
    [{ inputPrice: "-0.1" }, "input price"],
    [{ outputPrice: "1e3" }, "output price"],
    [{ outputPrice: "NaN" }, "output price"],
  ])("refuses %j", (change, field) => {
    const result = registerBody({ ...form, ...change }, 0);
    expect("error" in result && result.error.startsWith(field)).toBe(true);
  });
});

describe("price and cost", () => {
  it("shows unknown prices as a dash and trims trailing zeros", () => {
    expect(price(null)).toBe("—");
    expect(price(0.5)).toBe("0.5");
    expect(price(0.0000004)).toBe("0");
    expect(price(Number.NaN)).toBe("—");
  });

  it("shows a cost range, or one number when it is exact", () => {
    expect(costText({ low: 1, high: 3 })).toBe("1–3");
    expect(costText({ low: 2.5, high: 2.5 })).toBe("2.5");
    expect(costText(null)).toBe("—");
  });
});
