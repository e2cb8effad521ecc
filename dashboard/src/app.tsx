/** The shell: sign-in, then the navigation and the page the hash names. */
import { useEffect, useState } from "preact/hooks";
import { apiClient, isAdminSomewhere, unwrap, type Api, type Me } from "./api";
import { AuditPage } from "./pages/audit";
import { JobPage } from "./pages/job";
import { SignIn } from "./pages/signin";
import { StackPage } from "./pages/stack";
import { StacksPage } from "./pages/stacks";
import { useRoute } from "./route";
import { forgetToken, saveToken, savedToken } from "./session";
import { PageTitle } from "./ui";

export interface Session {
  readonly api: Api;
  readonly token: string;
  readonly me: Me;
}

export function App() {
  const [session, setSession] = useState<Session>();
  const [expired, setExpired] = useState(false);
  const signOut = () => {
    forgetToken();
    setSession(undefined);
  };
  const signIn = async (token: string) => {
    const api = apiClient(token, () => {
      forgetToken();
      setExpired(true);
      setSession(undefined);
    });
    const me = await unwrap(api.GET("/v1/me"));
    saveToken(token);
    setExpired(false);
    setSession({ api, token, me });
  };
  // A reload keeps the tab's session: sign in again with the token this tab saved.
  const [resuming, setResuming] = useState(() => savedToken() !== undefined);
  useEffect(() => {
    const token = savedToken();
    if (token !== undefined) signIn(token).catch(() => forgetToken()).finally(() => setResuming(false));
  }, []);
  if (resuming) return <p class="muted">Signing in…</p>;
  if (!session) return <SignIn onSignIn={signIn} expired={expired} />;
  return <SignedIn session={session} onSignOut={signOut} />;
}

function SignedIn({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const route = useRoute();
  const admin = isAdminSomewhere(session.me);
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Deployer</span>
        <nav aria-label="Main">
          <a href="#/" aria-current={route.page === "stacks" || route.page === "stack" ? "page" : undefined}>Stacks</a>
          {admin && <a href="#/audit" aria-current={route.page === "audit" ? "page" : undefined}>Audit</a>}
        </nav>
        <span class="who">
          Signed in as <strong>{session.me.name}</strong>
        </span>
        <button type="button" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {route.page === "stacks" && <StacksPage session={session} />}
        {route.page === "stack" && <StackPage key={route.name} session={session} name={route.name} />}
        {route.page === "job" && <JobPage key={route.id} session={session} id={route.id} />}
        {route.page === "audit" && (admin ? <AuditPage session={session} /> : <NotFound />)}
        {route.page === "unknown" && <NotFound />}
      </main>
    </>
  );
}

function NotFound() {
  return (
    <>
      <PageTitle>Not found</PageTitle>
      <p>
        Nothing here. <a href="#/">Back to the stacks</a>.
      </p>
    </>
  );
}
