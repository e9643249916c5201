// The training.audit history as the Training page lists it: the newest records, and whether
// there are older ones it does not show (it asks the edge for one more than it lists).

/** Records the page lists. */
export const SHOWN_RECORDS = 100;

export interface Listed<T> {
  rows: T[];
  more: boolean; // older records exist that are not listed
}

/** The newest ``shown`` of ``items`` (newest first, as the edge answers ``limit = shown + 1``). */
export function newestOf<T>(items: readonly T[], shown: number): Listed<T> {
  return { rows: items.slice(0, shown), more: items.length > shown };
}

export function historyTitle(listed: Listed<unknown>): string {
  return listed.more
    ? `training.audit history (hash-chained): the newest ${listed.rows.length} records; older ones are not listed`
    : "training.audit history (hash-chained)";
}
