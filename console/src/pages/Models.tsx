import { useState } from "react";

import { Banner, Button, Card, Problem, td, tdText, th } from "../components/ui";
import { ApiError, call, post } from "../lib/api";
import type { Session } from "../lib/auth";
import { type Registry, type RegisterForm, price, registerBody } from "../lib/models";
import { usePoll } from "../lib/hooks";

const EMPTY: RegisterForm = { model: "", provider: "", contextWindow: "8192", inputPrice: "", outputPrice: "" };

// The tenant's model registry (docs/models.md): providers, models and their settings; admins
// register models and switch them on and off, each change against the version they saw.
export function Models({ session, admin }: { session: Session; admin: boolean }) {
  const registry = usePoll(() => call<Registry>(session.token, "/v1/models"), 2000);
  const [form, setForm] = useState<RegisterForm>(EMPTY);
  const [result, setResult] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const r = registry.data;

  const send = async (path: string, body: unknown) => {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      const answer = await post<{ outcome?: string; version?: number; status?: string }>(session.token, path, body);
      setResult(answer.outcome ? `${answer.outcome} (version ${answer.version})` : `command ${answer.status ?? "sent"}`);
      registry.refresh();
    } catch (exc) {
      setError(exc instanceof ApiError ? exc.message : String(exc));
    } finally {
      setBusy(false);
    }
  };

  const register = () => {
    const built = registerBody(form, r?.version ?? 0);
    if ("error" in built) {
      setError(built.error);
      return;
    }
    void send("/v1/models", built.body);
  };

  const field = (name: keyof RegisterForm, label: string, width = "w-40") => (
    <label className="flex items-center gap-2">
      <span className="w-36 text-slate-500">{label}</span>
      <input
        className={`${width} rounded border border-slate-300 px-2 py-1`}
        value={form[name]}
        onChange={(e) => setForm({ ...form, [name]: e.target.value })}
        data-testid={`model-${name}`}
      />
    </label>
  );

  return (
    <>
      {registry.error && <Problem message={registry.error.message} />}
      <Card title={`Model registry of ${session.tenant}${r ? ` · version ${r.version}` : ""}`}>
        <table className="w-full" data-testid="model-table">
          <thead>
            <tr>
              <th className={th}>model</th>
              <th className={th}>provider</th>
              <th className={th}>context window</th>
              <th className={th}>input / 1k</th>
              <th className={th}>output / 1k</th>
              <th className={th}>state</th>
              {admin && <th className={th} />}
            </tr>
          </thead>
          <tbody>
            {(r?.models ?? []).map((m) => (
              <tr key={m.model} data-testid="model-row" data-model={m.model}>
                <td className={`${tdText} font-mono`}>{m.model}</td>
                <td className={tdText}>{m.provider}</td>
                <td className={td}>{m.context_window.toLocaleString("en")}</td>
                <td className={td}>{price(m.input_price_per_1k)}</td>
                <td className={td}>{price(m.output_price_per_1k)}</td>
                <td className={td} data-testid="model-state">
                  {m.enabled ? "enabled" : "disabled"}
                </td>
                {admin && (
                  <td className={td}>
                    <Button
                      tone={m.enabled ? "danger" : "plain"}
                      disabled={busy}
                      testId={m.enabled ? "model-disable" : "model-enable"}
                      onClick={() =>
                        void send(`/v1/models/${m.enabled ? "disable" : "enable"}`, {
                          model: m.model,
                          expected_version: r?.version,
                        })
                      }
                    >
                      {m.enabled ? "Disable" : "Enable"}
                    </Button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
        {r && r.models.length === 0 && (
          <p className="mt-2 text-sm text-slate-500" data-testid="no-models">
            No model registered yet: a pack with a <code>model_unavailable</code> rule denies every turn.
          </p>
        )}
        {r && r.providers.length > 0 && (
          <p className="mt-2 text-sm text-slate-500" data-testid="providers">
            Providers: {r.providers.map((p) => `${p.provider} (${p.models.length})`).join(", ")}
          </p>
        )}
      </Card>
      <Card title="Register or update a model">
        {admin ? (
          <div className="space-y-2 text-sm">
            {field("model", "model id")}
            {field("provider", "provider")}
            {field("contextWindow", "context window")}
            {field("inputPrice", "input price / 1k", "w-24")}
            {field("outputPrice", "output price / 1k", "w-24")}
            <Button onClick={register} disabled={busy} testId="model-register">
              Register
            </Button>
            {result && (
              <Banner tone="ok" testId="model-result">
                {result}
              </Banner>
            )}
            {error && <Problem message={error} />}
          </div>
        ) : (
          <p className="text-sm text-slate-500" data-testid="read-only">
            Read-only: changing the registry needs the admin role.
          </p>
        )}
      </Card>
    </>
  );
}
