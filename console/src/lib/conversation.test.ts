import { describe, expect, it } from "vitest";

import { applyEvent, emptyConversation, mergeSnapshot, orderedTurns, segments } from "./conversation";

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
