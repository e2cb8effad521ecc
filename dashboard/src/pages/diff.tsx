/** The difference between two deployments: version, image digest, who and when, config, changes, resources, outputs. */
import { useState } from "preact/hooks";
import type { Session } from "../app";
import { unwrap, type Job } from "../api";
import { ActionForm, display, useId } from "../ui";

type Pair = readonly [Job, Job];

export function DeploymentDiff({ session, deployments }: { session: Session; deployments: readonly Job[] }) {
  const [from, setFrom] = useState(deployments[1].id);
  const [to, setTo] = useState(deployments[0].id);
  const [pair, setPair] = useState<Pair>();
  const fromId = useId("diff-from");
  const toId = useId("diff-to");
  const label = (d: Job) => `${d.version ?? "(no version)"} · ${d.operation} · ${d.finishedAt ? new Date(d.finishedAt).toLocaleString() : ""} · ${d.id}`;
  const options = deployments.map((d) => (
    <option key={d.id} value={d.id}>
      {label(d)}
    </option>
  ));
  return (
    <div class="diff">
      <h3>Compare two deployments</h3>
      <ActionForm
        label="Compare"
        run={async () => {
          const get = (id: string) => unwrap(session.api.GET("/v1/jobs/{id}", { params: { path: { id } } }));
          setPair(await Promise.all([get(from), get(to)]));
        }}
      >
        <span class="field">
          <label for={fromId}>From</label>
          <select id={fromId} value={from} onChange={(e) => setFrom((e.target as HTMLSelectElement).value)}>{options}</select>
        </span>
        <span class="field">
          <label for={toId}>To</label>
          <select id={toId} value={to} onChange={(e) => setTo((e.target as HTMLSelectElement).value)}>{options}</select>
        </span>
      </ActionForm>
      {pair && <DiffTable pair={pair} />}
    </div>
  );
}

function changedResources(job: Job): Map<string, { op: string; props: string[] }> {
  const out = new Map<string, { op: string; props: string[] }>();
  for (const s of job.steps ?? []) if (s.op !== "same") out.set(s.urn, { op: s.op, props: s.changedProperties });
  return out;
}

/**
 * A deployment's config as one row per setting: a value that holds a JSON object (the environment's
 * settings) is spread into its leaves, `key.path.to.leaf`, so the diff names the setting that changed.
 */
export function flatConfig(config: Readonly<Record<string, string>> | undefined): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (prefix: string, value: unknown) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length > 0) {
      for (const [k, v] of Object.entries(value)) visit(`${prefix}.${k}`, v);
    } else out.set(prefix, typeof value === "string" ? value : JSON.stringify(value));
  };
  for (const [key, raw] of Object.entries(config ?? {})) {
    let parsed: unknown = raw;
    try {
      parsed = raw.startsWith("{") ? JSON.parse(raw) : raw;
    } catch {
      // not JSON: the value as written
    }
    visit(key, parsed);
  }
  return out;
}

function DiffTable({ pair: [a, b] }: { pair: Pair }) {
  const counts = (j: Job) => (j.changes ? `+${j.changes.create} ~${j.changes.update} -${j.changes.delete} ±${j.changes.replace}` : "—");
  const rows: [string, string, string][] = [
    ["Version", a.version ?? "—", b.version ?? "—"],
    ["Image digest", a.imageDigest ?? "—", b.imageDigest ?? "—"],
    ["Operation", a.operation, b.operation],
    ["Requested by", a.requestedBy, b.requestedBy],
    ["Finished", a.finishedAt ?? "—", b.finishedAt ?? "—"],
    ["Message or reason", a.message ?? a.reason ?? "—", b.message ?? b.reason ?? "—"],
    ["Changes (create, update, delete, replace)", counts(a), counts(b)],
  ];
  const ra = changedResources(a);
  const rb = changedResources(b);
  const urns = [...new Set([...ra.keys(), ...rb.keys()])].sort();
  const oa = a.outputs ?? {};
  const ob = b.outputs ?? {};
  const outputKeys = [...new Set([...Object.keys(oa), ...Object.keys(ob)])].sort();
  const ca = flatConfig(a.config);
  const cb = flatConfig(b.config);
  const configKeys = [...new Set([...ca.keys(), ...cb.keys()])].sort();
  const changedConfig = configKeys.filter((k) => ca.get(k) !== cb.get(k));
  const show = (o?: { value?: unknown; secret: boolean }) => (o === undefined ? "—" : o.secret ? "[secret]" : display(o.value));
  return (
    <>
      <div class="scroll">
        <table class="diff-table">
          <caption>Differences between the two deployments (changed values are marked)</caption>
          <thead><tr><th scope="col">Field</th><th scope="col">From</th><th scope="col">To</th></tr></thead>
          <tbody>
            {rows.map(([name, x, y]) => (
              <tr key={name} class={x !== y ? "changed" : undefined}>
                <th scope="row">{name}{x !== y && <span class="sr-only"> (differs)</span>}</th>
                <td class="mono">{x}</td>
                <td class="mono">{y}</td>
              </tr>
            ))}
            {changedConfig.map((k) => (
              <tr key={`config:${k}`} class="changed">
                <th scope="row">Config {k}<span class="sr-only"> (differs)</span></th>
                <td class="mono">{ca.get(k) ?? "—"}</td>
                <td class="mono">{cb.get(k) ?? "—"}</td>
              </tr>
            ))}
            {outputKeys.map((k) => {
              const x = show(oa[k]);
              const y = show(ob[k]);
              return (
                <tr key={`out:${k}`} class={x !== y ? "changed" : undefined}>
                  <th scope="row">Output {k}{x !== y && <span class="sr-only"> (differs)</span>}</th>
                  <td class="mono">{x}</td>
                  <td class="mono">{y}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <div class="scroll">
        <table>
          <caption>Resources each deployment changed</caption>
          <thead><tr><th scope="col">Resource</th><th scope="col">From</th><th scope="col">To</th></tr></thead>
          <tbody>
            {urns.length === 0 && (
              <tr><td colSpan={3}>Neither deployment changed a resource.</td></tr>
            )}
            {urns.map((urn) => {
              const x = ra.get(urn);
              const y = rb.get(urn);
              const cell = (c?: { op: string; props: string[] }) => (c ? `${c.op}${c.props.length ? ` [${c.props.join(", ")}]` : ""}` : "unchanged");
              return (
                <tr key={urn}>
                  <th scope="row" class="mono">{urn.split("::").slice(2).join("::")}</th>
                  <td class="mono">{cell(x)}</td>
                  <td class="mono">{cell(y)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <p class="muted">
        {a.config === undefined || b.config === undefined
          ? "One of the two has no recorded config, so config is not compared."
          : changedConfig.length === 0
            ? `The config is the same (${configKeys.length} settings).`
            : `${changedConfig.length} of ${configKeys.length} settings differ; the rest are the same.`}
      </p>
    </>
  );
}
