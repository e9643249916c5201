// Rates from successive /v1/overview polls: (counter now - counter before) / seconds between.

export interface Counters {
  turns: number;
  decisions: Record<string, number>;
  dead_letters: number;
}

export interface Sample {
  at: number; // ms
  counters: Counters;
}

export interface RatePoint {
  at: number;
  turns: number;
  decisions: Record<string, number>;
}

export const OUTCOMES = ["allow", "redact", "review", "deny"] as const;

export function rate(prev: Sample, next: Sample): RatePoint | null {
  const dt = (next.at - prev.at) / 1000;
  if (dt <= 0) return null;
  const per = (a: number, b: number): number => Math.max(0, (b - a) / dt); // a restart resets counters
  const decisions: Record<string, number> = {};
  for (const o of OUTCOMES) decisions[o] = per(prev.counters.decisions[o] ?? 0, next.counters.decisions[o] ?? 0);
  return { at: next.at, turns: per(prev.counters.turns, next.counters.turns), decisions };
}
