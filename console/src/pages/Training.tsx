import { useState } from "react";

import { Banner, Button, Card, Problem, td, tdText, th } from "../components/ui";
import { ApiError, call, post } from "../lib/api";
import type { Session } from "../lib/auth";
import { timeValue } from "../lib/conversation";
import { short, when } from "../lib/format";
import { useNow, usePoll } from "../lib/hooks";
import { SHOWN_RECORDS, historyTitle, newestOf } from "../lib/training";

interface Status {
  tenant: string;
  state: string;
  version: number;
  owner: string | null;
  reason: string | null;
  expires_at: string | null;
  last_rejection: string | null;
}

interface HistoryItem {
  sequence: number;
  type: string;
  occurred_at: string;
  actor: string;
  mode: string;
  expires_at: string | null;
  hash: string;
  prev_hash: string;
  chain: "ok" | "broken";
}

export function Training({ session, admin }: { session: Session; admin: boolean }) {
  const status = usePoll(() => call<Status>(session.token, "/v1/training/status"), 1000);
  // One more than listed: the page then knows whether older records exist that it does not list.
  const history = usePoll(
    () => call<{ items: HistoryItem[] }>(session.token, `/v1/training/history?limit=${SHOWN_RECORDS + 1}`),
    2000,
  );
  const listed = newestOf(history.data?.items ?? [], SHOWN_RECORDS);
  const now = useNow(200);
  const [ttl, setTtl] = useState("300");
  const [reason, setReason] = useState("");
  const [result, setResult] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const s = status.data;
  const expiresMs = s?.expires_at != null ? timeValue(s.expires_at) : null;
  const left = expiresMs !== null ? Math.max(0, (expiresMs - now) / 1000) : null;
  const on = s?.state === "enabled" && (left === null || left > 0);

  const command = async (kind: "enable" | "disable") => {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      const body: Record<string, unknown> = { reason: reason.trim() || `${kind}d from the console` };
      if (kind === "enable") body.ttl_seconds = Number.parseInt(ttl, 10);
      const r = await post<{ outcome?: string; version?: number; status?: string }>(session.token, `/v1/training/${kind}`, body);
      setResult(r.outcome ? `${r.outcome} (version ${r.version})` : `command ${r.status ?? "sent"}`);
      status.refresh();
      history.refresh();
    } catch (exc) {
      setError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      {status.error && <Problem message={status.error.message} />}
      <div className="grid grid-cols-2 gap-4">
        <Card title={`Training mode of ${session.tenant}`}>
          <div className="flex items-baseline gap-3">
            <span
              className={`rounded px-2 py-1 text-sm font-semibold ${on ? "bg-amber-100 text-amber-900" : "bg-slate-100 text-slate-700"}`}
              data-testid="training-state"
            >
              {s ? (on ? "enabled" : s.state === "enabled" ? "expired" : s.state) : "…"}
            </span>
            {on && left !== null && (
              <span className="font-mono text-sm" data-testid="countdown">
                expires in {left.toFixed(1)} s
              </span>
            )}
          </div>
          {s && (
            <dl className="mt-3 grid grid-cols-2 gap-1 text-sm">
              <dt className="text-slate-500">version</dt>
              <dd>{s.version}</dd>
              <dt className="text-slate-500">owner</dt>
              <dd>{s.owner ?? "—"}</dd>
              <dt className="text-slate-500">reason</dt>
              <dd>{s.reason ?? "—"}</dd>
              <dt className="text-slate-500">expires at</dt>
              <dd>{when(s.expires_at)}</dd>
              {s.last_rejection && (
                <>
                  <dt className="text-slate-500">last rejection</dt>
                  <dd>{s.last_rejection}</dd>
                </>
              )}
            </dl>
          )}
        </Card>
        <Card title="Change">
          {admin ? (
            <div className="space-y-2 text-sm">
              <label className="flex items-center gap-2">
                TTL (s)
                <input
                  className="w-24 rounded border border-slate-300 px-2 py-1"
                  value={ttl}
                  onChange={(e) => setTtl(e.target.value)}
                  data-testid="ttl"
                  inputMode="numeric"
                />
              </label>
              <label className="flex items-center gap-2">
                reason
                <input
                  className="flex-1 rounded border border-slate-300 px-2 py-1"
                  value={reason}
                  onChange={(e) => setReason(e.target.value)}
                  data-testid="reason"
                />
              </label>
              <div className="flex gap-2">
                <Button onClick={() => void command("enable")} disabled={busy} testId="enable">
                  Enable
                </Button>
                <Button tone="plain" onClick={() => void command("disable")} disabled={busy} testId="disable">
                  Disable
                </Button>
              </div>
              {result && <Banner tone="ok">{result}</Banner>}
              {error && <Problem message={error.message} />}
            </div>
          ) : (
            <p className="text-sm text-slate-500" data-testid="read-only">
              Read-only: enabling or disabling training needs the admin role.
            </p>
          )}
        </Card>
      </div>
      <Card title={historyTitle(listed)}>
        {history.error && <Problem message={history.error.message} />}
        <table className="w-full" data-testid="history">
          <thead>
            <tr>
              <th className={th}>#</th>
              <th className={th}>record</th>
              <th className={th}>at</th>
              <th className={th}>actor</th>
              <th className={th}>mode</th>
              <th className={th}>expires</th>
              <th className={th}>hash</th>
              <th className={th}>chain</th>
            </tr>
          </thead>
          <tbody>
            {listed.rows.map((h) => (
              <tr key={`${h.sequence}-${h.hash}`}>
                <td className={td}>{h.sequence}</td>
                <td className={td}>{h.type}</td>
                <td className={td}>{when(h.occurred_at)}</td>
                <td className={tdText}>{h.actor}</td>
                <td className={td}>{h.mode}</td>
                <td className={td}>{when(h.expires_at)}</td>
                <td className={`${td} font-mono`} title={`prev ${h.prev_hash}`}>
                  {short(h.hash)}
                </td>
                <td className={`${td} ${h.chain === "ok" ? "text-green-700" : "font-semibold text-red-700"}`}>{h.chain}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Card>
    </>
  );
}
