// JSON calls to the edge with the bearer header. Errors are problem+json: the message
// shown is the problem's detail, and `errors` (rule-level validation) is kept.

export interface RuleError {
  rule: string | null;
  message: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public errors: RuleError[] = [],
    public retryAfter: number | null = null,
  ) {
    super(message);
  }
}

/** How long a call waits for the edge's whole answer. The edge bounds its own work (5 s reads, 5 s
 * command waits, 10 s for a publication's turn); an edge that hung, or a connection that died
 * silently, never answers: without a bound a page kept its last data for ever, with no error and
 * no further poll. 0: no bound (the audit, which the edge bounds by LEDGERFLOW_AUDIT_DEADLINE_S). */
export const TIMEOUT_MS = 30_000;

export async function call<T>(token: string, path: string, init: RequestInit = {}, timeoutMs = TIMEOUT_MS): Promise<T> {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${token}`);
  headers.set("Accept", "application/json");
  if (init.body !== undefined) headers.set("Content-Type", "application/json");
  const signal = timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined;
  const failed = (exc: unknown) =>
    exc instanceof DOMException && exc.name === "TimeoutError"
      ? new ApiError(0, `the edge did not answer within ${timeoutMs / 1000} s`)
      : new ApiError(0, "the edge is unreachable");
  let resp: Response;
  let text: string;
  try {
    resp = await fetch(path, { ...init, headers, signal });
    text = await resp.text();
  } catch (exc) {
    throw failed(exc);
  }
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const p = (body ?? {}) as { detail?: string; title?: string; errors?: RuleError[] };
    const retry = Number(resp.headers.get("Retry-After"));
    throw new ApiError(
      resp.status,
      p.detail || p.title || `${resp.status} ${resp.statusText}`,
      Array.isArray(p.errors) ? p.errors : [],
      Number.isFinite(retry) && retry > 0 ? retry : null,
    );
  }
  return body as T;
}

export const post = <T>(token: string, path: string, body: unknown, timeoutMs = TIMEOUT_MS): Promise<T> =>
  call<T>(token, path, { method: "POST", body: JSON.stringify(body) }, timeoutMs);

export const put = <T>(token: string, path: string, body: unknown): Promise<T> =>
  call<T>(token, path, { method: "PUT", body: JSON.stringify(body) });
