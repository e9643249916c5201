// A line diff (longest common subsequence) of two rule packs, bounded: a pack may have tens of
// thousands of lines (256 KiB of keywords), and a full LCS table of two such packs is
// hundreds of millions of cells, which froze the tab for tens of seconds or killed it.

export interface DiffLine {
  op: " " | "+" | "-";
  text: string;
}

/** The most LCS cells computed for one diff (4 bytes each); past it the changed middle is shown as replaced. */
export const MAX_DIFF_CELLS = 4_000_000;

export interface LineDiff {
  lines: DiffLine[];
  exact: boolean; // false: the middle was too large to match line by line and is shown as replaced
}

/** The common head and tail are matched in linear time; only the middle between them needs the table. */
export function lineDiff(a: string[], b: string[], maxCells = MAX_DIFF_CELLS): LineDiff {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const same = (text: string): DiffLine => ({ op: " ", text });
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  const exact = midA.length * midB.length <= maxCells;
  const middle = exact
    ? lcsDiff(midA, midB)
    : [...midA.map((text): DiffLine => ({ op: "-", text })), ...midB.map((text): DiffLine => ({ op: "+", text }))];
  return { lines: [...a.slice(0, start).map(same), ...middle, ...a.slice(endA).map(same)], exact };
}

export function diffLines(a: string[], b: string[]): DiffLine[] {
  return lineDiff(a, b).lines;
}

function lcsDiff(a: string[], b: string[]): DiffLine[] {
  const n = a.length;
  const m = b.length;
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w); // lcs[i * w + j]: of a[i:] and b[j:]
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i * w + j] = a[i] === b[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: " ", text: a[i] });
      i++;
      j++;
    } else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) out.push({ op: "-", text: a[i++] });
    else out.push({ op: "+", text: b[j++] });
  }
  while (i < n) out.push({ op: "-", text: a[i++] });
  while (j < m) out.push({ op: "+", text: b[j++] });
  return out;
}

/** Stable, key-sorted JSON, so a diff shows changes and not key order. */
export function canonical(value: unknown): string {
  const sort = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sort)
      : v && typeof v === "object"
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]))
        : v;
  return JSON.stringify(sort(value), null, 2);
}

export type Folded = DiffLine | { op: "…"; text: string };

/** Keeps `context` unchanged lines around each change and folds the rest into one "…" line per run. */
export function fold(lines: DiffLine[], context = 2): Folded[] {
  const near = lines.map(() => false);
  lines.forEach((l, i) => {
    if (l.op === " ") return;
    for (let j = Math.max(0, i - context); j <= Math.min(lines.length - 1, i + context); j++) near[j] = true;
  });
  const out: Folded[] = [];
  let skipped = 0;
  lines.forEach((l, i) => {
    if (near[i]) {
      if (skipped) out.push({ op: "…", text: `${skipped} unchanged lines` });
      skipped = 0;
      out.push(l);
    } else skipped++;
  });
  if (skipped) out.push({ op: "…", text: `${skipped} unchanged lines` });
  return out;
}
