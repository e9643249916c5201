import { useEffect, useState } from "react";

import { hasRole, loadSession, saveSession, type Session } from "./lib/auth";
import { Audit } from "./pages/Audit";
import { ConversationList, ConversationView } from "./pages/Conversations";
import { Models } from "./pages/Models";
import { Overview } from "./pages/Overview";
import { Policy } from "./pages/Policy";
import { SignIn } from "./pages/SignIn";
import { Training } from "./pages/Training";
import { Usage } from "./pages/Usage";

const PAGES = [
  ["overview", "Overview"],
  ["conversations", "Conversations"],
  ["policy", "Policy"],
  ["training", "Training"],
  ["models", "Models"],
  ["usage", "Usage"],
  ["audit", "Audit"],
] as const;

/** A route segment decoded; a malformed escape (`#/conversations/%`) stays as written instead of
 * throwing, which left a blank page until the address was edited by hand. */
function segment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function useRoute(): string[] {
  const read = () => window.location.hash.replace(/^#\/?/, "").split("/").map(segment);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const route = useRoute();
  const page = route[0] || "overview";

  const signIn = (s: Session | null) => {
    saveSession(s);
    setSession(s);
  };

  if (!session) return <SignIn onSignIn={signIn} />;

  return (
    <div className="min-h-screen">
      <header className="flex items-center gap-6 border-b border-slate-200 bg-white px-6 py-3">
        <span className="font-semibold tracking-tight">ledgerflow console</span>
        <nav className="flex gap-1 text-sm">
          {PAGES.map(([id, label]) => (
            <a
              key={id}
              href={`#/${id}`}
              className={`rounded px-3 py-1.5 ${page === id ? "bg-slate-900 text-white" : "text-slate-600 hover:bg-slate-100"}`}
            >
              {label}
            </a>
          ))}
        </nav>
        <span className="ml-auto text-xs text-slate-500" data-testid="whoami">
          {session.sub || "token"} · tenant <b>{session.tenant}</b> · {session.roles.join(", ") || "no roles"}
        </span>
        <button type="button" className="text-xs text-slate-500 underline" onClick={() => signIn(null)}>
          sign out
        </button>
      </header>
      <main className="mx-auto max-w-6xl space-y-4 p-6">
        {page === "overview" && <Overview session={session} />}
        {page === "conversations" &&
          (route[1] ? <ConversationView key={route[1]} session={session} id={route[1]} /> : <ConversationList session={session} />)}
        {page === "policy" && <Policy session={session} admin={hasRole(session, "admin")} />}
        {page === "training" && <Training session={session} admin={hasRole(session, "admin")} />}
        {page === "models" && <Models session={session} admin={hasRole(session, "admin")} />}
        {page === "usage" && <Usage session={session} />}
        {page === "audit" && <Audit session={session} admin={hasRole(session, "admin")} />}
      </main>
    </div>
  );
}
