// The signed-in token: held in sessionStorage (never in a URL or a log). The UI reads
// the roles and tenant from the token's claims to decide which controls to show; the
// server checks them again on every request.

const KEY = "lf.token";

export interface Session {
  token: string;
  tenant: string;
  sub: string;
  roles: string[];
  exp: number | null; // seconds since the epoch
}

export function decodeClaims(token: string): Record<string, unknown> {
  const parts = token.trim().split(".");
  if (parts.length !== 3) throw new Error("not a JWT: expected three dot-separated parts");
  const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  const json = new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)));
  const claims: unknown = JSON.parse(json);
  if (typeof claims !== "object" || claims === null) throw new Error("the token's claims are not an object");
  return claims as Record<string, unknown>;
}

export function readRoles(value: unknown): string[] {
  if (typeof value === "string") return value.split(/[\s,]+/).filter(Boolean);
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  return [];
}

export function sessionOf(token: string): Session {
  const claims = decodeClaims(token);
  const tenant = typeof claims.tenant === "string" ? claims.tenant : "";
  if (!tenant) throw new Error("the token has no tenant claim");
  return {
    token: token.trim(),
    tenant,
    sub: typeof claims.sub === "string" ? claims.sub : "",
    roles: readRoles(claims.roles ?? claims.role ?? claims.scope),
    exp: typeof claims.exp === "number" ? claims.exp : null,
  };
}

export function loadSession(): Session | null {
  const token = sessionStorage.getItem(KEY);
  if (!token) return null;
  try {
    return sessionOf(token);
  } catch {
    sessionStorage.removeItem(KEY);
    return null;
  }
}

export function saveSession(session: Session | null): void {
  if (session) sessionStorage.setItem(KEY, session.token);
  else sessionStorage.removeItem(KEY);
}

export const hasRole = (s: Session, role: string): boolean => s.roles.includes(role);
