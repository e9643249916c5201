// The answer of POST /v1/audit as the Audit page shows it (docs/api.md).

export interface AuditReport {
  ok: boolean;
  counts: Record<string, number>;
  findings: { kind: string; topic: string; partition: number | null; offset: number | null; detail: string }[];
  /** False when the audit only counted some findings (any tenant's, past the first it keeps); absent from older edges. */
  complete?: boolean;
  records_read: number;
  seconds: number;
}

/** The report's headline: clean only when the edge says so, and an incomplete list said to be one. */
export function auditHeadline(report: AuditReport): string {
  const read = `${report.records_read} records read in ${report.seconds.toFixed(2)} s`;
  if (report.ok) return `No discrepancy · ${read}`;
  const n = report.findings.length;
  const mine = `${n} ${n === 1 ? "discrepancy" : "discrepancies"} of this tenant`;
  if (report.complete !== false) return `${mine} · ${read}`;
  return (
    `${mine} listed; the audit found more than it lists (it keeps only its first findings, of every ` +
    `tenant), and they may be this tenant's: its logs are not proven clean · ${read}`
  );
}
