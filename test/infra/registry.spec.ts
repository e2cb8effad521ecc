import { expect } from "chai";
import * as path from "path";
import type { Evaluation } from "../../automation/program/evaluate";
import { Registry, lifecyclePolicy, type RegistryArgs } from "../../infra/registry";
import { ACCOUNT, DIGEST, REGION, devInput, evaluateDev, evaluateProd, evaluated, input, named, ofType, programConfig, statements, variant } from "./fixtures";

const REPO = "aws:ecr/repository:Repository";
const IMAGE = "docker:index/image:Image";
const REPO_URL = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/web-dev`;
const PREBUILT = "ghcr.io/acme/web";
const PREBUILT_ECR = "210987654321.dkr.ecr.eu-west-1.amazonaws.com/shared/web";

describe("infra/registry", () => {
  let dev: Evaluation;
  let prod: Evaluation;
  let pinned: Evaluation;
  let prebuilt: Evaluation;
  let prebuiltEcr: Evaluation;

  before(async () => {
    dev = await evaluateDev();
    prod = await evaluateProd();
    pinned = await evaluated("dev-pinned", () => programConfig(devInput, { version: "1.0.0", imageDigest: DIGEST }));
    const image = (repo: string) => variant(devInput, (s) => {
      delete s.app.build;
      s.app.image = repo;
    });
    prebuilt = await evaluated("dev-prebuilt", () => programConfig(image(PREBUILT), { version: "2.3.4" }));
    prebuiltEcr = await evaluated("dev-prebuilt-ecr", () => programConfig(image(PREBUILT_ECR), { version: "2.3.4" }));
  });

  describe("repository", () => {
    it("scans on push, refuses to overwrite tags, and encrypts with KMS", () => {
      const repo = named(dev, REPO, "web-dev-repo");
      expect(repo.inputs).to.deep.include({
        name: "web-dev",
        imageTagMutability: "IMMUTABLE",
        imageScanningConfiguration: { scanOnPush: true },
        encryptionConfigurations: [{ encryptionType: "KMS" }],
      });
    });

    it("deletes its images on destroy only without deletion protection", () => {
      expect(input(named(dev, REPO, "web-dev-repo"), "forceDelete")).to.equal(true);
      expect(named(dev, REPO, "web-dev-repo").retainOnDelete).to.equal(undefined);
    });

    it("with deletion protection, keeps the repository and its images on destroy (retainOnDelete), where forceDelete: false alone would fail with RepositoryNotEmpty", () => {
      expect(named(prod, REPO, "web-prod-repo").retainOnDelete).to.equal(true);
    });

    it("keeps the last keepImages images", () => {
      const policy = JSON.parse(input(named(dev, "aws:ecr/lifecyclePolicy:LifecyclePolicy", "web-dev-repo-lifecycle"), "policy"));
      expect(policy.rules).to.have.length(1);
      expect(policy.rules[0].selection).to.deep.equal({ tagStatus: "any", countType: "imageCountMoreThan", countNumber: 10 });
      expect(policy.rules[0].action).to.deep.equal({ type: "expire" });
      expect(lifecyclePolicy(30)).to.have.nested.property("rules[0].selection.countNumber", 30);
    });
  });

  describe("building", () => {
    it("builds the context, relative to the repository root, for linux/amd64", () => {
      const image = named(dev, IMAGE, "web-dev-image");
      expect(input(image, "build")).to.deep.include({ context: path.resolve(__dirname, "..", "..", "examples/app"), platform: "linux/amd64" });
    });

    it("tags the pushed image with the deploy version", () => {
      expect(input(named(dev, IMAGE, "web-dev-image"), "imageName")).to.equal(`${REPO_URL}:1.0.0`);
    });

    it("pushes with the registry's ECR credentials, kept secret", () => {
      // The password makes the whole block a secret; the evaluation masks it rather than carry it.
      expect(input(named(dev, IMAGE, "web-dev-image"), "registry")).to.equal("[secret]");
      expect(JSON.stringify(dev.resources)).not.to.contain("offline-registry-password");
    });

    it("does not build during previews, so reviews need no Docker engine", () => {
      expect(input(named(dev, IMAGE, "web-dev-image"), "buildOnPreview")).to.equal(false);
    });

    it("runs the pushed digest, so each deployment records exactly which image it ran", () => {
      const image = named(dev, IMAGE, "web-dev-image");
      expect(dev.outputs.imageRef.value).to.equal(image.outputs.repoDigest).and.to.match(new RegExp(`^${REPO_URL}@sha256:[a-f0-9]{64}$`));
      expect(dev.outputs.repositoryUrl.value).to.equal(REPO_URL);
    });
  });

  describe("pinned digest (rollback)", () => {
    it("builds nothing", () => {
      expect(ofType(pinned, IMAGE)).to.be.empty;
    });

    it("runs the repository's image at the pinned digest", () => {
      expect(pinned.outputs.imageRef.value).to.equal(`${REPO_URL}@${DIGEST}`);
    });

    it("keeps the repository it would otherwise push to", () => {
      expect(ofType(pinned, REPO).map((r) => r.name)).to.deep.equal(["web-dev-repo"]);
    });
  });

  describe("prebuilt image", () => {
    it("builds nothing and creates no repository", () => {
      expect(ofType(prebuilt, IMAGE)).to.be.empty;
      expect(ofType(prebuilt, REPO)).to.be.empty;
    });

    it("runs the image tagged with the deploy version", () => {
      expect(prebuilt.outputs.imageRef.value).to.equal(`${PREBUILT}:2.3.4`);
      expect(prebuilt.outputs.repositoryUrl.value).to.equal(PREBUILT);
    });

    it("gives the execution role no ECR permission for an image outside ECR", () => {
      const actions = statements(named(prebuilt, "aws:iam/rolePolicy:RolePolicy", "web-dev-execution"), "policy").flatMap((s) => s.Action);
      expect(actions.filter((a) => a.startsWith("ecr:"))).to.be.empty;
    });

    it("lets the execution role pull an ECR image from exactly its repository", () => {
      const pull = statements(named(prebuiltEcr, "aws:iam/rolePolicy:RolePolicy", "web-dev-execution"), "policy").find((s) => s.Sid === "EcrPull");
      expect(pull?.Resource).to.equal("arn:aws:ecr:eu-west-1:210987654321:repository/shared/web");
    });
  });

  it("never refers to a latest tag", () => {
    for (const ev of [dev, prod, pinned, prebuilt]) {
      expect(JSON.stringify(ev.resources.map((r) => r.inputs))).to.not.match(/:latest\b/);
    }
  });

  describe("argument checks", () => {
    const args: RegistryArgs = { build: { context: "examples/app" }, version: "1.0.0" };

    it("refuses both build and image, naming build", () => {
      expect(() => new Registry("web-dev", { ...args, image: PREBUILT })).to.throw(/`build` give either `build` or `image`/);
    });

    it("refuses latest as a version", () => {
      expect(() => new Registry("web-dev", { ...args, version: "latest" })).to.throw(/`version` "latest"/);
    });

    it("refuses an image that carries its own tag", () => {
      expect(() => new Registry("web-dev", { image: `${PREBUILT}:1.0`, version: "1.0.0" })).to.throw(/`image`/);
    });

    it("refuses a digest that is not sha256", () => {
      expect(() => new Registry("web-dev", { ...args, imageDigest: "md5:abc" })).to.throw(/`imageDigest`/);
    });
  });
});
