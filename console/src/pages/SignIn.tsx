import { useState } from "react";

import { sessionOf, type Session } from "../lib/auth";
import { Banner, Button } from "../components/ui";

export function SignIn({ onSignIn }: { onSignIn: (s: Session) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = () => {
    try {
      onSignIn(sessionOf(token));
    } catch (exc) {
      setError(exc instanceof Error ? exc.message : String(exc));
    }
  };
  return (
    <div className="mx-auto mt-24 max-w-lg space-y-4 rounded-lg border border-slate-200 bg-white p-6 shadow-sm">
      <h1 className="text-lg font-semibold">ledgerflow console</h1>
      <p className="text-sm text-slate-600">
        Paste a bearer token (JWT). It stays in this tab's session storage and is sent only in the
        Authorization header. <code>ledgerflow demo</code> prints one; or mint one with{" "}
        <code>ledgerflow token --tenant acme --roles subscriber,admin</code>.
      </p>
      <textarea
        className="h-28 w-full rounded border border-slate-300 p-2 font-mono text-xs"
        placeholder="eyJhbGciOi…"
        value={token}
        onChange={(e) => setToken(e.target.value)}
        data-testid="token-input"
        autoComplete="off"
        spellCheck={false}
      />
      {error && <Banner tone="error">{error}</Banner>}
      <Button onClick={submit} testId="sign-in">
        Sign in
      </Button>
    </div>
  );
}
