import { useState } from "preact/hooks";
import { ApiError } from "../api";
import { asApiError, useId } from "../ui";

/** One field, labelled "Token"; the service's refusal is shown under it. */
export function SignIn(props: { onSignIn: (token: string) => Promise<void>; expired: boolean }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const id = useId("token");
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await props.onSignIn(token.trim());
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="signin">
      <h1>Deployer</h1>
      <p>Sign in with your bearer token. The service printed the first admin token when it started; more are in its tokens file.</p>
      {props.expired && <p role="status">Your token was refused: sign in again.</p>}
      <form onSubmit={submit}>
        <label for={id}>Token</label>
        <input
          id={id}
          type="password"
          autocomplete="off"
          spellcheck={false}
          required
          value={token}
          aria-invalid={error ? "true" : undefined}
          aria-describedby={error ? `${id}-error` : undefined}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        {error && (
          <p class="error" role="alert" id={`${id}-error`}>
            {error.message}
          </p>
        )}
      </form>
      <p class="muted">The token is kept in this browser tab only (sessionStorage), and forgotten when you sign out.</p>
    </main>
  );
}
