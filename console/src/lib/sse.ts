// Server-Sent Events over fetch: EventSource cannot send an Authorization header, and
// tokens in URLs are refused. The parser follows WHATWG HTML §9.2 (the subset the edge
// sends: id, event, data, retry, comments); `follow` keeps the last data frame's id and
// reconnects with it as Last-Event-ID, and switches to a fresh token from its callback on
// `reauth`, `expired` and 401. No dependency on the console: any fetch-capable app can use it.

export interface Frame {
  id: string | null; // null: no id field in this block
  event: string;
  data: string;
}

export class SseParser {
  private buffer = "";
  private id: string | null = null;
  private event = "";
  private data: string[] = [];
  private sawData = false;
  retry: number | null = null;

  /** Feed decoded text; returns the blocks completed by it (a block with only `id:` is a checkpoint). */
  push(text: string): Frame[] {
    this.buffer += text;
    const frames: Frame[] = [];
    let nl: number;
    while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, nl);
      const width = this.buffer.startsWith("\r\n", nl) ? 2 : 1;
      if (this.buffer[nl] === "\r" && width === 1 && nl === this.buffer.length - 1) break; // maybe \r\n split
      this.buffer = this.buffer.slice(nl + width);
      if (line === "") {
        if (this.sawData || this.id !== null || this.event) {
          frames.push({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
        }
        this.id = null;
        this.event = "";
        this.data = [];
        this.sawData = false;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") {
        this.data.push(value);
        this.sawData = true;
      } else if (field === "event") this.event = value;
      else if (field === "id" && !value.includes("\0")) this.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    }
    return frames;
  }
}

export type StreamStatus =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "disconnected"; detail: string; retryInMs: number }
  | { kind: "ended"; detail: string };

export interface FollowOptions {
  url: string;
  // Asked when following starts, and again on `reauth`, `expired` and 401: return a fresh
  // token to switch to it (the stream resumes from its cursor: no gap, no duplicate).
  token: () => string | Promise<string>;
  cursor: () => string | null; // the resume point (Last-Event-ID)
  onCursor: (cursor: string) => void; // every id (data frame or checkpoint)
  onFrame: (frame: Frame) => void; // data frames and control frames
  onStatus: (status: StreamStatus) => void;
  onOpen?: () => void; // the stream answered 200 (before any frame)
  fetch?: typeof fetch; // defaults to the global fetch
  idleMs?: number; // silence (no answer, no byte) after which the connection is presumed dead; IDLE_MS
  random?: () => number; // in [0, 1): the jitter of each reconnection delay; defaults to Math.random
}

/** How much longer than its delay a reconnection may wait, at random: followers cut off by one event
 * (an edge restarting sends every stream the same `retry`) then come back spread over that much more
 * time instead of all in the same instant. Never shorter than the delay the server asked for. */
export const JITTER = 0.25;

/** The wait before a reconnection: ``delay`` plus up to ``JITTER`` of it, at random. */
export function jittered(delay: number, random: () => number): number {
  return Math.round(delay * (1 + JITTER * Math.min(Math.max(random(), 0), 1)));
}

// The edge sends a heartbeat after 15 s without a frame (LEDGERFLOW_SSE_HEARTBEAT_S, docs/sse.md):
// three missed heartbeats mean a connection that died silently (the edge's host hung or vanished,
// a NAT dropped it), which never ends by itself; the follower then reconnects from its cursor.
export const IDLE_MS = 45_000;

// A `reauth` on a younger connection does not switch tokens: tokens then live shorter than
// the edge's reauth window, and switching would only reconnect again at once.
const MIN_CONNECTION_MS = 1000;
// Refused tokens in a row (each a different one from the callback) before giving up.
const MAX_AUTH_FAILURES = 3;

/** Follows a stream until `signal` aborts: reconnects after errors and ended streams with backoff. */
export async function follow(opts: FollowOptions, signal: AbortSignal): Promise<void> {
  const fetchFn = opts.fetch ?? fetch;
  let delay = 1000;
  let token = await opts.token();
  let authFailures = 0;
  while (!signal.aborted) {
    opts.onStatus({ kind: "connecting" });
    let detail = "the connection closed";
    let stop = false;
    let authFailed = false; // a 401 or `expired`: go on only with another token
    let switching = false; // `reauth` with a fresh token: reconnect at once
    const conn = new AbortController();
    const abort = () => conn.abort();
    signal.addEventListener("abort", abort);
    const idleMs = opts.idleMs ?? IDLE_MS;
    let silent = false;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const heard = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        silent = true;
        conn.abort();
      }, idleMs);
    };
    heard();
    try {
      const headers: Record<string, string> = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
      const cursor = opts.cursor();
      if (cursor) headers["Last-Event-ID"] = cursor;
      const resp = await fetchFn(opts.url, { headers, signal: conn.signal, cache: "no-store" });
      if (!resp.ok || !resp.body) {
        const text = await resp.text().catch(() => "");
        let problem = `${resp.status}`;
        try {
          problem = `${resp.status}: ${(JSON.parse(text) as { detail?: string }).detail ?? text}`;
        } catch {
          /* not JSON */
        }
        detail = `the edge refused the stream (${problem})`;
        if (resp.status === 401) authFailed = true;
        if (resp.status === 403 || resp.status === 422) stop = true;
        const retryAfter = Number(resp.headers.get("Retry-After"));
        if (Number.isFinite(retryAfter) && retryAfter > 0) delay = retryAfter * 1000;
      } else {
        const openedAt = Date.now();
        authFailures = 0;
        opts.onOpen?.();
        opts.onStatus({ kind: "live" });
        delay = 1000;
        const parser = new SseParser();
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          heard();
          if (done) break;
          for (const frame of parser.push(value)) {
            if (frame.id !== null) opts.onCursor(frame.id);
            if (frame.event === "expired") authFailed = true;
            if (frame.data !== "" || frame.id === null) opts.onFrame(frame);
            if (frame.event === "reauth" && Date.now() - openedAt >= MIN_CONNECTION_MS) {
              const fresh = await opts.token();
              if (fresh !== token) {
                token = fresh;
                switching = true;
                conn.abort();
              }
            }
          }
        }
        if (parser.retry !== null) delay = parser.retry;
      }
    } catch (exc) {
      if (signal.aborted) return;
      if (silent) detail = `nothing came from the edge for ${Math.round(idleMs / 1000)} s, not even a heartbeat`;
      else if (!switching) {
        detail = `the connection to the edge was lost (${exc instanceof Error ? exc.message : String(exc)})`;
      }
    } finally {
      clearTimeout(idle);
      signal.removeEventListener("abort", abort);
    }
    if (signal.aborted) return;
    if (authFailed && !switching) {
      const fresh = await opts.token();
      authFailures += 1;
      if (fresh === token || authFailures >= MAX_AUTH_FAILURES) stop = true; // nothing better to offer
      else [token, switching] = [fresh, true];
    }
    if (stop) {
      opts.onStatus({ kind: "ended", detail });
      return;
    }
    if (switching) continue;
    const wait = jittered(delay, opts.random ?? Math.random);
    opts.onStatus({ kind: "disconnected", detail, retryInMs: wait });
    await sleep(wait, signal);
    delay = Math.min(delay * 2, 8000);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}
