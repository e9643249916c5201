import { describe, expect, it } from "vitest";

import { packsTitle } from "./packs";

describe("packsTitle", () => {
  it("says how many of the tenant's versions the page lists", () => {
    expect(packsTitle("acme", 50, 3000)).toBe(
      "Published rule packs of acme: the newest 50 of 3,000 versions (the diff compares these)",
    );
    expect(packsTitle("acme", 7, 7)).toBe("Published rule packs of acme");
    expect(packsTitle("acme", 7, undefined)).toBe("Published rule packs of acme");
  });
});
