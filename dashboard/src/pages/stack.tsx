/** One stack: what it runs, what can be done to it (by role), its history and diffs, outputs and drift. */
import { useState } from "preact/hooks";
import type { Session } from "../app";
import { hasRole, unwrap, type Job } from "../api";
import { go } from "../route";
import { ActionForm, Field, JobLink, LoadState, PageTitle, Status, Time, display, useId, useLoad } from "../ui";
import { DeploymentDiff } from "./diff";

export function StackPage({ session, name }: { session: Session; name: string }) {
  const { api, me } = session;
  const stack = useLoad(() => unwrap(api.GET("/v1/stacks/{stack}", { params: { path: { stack: name } } })), [api, name]);
  const deployments = useLoad(
    async () => (await unwrap(api.GET("/v1/stacks/{stack}/deployments", { params: { path: { stack: name }, query: { limit: 50 } } }))).deployments,
    [api, name],
  );
  const jobs = useLoad(async () => (await unwrap(api.GET("/v1/jobs", { params: { query: { stack: name, limit: 20 } } }))).jobs, [api, name]);
  const s = stack.data;
  const deployer = hasRole(me, name, "deployer");
  const admin = hasRole(me, name, "admin");
  return (
    <>
      <PageTitle>Stack {name}</PageTitle>
      <LoadState loaded={stack} what="the stack" />
      {s && (
        <dl class="facts">
          <dt>Engine</dt>
          <dd>{s.engine ?? "—"}</dd>
          <dt>Production</dt>
          <dd>{s.production === null ? "—" : s.production ? "yes" : "no"}</dd>
          <dt>Last deployment</dt>
          <dd>{s.lastDeployment ? <><JobLink id={s.lastDeployment.id}>{s.lastDeployment.version ?? "(no version)"}</JobLink>, <Time at={s.lastDeployment.finishedAt} /></> : "never"}</dd>
          <dt>Running job</dt>
          <dd>{s.runningJobId ? <JobLink id={s.runningJobId} /> : "none"}; {s.queued} queued</dd>
          {s.invalid && (<><dt>Invalid</dt><dd class="warn">{s.invalid}</dd></>)}
          {s.blockedReason && (<><dt>Blocked</dt><dd class="warn">{s.blockedReason} {admin ? "Unlock below recovers it." : "An admin recovers it with Unlock."}</dd></>)}
        </dl>
      )}
      {s && !s.invalid && (deployer || admin) && <Actions session={session} name={name} deployments={deployments.data ?? []} admin={admin} deployer={deployer} onDone={() => stack.reload()} />}
      <section aria-labelledby="history-title">
        <h2 id="history-title">Deployment history</h2>
        <LoadState loaded={deployments} what="the deployments" />
        {deployments.data && deployments.data.length === 0 && <p>No successful deployment yet.</p>}
        {deployments.data && deployments.data.length > 0 && (
          <>
            <div class="scroll">
              <table>
                <caption class="sr-only">Successful deployments, newest first</caption>
                <thead>
                  <tr><th scope="col">Version</th><th scope="col">Operation</th><th scope="col">Finished</th><th scope="col">By</th><th scope="col">Image digest</th><th scope="col">Job</th></tr>
                </thead>
                <tbody>
                  {deployments.data.map((d) => (
                    <tr key={d.id}>
                      <td>{d.version ?? "—"}</td>
                      <td>{d.operation}{d.rollbackTo && <> to <JobLink id={d.rollbackTo}>{d.rollbackTo.slice(0, 12)}…</JobLink></>}</td>
                      <td><Time at={d.finishedAt} /></td>
                      <td>{d.requestedBy}</td>
                      <td class="mono">{d.imageDigest ?? "—"}</td>
                      <td><JobLink id={d.id} /></td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            {deployments.data.length >= 2 && <DeploymentDiff session={session} deployments={deployments.data} />}
          </>
        )}
      </section>
      <Outputs session={session} name={name} />
      {s && <Drift session={session} name={name} lastDriftAt={s.drift.lastDriftAt} />}
      <section aria-labelledby="jobs-title">
        <h2 id="jobs-title">Recent jobs</h2>
        <LoadState loaded={jobs} what="the jobs" />
        {jobs.data && jobs.data.length === 0 && <p>No jobs yet.</p>}
        {jobs.data && jobs.data.length > 0 && <JobTable jobs={jobs.data} />}
      </section>
    </>
  );
}

export function JobTable({ jobs }: { jobs: readonly Job[] }) {
  return (
    <div class="scroll">
      <table>
        <caption class="sr-only">Jobs, newest first</caption>
        <thead>
          <tr><th scope="col">Job</th><th scope="col">Operation</th><th scope="col">Status</th><th scope="col">Version</th><th scope="col">By</th><th scope="col">Created</th></tr>
        </thead>
        <tbody>
          {jobs.map((j) => (
            <tr key={j.id}>
              <td><JobLink id={j.id} /></td>
              <td>{j.operation}</td>
              <td><Status status={j.status} /></td>
              <td>{j.version ?? "—"}</td>
              <td>{j.requestedBy}</td>
              <td><Time at={j.createdAt} /></td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Actions(props: { session: Session; name: string; deployments: readonly Job[]; admin: boolean; deployer: boolean; onDone: () => void }) {
  const { api } = props.session;
  const stack = props.name;
  const path = { stack };
  const started = (job: Job) => go(`/jobs/${job.id}`);
  const [previewVersion, setPreviewVersion] = useState("");
  const [version, setVersion] = useState("");
  const [message, setMessage] = useState("");
  const [deployField, setDeployField] = useState<string>();
  const [rollbackTo, setRollbackTo] = useState("");
  const [reason, setReason] = useState("");
  const [reasonField, setReasonField] = useState<string>();
  const [confirm, setConfirm] = useState("");
  const toId = useId("rollback-to");
  return (
    <section aria-labelledby="actions-title">
      <h2 id="actions-title">Actions</h2>
      {props.deployer && (
        <div class="actions">
          <ActionForm label="Preview" run={async () => started(await unwrap(api.POST("/v1/stacks/{stack}/previews", { params: { path }, body: previewVersion.trim() ? { version: previewVersion.trim() } : {} })))}>
            <Field label="Preview version (optional)" value={previewVersion} onInput={setPreviewVersion} placeholder="the environment's" />
          </ActionForm>
          <ActionForm
            label="Deploy"
            onFieldError={setDeployField}
            run={async () =>
              started(await unwrap(api.POST("/v1/stacks/{stack}/deployments", { params: { path }, body: { version: version.trim(), ...(message.trim() ? { message: message.trim() } : {}) } })))
            }
          >
            <Field label="Version" value={version} onInput={setVersion} required invalid={deployField === "version"} placeholder="1.2.3" />
            <Field label="Message (optional)" value={message} onInput={setMessage} invalid={deployField === "message"} />
          </ActionForm>
          <ActionForm
            label="Roll back"
            onFieldError={setReasonField}
            run={async () =>
              started(await unwrap(api.POST("/v1/stacks/{stack}/rollbacks", { params: { path }, body: { reason: reason.trim(), ...(rollbackTo ? { to: rollbackTo } : {}) } })))
            }
          >
            <span class="field">
              <label for={toId}>Roll back to</label>
              <select id={toId} value={rollbackTo} onChange={(e) => setRollbackTo((e.target as HTMLSelectElement).value)} aria-invalid={reasonField === "to" ? "true" : undefined}>
                <option value="">the previous good deployment</option>
                {props.deployments.map((d) => (
                  <option key={d.id} value={d.id}>
                    {d.version ?? "(no version)"} · {d.operation} · {d.finishedAt ? new Date(d.finishedAt).toLocaleString() : ""} · {d.id}
                  </option>
                ))}
              </select>
            </span>
            <Field label="Reason" value={reason} onInput={setReason} required invalid={reasonField === "reason"} />
          </ActionForm>
          <ActionForm label="Check drift" run={async () => started(await unwrap(api.POST("/v1/stacks/{stack}/drift-checks", { params: { path }, body: {} })))} />
          <ActionForm label="Refresh" run={async () => started(await unwrap(api.POST("/v1/stacks/{stack}/refreshes", { params: { path }, body: {} })))} />
        </div>
      )}
      {props.admin && (
        <div class="actions admin">
          <h3>Admin</h3>
          <UnlockAction session={props.session} name={stack} onDone={props.onDone} />
          <ActionForm
            label="Destroy"
            danger
            disabled={confirm !== stack}
            run={async () => started(await unwrap(api.POST("/v1/stacks/{stack}/destroys", { params: { path }, body: { confirm } })))}
          >
            <Field label={`Type the stack's name (${stack}) to confirm destroying every resource`} value={confirm} onInput={setConfirm} />
          </ActionForm>
        </div>
      )}
    </section>
  );
}

function UnlockAction({ session, name, onDone }: { session: Session; name: string; onDone: () => void }) {
  const [result, setResult] = useState<string>();
  return (
    <ActionForm
      label="Unlock"
      run={async () => {
        const r = await unwrap(session.api.POST("/v1/stacks/{stack}/unlock", { params: { path: { stack: name } }, body: {} }));
        const pending = r.engine?.pendingOperations.length ?? 0;
        setResult(`${r.wasBlocked ? `Unblocked (${r.reason ?? "no reason recorded"})` : "The stack was not blocked"}; ${r.clearedLease ? "a stale lease was cleared" : "no lease cleared"}; ${r.engine?.lockCleared ? "the engine's lock was cleared" : "no engine lock"}; ${pending} pending operation(s).`);
        onDone();
      }}
    >
      {result && <p role="status">{result}</p>}
    </ActionForm>
  );
}

function Outputs({ session, name }: { session: Session; name: string }) {
  const outputs = useLoad(() => unwrap(session.api.GET("/v1/stacks/{stack}/outputs", { params: { path: { stack: name } } })), [session.api, name]);
  const entries = Object.entries(outputs.data?.outputs ?? {});
  return (
    <section aria-labelledby="outputs-title">
      <h2 id="outputs-title">Outputs</h2>
      <LoadState loaded={outputs} what="the outputs" />
      {outputs.data && entries.length === 0 && <p>No outputs.</p>}
      {entries.length > 0 && (
        <div class="scroll">
          <table>
            <caption class="sr-only">Stack outputs</caption>
            <thead><tr><th scope="col">Output</th><th scope="col">Value</th></tr></thead>
            <tbody>
              {entries.map(([key, o]) => (
                <tr key={key}>
                  <th scope="row" class="mono">{key}</th>
                  <td class="mono">{o.secret ? <span class="secret">[secret]</span> : display(o.value)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Drift({ session, name, lastDriftAt }: { session: Session; name: string; lastDriftAt: string | null }) {
  const drift = useLoad(async () => {
    // The report is the last finished drift check's: ask for it only when there is one (else it is a 404).
    const { jobs } = await unwrap(session.api.GET("/v1/jobs", { params: { query: { stack: name, operation: "drift", status: "succeeded", limit: 1 } } }));
    if (jobs.length === 0) return null;
    return unwrap(session.api.GET("/v1/stacks/{stack}/drift", { params: { path: { stack: name } } }));
  }, [session.api, name, lastDriftAt]);
  const d = drift.data;
  return (
    <section aria-labelledby="drift-title">
      <h2 id="drift-title">Drift</h2>
      <LoadState loaded={drift} what="the drift report" />
      {d === null && <p>No drift check has finished yet.</p>}
      {d && (
        <>
          <p>
            {d.drifted ? <strong class="warn">Drifted</strong> : "In sync"}: checked <Time at={d.checkedAt} /> by <JobLink id={d.jobId} />.
          </p>
          {d.resources.length > 0 && (
            <div class="scroll">
              <table>
                <caption class="sr-only">Drifted resources and properties</caption>
                <thead><tr><th scope="col">Resource</th><th scope="col">Kind</th><th scope="col">Property</th><th scope="col">Change</th><th scope="col">In the state</th><th scope="col">Live</th></tr></thead>
                <tbody>
                  {d.resources.flatMap((r) =>
                    (r.properties.length ? r.properties : [undefined]).map((p, i) => (
                      <tr key={`${r.urn}:${i}`}>
                        <td class="mono">{i === 0 ? `${r.type} ${r.urn.split("::").pop()}` : ""}</td>
                        <td>{i === 0 ? r.kind : ""}</td>
                        <td class="mono">{p?.path ?? "—"}</td>
                        <td>{p?.kind ?? "—"}</td>
                        <td class="mono">{p ? display(p.state) : ""}</td>
                        <td class="mono">{p ? display(p.live) : ""}</td>
                      </tr>
                    )),
                  )}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </section>
  );
}
