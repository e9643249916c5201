// A conversation's turns and decisions, merged from the read model (snapshot) and the
// live stream. Keyed by event id, so a record seen twice (snapshot and stream, or a
// resumed stream) is shown once.

export type Outcome = "allow" | "redact" | "review" | "deny";

export interface Span {
  start: number;
  end: number;
}

export interface Decision {
  input_event_id: string;
  outcome: Outcome;
  score: number;
  matched_rules: string[];
  redactions: Span[];
  rule_pack_version?: number;
  training_enabled?: boolean;
}

export interface Turn {
  event_id: string;
  turn_id: string;
  role: string;
  content: string;
  model: string;
  occurred_at: string; // RFC 3339 (docs/api.md: one time format on every JSON surface)
  /** Its place in the conversation's turn list (0: the first turn), when it came from a read-model page. */
  position?: number;
}

export interface ConversationState {
  turns: Map<string, Turn>;
  decisions: Map<string, Decision>;
  status: string | null;
  /** Older turns let go to keep at most ``keep`` (a page left open on a busy conversation). */
  dropped: number;
  /** Turns this page keeps: MAX_TURNS_KEPT, plus every older turn the reader asked for. */
  keep: number;
  /** The read model's count of the conversation's turns (its latest page said so), if known. */
  total: number | null;
}

/** Turns a conversation page keeps; past it the oldest (by time) go, with their decisions. */
export const MAX_TURNS_KEPT = 1000;

export const emptyConversation = (): ConversationState => ({
  turns: new Map(),
  decisions: new Map(),
  status: null,
  dropped: 0,
  keep: MAX_TURNS_KEPT,
  total: null,
});

/** Lets the oldest turns (and their decisions) go until at most ``limit`` remain; mutates the new maps. */
function bounded(
  turns: Map<string, Turn>,
  decisions: Map<string, Decision>,
  dropped: number,
  limit: number,
): number {
  if (turns.size <= limit) {
    // a decision whose turn went (or never came) must not pile up either
    while (decisions.size > 2 * limit) decisions.delete(decisions.keys().next().value as string);
    return dropped;
  }
  const oldest = [...turns.values()]
    .sort((a, b) => timeValue(a.occurred_at) - timeValue(b.occurred_at))
    .slice(0, turns.size - limit);
  for (const t of oldest) {
    turns.delete(t.event_id);
    decisions.delete(t.event_id);
  }
  while (decisions.size > 2 * limit) decisions.delete(decisions.keys().next().value as string);
  return dropped + oldest.length;
}

interface SnapshotTurn extends Turn {
  decision: Decision | null;
}

/** A page of ``GET /v1/conversations/{id}``: ``turns`` oldest first from position ``turns_start``. */
export interface ConversationPage {
  turns?: SnapshotTurn[];
  status?: string;
  turn_count?: number;
  turns_start?: number;
}

/**
 * Merges a read-model page (deduplicated by event id; each turn learns its position). ``older``: the
 * reader asked for this page of older turns, so the page keeps them on top of what it kept before.
 */
export function mergeSnapshot(state: ConversationState, view: ConversationPage, older = false): ConversationState {
  const turns = new Map(state.turns);
  const decisions = new Map(state.decisions);
  const start = typeof view.turns_start === "number" && Number.isInteger(view.turns_start) ? view.turns_start : null;
  let added = 0;
  (view.turns ?? []).forEach((t, i) => {
    const { decision, ...turn } = t;
    const known = turns.get(turn.event_id);
    const position = start === null ? known?.position : start + i;
    if (!known) added += 1;
    if (!known || (position !== undefined && known.position !== position)) turns.set(turn.event_id, { ...(known ?? turn), position });
    if (decision && !decisions.has(turn.event_id)) decisions.set(turn.event_id, decision);
  });
  const keep = older ? state.keep + added : state.keep;
  // turns the reader asked back are no longer "let go"
  const dropped = bounded(turns, decisions, older ? Math.max(0, state.dropped - added) : state.dropped, keep);
  const total = typeof view.turn_count === "number" ? view.turn_count : state.total;
  return { turns, decisions, status: view.status ?? state.status, dropped, keep, total };
}

