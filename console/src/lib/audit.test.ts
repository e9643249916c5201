import { describe, expect, it } from "vitest";

import { auditHeadline, type AuditReport } from "./audit";

const base: AuditReport = { ok: true, counts: {}, findings: [], complete: true, records_read: 12, seconds: 0.5 };
const finding = { kind: "decision.altered", topic: "policy.decisions", partition: 0, offset: 4, detail: "x" };

describe("auditHeadline", () => {
  it("says clean only when the edge answered ok", () => {
    expect(auditHeadline(base)).toBe("No discrepancy · 12 records read in 0.50 s");
    expect(auditHeadline({ ...base, ok: false, findings: [finding], counts: { "decision.altered": 1 } })).toBe(
      "1 discrepancy of this tenant · 12 records read in 0.50 s",
    );
  });

  it("never shows '0 discrepancies' for an audit whose list other tenants' findings filled", () => {
    const text = auditHeadline({ ...base, ok: false, complete: false });
    expect(text).toContain("0 discrepancies of this tenant listed; the audit found more than it lists");
    expect(text).toContain("not proven clean");
  });
});
