/** One job: status, the live log, steps and changes, checks and gate findings, approvals, cancel. */
import { useEffect, useRef, useState } from "preact/hooks";
import type { Session } from "../app";
import { TERMINAL, hasRole, unwrap, type Job } from "../api";
import { followEvents, type StreamEvent } from "../events";
import { eventText } from "../log";
import { ActionForm, ErrorText, Field, JobLink, LoadState, PageTitle, StackLink, Status, Time, asApiError, useLoad } from "../ui";
import type { ApiError } from "../api";

type StreamState = { kind: "connecting" } | { kind: "live" } | { kind: "reconnecting"; after: number } | { kind: "ended" } | { kind: "failed"; error: ApiError };

export function JobPage({ session, id }: { session: Session; id: string }) {
  const { api, token } = session;
  const job = useLoad(() => unwrap(api.GET("/v1/jobs/{id}", { params: { path: { id } } })), [api, id]);
  const [events, setEvents] = useState<StreamEvent[]>([]);
  const [stream, setStream] = useState<StreamState>({ kind: "connecting" });
  const reloadJob = useRef(job.reload);
  reloadJob.current = job.reload;

  useEffect(() => {
    const abort = new AbortController();
    followEvents(`/v1/jobs/${id}/events`, {
      token,
      signal: abort.signal,
      onEvent: (e) => {
        setStream({ kind: "live" });
        setEvents((list) => [...list, e]);
        if (e.type === "phase" || e.type === "summary" || e.type === "started") reloadJob.current();
      },
      onReconnect: (_attempt, after) => setStream({ kind: "reconnecting", after }),
      onEnd: () => {
        setStream({ kind: "ended" });
        reloadJob.current();
      },
    }).catch((err) => !abort.signal.aborted && setStream({ kind: "failed", error: asApiError(err) }));
    return () => abort.abort();
  }, [id, token]);

  const j = job.data;
  return (
    <>
      <PageTitle>Job {id}</PageTitle>
      <LoadState loaded={job} what="the job" />
      {j && <Summary job={j} />}
      {j && <Controls session={session} job={j} onChange={job.reload} />}
      {j && <Approvals session={session} job={j} onChange={job.reload} />}
      <section aria-labelledby="log-title">
        <h2 id="log-title">Log</h2>
        <p class="muted" role="status">
          {stream.kind === "connecting" && "Connecting to the live log…"}
          {stream.kind === "live" && "Live."}
          {stream.kind === "reconnecting" && `Connection dropped: resuming after event ${stream.after}…`}
          {stream.kind === "ended" && "The job has ended; the log is complete."}
        </p>
        {stream.kind === "failed" && <ErrorText error={stream.error} />}
        <div role="log" aria-labelledby="log-title" class="log-box" tabIndex={0}><ol class="log">
          {events.map((e) => {
            const text = eventText(e);
            return text === undefined ? null : (
              <li key={e.id} data-seq={e.id}>
                {text}
              </li>
            );
          })}
        </ol></div>
      </section>
      <Checks job={j} events={events} />
      {j && <Changes job={j} />}
    </>
  );
}

function Summary({ job }: { job: Job }) {
  return (
    <dl class="facts">
      <dt>Status</dt>
      <dd data-testid="job-status"><Status status={job.status} />{job.queuePosition !== null && <> (position {job.queuePosition} in the queue)</>}</dd>
      <dt>Operation</dt>
      <dd>{job.operation} on <StackLink name={job.stack} /></dd>
      <dt>Version</dt>
      <dd>{job.version ?? "—"}{job.imageDigest && <span class="mono"> ({job.imageDigest})</span>}</dd>
      <dt>Requested by</dt>
      <dd>{job.requestedBy} ({job.source})</dd>
      {job.message && (<><dt>Message</dt><dd>{job.message}</dd></>)}
      {job.reason && (<><dt>Reason</dt><dd>{job.reason}</dd></>)}
      {job.rollbackTo && (<><dt>Rolls back to</dt><dd><JobLink id={job.rollbackTo} /></dd></>)}
      {job.autoRollbackOf && (<><dt>Automatic rollback of</dt><dd><JobLink id={job.autoRollbackOf} /></dd></>)}
      {job.rolledBackBy && (<><dt>Rolled back by</dt><dd><JobLink id={job.rolledBackBy} /></dd></>)}
      <dt>Created</dt>
      <dd><Time at={job.createdAt} /></dd>
      <dt>Started</dt>
      <dd><Time at={job.startedAt} /></dd>
      <dt>Finished</dt>
      <dd><Time at={job.finishedAt} /></dd>
      <dt>Engine</dt>
      <dd>{job.engine}</dd>
      {job.error && (<><dt>Error</dt><dd class="warn"><span class="mono">{job.error.code}</span>: {job.error.message.split("\n")[0]}</dd></>)}
    </dl>
  );
}

