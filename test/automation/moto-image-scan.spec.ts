/**
 * The image scan gate against a real ECR API (moto): an image pushed with PutImage, scanned with
 * StartImageScan, its findings read by `EcrImageScanner` through the endpoint in the caller's env.
 *
 * What moto models here: repositories, PutImage (an image manifest, no layers needed), image ids by
 * tag and digest, ScanNotFoundException until a scan was started, ImageNotFoundException. A started
 * scan is COMPLETE at once; its findings are one static HIGH finding (CVE-9999-9999 in moto_fake),
 * unless a result was seeded through moto's API (`/moto-api/static/ecr/scan-finding-results`).
 * What it does not model, so checks-image-scan.spec.ts keeps mocked clients for it: scan-on-push (no
 * scan starts by itself), a scan that is PENDING or IN_PROGRESS and then finishes, FAILED and
 * UNSUPPORTED_IMAGE statuses as ECR reports them, paginated findings, throttling.
 */
import { ECRClient, PutImageCommand, CreateRepositoryCommand, StartImageScanCommand } from "@aws-sdk/client-ecr";
import { expect } from "chai";
import { awsClientConfig } from "../../automation/checks/aws-config";
import { assertBelowThreshold, EcrImageScanner, type ScanReport, type ScanTarget } from "../../automation/checks/image-scan";
import { GateError, OperationFailedError } from "../../automation/errors";
import { imageManifest, requireMotoOrSkip, startMoto, type Moto } from "../support/moto";

const REGION = "us-east-1";


async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

