import { useEffect, useReducer, useRef, useState } from "react";

import { Badge, Banner, Button, Card, Problem, td, tdText, th } from "../components/ui";
import { ApiError, call } from "../lib/api";
import type { Session } from "../lib/auth";
import {
  applyEvent,
  emptyConversation,
  mergeSnapshot,
  olderBefore,
  orderedTurns,
  segments,
  type ConversationPage,
  type ConversationState,
  type Decision,
  type Turn,
} from "../lib/conversation";
import { when } from "../lib/format";
import { usePoll } from "../lib/hooks";
import { follow, type Frame, type StreamStatus } from "../lib/sse";

interface ListItem {
  conversation_id: string;
  last_activity: string;
  turns: number;
  decisions: number;
  last_outcome: string | null;
}

const PAGE = 20;

export function ConversationList({ session }: { session: Session }) {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1];
  const { data, error } = usePoll(
    () => {
      const q = new URLSearchParams({ limit: String(PAGE) });
      if (cursor) q.set("cursor", cursor);
      return call<{ items: ListItem[]; next: string | null }>(session.token, `/v1/conversations?${q}`);
    },
    cursors.length === 1 ? 3000 : 0,
    [cursor],
  );
  return (
    <Card
      title={`Conversations of ${session.tenant}, newest activity first`}
      actions={
        <div className="flex gap-2">
          <Button tone="plain" disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
            ← newer
          </Button>
          <Button tone="plain" disabled={!data?.next} onClick={() => data?.next && setCursors((c) => [...c, data.next])} testId="older">
            older →
          </Button>
        </div>
      }
    >
      {error && <Problem message={error.message} />}
      <table className="w-full" data-testid="conversation-list">
        <thead>
          <tr>
            <th className={th}>conversation</th>
            <th className={th}>last activity</th>
            <th className={th}>turns</th>
            <th className={th}>decisions</th>
            <th className={th}>last outcome</th>
          </tr>
        </thead>
        <tbody>
          {(data?.items ?? []).map((c) => (
            <tr key={c.conversation_id} className="hover:bg-slate-50">
              <td className={tdText}>
                <a className="font-mono text-blue-700 underline" href={`#/conversations/${encodeURIComponent(c.conversation_id)}`}>
                  {c.conversation_id}
                </a>
              </td>
              <td className={td}>{when(c.last_activity)}</td>
              <td className={td}>{c.turns}</td>
              <td className={td}>{c.decisions}</td>
              <td className={td}>{c.last_outcome ? <Badge outcome={c.last_outcome} /> : <span className="text-slate-400">—</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.items.length === 0 && <p className="mt-2 text-sm text-slate-500">No conversations yet.</p>}
    </Card>
  );
}

type Action =
  | { kind: "snapshot"; view: ConversationPage; older?: boolean }
  | { kind: "event"; type: string; data: string };

function reduce(state: ConversationState, action: Action): ConversationState {
  return action.kind === "snapshot"
    ? mergeSnapshot(state, action.view, action.older)
    : applyEvent(state, action.type, action.data);
}

/** Turns asked for per "older turns" click (the read model's page size; docs/api.md). */
const OLDER_PAGE = 200;

interface Notice {
  tone: "info" | "warn" | "error";
  text: string;
  untilLive?: boolean; // cleared when the stream is live again
}

const CONTROL_TEXT: Record<string, (d: Record<string, unknown>) => Notice> = {
  reset: (d) => ({
    tone: "warn",
    text: `The stream could not resume exactly where it left off (${String(d.reason ?? "reset")}); it restarted from ${d.restart === "earliest" ? "the oldest record kept" : "now"}. Turns before that are loaded from the read model.`,
  }),
  overflow: () => ({
    tone: "warn",
    text: "This view fell behind the live stream; reconnecting from its last position (nothing is lost).",
    untilLive: true,
  }),
  reauth: (d) => ({
    tone: "warn",
    text: `Your token expires at ${when(d.expires_at as string)}; sign out and sign in with a new token to keep following.`,
  }),
  expired: () => ({ tone: "error", text: "Your token expired: the stream ended. Sign in with a new token." }),
  shutdown: () => ({ tone: "info", text: "The edge is restarting; reconnecting from the last position…", untilLive: true }),
  unavailable: () => ({
    tone: "warn",
    text: "Kafka did not answer during catch-up; reconnecting from the last position…",
    untilLive: true,
  }),
};

export function ConversationView({ session, id }: { session: Session; id: string }) {
  const [state, dispatch] = useReducer(reduce, undefined, emptyConversation);
  const [status, setStatus] = useState<StreamStatus>({ kind: "connecting" });
  const [notice, setNotice] = useState<Notice | null>(null);
  const [loadError, setLoadError] = useState<ApiError | null>(null);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const cursorKey = `lf.cursor.${session.tenant}.${id}`;
  const tokenRef = useRef(session.token);
  tokenRef.current = session.token;

  useEffect(() => {
    const abort = new AbortController();
    const timers: ReturnType<typeof setTimeout>[] = [];
    const snapshot = async () => {
      try {
        const view = await call<ConversationPage>(tokenRef.current, `/v1/conversations/${encodeURIComponent(id)}`);
        if (!abort.signal.aborted) {
          dispatch({ kind: "snapshot", view });
          setLoadError(null);
        }
      } catch (exc) {
        if (abort.signal.aborted) return;
        // 404 only means the projection has not seen it yet: the stream still follows it.
        if (exc instanceof ApiError && exc.status !== 404) setLoadError(exc);
      }
    };
    const onFrame = (frame: Frame) => {
      if (frame.id !== null) {
        dispatch({ kind: "event", type: frame.event, data: frame.data });
        return;
      }
      if (frame.event === "heartbeat") return;
      let data: Record<string, unknown> = {};
      try {
        data = JSON.parse(frame.data) as Record<string, unknown>;
      } catch {
        /* keep {} */
      }
      const text = CONTROL_TEXT[frame.event];
      if (text) setNotice(text(data));
    };
    // The read model first, whatever becomes of the stream: an auditor or an admin may read the
    // conversation but not stream it (403), and saw "No turns yet" on a conversation with turns.
    void snapshot();
    void follow(
      {
        url: `/v1/conversation/stream?conversation_id=${encodeURIComponent(id)}`,
        token: () => tokenRef.current,
        cursor: () => sessionStorage.getItem(cursorKey),
        onCursor: (c) => sessionStorage.setItem(cursorKey, c),
        onFrame,
        onStatus: (s) => {
          setStatus(s);
          if (s.kind === "live") setNotice((n) => (n && (n.untilLive || n.tone === "error") ? null : n));
        },
        // Each (re)connect: merge the read model (deduplicated by event id) for what came before the stream;
        // once more shortly after, for records the projection had not applied yet.
        onOpen: () => {
          void snapshot();
          timers.push(setTimeout(() => void snapshot(), 1500));
        },
      },
      abort.signal,
    );
    return () => {
      abort.abort();
      timers.forEach(clearTimeout);
    };
  }, [id, cursorKey]);

  const turns = orderedTurns(state);
  const before = olderBefore(state);
  const loadOlder = async () => {
    if (before === null) return;
    setLoadingOlder(true);
    try {
      const q = new URLSearchParams({ turns_limit: String(OLDER_PAGE), turns_before: String(before) });
      const view = await call<ConversationPage>(tokenRef.current, `/v1/conversations/${encodeURIComponent(id)}?${q}`);
      dispatch({ kind: "snapshot", view, older: true });
      setLoadError(null);
    } catch (exc) {
      if (exc instanceof ApiError) setLoadError(exc);
    } finally {
      setLoadingOlder(false);
    }
  };
  const shown = state.total !== null && state.total > turns.length ? `${turns.length} of ${state.total} turns` : `${turns.length} turns`;
  return (
    <>
      <div className="flex items-center gap-3">
        <a href="#/conversations" className="text-sm text-blue-700 underline">
          ← conversations
        </a>
        <h1 className="min-w-0 font-mono text-lg font-semibold wrap-anywhere">{id}</h1>
        {state.status && <span className="rounded bg-slate-100 px-2 py-0.5 text-xs">{state.status}</span>}
        <StreamBadge status={status} />
      </div>
      {status.kind === "disconnected" && (
        <Banner tone="error" testId="disconnected">
          Disconnected: {status.detail}. Reconnecting in {Math.round(status.retryInMs / 1000)} s from the last position…
        </Banner>
      )}
      {status.kind === "ended" && (
        <Banner tone="error" testId="ended">
          The stream ended: {status.detail}
        </Banner>
      )}
      {notice && (
        <Banner tone={notice.tone} testId="control-banner">
          {notice.text}
        </Banner>
      )}
      {loadError && <Problem message={loadError.message} />}
      <Card
        title={state.dropped > 0 ? `${shown} (${state.dropped} older let go from this page)` : shown}
        actions={
          before !== null && (
            <Button tone="plain" disabled={loadingOlder} onClick={() => void loadOlder()} testId="load-older">
              {loadingOlder ? "loading…" : `↑ ${Math.min(OLDER_PAGE, before)} older turns`}
            </Button>
          )
        }
      >
        <ol className="space-y-3" data-testid="turns">
          {turns.map((t) => (
            <TurnRow key={t.event_id} turn={t} decision={state.decisions.get(t.event_id)} />
          ))}
        </ol>
        {turns.length === 0 && <p className="text-sm text-slate-500">No turns yet; new ones appear here live.</p>}
      </Card>
    </>
  );
}

function StreamBadge({ status }: { status: StreamStatus }) {
  const [text, cls] =
    status.kind === "live"
      ? ["live", "bg-green-100 text-green-800"]
      : status.kind === "connecting"
        ? ["connecting", "bg-slate-100 text-slate-700"]
        : status.kind === "disconnected"
          ? ["disconnected", "bg-red-100 text-red-800"]
          : ["ended", "bg-red-100 text-red-800"];
  return (
    <span className={`ml-auto rounded px-2 py-0.5 text-xs font-semibold ${cls}`} data-testid="stream-status">
      {text}
    </span>
  );
}

function TurnRow({ turn, decision }: { turn: Turn; decision: Decision | undefined }) {
  return (
    <li className="rounded border border-slate-200 p-3" data-testid="turn" data-turn-id={turn.turn_id} data-event-id={turn.event_id}>
      <div className="mb-1 flex items-center gap-2 text-xs text-slate-500">
        <span className="font-semibold text-slate-700">{turn.role}</span>
        <span className="min-w-0 font-mono wrap-anywhere">{turn.turn_id}</span>
        <span className="min-w-0 wrap-anywhere">{turn.model}</span>
        <span>{when(turn.occurred_at)}</span>
        <span className="ml-auto flex items-center gap-2">
          {decision && <span data-testid="score">score {decision.score.toFixed(2)}</span>}
          <Badge outcome={decision?.outcome} />
        </span>
      </div>
      <p className="whitespace-pre-wrap text-sm" data-testid="content">
        <Content turn={turn} decision={decision} />
      </p>
      {decision && decision.matched_rules.length > 0 && (
        <div className="mt-1 flex flex-wrap gap-1" data-testid="matched-rules">
          {decision.matched_rules.map((r) => (
            <code key={r} className="rounded bg-slate-100 px-1.5 text-xs">
              {r}
            </code>
          ))}
        </div>
      )}
    </li>
  );
}

function Content({ turn, decision }: { turn: Turn; decision: Decision | undefined }) {
  // Nothing is shown before the policy decided: a card number must never flash on screen.
  if (!decision) return <span className="italic text-slate-400">awaiting the policy decision…</span>;
  if (decision.outcome === "deny") return <span className="italic text-red-700">withheld: denied by policy</span>;
  return (
    <>
      {segments(turn.content, decision.redactions).map((s, i) =>
        s.redacted ? (
          <mark key={i} className="rounded bg-amber-200 px-1 text-amber-900" title="redacted by policy" data-testid="redacted">
            [redacted]
          </mark>
        ) : (
          <span key={i}>{s.text}</span>
        ),
      )}
    </>
  );
}
