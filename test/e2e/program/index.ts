/**
 * The stand-in program the real engine runs in tests (test/e2e): the config the deployer writes for
 * the real program (`pulumi-aws-deployer:settings`, `:version` and, when a rollback pins one,
 * `:imageDigest`), and resources that need no cloud: local files written by a dynamic provider.
 *
 * - `output` (the `E2EOutput` tag): names the app, the version and the image it would run, pinned by
 *   digest when the config says so, as infra/registry.ts does. Editing it by hand is drift.
 * - `marker-<n>` (`E2EMarkers`, a count): more files, each created after `E2EDelayMs`, so that an
 *   update takes long enough to be canceled in the middle.
 * - `E2EThrow`: the program throws that message, as a broken program would.
 * - `E2EDigests`: a JSON file of version → image digest, what the program reports as `imageRef`.
 *
 * The outputs mimic the real program's: `serviceName`/`url` are absent, so verification skips.
 */
import * as pulumi from "@pulumi/pulumi";
// `import x = require()` keeps the module object itself, which the closure serializer recognises as
// a built-in and captures as `require("fs")`; `import * as` would make a copy it tries to serialize.
import crypto = require("crypto");
import fs = require("fs");
import nodePath = require("path");

interface FileProps {
  readonly path: string;
  readonly content: string;
  readonly delayMs?: number;
}

function writeFile(props: FileProps): void {
  fs.mkdirSync(nodePath.dirname(props.path), { recursive: true });
  fs.writeFileSync(props.path, props.content);
}

const localFileProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: FileProps) {
    if (inputs.delayMs) await new Promise((resolve) => setTimeout(resolve, inputs.delayMs));
    writeFile(inputs);
    return { id: inputs.path, outs: { path: inputs.path, content: inputs.content } };
  },
  async read(id: string, props: FileProps) {
    // No id: the resource is gone.
    if (!fs.existsSync(id)) return {};
    const live = { path: id, content: fs.readFileSync(id, "utf8") };
    // Inputs too, so a refresh takes what exists as the new baseline: afterwards the file no longer
    // counts as drifted, and the next up diffs the program against what is really there.
    return { id, props: { ...props, ...live }, inputs: { ...live, ...(props.delayMs ? { delayMs: props.delayMs } : {}) } };
  },
  async diff(_id: string, olds: FileProps, news: FileProps) {
    const moved = olds.path !== news.path;
    return { changes: moved || olds.content !== news.content, replaces: moved ? ["path"] : [], deleteBeforeReplace: true };
  },
  async update(_id: string, _olds: FileProps, news: FileProps) {
    writeFile(news);
    return { outs: { path: news.path, content: news.content } };
  },
  async delete(id: string) {
    fs.rmSync(id, { force: true });
  },
};

class LocalFile extends pulumi.dynamic.Resource {
  // `declare`: a class field would be reset to undefined after super() under ES2022 class fields.
  declare readonly path: pulumi.Output<string>;
  declare readonly content: pulumi.Output<string>;

  constructor(name: string, args: { path: pulumi.Input<string>; content: pulumi.Input<string>; delayMs?: number }, opts?: pulumi.CustomResourceOptions) {
    super(localFileProvider, name, { path: args.path, content: args.content, delayMs: args.delayMs }, opts);
  }
}

/**
 * Compiled as the repository compiles (target ES2022, so class fields are defined): a field with no
 * initializer is an own property. Under ts-node's defaults (no tsconfig) it would not be.
 */
class CompileProbe {
  field?: string;
}

export = async () => {
  const config = new pulumi.Config("pulumi-aws-deployer");
  const settings = config.requireObject<{ app: { name: string; image?: string }; tags: Record<string, string> }>("settings");
  const version = config.require("version");
  const digest = config.get("imageDigest");
  const tags = settings.tags;
  if (tags.E2EThrow) throw new Error(tags.E2EThrow);
  const target = tags.E2EOutput;
  if (!target) throw new Error("settings.tags.E2EOutput must name the file to write");
  const repository = settings.app.image ?? "local/web";
  const image = digest ? `${repository}@${digest}` : `${repository}:${version}`;
  // What the real program reports of an image it built: the pushed digest. `E2EDigests` names a JSON
  // file of version → digest (the images a test pushed to moto's ECR); else one made up per version.
  const pushed = tags.E2EDigests ? (JSON.parse(fs.readFileSync(tags.E2EDigests, "utf8")) as Record<string, string>)[version] : undefined;
  const imageRef = `${repository}@${digest ?? pushed ?? `sha256:${crypto.createHash("sha256").update(version).digest("hex")}`}`;
  const file = new LocalFile("output", { path: target, content: `${settings.app.name}@${version} ${image}\n` });
  const markers = Number(tags.E2EMarkers ?? "0");
  const delayMs = Number(tags.E2EDelayMs ?? "0");
  // One after another: a cancel during the first leaves the others not created.
  let previous: pulumi.Resource = file;
  for (let i = 0; i < markers; i++) {
    previous = new LocalFile(`marker-${i}`, { path: `${target}.marker-${i}`, content: `${version}\n`, delayMs }, { dependsOn: [previous] });
  }
  return {
    path: file.path,
    content: file.content,
    version,
    image,
    imageRef,
    note: pulumi.secret(`deployed ${version}`),
    // A secret inside an object: the deployer must mask it wherever it sits.
    connection: { host: "db.internal", password: pulumi.secret(`pw-${version}`) },
    classFields: Object.keys(new CompileProbe()),
  };
};
