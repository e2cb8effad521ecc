/**
 * The e2e fixture program: the same config the deployer writes for the real program
 * (`pulumi-aws-deployer:settings` and `:version`), one resource — a local file written by a dynamic
 * provider — whose path is the `E2EOutput` tag and whose content names the app and the version.
 * Editing the file by hand is drift; a refresh reads it back.
 */
import * as pulumi from "@pulumi/pulumi";
// `import x = require()` keeps the module object itself, which the closure serializer recognises as
// a built-in and captures as `require("fs")`; `import * as` would make a copy it tries to serialize.
import fs = require("fs");
import nodePath = require("path");

interface FileProps {
  readonly path: string;
  readonly content: string;
}

function writeFile(props: FileProps): void {
  fs.mkdirSync(nodePath.dirname(props.path), { recursive: true });
  fs.writeFileSync(props.path, props.content);
}

const localFileProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: FileProps) {
    writeFile(inputs);
    return { id: inputs.path, outs: { path: inputs.path, content: inputs.content } };
  },
  async read(id: string, props: FileProps) {
    // No id: the resource is gone.
    if (!fs.existsSync(id)) return {};
    const live = { path: id, content: fs.readFileSync(id, "utf8") };
    // Inputs too, so a refresh takes what exists as the new baseline: afterwards the file no longer
    // counts as drifted, and the next up diffs the program against what is really there.
    return { id, props: { ...props, ...live }, inputs: live };
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

  constructor(name: string, args: { path: pulumi.Input<string>; content: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
    super(localFileProvider, name, { path: args.path, content: args.content }, opts);
  }
}

export = async () => {
  const config = new pulumi.Config("pulumi-aws-deployer");
  const settings = config.requireObject<{ app: { name: string }; tags: Record<string, string> }>("settings");
  const version = config.require("version");
  const target = settings.tags.E2EOutput;
  if (!target) throw new Error("settings.tags.E2EOutput must name the file to write");
  const file = new LocalFile("output", { path: target, content: `${settings.app.name}@${version}\n` });
  return { path: file.path, content: file.content, version, note: pulumi.secret(`deployed ${version}`) };
};
