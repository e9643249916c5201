import { afterEach, describe, expect, it, vi } from "vitest";

import { ApiError, call } from "./api";

describe("call", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("gives up on an edge that never answers, as a status-0 error the page shows", async () => {
    // An edge that hung (or a connection that died silently): fetch settles only when aborted.
    const hung = (_: RequestInfo | URL, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
    vi.stubGlobal("fetch", vi.fn(hung));
    const error = await call("tok", "/v1/overview", {}, 50).catch((exc: unknown) => exc);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 0, message: "the edge did not answer within 0.05 s" });
  });

  it("keeps the problem's detail on an answer the edge refused", async () => {
    const problem = JSON.stringify({ detail: "kafka: no answer within 2 s" });
    vi.stubGlobal("fetch", vi.fn(async () => new Response(problem, { status: 503, headers: { "Retry-After": "2" } })));
    const error = await call("tok", "/v1/overview").catch((exc: unknown) => exc);
    expect(error).toMatchObject({ status: 503, message: "kafka: no answer within 2 s", retryAfter: 2 });
  });
});
