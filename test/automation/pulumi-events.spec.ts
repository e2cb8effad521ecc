/**
 * The pulumi engine's per-resource outputs: what `EventCollector.resourceOutputs` keeps from the
 * Automation API's `resOutputsEvent`s (the deploy operation reads the pushed image's digest from it),
 * with secret values masked at any depth.
 */
import { expect } from "chai";
import type { EngineEvent as PulumiEngineEvent, OpType, StepEventStateMetadata } from "@pulumi/pulumi/automation";
import type { EngineEvent } from "../../automation/engine/port";
import { EventCollector, maskSecretValues } from "../../automation/engine/pulumi-events";

/** How the engine sends a secret inside event payloads. */
const WIRE_SECRET = { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", plaintext: '"hunter2"' };

const IMAGE = { urn: "urn:pulumi:dev::pulumi-aws-deployer::deployer:infra:Registry$docker:index/image:Image::web-dev-image", type: "docker:index/image:Image" };
const TASK = { urn: "urn:pulumi:dev::pulumi-aws-deployer::deployer:infra:Service$aws:ecs/taskDefinition:TaskDefinition::web-dev-task", type: "aws:ecs/taskDefinition:TaskDefinition" };
const VPC = { urn: "urn:pulumi:dev::pulumi-aws-deployer::deployer:infra:Network$aws:ec2/vpc:Vpc::web-dev-vpc", type: "aws:ec2/vpc:Vpc" };
const BUCKET = { urn: "urn:pulumi:dev::pulumi-aws-deployer::deployer:infra:Storage$aws:s3/bucket:Bucket::web-dev-logs", type: "aws:s3/bucket:Bucket" };

function state(resource: { urn: string; type: string }, outputs: Record<string, unknown>): StepEventStateMetadata {
  return { urn: resource.urn, type: resource.type, id: "id", parent: "", provider: "", inputs: {}, outputs };
}

let sequence = 0;
function event(kind: "resourcePreEvent" | "resOutputsEvent", op: OpType, resource: { urn: string; type: string }, states: { old?: Record<string, unknown>; new?: Record<string, unknown> }): PulumiEngineEvent {
  const metadata = {
    op,
    urn: resource.urn,
    type: resource.type,
    provider: "",
    ...(states.old ? { old: state(resource, states.old) } : {}),
    ...(states.new ? { new: state(resource, states.new) } : {}),
  };
  return { sequence: ++sequence, timestamp: 0, [kind]: { metadata } } as PulumiEngineEvent;
}

function collector(): { collector: EventCollector; events: EngineEvent[] } {
  const events: EngineEvent[] = [];
  return { collector: new EventCollector((e) => events.push(e), (t) => t), events };
}

describe("EventCollector.resourceOutputs", () => {
  it("keeps the outputs of a created resource from its resOutputsEvent", () => {
    const { collector: c, events } = collector();
    const digest = `sha256:${"ab".repeat(32)}`;

    c.onEvent(event("resourcePreEvent", "create", IMAGE, { new: {} }));
    c.onEvent(event("resOutputsEvent", "create", IMAGE, { new: { repoDigest: `123456789012.dkr.ecr.us-east-1.amazonaws.com/web-dev@${digest}`, imageName: "web-dev:1.0.0" } }));

    expect(c.resourceOutputs()).to.deep.equal({
      [IMAGE.urn]: { repoDigest: `123456789012.dkr.ecr.us-east-1.amazonaws.com/web-dev@${digest}`, imageName: "web-dev:1.0.0" },
    });
    expect(events.map((e) => (e.type === "step" ? [e.phase, e.step.op] : e.type))).to.deep.equal([
      ["pre", "create"],
      ["done", "create"],
    ]);
  });

  it("keeps updated and replaced resources, by the outputs after the step", () => {
    const { collector: c } = collector();

    c.onEvent(event("resOutputsEvent", "update", VPC, { old: { enableDnsHostnames: false }, new: { enableDnsHostnames: true } }));
    c.onEvent(event("resOutputsEvent", "create-replacement", TASK, { old: { revision: 1 }, new: { revision: 2 } }));
    c.onEvent(event("resOutputsEvent", "replace", TASK, { old: { revision: 1 }, new: { revision: 2 } }));

    expect(c.resourceOutputs()).to.deep.equal({ [VPC.urn]: { enableDnsHostnames: true }, [TASK.urn]: { revision: 2 } });
  });

  it("leaves out unchanged, deleted and still-pending resources", () => {
    const { collector: c } = collector();

    c.onEvent(event("resOutputsEvent", "same", VPC, { old: { cidrBlock: "10.0.0.0/16" }, new: { cidrBlock: "10.0.0.0/16" } }));
    c.onEvent(event("resOutputsEvent", "delete", BUCKET, { old: { bucket: "web-dev-logs" } }));
    c.onEvent(event("resOutputsEvent", "delete-replaced", TASK, { old: { revision: 1 } }));
    c.onEvent(event("resourcePreEvent", "create", IMAGE, { new: { repoDigest: "not yet" } }));

    expect(c.resourceOutputs()).to.deep.equal({});
  });

  it("masks secret values in the outputs it keeps, at any depth", () => {
    const { collector: c } = collector();

    c.onEvent(event("resOutputsEvent", "create", IMAGE, { new: { repoDigest: "web@sha256:00", registry: { server: "ecr", password: WIRE_SECRET }, args: [WIRE_SECRET, "plain"] } }));

    const kept = c.resourceOutputs()[IMAGE.urn];
    expect(kept).to.deep.equal({ repoDigest: "web@sha256:00", registry: { server: "ecr", password: "[secret]" }, args: ["[secret]", "plain"] });
    expect(JSON.stringify(kept)).to.not.include("hunter2");
  });
});

describe("maskSecretValues", () => {
  it("replaces the engine's secret signature objects and keeps the mask, leaving other values and the input alone", () => {
    const input = { a: WIRE_SECRET, b: "[secret]", c: { d: [1, { e: WIRE_SECRET }], f: null }, g: true };

    const masked = maskSecretValues(input);

    expect(masked).to.deep.equal({ a: "[secret]", b: "[secret]", c: { d: [1, { e: "[secret]" }], f: null }, g: true });
    expect(input.a).to.equal(WIRE_SECRET);
  });
});