function Controls({ session, job, onChange }: { session: Session; job: Job; onChange: () => void }) {
  const { api, me } = session;
  if (TERMINAL.has(job.status)) return null;
  const deployer = hasRole(me, job.stack, "deployer");
  const admin = hasRole(me, job.stack, "admin");
  if (!deployer) return null;
  const cancel = (force: boolean) => async () => {
    await unwrap(api.POST("/v1/jobs/{id}/cancel", { params: { path: { id: job.id } }, body: force ? { force: true } : {} }));
    onChange();
  };
  return (
    <section aria-labelledby="controls-title">
      <h2 id="controls-title">Stop</h2>
      <div class="actions">
        <ActionForm label="Cancel" run={cancel(false)} />
        {admin && job.status === "running" && <ActionForm label="Force cancel" danger run={cancel(true)} />}
      </div>
      {admin && job.status === "running" && <p class="muted">Force cancel kills the engine's processes; the service allows it only after a graceful cancel.</p>}
    </section>
  );
}

function Approvals({ session, job, onChange }: { session: Session; job: Job; onChange: () => void }) {
  const { api, me } = session;
  const [comment, setComment] = useState("");
  if (job.approvalsRequired === 0 && job.approvals.length === 0 && !job.rejection) return null;
  const approver = hasRole(me, job.stack, "approver");
  const mine = job.requestedBy === me.name;
  const waiting = job.status === "awaiting_approval";
  const body = comment.trim() ? { comment: comment.trim() } : {};
  const path = { id: job.id };
  return (
    <section aria-labelledby="approvals-title">
      <h2 id="approvals-title">Approvals</h2>
      <p>
        {job.approvals.length} of {job.approvalsRequired} approval{job.approvalsRequired === 1 ? "" : "s"} from someone other than {job.requestedBy}.
        {waiting && job.approvalExpiresAt && <> The wait ends <Time at={job.approvalExpiresAt} />.</>}
      </p>
      {job.approvals.length > 0 && (
        <ul>
          {job.approvals.map((a) => (
            <li key={a.by + a.at}>
              Approved by <strong>{a.by}</strong> <Time at={a.at} />{a.comment && <>: “{a.comment}”</>}
            </li>
          ))}
        </ul>
      )}
      {job.rejection && (
        <p class="warn">
          Rejected by <strong>{job.rejection.by}</strong> <Time at={job.rejection.at} />{job.rejection.comment && <>: “{job.rejection.comment}”</>}
        </p>
      )}
      {waiting && approver && !mine && !job.approvals.some((a) => a.by === me.name) && (
        <div class="actions">
          <Field label="Comment (optional)" value={comment} onInput={setComment} />
          <ActionForm label="Approve" run={async () => { await unwrap(api.POST("/v1/jobs/{id}/approvals", { params: { path }, body })); onChange(); }} />
          <ActionForm label="Reject" danger run={async () => { await unwrap(api.POST("/v1/jobs/{id}/rejections", { params: { path }, body })); onChange(); }} />
        </div>
      )}
      {waiting && mine && <p>You requested this job: another approver decides. You can cancel it.</p>}
    </section>
  );
}

function Changes({ job }: { job: Job }) {
  const steps = (job.steps ?? []).filter((s) => s.op !== "same");
  return (
    <section aria-labelledby="changes-title">
      <h2 id="changes-title">Changes</h2>
      {job.changes ? (
        <p data-testid="changes">
          {job.changes.create} to create, {job.changes.update} to update, {job.changes.replace} to replace, {job.changes.delete} to delete, {job.changes.same} unchanged.
        </p>
      ) : (
        <p class="muted">No change summary yet.</p>
      )}
      {steps.length > 0 && (
        <details class="scroll" open={steps.length <= 12}>
          <summary>Steps ({steps.length})</summary>
          <table>
            <caption class="sr-only">Steps</caption>
            <thead><tr><th scope="col">Operation</th><th scope="col">Type</th><th scope="col">Resource</th><th scope="col">Changed properties</th></tr></thead>
            <tbody>
              {steps.map((s) => (
                <tr key={s.urn + s.op}>
                  <td>{s.op}</td>
                  <td class="mono">{s.type}</td>
                  <td class="mono">{s.urn.split("::").pop()}</td>
                  <td class="mono">{s.changedProperties.join(", ") || "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </section>
  );
}

function Checks({ job, events }: { job?: Job; events: readonly StreamEvent[] }) {
  const checks = events.filter((e) => e.type === "check").map((e) => e.data as { name: string; ok: boolean; skipped?: boolean; detail: string });
  const findings = job?.error?.code === "blocked" ? job.error.message.split("\n").slice(1).map((l) => l.trim()).filter(Boolean) : [];
  return (
    <section aria-labelledby="checks-title">
      <h2 id="checks-title">Checks and gates</h2>
      {checks.length === 0 && findings.length === 0 && <p class="muted">No verification check or gate finding yet.</p>}
      {checks.length > 0 && (
        <div class="scroll">
          <table>
            <caption class="sr-only">Verification checks</caption>
            <thead><tr><th scope="col">Check</th><th scope="col">Result</th><th scope="col">Detail</th></tr></thead>
            <tbody>
              {checks.map((c, i) => (
                <tr key={i}>
                  <td>{c.name}</td>
                  <td class={c.ok ? undefined : "warn"}>{c.skipped ? "skipped" : c.ok ? "passed" : "failed"}</td>
                  <td>{c.detail}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {job?.error?.code === "blocked" && (
        <>
          <h3>Gate findings</h3>
          <p class="warn">{job.error.message.split("\n")[0]}</p>
          {findings.length > 0 && <ul>{findings.map((f, i) => <li key={i}>{f.replace(/^[-•]\s*/, "")}</li>)}</ul>}
        </>
      )}
    </section>
  );
}
