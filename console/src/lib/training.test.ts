import { describe, expect, it } from "vitest";

import { SHOWN_RECORDS, historyTitle, newestOf } from "./training";

describe("the Training page's history", () => {
  it("lists the newest records and says when older ones are left out", () => {
    const items = Array.from({ length: SHOWN_RECORDS + 1 }, (_, i) => i);
    const listed = newestOf(items, SHOWN_RECORDS);
    expect(listed.rows).toHaveLength(SHOWN_RECORDS);
    expect(listed.rows[0]).toBe(0);
    expect(historyTitle(listed)).toBe(
      "training.audit history (hash-chained): the newest 100 records; older ones are not listed",
    );
  });

  it("says nothing more when the whole history is listed", () => {
    const listed = newestOf([1, 2, 3], SHOWN_RECORDS);
    expect(listed).toEqual({ rows: [1, 2, 3], more: false });
    expect(historyTitle(listed)).toBe("training.audit history (hash-chained)");
  });
});
