import { useState } from "react";

import { Banner, Button, Card, Problem, td, tdText, th } from "../components/ui";
import { ApiError, post } from "../lib/api";
import { auditHeadline, type AuditReport as Report } from "../lib/audit";
import type { Session } from "../lib/auth";

export function Audit({ session, admin }: { session: Session; admin: boolean }) {
  const [report, setReport] = useState<Report | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [running, setRunning] = useState(false);
  const run = async () => {
    setRunning(true);
    setError(null);
    try {
      setReport(await post<Report>(session.token, "/v1/audit", {}, 0)); // the edge bounds it (its deadline)
    } catch (exc) {
      setError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
    } finally {
      setRunning(false);
    }
  };
  return (
    <>
      <Card
        title={`Audit the logs of ${session.tenant}`}
        actions={
          admin ? (
            <Button onClick={() => void run()} disabled={running} testId="run-audit">
              {running ? "Running…" : "Run audit"}
            </Button>
          ) : undefined
        }
      >
        <p className="text-sm text-slate-600">
          Re-reads the current logs on the server (bounded: about a minute, one run at a time),
          verifies the hash chains and every decision against its input, and lists each discrepancy.
        </p>
        {!admin && <p className="mt-2 text-sm text-slate-500">Running an audit needs the admin role.</p>}
        {error && (
          <div className="mt-2">
            <Problem
              message={
                error.status === 409
                  ? "An audit is already running for this tenant; try again when it finishes."
                  : error.status === 429
                    ? `The server is running another audit${error.retryAfter ? `; retry in ${error.retryAfter} s` : ""}.`
                    : error.status === 503
                      ? `The audit did not finish in time${error.retryAfter ? `; retry in ${error.retryAfter} s` : ""}.`
                      : error.message
              }
            />
          </div>
        )}
      </Card>
      {report && (
        <Card title="Report">
          <Banner tone={report.ok ? "ok" : "error"} testId="audit-result">
            {auditHeadline(report)}
          </Banner>
          <div className="mt-3 flex flex-wrap gap-2 text-sm" data-testid="audit-counts">
            {Object.entries(report.counts).map(([k, v]) => (
              <span key={k} className="rounded bg-slate-100 px-2 py-0.5">
                {k}: <b>{v}</b>
              </span>
            ))}
          </div>
          {report.findings.length > 0 && (
            <table className="mt-3 w-full">
              <thead>
                <tr>
                  <th className={th}>kind</th>
                  <th className={th}>topic</th>
                  <th className={th}>partition</th>
                  <th className={th}>offset</th>
                  <th className={th}>detail</th>
                </tr>
              </thead>
              <tbody>
                {report.findings.map((f, i) => (
                  <tr key={i}>
                    <td className={td}>{f.kind}</td>
                    <td className={tdText}>{f.topic}</td>
                    <td className={td}>{f.partition ?? "—"}</td>
                    <td className={td}>{f.offset ?? "—"}</td>
                    <td className={tdText}>{f.detail}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Card>
      )}
    </>
  );
}
