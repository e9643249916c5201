import { describe, expect, it } from "vitest";

import {
  MAX_TURNS_KEPT,
  applyEvent,
  emptyConversation,
  mergeSnapshot,
  olderBefore,
  orderedTurns,
  segments,
} from "./conversation";

const at = (micros: number) => new Date(micros / 1000).toISOString().replace("Z", "000Z"); // RFC 3339, µs

const turn = (id: string, when: string) =>
  JSON.stringify({
    event_id: id,
    type: "MessageSubmitted",
    occurred_at: when,
    payload: { turn_id: `t-${id}`, role: "user", content: "hi", model: "m" },
  });

describe("conversation merge", () => {
  it("shows a turn once whether it came from the snapshot, the stream, or both", () => {
    let s = applyEvent(emptyConversation(), "MessageSubmitted", turn("e2", at(2_000_000)));
    s = applyEvent(s, "MessageSubmitted", turn("e2", at(2_000_000)));
    const snap = { event_id: "e1", turn_id: "t-e1", role: "user", content: "a", model: "m", occurred_at: at(1_000_000) };
    s = mergeSnapshot(s, { turns: [{ ...snap, decision: null }, { ...snap, event_id: "e2", decision: null }] });
    expect(orderedTurns(s).map((t) => t.event_id)).toEqual(["e1", "e2"]);
  });

  it("attaches a decision to its input event", () => {
    let s = applyEvent(emptyConversation(), "MessageSubmitted", turn("e1", at(1)));
    const decision = { input_event_id: "e1", outcome: "redact", score: 1, matched_rules: ["r"], redactions: [] };
    s = applyEvent(s, "PolicyDecision", JSON.stringify({ event_id: "d1", occurred_at: at(2), payload: decision }));
    expect(s.decisions.get("e1")?.outcome).toBe("redact");
  });
});

describe("a page left open on a busy conversation", () => {
  it("keeps the newest MAX_TURNS_KEPT turns and their decisions, and counts the ones let go", () => {
    let s = emptyConversation();
    const total = MAX_TURNS_KEPT + 250;
    for (let i = 0; i < total; i++) {
      s = applyEvent(s, "MessageSubmitted", turn(`e${i}`, at((i + 1) * 1_000_000)));
      const decision = { input_event_id: `e${i}`, outcome: "allow", score: 0, matched_rules: [], redactions: [] };
      s = applyEvent(s, "PolicyDecision", JSON.stringify({ event_id: `d${i}`, occurred_at: at(1), payload: decision }));
    }
    expect(s.turns.size).toBe(MAX_TURNS_KEPT);
    expect(s.dropped).toBe(250);
    const kept = orderedTurns(s).map((t) => t.event_id);
    expect(kept[0]).toBe("e250");
    expect(kept[kept.length - 1]).toBe(`e${total - 1}`);
    expect(s.decisions.has("e0")).toBe(false);
    expect(s.decisions.has(`e${total - 1}`)).toBe(true);
    expect(s.decisions.size).toBeLessThanOrEqual(2 * MAX_TURNS_KEPT);
  });

  it("lets the oldest go by time, not by arrival: a snapshot merged late keeps its newer turns", () => {
    let s = emptyConversation();
    for (let i = 0; i < MAX_TURNS_KEPT; i++) s = applyEvent(s, "MessageSubmitted", turn(`old${i}`, at(i + 1)));
    const snap = { turn_id: "t", role: "user", content: "a", model: "m", decision: null };
    s = mergeSnapshot(s, { turns: [{ ...snap, event_id: "new", occurred_at: at(10_000_000_000) }] });
    expect(s.turns.has("new")).toBe(true);
    expect(s.turns.has("old0")).toBe(false);
    expect(s.dropped).toBe(1);
  });
});

