import { timeValue } from "./conversation";

export function when(t: string | null | undefined): string {
  if (t === null || t === undefined || t === "") return "—";
  const ms = timeValue(t);
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : String(t);
}

export function short(hash: string | null | undefined, n = 12): string {
  return hash ? (hash.length > n ? `${hash.slice(0, n)}…` : hash) : "—";
}

export function num(n: number, digits = 1): string {
  return Number.isInteger(n) ? n.toLocaleString("en") : n.toFixed(digits);
}
