import { useEffect, useMemo, useState } from "react";

import { Banner, Button, Card, Problem, td, tdText, th } from "../components/ui";
import { ApiError, call, post, put } from "../lib/api";
import type { Session } from "../lib/auth";
import { canonical, fold, lineDiff } from "../lib/diff";
import { short, when } from "../lib/format";
import { usePoll } from "../lib/hooks";
import { SHOWN_PACKS, packsTitle } from "../lib/packs";

interface PackSummary {
  version: number;
  constitution_hash: string;
  published_by: string;
  published_at: string;
  rules: number;
}

interface PackDetail extends Omit<PackSummary, "rules"> {
  pack: Record<string, unknown>;
}

/** Diff lines rendered at most (a pack may have tens of thousands of changed lines). */
const MAX_SHOWN_LINES = 2000;

type Check =
  | { kind: "valid"; hash: string }
  | { kind: "invalid"; error: ApiError }
  | { kind: "published"; version: number; hash: string };

export function Policy({ session, admin }: { session: Session; admin: boolean }) {
  // A page of the newest versions: anyone who can write Kafka can publish thousands.
  const packs = usePoll(
    () => call<{ items: PackSummary[]; count?: number }>(session.token, `/v1/policy/packs?limit=${SHOWN_PACKS}`),
    5000,
  );
  const items = packs.data?.items ?? [];
  const [left, setLeft] = useState<number | null>(null);
  const [right, setRight] = useState<number | null>(null);
  const [docs, setDocs] = useState<Record<number, PackDetail>>({});
  const [editor, setEditor] = useState("");
  const [check, setCheck] = useState<Check | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (items.length && right === null) {
      setRight(items[0].version);
      setLeft(items.length > 1 ? items[1].version : items[0].version);
    }
  }, [items, right]);

  useEffect(() => {
    for (const v of [left, right]) {
      if (v === null || docs[v]) continue;
      call<PackDetail>(session.token, `/v1/policy/packs/${v}`)
        .then((d) => {
          setDocs((prev) => ({ ...prev, [v]: d }));
          if (v === items[0]?.version) setEditor((e) => e || JSON.stringify(d.pack, null, 2));
        })
        .catch(() => undefined);
    }
  }, [left, right, docs, items, session.token]);

  const parse = (): Record<string, unknown> | null => {
    try {
      return JSON.parse(editor) as Record<string, unknown>;
    } catch (exc) {
      setCheck({ kind: "invalid", error: new ApiError(0, `not JSON: ${exc instanceof Error ? exc.message : exc}`) });
      return null;
    }
  };

  const validate = async (): Promise<boolean> => {
    const doc = parse();
    if (!doc) return false;
    try {
      const r = await post<{ valid: boolean; constitution_hash: string }>(session.token, "/v1/policy/validate", doc);
      setCheck({ kind: "valid", hash: r.constitution_hash });
      return true;
    } catch (exc) {
      setCheck({ kind: "invalid", error: exc instanceof ApiError ? exc : new ApiError(0, String(exc)) });
      return false;
    }
  };

  const publish = async () => {
    setBusy(true);
    try {
      if (!(await validate())) return; // an invalid pack is never sent for publishing
      const doc = parse();
      if (!doc) return;
      const r = await put<{ version: number; constitution_hash: string }>(session.token, "/v1/policy/rules", doc);
      setCheck({ kind: "published", version: r.version, hash: r.constitution_hash });
      packs.refresh();
    } catch (exc) {
      setCheck({ kind: "invalid", error: exc instanceof ApiError ? exc : new ApiError(0, String(exc)) });
    } finally {
      setBusy(false);
    }
  };

  const a = left !== null ? docs[left] : undefined;
  const b = right !== null ? docs[right] : undefined;
  // Computed once per pair of versions, not on every render (polls, keystrokes in the editor).
  const diff = useMemo(() => {
    if (!a || !b) return { lines: [], exact: true, hidden: 0 };
    const { lines, exact } = lineDiff(canonical(a.pack).split("\n"), canonical(b.pack).split("\n"));
    const folded = fold(lines);
    return { lines: folded.slice(0, MAX_SHOWN_LINES), exact, hidden: Math.max(0, folded.length - MAX_SHOWN_LINES) };
  }, [a, b]);

  return (
    <>
      {packs.error && <Problem message={packs.error.message} />}
      <Card title={packsTitle(session.tenant, items.length, packs.data?.count)}>
        <table className="w-full" data-testid="packs">
          <thead>
            <tr>
              <th className={th}>version</th>
              <th className={th}>constitution hash</th>
              <th className={th}>published by</th>
              <th className={th}>published at</th>
              <th className={th}>rules</th>
            </tr>
          </thead>
          <tbody>
            {items.map((p) => (
              <tr key={p.version} data-testid="pack-row">
                <td className={td}>v{p.version}</td>
                <td className={`${td} font-mono`} title={p.constitution_hash}>
                  {short(p.constitution_hash, 16)}
                </td>
                <td className={tdText}>{p.published_by}</td>
                <td className={td}>{when(p.published_at)}</td>
                <td className={td}>{p.rules}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {packs.data && items.length === 0 && <p className="text-sm text-slate-500">No pack published yet.</p>}
      </Card>
      <Card
        title="Diff"
        actions={
          <div className="flex gap-2 text-sm">
            <VersionPick items={items} value={left} onChange={setLeft} />
            <span>→</span>
            <VersionPick items={items} value={right} onChange={setRight} />
          </div>
        }
      >
        {a && b && a.version === b.version && <p className="mb-2 text-xs text-slate-500">Pick two different versions.</p>}
        {!diff.exact && (
          <p className="mb-2 text-xs text-slate-500" data-testid="diff-approximate">
            These versions are too large to compare line by line: the changed part is shown as removed, then added.
          </p>
        )}
        <pre className="max-h-72 overflow-auto rounded bg-slate-50 p-2 text-xs" data-testid="diff">
          {diff.lines.map((l, i) => (
            <div
              key={i}
              className={
                l.op === "+" ? "bg-green-100" : l.op === "-" ? "bg-red-100" : l.op === "…" ? "italic text-slate-400" : "text-slate-500"
              }
            >
              {l.op} {l.text}
            </div>
          ))}
          {diff.hidden > 0 && <div className="italic text-slate-400">… {diff.hidden} more lines not shown</div>}
        </pre>
      </Card>
      <Card title="Edit, validate against the server, publish">
        <textarea
          className="h-64 w-full rounded border border-slate-300 p-2 font-mono text-xs"
          value={editor}
          onChange={(e) => {
            setEditor(e.target.value);
            setCheck(null);
          }}
          spellCheck={false}
          data-testid="pack-editor"
        />
        <div className="mt-2 flex items-center gap-2">
          <Button tone="plain" onClick={() => void validate()} disabled={busy} testId="validate">
            Validate
          </Button>
          {admin && (
            <Button onClick={() => void publish()} disabled={busy} testId="publish">
              Publish
            </Button>
          )}
          {!admin && <span className="text-xs text-slate-500">Publishing needs the admin role.</span>}
        </div>
        <div className="mt-2">
          {check?.kind === "valid" && (
            <Banner tone="ok" testId="valid">
              Valid. Constitution hash <code>{short(check.hash, 16)}</code>
            </Banner>
          )}
          {check?.kind === "published" && (
            <Banner tone="ok" testId="published">
              Published v{check.version} (<code>{short(check.hash, 16)}</code>)
            </Banner>
          )}
          {check?.kind === "invalid" && <Problem message={check.error.message} errors={check.error.errors} />}
        </div>
      </Card>
    </>
  );
}

function VersionPick({ items, value, onChange }: { items: PackSummary[]; value: number | null; onChange: (v: number) => void }) {
  return (
    <select className="rounded border border-slate-300 px-1" value={value ?? ""} onChange={(e) => onChange(Number(e.target.value))}>
      {items.map((p) => (
        <option key={p.version} value={p.version}>
          v{p.version}
        </option>
      ))}
    </select>
  );
}