describe("image scan gate against moto's ECR", function () {
  this.timeout(60_000);
  let moto: Moto | undefined;
  let ecr: ECRClient;
  let registry: string;
  let repoCount = 0;

  before(async function () {
    requireMotoOrSkip(this);
    moto = await startMoto();
    ecr = new ECRClient(awsClientConfig(moto.env, "ECR", REGION));
    registry = `${moto.accountId}.dkr.ecr.${REGION}.amazonaws.com`;
  });
  after(async () => {
    ecr?.destroy();
    await moto?.stop();
  });

  /** A new repository (scan on push, as infra/ creates it) with one image tagged `tag`; returns its digest. */
  async function pushImage(tag: string): Promise<{ repositoryName: string; digest: string }> {
    const repositoryName = `web-${++repoCount}`;
    await ecr.send(new CreateRepositoryCommand({ repositoryName, imageScanningConfiguration: { scanOnPush: true }, imageTagMutability: "IMMUTABLE" }));
    const put = await ecr.send(new PutImageCommand({ repositoryName, imageTag: tag, imageManifest: imageManifest(`${repositoryName}${tag}`) }));
    return { repositoryName, digest: put.image!.imageId!.imageDigest! };
  }

  function target(repositoryName: string, ref: string): ScanTarget {
    return { imageRef: `${registry}/${repositoryName}${ref}`, stack: "prod", version: "1.2.3" };
  }

  /** The scanner as the deployer makes it for `engine: pulumi`: its own ECR client, configured from the caller's env. */
  function scanner(options: { pollIntervalMs?: number; deadlineMs?: number } = {}): EcrImageScanner {
    return new EcrImageScanner({ awsEnv: moto!.env, pollIntervalMs: options.pollIntervalMs ?? 20, deadlineMs: options.deadlineMs ?? 10_000 });
  }

  async function seed(result: object): Promise<void> {
    const res = await fetch(`${moto!.endpoint}/moto-api/static/ecr/scan-finding-results`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ results: [result], region: REGION, account_id: moto!.accountId }),
    });
    expect(res.status).to.equal(201);
  }

  it("reads the findings of a completed scan by digest, and the gate stops a HIGH finding at threshold HIGH", async () => {
    const { repositoryName, digest } = await pushImage("1.2.3");
    await ecr.send(new StartImageScanCommand({ repositoryName, imageId: { imageDigest: digest } }));

    const report = await scanner().findings(target(repositoryName, `@${digest}`));

    expect(report.status).to.equal("complete");
    expect(report.findings).to.deep.equal([
      { name: "CVE-9999-9999", severity: "HIGH", uri: "https://cve.mitre.org/cgi-bin/cvename.cgi?name=CVE-9999-9999", package: "moto_fake@9.9.9" },
    ]);
    expect(report.severityCounts).to.deep.equal({ HIGH: 1 });
    expect(() => assertBelowThreshold(report, "HIGH"))
      .to.throw(GateError)
      .with.property("message", "image scan found 1 finding at or above HIGH (1 HIGH): CVE-9999-9999 (HIGH in moto_fake@9.9.9)");
    expect(() => assertBelowThreshold(report, "CRITICAL")).not.to.throw();
  });

  it("reads an image by its tag", async () => {
    const { repositoryName } = await pushImage("2.0.0");
    await ecr.send(new StartImageScanCommand({ repositoryName, imageId: { imageTag: "2.0.0" } }));
    const report = await scanner().findings(target(repositoryName, ":2.0.0"));
    expect(report.status).to.equal("complete");
    expect(report.findings.map((f) => f.name)).to.deep.equal(["CVE-9999-9999"]);
  });

  it("waits while no scan has started (ECR's ScanNotFoundException), then reads the scan once it exists", async () => {
    const { repositoryName, digest } = await pushImage("3.0.0");
    // moto starts no scan on push: the scan is started once the scanner has seen "not started".
    const client = new ECRClient(awsClientConfig(moto!.env, "ECR", REGION));
    const errors: string[] = [];
    let started: Promise<unknown> | undefined;
    client.middlewareStack.add(
      (next) => async (args) => {
        try {
          return await next(args);
        } catch (err) {
          errors.push((err as Error).name);
          started ??= ecr.send(new StartImageScanCommand({ repositoryName, imageId: { imageDigest: digest } }));
          await started;
          throw err;
        }
      },
      { step: "initialize", name: "startScanAfterFirstMiss" },
    );
    try {
      const report = await new EcrImageScanner({ ecr: client, pollIntervalMs: 20, deadlineMs: 10_000 }).findings(target(repositoryName, `@${digest}`));
      expect(errors).to.deep.equal(["ScanNotFoundException"]);
      expect(report.status).to.equal("complete");
      expect(report.findings.map((f) => f.name)).to.deep.equal(["CVE-9999-9999"]);
    } finally {
      client.destroy();
    }
  });

  it("gives up with TimedOutError naming the last state when the scan never starts", async () => {
    const { repositoryName, digest } = await pushImage("4.0.0");
    const err = await rejection(scanner({ pollIntervalMs: 20, deadlineMs: 200 }).findings(target(repositoryName, `@${digest}`)));
    expect(err.name).to.equal("TimedOutError");
    expect(err.message).to.contain("did not finish within").and.to.contain("last status: not started");
  });

  it("says it could not read the scan of an image the repository does not have", async () => {
    const { repositoryName } = await pushImage("5.0.0");
    const missing = `sha256:${"f".repeat(64)}`;
    const err = await rejection(scanner().findings(target(repositoryName, `@${missing}`)));
    expect(err).to.be.instanceOf(OperationFailedError);
    expect(err.message).to.contain(`could not read the image scan of ${registry}/${repositoryName}@${missing}`).and.to.contain("ImageNotFoundException");
  });

  describe("with findings seeded through moto's API", () => {
    async function scanned(tag: string, findings: object): Promise<ScanReport> {
      const { repositoryName, digest } = await pushImage(tag);
      await seed({
        registryId: moto!.accountId,
        repositoryName,
        imageId: { imageDigest: digest },
        imageScanStatus: { status: "COMPLETE", description: "The scan was completed successfully." },
        imageScanFindings: findings,
      });
      await ecr.send(new StartImageScanCommand({ repositoryName, imageId: { imageDigest: digest } }));
      return scanner().findings(target(repositoryName, `@${digest}`));
    }

    it("stops a CRITICAL basic finding, naming it and its package", async () => {
      const report = await scanned("6.0.0", {
        findings: [
          { name: "CVE-2024-3094", severity: "CRITICAL", uri: "https://nvd.nist.gov/vuln/detail/CVE-2024-3094", attributes: [{ key: "package_name", value: "xz-utils" }, { key: "package_version", value: "5.6.0" }] },
          { name: "CVE-2023-0001", severity: "LOW", attributes: [] },
        ],
        findingSeverityCounts: { CRITICAL: 1, LOW: 1 },
      });
      expect(() => assertBelowThreshold(report, "HIGH"))
        .to.throw(GateError)
        .with.property("message", "image scan found 1 finding at or above HIGH (1 CRITICAL): CVE-2024-3094 (CRITICAL in xz-utils@5.6.0)");
    });

    it("passes a clean scan", async () => {
      const report = await scanned("7.0.0", { findings: [], findingSeverityCounts: {} });
      expect(report).to.deep.equal({ status: "complete", findings: [], severityCounts: {} });
      expect(() => assertBelowThreshold(report, "LOW")).not.to.throw();
    });

    it("reads enhanced (Inspector) findings and leaves out suppressed ones", async () => {
      const report = await scanned("8.0.0", {
        enhancedFindings: [
          { findingArn: "arn:aws:inspector2:us-east-1:123456789012:finding/a", severity: "HIGH", status: "ACTIVE", packageVulnerabilityDetails: { vulnerabilityId: "CVE-2024-6387", sourceUrl: "https://nvd.nist.gov/vuln/detail/CVE-2024-6387", vulnerablePackages: [{ name: "openssh", version: "9.6" }] } },
          { findingArn: "arn:aws:inspector2:us-east-1:123456789012:finding/b", severity: "CRITICAL", status: "SUPPRESSED", packageVulnerabilityDetails: { vulnerabilityId: "CVE-2021-44228", vulnerablePackages: [{ name: "log4j" }] } },
        ],
      });
      expect(report.findings).to.deep.equal([{ name: "CVE-2024-6387", severity: "HIGH", uri: "https://nvd.nist.gov/vuln/detail/CVE-2024-6387", package: "openssh@9.6" }]);
      expect(() => assertBelowThreshold(report, "CRITICAL")).not.to.throw();
      expect(() => assertBelowThreshold(report, "HIGH")).to.throw(GateError, "CVE-2024-6387 (HIGH in openssh@9.6)");
    });

    it("counts findings ECR counted but did not list", async () => {
      const report = await scanned("9.0.0", { findings: [], findingSeverityCounts: { HIGH: 3 } });
      expect(() => assertBelowThreshold(report, "HIGH")).to.throw(GateError, "image scan found 3 findings at or above HIGH (3 HIGH): 3 not listed by the scanner");
    });
  });
});
