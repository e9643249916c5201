// GET /v1/policy/packs as the Policy page reads it: a page of the newest versions and the count of all.

/** Versions the page lists and offers in the diff pickers. */
export const SHOWN_PACKS = 50;

/** The title of the pack table: how many of how many versions are listed. */
export function packsTitle(tenant: string, listed: number, count: number | undefined): string {
  const title = `Published rule packs of ${tenant}`;
  if (count === undefined || count <= listed) return title;
  return `${title}: the newest ${listed} of ${count.toLocaleString("en")} versions (the diff compares these)`;
}
