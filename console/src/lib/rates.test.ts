import { describe, expect, it } from "vitest";

import { fold, diffLines, lineDiff } from "./diff";
import { rate } from "./rates";
import { readRoles, sessionOf } from "./auth";

describe("rate", () => {
  it("divides counter differences by the seconds between polls; a restart never goes negative", () => {
    const a = { at: 0, counters: { turns: 10, decisions: { allow: 4, deny: 1 }, dead_letters: 0 } };
    const b = { at: 2000, counters: { turns: 20, decisions: { allow: 8, deny: 0 }, dead_letters: 0 } };
    const r = rate(a, b)!;
    expect(r.turns).toBe(5);
    expect(r.decisions.allow).toBe(2);
    expect(r.decisions.deny).toBe(0);
    expect(rate(b, b)).toBeNull();
  });
});

describe("diff", () => {
  it("folds unchanged runs around the changes", () => {
    const a = ["1", "2", "3", "4", "5", "6", "7", "8"];
    const b = ["1", "2", "3", "4", "X", "6", "7", "8"];
    const out = fold(diffLines(a, b), 1).map((l) => `${l.op}${l.text}`);
    expect(out).toEqual(["…3 unchanged lines", " 4", "-5", "+X", " 6", "…2 unchanged lines"]);
  });
});

describe("session", () => {
  it("reads tenant and roles from the token's claims", () => {
    const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
    const token = `${b64({ alg: "EdDSA" })}.${b64({ tenant: "acme", sub: "bo", roles: ["admin", "subscriber"] })}.sig`;
    expect(sessionOf(token)).toMatchObject({ tenant: "acme", sub: "bo", roles: ["admin", "subscriber"] });
    expect(readRoles("a, b")).toEqual(["a", "b"]);
    expect(() => sessionOf("not-a-token")).toThrow(/three/);
  });
});

describe("diff of large packs", () => {
  // 256 KiB of keywords is about 30,000 lines of canonical JSON: the full LCS table of two such
  // packs (900 million cells) froze the Policy page for tens of seconds, or crashed the tab.
  const pack = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `    "${tag}${i}",`);

  it("matches a common head and tail without the table, and bounds the rest", () => {
    const a = ["{", ...pack("a", 30_000), "}"];
    const b = ["{", ...pack("b", 30_000), "}"];
    const started = Date.now();
    const { lines, exact } = lineDiff(a, b);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(exact).toBe(false);
    expect(lines.length).toBe(60_002);
    expect(lines[0]).toEqual({ op: " ", text: "{" });
    expect(lines[1]).toEqual({ op: "-", text: '    "a0",' });
    expect(lines[30_001]).toEqual({ op: "+", text: '    "b0",' });
    expect(lines[60_001]).toEqual({ op: " ", text: "}" });
  });

  it("is exact within the bound, and on identical large packs costs nothing", () => {
    const big = pack("k", 30_000);
    expect(lineDiff(big, [...big]).lines.every((l) => l.op === " ")).toBe(true);
    const edited = [...big.slice(0, 100), "new", ...big.slice(101)];
    const { lines, exact } = lineDiff(big, edited);
    expect(exact).toBe(true);
    expect(lines.filter((l) => l.op !== " ")).toEqual([
      { op: "-", text: '    "k100",' },
      { op: "+", text: "new" },
    ]);
  });
});
