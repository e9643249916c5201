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

export async function call<T>(token: string, path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${token}`);
  headers.set("Accept", "application/json");
  if (init.body !== undefined) headers.set("Content-Type", "application/json");
  let resp: Response;
  try {
    resp = await fetch(path, { ...init, headers });
  } catch {
    throw new ApiError(0, "the edge is unreachable");
  }
  const text = await resp.text();
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

export const post = <T>(token: string, path: string, body: unknown): Promise<T> =>
  call<T>(token, path, { method: "POST", body: JSON.stringify(body) });

export const put = <T>(token: string, path: string, body: unknown): Promise<T> =>
  call<T>(token, path, { method: "PUT", body: JSON.stringify(body) });