/**
 * The ``turns_before`` that asks the read model for the turns older than every one shown: the
 * smallest position known; null when the first turn is shown or no turn's position is known yet.
 */
export function olderBefore(state: ConversationState): number | null {
  let first: number | null = null;
  for (const t of state.turns.values()) {
    if (t.position !== undefined && (first === null || t.position < first)) first = t.position;
  }
  return first !== null && first > 0 ? first : null;
}

interface Envelope {
  event_id: string;
  type: string;
  occurred_at: string;
  payload: Record<string, unknown>;
}

/** Applies one data frame of a conversation stream; returns the same state when nothing changed. */
export function applyEvent(state: ConversationState, type: string, data: string): ConversationState {
  let env: Envelope;
  try {
    env = JSON.parse(data) as Envelope;
  } catch {
    return state;
  }
  const p = env.payload ?? {};
  if (type === "MessageSubmitted") {
    if (state.turns.has(env.event_id)) return state;
    const turns = new Map(state.turns);
    turns.set(env.event_id, {
      event_id: env.event_id,
      turn_id: String(p.turn_id ?? ""),
      role: String(p.role ?? ""),
      content: String(p.content ?? ""),
      model: String(p.model ?? ""),
      occurred_at: env.occurred_at,
    });
    const decisions = turns.size > state.keep ? new Map(state.decisions) : state.decisions;
    const dropped = bounded(turns, decisions, state.dropped, state.keep);
    return { ...state, turns, decisions, dropped };
  }
  if (type === "PolicyDecision") {
    const d = p as unknown as Decision;
    if (!d.input_event_id || state.decisions.has(d.input_event_id)) return state;
    const decisions = new Map(state.decisions);
    decisions.set(d.input_event_id, {
      ...d,
      matched_rules: d.matched_rules ?? [],
      redactions: d.redactions ?? [],
    });
    while (decisions.size > 2 * state.keep) decisions.delete(decisions.keys().next().value as string);
    return { ...state, decisions };
  }
  if (type === "ConversationClosed") return { ...state, status: "closed" };
  if (type === "ConversationStarted") return { ...state, status: state.status ?? "open" };
  return state;
}

/** Milliseconds since the epoch of an RFC 3339 time (every time the API sends); 0 if it does not parse. */
export function timeValue(t: string): number {
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? 0 : ms;
}

export function orderedTurns(state: ConversationState): Turn[] {
  const list = [...state.turns.values()];
  const index = new Map(list.map((t, i) => [t.event_id, i]));
  return list.sort(
    (a, b) => timeValue(a.occurred_at) - timeValue(b.occurred_at) || index.get(a.event_id)! - index.get(b.event_id)!,
  );
}

export interface Segment {
  text: string;
  redacted: boolean;
}

/** A span as events carry it ({start, end}) or as the read model stores it ([start, end]). */
export function spanOf(raw: Span | [number, number] | unknown): Span | null {
  if (Array.isArray(raw) && raw.length === 2) return { start: Number(raw[0]), end: Number(raw[1]) };
  if (raw && typeof raw === "object" && "start" in raw && "end" in raw) {
    const s = raw as Span;
    return { start: Number(s.start), end: Number(s.end) };
  }
  return null;
}

/** Splits text at the redaction spans (offsets in code points, as the policy engine counts them). */
export function segments(text: string, spans: readonly unknown[]): Segment[] {
  const chars = Array.from(text);
  const sorted = spans
    .map(spanOf)
    .filter((s): s is Span => s !== null && Number.isFinite(s.start) && Number.isFinite(s.end))
    .map((s) => ({ start: Math.max(0, s.start), end: Math.min(chars.length, s.end) }))
    .filter((s) => s.end > s.start)
    .sort((a, b) => a.start - b.start);
  const out: Segment[] = [];
  let at = 0;
  for (const s of sorted) {
    if (s.end <= at) continue;
    const start = Math.max(s.start, at);
    if (start > at) out.push({ text: chars.slice(at, start).join(""), redacted: false });
    out.push({ text: chars.slice(start, s.end).join(""), redacted: true });
    at = s.end;
  }
  if (at < chars.length) out.push({ text: chars.slice(at).join(""), redacted: false });
  return out;
}
