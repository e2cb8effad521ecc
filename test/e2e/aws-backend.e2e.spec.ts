/**
 * The production configuration of state and secrets, for real: the pulumi CLI on an `s3://` backend
 * (moto's S3, path-style) with an `awskms://` secrets provider (a moto KMS key). Shows that a stack
 * lives in the bucket, that its state holds secrets only as ciphertext, and that recovery reads and
 * clears a dead update's lock in the bucket.
 */
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { CreateAliasCommand, CreateKeyCommand, KMSClient } from "@aws-sdk/client-kms";
import { expect } from "chai";
import * as path from "path";
import { CanceledError } from "../../automation/errors";
import type { EngineEvent } from "../../automation/engine/port";
import { PulumiEngine } from "../../automation/engine/pulumi";
import { tempDirs } from "../automation/support/temp";
import { requireMotoOrSkip, startMoto, type Moto } from "../support/moto";
import { engineEnv, PROJECT, removeStackFiles, requirePulumi, standIn, uniqueStack } from "./support";

const BUCKET = "deployer-e2e-state";
const ALIAS = "alias/pulumi-e2e";

describe("pulumi engine on an s3:// backend with an awskms:// secrets provider (e2e, moto)", function () {
  this.timeout(5 * 60_000);
  const temp = tempDirs();
  const stacks: string[] = [];
  let moto: Moto;
  let s3: S3Client;
  let work: string;

  before(async function () {
    requirePulumi(this);
    requireMotoOrSkip(this);
    moto = await startMoto();
    work = temp.make("deployer-s3-");
    const client = { endpoint: moto.endpoint, region: "us-east-1", credentials: { accessKeyId: "testing", secretAccessKey: "testing" } };
    s3 = new S3Client({ ...client, forcePathStyle: true });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const kms = new KMSClient(client);
    const key = await kms.send(new CreateKeyCommand({ Description: "pulumi secrets (e2e)" }));
    await kms.send(new CreateAliasCommand({ AliasName: ALIAS, TargetKeyId: key.KeyMetadata!.KeyId! }));
    kms.destroy();
  });

  after(async () => {
    s3?.destroy();
    await moto?.stop();
    removeStackFiles(stacks);
    temp.cleanup();
  });

  function stack(prefix: string, tags: Record<string, string> = {}) {
    const name = uniqueStack(prefix);
    stacks.push(name);
    const env = standIn(name, {
      backend: `s3://${BUCKET}/team?region=us-east-1&use_path_style=true`,
      secretsProvider: `awskms://${ALIAS}?region=us-east-1`,
      output: path.join(work, name, "output.txt"),
      tags,
    });
    // No passphrase: the KMS key encrypts the stack's secrets.
    const engine = new PulumiEngine({ env: engineEnv(work, { ...moto.env, PULUMI_CONFIG_PASSPHRASE: undefined }) });
    return { name, env, engine };
  }

  async function objectText(key: string): Promise<string> {
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return (await got.Body?.transformToString()) ?? "";
  }

  async function keys(prefix: string): Promise<string[]> {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    return (listed.Contents ?? []).map((c) => c.Key!);
  }

  it("keeps the stack's state in the bucket, its secrets only as ciphertext", async () => {
    const s = stack("sthree");
    const result = await s.engine.up(s.env, { config: { settings: s.env.settings, version: "1.0.0" } });
    expect(result.changes.create).to.equal(1);
    expect(result.outputs.note).to.deep.equal({ value: "[secret]", secret: true });

    const checkpoint = await objectText(`team/.pulumi/stacks/${PROJECT}/${s.name}.json`);
    expect(checkpoint).to.include("ciphertext");
    expect(checkpoint).to.not.include("deployed 1.0.0");
    expect(checkpoint).to.not.include("pw-1.0.0");
    // The KMS provider's data key is in the checkpoint, encrypted by the key behind the alias.
    expect(checkpoint).to.match(/awskms:\/\/alias\/pulumi-e2e/);
    expect((await s.engine.outputs(s.env, { reveal: true })).note.value).to.equal("deployed 1.0.0");
  });

  it("recovers a stack whose update was killed: reads the lock in the bucket, clears it, clears pending creates", async () => {
    const s = stack("sthreek", { E2EMarkers: "3", E2EDelayMs: "1500" });
    let fired = false;
    const onEvent = (ev: EngineEvent) => {
      if (!fired && ev.type === "step" && ev.phase === "pre" && ev.step.urn.endsWith("::marker-0")) {
        fired = true;
        void s.engine.kill(s.env);
      }
    };
    let err: unknown;
    try {
      await s.engine.up(s.env, { config: { settings: s.env.settings, version: "1.0.0" }, onEvent });
    } catch (e) {
      err = e;
    }
    expect(err, String(err)).to.be.instanceOf(CanceledError);
    const lockPrefix = `team/.pulumi/locks/organization/${PROJECT}/${s.name}/`;
    expect(await keys(lockPrefix)).to.not.be.empty;

    const report = await s.engine.recover(s.env, { clearPendingCreates: true });
    expect(report.lockCleared, report.notes.join("; ")).to.equal(true);
    expect(report.notes.join(" ")).to.match(/cleared the backend lock of .+@.+ \(pid \d+\)/);
    expect(await keys(lockPrefix)).to.deep.equal([]);
    await s.engine.up(s.env, { config: { settings: s.env.settings, version: "1.0.0" } });
  });
});
