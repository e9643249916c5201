import { describe, expect, it } from "vitest";

import { fold, diffLines } from "./diff";
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
