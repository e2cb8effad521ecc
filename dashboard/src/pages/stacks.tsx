/** Every environment the token may read: engine, last deployment, drift, running job, queue, block. */
import type { Session } from "../app";
import { unwrap, type Job, type Stack } from "../api";
import { JobLink, LoadState, PageTitle, StackLink, Time, useLoad } from "../ui";

interface Row {
  readonly stack: Stack;
  /** The last deployment's job (who, when), when there is one. */
  readonly last?: Job;
}

export function StacksPage({ session }: { session: Session }) {
  const { api } = session;
  const loaded = useLoad(async (): Promise<Row[]> => {
    const { stacks } = await unwrap(api.GET("/v1/stacks"));
    return Promise.all(
      stacks.map(async (stack) => {
        if (!stack.lastDeployment) return { stack };
        const { deployments } = await unwrap(api.GET("/v1/stacks/{stack}/deployments", { params: { path: { stack: stack.name }, query: { limit: 1 } } }));
        return { stack, last: deployments[0] };
      }),
    );
  }, [api]);
  const rows = loaded.data ?? [];
  const valid = rows.filter((r) => r.stack.invalid === undefined);
  const invalid = rows.filter((r) => r.stack.invalid !== undefined);
  return (
    <>
      <PageTitle>Stacks</PageTitle>
      <LoadState loaded={loaded} what="the stacks" />
      {loaded.data && valid.length === 0 && invalid.length === 0 && <p>This token may read no stack.</p>}
      {valid.length > 0 && (
        <div class="scroll">
          <table>
            <caption class="sr-only">Stacks</caption>
            <thead>
              <tr>
                <th scope="col">Stack</th>
                <th scope="col">Engine</th>
                <th scope="col">Last deployment</th>
                <th scope="col">Drift</th>
                <th scope="col">Running</th>
                <th scope="col">Queued</th>
                <th scope="col">Blocked</th>
              </tr>
            </thead>
            <tbody>
              {valid.map(({ stack, last }) => (
                <tr key={stack.name}>
                  <th scope="row">
                    <StackLink name={stack.name} />
                    {stack.production && <span class="badge">production</span>}
                  </th>
                  <td>{stack.engine}</td>
                  <td>
                    {stack.lastDeployment ? (
                      <>
                        <JobLink id={stack.lastDeployment.id}>{stack.lastDeployment.version ?? "(no version)"}</JobLink>
                        <br />
                        <Time at={stack.lastDeployment.finishedAt} />
                        {last && <> by {last.requestedBy}</>}
                      </>
                    ) : (
                      <span class="muted">never deployed</span>
                    )}
                  </td>
                  <td>
                    {stack.drift.drifted === null ? <span class="muted">not checked</span> : stack.drift.drifted ? <strong class="warn">drifted</strong> : "in sync"}
                    {stack.drift.lastDriftAt && (
                      <>
                        <br />
                        checked <Time at={stack.drift.lastDriftAt} />
                      </>
                    )}
                  </td>
                  <td>{stack.runningJobId ? <JobLink id={stack.runningJobId} /> : <span class="muted">—</span>}</td>
                  <td>{stack.queued}</td>
                  <td>
                    {stack.blockedReason ? (
                      <>
                        <strong class="warn">{stack.blockedReason}</strong>
                        <br />
                        An admin recovers it with Unlock on the <StackLink name={stack.name} /> page.
                      </>
                    ) : (
                      <span class="muted">—</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {invalid.length > 0 && (
        <section aria-labelledby="invalid-title">
          <h2 id="invalid-title">Environment files that do not load</h2>
          <ul>
            {invalid.map(({ stack }) => (
              <li key={stack.name}>
                <strong>{stack.name}</strong>: {stack.invalid!.file}, {stack.invalid!.field}: {stack.invalid!.reason}
              </li>
            ))}
          </ul>
        </section>
      )}
    </>
  );
}
