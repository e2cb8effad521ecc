/** The audit trail (admins): the API's filters (time window, stack) and paging (`before`). */
import { useEffect, useState } from "preact/hooks";
import type { Session } from "../app";
import { unwrap, type AuditPage as Page, type AuditQuery } from "../api";
import { ActionForm, ErrorText, Field, JobLink, PageTitle, Time, asApiError, display, useId } from "../ui";
import type { ApiError } from "../api";


export function AuditPage({ session }: { session: Session }) {
  const adminStacks = Object.entries(session.me.stacks).filter(([, roles]) => roles.includes("admin")).map(([name]) => name);
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [stack, setStack] = useState("");
  const [limit, setLimit] = useState("50");
  const [field, setField] = useState<string>();
  const [page, setPage] = useState<Page>();
  /** The cursors of the pages before this one (for Previous). */
  const [trail, setTrail] = useState<(string | undefined)[]>([]);
  const [cursor, setCursor] = useState<string>();
  const stackId = useId("audit-stack");

  const load = async (before: string | undefined) => {
    const query: AuditQuery = {};
    // The service checks the number (1–500) and names the field when it is not one.
    if (limit.trim()) query.limit = Number(limit.trim());
    if (from.trim()) query.from = from.trim();
    if (to.trim()) query.to = to.trim();
    if (stack) query.stack = stack;
    if (before) query.before = before;
    const result = await unwrap(session.api.GET("/v1/audit", { params: { query } }));
    setPage(result);
    setCursor(before);
  };

  const [firstError, setFirstError] = useState<ApiError>();
  useEffect(() => {
    load(undefined).catch((err) => setFirstError(asApiError(err)));
  }, []);

  return (
    <>
      <PageTitle>Audit trail</PageTitle>
      <ErrorText error={firstError} />
      <ActionForm
        label="Show"
        onFieldError={setField}
        run={async () => {
          setTrail([]);
          await load(undefined);
        }}
      >
        <Field label="From (ISO 8601)" value={from} onInput={setFrom} placeholder="2024-05-01" invalid={field === "from"} />
        <Field label="To (ISO 8601)" value={to} onInput={setTo} placeholder="2024-05-02T12:00:00Z" invalid={field === "to"} />
        <span class="field">
          <label for={stackId}>Stack</label>
          <select id={stackId} value={stack} onChange={(e) => setStack((e.target as HTMLSelectElement).value)}>
            <option value="">every stack</option>
            {adminStacks.map((s) => (
              <option key={s} value={s}>{s}</option>
            ))}
          </select>
        </span>
        <Field label="Per page" value={limit} onInput={setLimit} invalid={field === "limit"} />
      </ActionForm>
      {page && (
        <section aria-labelledby="audit-results">
          <h2 id="audit-results">Records{trail.length > 0 ? `, page ${trail.length + 1}` : ""}</h2>
          {page.entries.length === 0 ? (
            <p>No records.</p>
          ) : (
            <div class="scroll">
              <table>
                <caption class="sr-only">Audit records, newest first</caption>
                <thead>
                  <tr><th scope="col">Time</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Stack</th><th scope="col">Job</th><th scope="col">Result</th><th scope="col">Status</th><th scope="col">Address</th><th scope="col">Details</th></tr>
                </thead>
                <tbody>
                  {page.entries.map((e) => (
                    <tr key={e.id}>
                      <td><Time at={e.time} /></td>
                      <td>{e.actor ?? <span class="muted">anonymous</span>}</td>
                      <td class="mono">{e.action}</td>
                      <td>{e.stack ?? "—"}</td>
                      <td>{e.jobId ? <JobLink id={e.jobId} /> : "—"}</td>
                      <td>{e.result}</td>
                      <td>{e.status ?? "—"}</td>
                      <td class="mono">{e.address ?? "—"}</td>
                      <td class="mono details">{e.details === undefined ? "" : display(e.details)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <div class="actions">
            {trail.length > 0 && (
              <ActionForm
                label="Previous page"
                run={async () => {
                  const previous = trail[trail.length - 1];
                  await load(previous);
                  setTrail(trail.slice(0, -1));
                }}
              />
            )}
            {page.nextCursor && (
              <ActionForm
                label="Next page"
                run={async () => {
                  await load(page.nextCursor!);
                  setTrail([...trail, cursor]);
                }}
              />
            )}
          </div>
        </section>
      )}
    </>
  );
}