describe("segments", () => {
  it("masks spans given as objects (events) or pairs (read model), in code points", () => {
    const text = "card 4111 1111 1111 1111 ok";
    const obj = segments(text, [{ start: 5, end: 24 }]);
    const pair = segments(text, [[5, 24]]);
    expect(obj).toEqual(pair);
    expect(obj).toEqual([
      { text: "card ", redacted: false },
      { text: "4111 1111 1111 1111", redacted: true },
      { text: " ok", redacted: false },
    ]);
    expect(segments("😀 x", [[2, 3]])).toEqual([
      { text: "😀 ", redacted: false },
      { text: "x", redacted: true },
    ]);
  });

  it("ignores malformed spans and clamps overlapping ones", () => {
    expect(segments("abcdef", [[1, 3], [2, 5], "junk", [9, 12]])).toEqual([
      { text: "a", redacted: false },
      { text: "bc", redacted: true },
      { text: "de", redacted: true },
      { text: "f", redacted: false },
    ]);
  });
});

describe("older turns, a page at a time", () => {
  // A read-model page: turns at positions start..start+n-1, oldest first, their times in step with positions.
  const page = (start: number, n: number, count: number) => ({
    turn_count: count,
    turns_start: start,
    turns: Array.from({ length: n }, (_, i) => ({
      event_id: `p${start + i}`,
      turn_id: `t${start + i}`,
      role: "user",
      content: "c",
      model: "m",
      occurred_at: at((start + i + 1) * 1_000_000),
      decision: null,
    })),
  });

  it("asks for the turns before the oldest position shown, and for nothing once the first is shown", () => {
    let s = mergeSnapshot(emptyConversation(), page(250, 200, 450));
    expect(olderBefore(s)).toBe(250);
    expect(s.total).toBe(450);
    expect(s.turns.get("p250")?.position).toBe(250);
    s = mergeSnapshot(s, page(50, 200, 450), true);
    expect(olderBefore(s)).toBe(50);
    s = mergeSnapshot(s, page(0, 50, 450), true);
    expect(olderBefore(s)).toBeNull();
    expect(orderedTurns(s).map((t) => t.event_id)).toEqual(Array.from({ length: 450 }, (_, i) => `p${i}`));
  });

  it("knows no position of a turn that only came from the stream, until a page names it", () => {
    let s = applyEvent(emptyConversation(), "MessageSubmitted", turn("p7", at(8_000_000)));
    expect(olderBefore(s)).toBeNull();
    s = mergeSnapshot(s, page(7, 1, 8));
    expect(s.turns.get("p7")?.position).toBe(7);
    expect(olderBefore(s)).toBe(7);
  });

  it("keeps the older turns the reader asked for beyond MAX_TURNS_KEPT; live turns then let the oldest go", () => {
    const count = MAX_TURNS_KEPT + 300;
    let s = mergeSnapshot(emptyConversation(), page(300, MAX_TURNS_KEPT, count));
    expect(s.turns.size).toBe(MAX_TURNS_KEPT);
    s = mergeSnapshot(s, page(100, 200, count), true);
    expect(s.turns.size).toBe(MAX_TURNS_KEPT + 200);
    expect(s.dropped).toBe(0);
    expect(olderBefore(s)).toBe(100);
    s = applyEvent(s, "MessageSubmitted", turn("live", at((count + 1) * 1_000_000)));
    expect(s.turns.size).toBe(MAX_TURNS_KEPT + 200);
    expect(s.turns.has("p100")).toBe(false);
    expect(olderBefore(s)).toBe(101); // the turn let go can be asked for again
  });

  it("a page that is not asked for (a reconnect's newest page) does not grow what the page keeps", () => {
    let s = mergeSnapshot(emptyConversation(), page(0, MAX_TURNS_KEPT, MAX_TURNS_KEPT + 10));
    s = mergeSnapshot(s, page(10, MAX_TURNS_KEPT, MAX_TURNS_KEPT + 10));
    expect(s.turns.size).toBe(MAX_TURNS_KEPT);
    expect(s.dropped).toBe(10);
    expect(olderBefore(s)).toBe(10);
  });

  it("ignores a turns_start that is not a whole number", () => {
    const s = mergeSnapshot(emptyConversation(), { ...page(5, 2, 7), turns_start: 2.5 });
    expect(s.turns.get("p5")?.position).toBeUndefined();
    expect(olderBefore(s)).toBeNull();
  });
});
