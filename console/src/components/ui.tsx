import type { ReactNode } from "react";

import type { RuleError } from "../lib/api";

export const OUTCOME_COLORS: Record<string, string> = {
  allow: "#16a34a",
  redact: "#d97706",
  review: "#2563eb",
  deny: "#dc2626",
};

const BADGE: Record<string, string> = {
  allow: "bg-green-100 text-green-800",
  redact: "bg-amber-100 text-amber-800",
  review: "bg-blue-100 text-blue-800",
  deny: "bg-red-100 text-red-800",
};

export function Badge({ outcome }: { outcome: string | null | undefined }) {
  if (!outcome) return <span className="text-xs text-slate-400">pending</span>;
  return (
    <span
      className={`rounded px-2 py-0.5 text-xs font-semibold uppercase ${BADGE[outcome] ?? "bg-slate-100"}`}
      data-testid="outcome"
    >
      {outcome}
    </span>
  );
}

export function Card({ title, children, actions }: { title: string; children: ReactNode; actions?: ReactNode }) {
  return (
    <section className="rounded-lg border border-slate-200 bg-white p-4 shadow-sm">
      <div className="mb-3 flex items-center justify-between">
        <h2 className="min-w-0 text-sm font-semibold wrap-anywhere text-slate-700">{title}</h2>
        {actions}
      </div>
      {children}
    </section>
  );
}

type Tone = "info" | "warn" | "error" | "ok";
const TONES: Record<Tone, string> = {
  info: "border-blue-200 bg-blue-50 text-blue-900",
  warn: "border-amber-300 bg-amber-50 text-amber-900",
  error: "border-red-300 bg-red-50 text-red-900",
  ok: "border-green-300 bg-green-50 text-green-900",
};

export function Banner({ tone, children, testId }: { tone: Tone; children: ReactNode; testId?: string }) {
  return (
    <div role={tone === "error" ? "alert" : "status"} className={`rounded border px-3 py-2 text-sm ${TONES[tone]}`} data-testid={testId}>
      {children}
    </div>
  );
}

export function Button({
  children,
  onClick,
  disabled,
  tone = "primary",
  testId,
}: {
  children: ReactNode;
  onClick?: () => void;
  disabled?: boolean;
  tone?: "primary" | "danger" | "plain";
  testId?: string;
}) {
  const cls =
    tone === "primary"
      ? "bg-slate-900 text-white hover:bg-slate-700"
      : tone === "danger"
        ? "bg-red-600 text-white hover:bg-red-500"
        : "border border-slate-300 bg-white hover:bg-slate-100";
  return (
    <button
      type="button"
      onClick={onClick}
      disabled={disabled}
      data-testid={testId}
      className={`rounded px-3 py-1.5 text-sm font-medium disabled:opacity-50 ${cls}`}
    >
      {children}
    </button>
  );
}

export function Problem({ message, errors }: { message: string; errors?: RuleError[] }) {
  return (
    <Banner tone="error" testId="problem">
      <div>{message}</div>
      {errors && errors.length > 0 && (
        <ul className="mt-1 list-disc pl-5" data-testid="rule-errors">
          {errors.map((e, i) => (
            <li key={i}>
              {e.rule ? <code className="font-semibold">{e.rule}</code> : <em>pack</em>}: {e.message}
            </li>
          ))}
        </ul>
      )}
    </Banner>
  );
}

export const th = "px-2 py-1 text-left text-xs font-medium uppercase tracking-wide text-slate-500";
export const td = "px-2 py-1 text-sm border-t border-slate-100";
/** A cell showing a string from users (a name, an id, a reason): it wraps anywhere rather than widen the table. */
export const tdText = `${td} wrap-anywhere`;
