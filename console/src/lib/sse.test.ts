import { describe, expect, it } from "vitest";

import { SseParser } from "./sse";

describe("SseParser", () => {
  it("parses data frames, checkpoints and control frames across chunk boundaries", () => {
    const p = new SseParser();
    const text =
      "retry: 2000\n\nid: d3:7.e3:12\n\n" +
      'id: d3:7.e3:13\nevent: MessageSubmitted\ndata: {"a":1}\n\n' +
      ": comment\nevent: shutdown\ndata: {\"detail\":\"bye\"}\n\n";
    const frames = [];
    for (let i = 0; i < text.length; i += 7) frames.push(...p.push(text.slice(i, i + 7)));
    expect(p.retry).toBe(2000);
    expect(frames).toEqual([
      { id: "d3:7.e3:12", event: "message", data: "" },
      { id: "d3:7.e3:13", event: "MessageSubmitted", data: '{"a":1}' },
      { id: null, event: "shutdown", data: '{"detail":"bye"}' },
    ]);
  });

  it("joins multi-line data and accepts CRLF", () => {
    const p = new SseParser();
    expect(p.push("data: a\r\ndata: b\r\n\r\n")).toEqual([{ id: null, event: "message", data: "a\nb" }]);
  });

  it("keeps an incomplete block until its blank line", () => {
    const p = new SseParser();
    expect(p.push("id: 1\nevent: x\ndata: y\n")).toEqual([]);
    expect(p.push("\n")).toEqual([{ id: "1", event: "x", data: "y" }]);
  });
});
