/** Small pieces every page uses: loading data, an action form with its error next to it, times, links. */
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

export interface Loaded<T> {
  readonly data?: T;
  readonly error?: ApiError;
  readonly loading: boolean;
  reload(): void;
}

/** Runs `load` now and on `reload()`; keeps the last data while reloading. */
export function useLoad<T>(load: () => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (err) => live && setState((s) => ({ data: s.data, error: asApiError(err), loading: false })),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

export function asApiError(err: unknown): ApiError {
  return err instanceof ApiError ? err : new ApiError(0, "error", err instanceof Error ? err.message : String(err));
}

/** The service's message for a failed request, shown where it happened and announced. */
export function ErrorText({ error, id }: { error?: ApiError; id?: string }) {
  if (!error) return null;
  return (
    <p class="error" role="alert" id={id}>
      {error.message}
    </p>
  );
}

/** A load's error or a loading line; nothing once loaded. */
export function LoadState<T>({ loaded, what }: { loaded: Loaded<T>; what: string }) {
  if (loaded.error) return <ErrorText error={loaded.error} />;
  if (loaded.loading && loaded.data === undefined) return <p class="muted">Loading {what}…</p>;
  return null;
}

let nextId = 0;
export function useId(prefix: string): string {
  const ref = useRef<string | undefined>(undefined);
  if (ref.current === undefined) ref.current = `${prefix}-${++nextId}`;
  return ref.current;
}

/**
 * A form with one submit button named `label`: runs `run`, disables itself meanwhile, and shows the
 * service's error right after the button. `children` are its fields.
 */
export function ActionForm(props: {
  label: string;
  run: () => Promise<void>;
  children?: ComponentChildren;
  disabled?: boolean;
  danger?: boolean;
  class?: string;
  /** Called with the field the service named in its error (to mark the input). */
  onFieldError?: (field: string | undefined) => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const errorId = useId("err");
  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(undefined);
    props.onFieldError?.(undefined);
    try {
      await props.run();
    } catch (err) {
      const apiError = asApiError(err);
      setError(apiError);
      props.onFieldError?.(apiError.field);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class={`action ${props.class ?? ""}`} onSubmit={submit} aria-describedby={error ? errorId : undefined}>
      {props.children}
      <button type="submit" class={props.danger ? "danger" : undefined} disabled={busy || props.disabled}>
        {props.label}
      </button>
      <ErrorText error={error} id={errorId} />
    </form>
  );
}

/** A labelled text input. */
export function Field(props: {
  label: string;
  value: string;
  onInput: (value: string) => void;
  required?: boolean;
  placeholder?: string;
  invalid?: boolean;
  autocomplete?: string;
}) {
  const id = useId("field");
  return (
    <span class="field">
      <label for={id}>{props.label}</label>
      <input
        id={id}
        type="text"
        value={props.value}
        required={props.required}
        placeholder={props.placeholder}
        aria-invalid={props.invalid ? "true" : undefined}
        autocomplete={props.autocomplete ?? "off"}
        spellcheck={false}
        onInput={(e) => props.onInput((e.target as HTMLInputElement).value)}
      />
    </span>
  );
}

export function Time({ at }: { at?: string | null }) {
  if (!at) return <span class="muted">—</span>;
  const d = new Date(at);
  return <time dateTime={at} title={at}>{d.toLocaleString()}</time>;
}

export function Status({ status }: { status: string }) {
  return <span class={`status status-${status}`}>{status.replace(/_/g, " ")}</span>;
}

export function JobLink({ id, children }: { id: string; children?: ComponentChildren }) {
  return <a href={`#/jobs/${id}`}>{children ?? id}</a>;
}

export function StackLink({ name }: { name: string }) {
  return <a href={`#/stacks/${encodeURIComponent(name)}`}>{name}</a>;
}

/** The page's heading: focused when the page opens, so keyboard and screen-reader users land on it. */
export function PageTitle({ children }: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <h1 tabIndex={-1} ref={ref}>
      {children}
    </h1>
  );
}

export function display(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === undefined) return "";
  return JSON.stringify(value);
}
