import { afterEach, describe, expect, it, vi } from "vitest";

import { follow, jittered, type Frame, SseParser, type StreamStatus } from "./sse";

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

// `follow` against a scripted fetch: each call answers the next script (a status, or the
// chunks of an event stream, produced one per read; a function runs when its chunk is read).
interface Script {
  status?: number;
  chunks?: (string | (() => string))[];
  holdOpen?: boolean; // stays open after its chunks until the client aborts
}

interface Call {
  token: string;
  lastEventId: string | null;
}

function scripted(scripts: Script[], calls: Call[], stop: AbortController): typeof fetch {
  return (async (_url: RequestInfo | URL, init?: RequestInit) => {
    const headers = init?.headers as Record<string, string>;
    calls.push({ token: headers.Authorization.replace("Bearer ", ""), lastEventId: headers["Last-Event-ID"] ?? null });
    const script = scripts.shift();
    if (!script) {
      stop.abort(); // the scripts are over: the follower stops
      throw new DOMException("aborted", "AbortError");
    }
    if (script.status) return new Response(JSON.stringify({ detail: "refused" }), { status: script.status });
    const chunks = [...(script.chunks ?? [])];
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        init?.signal?.addEventListener("abort", () => controller.error(new DOMException("aborted", "AbortError")));
      },
      pull(controller) {
        const next = chunks.shift();
        if (next !== undefined) controller.enqueue(encoder.encode(typeof next === "string" ? next : next()));
        else if (!script.holdOpen) controller.close();
        else return new Promise(() => {}); // open until aborted
      },
    });
    return new Response(body, { status: 200 });
  }) as typeof fetch;
}

async function run(scripts: Script[], token: () => string, idleMs?: number, random: () => number = () => 0) {
  const calls: Call[] = [];
  const frames: Frame[] = [];
  const statuses: StreamStatus[] = [];
  let cursor: string | null = null;
  const stop = new AbortController();
  await follow(
    {
      url: "http://edge/v1/streams/tenant",
      token,
      cursor: () => cursor,
      onCursor: (c) => (cursor = c),
      onFrame: (f) => frames.push(f),
      onStatus: (s) => statuses.push(s),
      fetch: scripted(scripts, calls, stop),
      idleMs,
      random,
    },
    stop.signal,
  );
  return { calls, frames, statuses };
}

const data = (id: string, n: number) => `id: ${id}\nevent: MessageSubmitted\ndata: {"n":${n}}\n\n`;
const reauthLater = () => {
  vi.setSystemTime(Date.now() + 5000); // the reauth comes well into the connection's life
  return 'event: reauth\ndata: {"expires_at":"2026-11-30T00:00:00Z"}\n\n';
};
const tokens = (...list: string[]) => () => list.shift() ?? "last";

describe("follow", () => {
  afterEach(() => vi.useRealTimers());

  it("resumes from the last data frame or checkpoint; control frames do not move the cursor", async () => {
    const { calls, frames } = await run(
      [
        { chunks: ["retry: 5\n\nid: e0:1\n\n", data("e0:2", 1), 'event: overflow\ndata: {"detail":"x"}\n\n'] },
        { chunks: ["retry: 5\n\nid: e0:2\n\n", data("e0:3", 2)] },
      ],
      () => "tok",
    );
    expect(calls.map((c) => c.lastEventId)).toEqual([null, "e0:2", "e0:3"]);
    expect(frames.filter((f) => f.data && f.id !== null).map((f) => f.id)).toEqual(["e0:2", "e0:3"]);
    expect(frames.some((f) => f.event === "overflow" && f.id === null)).toBe(true);
  });

  it("switches to a fresh token on reauth and resumes where it was", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const { calls, statuses } = await run(
      [
        { chunks: [data("e0:7", 1), reauthLater], holdOpen: true },
        { chunks: ["retry: 5\n\n", data("e0:8", 2)] },
      ],
      tokens("tok0", "tok1"),
    );
    expect(calls).toEqual([
      { token: "tok0", lastEventId: null },
      { token: "tok1", lastEventId: "e0:7" },
      { token: "tok1", lastEventId: "e0:8" },
    ]);
    expect(statuses.some((s) => s.kind === "disconnected" && s.detail.includes("lost"))).toBe(false);
  });

  it("keeps the stream on reauth when the callback has no fresh token, and on a reauth right after connecting", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const early = 'event: reauth\ndata: {"expires_at":"x"}\n\n';
    const chunks = ["retry: 5\n\n", early, data("e0:1", 1), reauthLater, data("e0:2", 2)];
    const { calls } = await run([{ chunks }], () => "same");
    expect(calls.map((c) => c.token)).toEqual(["same", "same"]); // reconnected only when the stream ended
    expect(calls[1].lastEventId).toBe("e0:2");
  });

  it("asks the callback again after a 401 or `expired`, and ends when it has nothing better", async () => {
    const refused = await run([{ status: 401 }, { chunks: [data("e0:1", 1), "event: expired\ndata: {}\n\n"] }], tokens("old", "new", "new"));
    expect(refused.calls.map((c) => c.token)).toEqual(["old", "new"]);
    expect(refused.statuses.at(-1)).toMatchObject({ kind: "ended" });

    const stale = await run([{ status: 401 }], () => "same");
    expect(stale.calls).toHaveLength(1);
    expect(stale.statuses.at(-1)).toMatchObject({ kind: "ended", detail: expect.stringContaining("401") });
  });

  it("gives up after three refused tokens in a row, and at once on 403", async () => {
    let n = 0;
    const looping = await run([{ status: 401 }, { status: 401 }, { status: 401 }, { status: 401 }], () => `t${n++}`);
    expect(looping.calls).toHaveLength(3);
    expect(looping.statuses.at(-1)).toMatchObject({ kind: "ended" });
    const forbidden = await run([{ status: 403 }], () => "t");
    expect(forbidden.calls).toHaveLength(1);
    expect(forbidden.statuses.at(-1)).toMatchObject({ kind: "ended", detail: expect.stringContaining("403") });
  });

  it("reconnects from its cursor when a stream falls silent, not even a heartbeat (a dead connection)", async () => {
    const { calls, frames, statuses } = await run(
      [{ chunks: [data("e0:1", 1)], holdOpen: true }, { chunks: [data("e0:2", 2)] }],
      () => "tok",
      50,
    );
    expect(calls.map((c) => c.lastEventId)).toEqual([null, "e0:1", "e0:2"]);
    expect(frames.map((f) => f.id)).toEqual(["e0:1", "e0:2"]);
    expect(statuses).toContainEqual({ kind: "disconnected", detail: expect.stringContaining("not even a heartbeat"), retryInMs: 1000 });
  });

  it("spreads its reconnections: never sooner than the server's retry, up to a quarter later at random", async () => {
    // An edge restarting ends every stream with the same `retry`: followers that all came back
    // after exactly that delay hit the restarted edge in the same instant.
    const ends = (id: string) => ({ chunks: ["retry: 40\n\n", data(id, 1)] });
    const draws = [0, 0.5, 0.999];
    const { statuses } = await run([ends("e0:1"), ends("e0:2"), ends("e0:3")], () => "tok", undefined, () => draws.shift() ?? 0);
    const waits = statuses.filter((s) => s.kind === "disconnected").map((s) => (s.kind === "disconnected" ? s.retryInMs : 0));
    expect(waits).toEqual([40, 45, 50]);
    expect(jittered(1000, () => 0.999999)).toBeLessThanOrEqual(1250);
    expect(jittered(1000, () => 0)).toBe(1000);
  });
});
