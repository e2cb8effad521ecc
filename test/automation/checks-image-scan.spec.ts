import { DescribeImageScanFindingsCommand, ECRClient, ScanNotFoundException } from "@aws-sdk/client-ecr";
import { mockClient } from "aws-sdk-client-mock";
import { expect } from "chai";
import { mkdirSync, mkdtempSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { assertBelowThreshold, EcrImageScanner, OfflineImageScanner, parseEcrImageRef, type Finding, type ScanReport } from "../../automation/checks/image-scan";
import { CanceledError, ConfigError, GateError, TimedOutError } from "../../automation/errors";
import { offlineStackDir } from "../../automation/paths";

const DIGEST = `sha256:${"ab".repeat(32)}`;
const REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web";
const target = { imageRef: `${REPO}@${DIGEST}`, stack: "prod", version: "1.4.0" };

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

function thrown(fn: () => void): Error | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

const complete = (findings: object[], extra: object = {}) => ({ imageScanStatus: { status: "COMPLETE" as const }, imageScanFindings: { findings, ...extra } });

describe("checks: image scan", () => {
  describe("ECR references", () => {
    it("reads account, region, nested repository and digest", () => {
      expect(parseEcrImageRef(`${REPO}@${DIGEST}`)).to.deep.equal({ registryId: "123456789012", region: "eu-west-1", repositoryName: "team/web", imageDigest: DIGEST });
    });

    it("reads a tag", () => {
      expect(parseEcrImageRef(`${REPO}:1.4.0`)).to.deep.include({ repositoryName: "team/web", imageTag: "1.4.0" });
    });

    it("says why a reference outside ECR or without a tag is not scannable", () => {
      expect(parseEcrImageRef("ghcr.io/acme/web:1.0.0")).to.be.a("string").and.to.contain("not in an ECR registry");
      expect(parseEcrImageRef(REPO)).to.be.a("string").and.to.contain("neither a tag nor a digest");
    });
  });

  describe("EcrImageScanner", () => {
    const client = new ECRClient({ region: "eu-west-1" });
    const ecr = mockClient(client);
    const scanner = (options: { deadlineMs?: number } = {}) => new EcrImageScanner({ ecr: client, pollIntervalMs: 2, ...options });
    afterEach(() => ecr.reset());
    after(() => ecr.restore());

    it("waits while the scan has not started or is in progress, then reports the findings", async () => {
      ecr
        .on(DescribeImageScanFindingsCommand)
        .rejectsOnce(new ScanNotFoundException({ message: "scan not found", $metadata: {} }))
        .resolvesOnce({ imageScanStatus: { status: "IN_PROGRESS" } })
        .resolvesOnce({ imageScanStatus: { status: "PENDING" } })
        .resolves(
          complete([
            { name: "CVE-2024-0001", severity: "HIGH", uri: "https://nvd.nist.gov/vuln/detail/CVE-2024-0001", attributes: [{ key: "package_name", value: "openssl" }, { key: "package_version", value: "3.0.1" }] },
            { name: "CVE-2024-0002", severity: "LOW" },
          ]),
        );
      const report = await scanner().findings(target);
      expect(report.status).to.equal("complete");
      expect(report.findings).to.deep.equal([
        { name: "CVE-2024-0001", severity: "HIGH", uri: "https://nvd.nist.gov/vuln/detail/CVE-2024-0001", package: "openssl@3.0.1" },
        { name: "CVE-2024-0002", severity: "LOW" },
      ]);
      const calls = ecr.commandCalls(DescribeImageScanFindingsCommand);
      expect(calls).to.have.length(4);
      expect(calls[0].args[0].input).to.deep.include({ registryId: "123456789012", repositoryName: "team/web", imageId: { imageDigest: DIGEST } });
    });

    it("reads every page of findings", async () => {
      ecr.on(DescribeImageScanFindingsCommand).resolves({ ...complete([{ name: "CVE-1", severity: "MEDIUM" }]), nextToken: "page-2" });
      ecr.on(DescribeImageScanFindingsCommand, { nextToken: "page-2" }).resolves({ ...complete([{ name: "CVE-2", severity: "CRITICAL" }]), nextToken: "page-3" });
      ecr.on(DescribeImageScanFindingsCommand, { nextToken: "page-3" }).resolves(complete([{ name: "CVE-3", severity: "LOW" }]));
      const report = await scanner().findings(target);
      expect(report.findings.map((f) => f.name)).to.deep.equal(["CVE-1", "CVE-2", "CVE-3"]);
      expect(ecr.commandCalls(DescribeImageScanFindingsCommand)).to.have.length(3);
    });

    it("reads enhanced findings, leaving out suppressed ones", async () => {
      ecr.on(DescribeImageScanFindingsCommand).resolves({
        imageScanStatus: { status: "ACTIVE" },
        imageScanFindings: {
          enhancedFindings: [
            { severity: "CRITICAL", status: "ACTIVE", title: "CVE-2024-9 - glibc", packageVulnerabilityDetails: { vulnerabilityId: "CVE-2024-9", sourceUrl: "https://example.test/CVE-2024-9", vulnerablePackages: [{ name: "glibc", version: "2.35" }] } },
            { severity: "HIGH", status: "SUPPRESSED", packageVulnerabilityDetails: { vulnerabilityId: "CVE-2024-8" } },
          ],
        },
      });
      const report = await scanner().findings(target);
      expect(report.findings).to.deep.equal([{ name: "CVE-2024-9", severity: "CRITICAL", uri: "https://example.test/CVE-2024-9", package: "glibc@2.35" }]);
    });

    it("keeps ECR's severity counts so findings it does not list still count", async () => {
      ecr.on(DescribeImageScanFindingsCommand).resolves(complete([{ name: "CVE-1", severity: "CRITICAL" }], { findingSeverityCounts: { CRITICAL: 3, LOW: 5 } }));
      const report = await scanner().findings(target);
      expect(report.severityCounts).to.deep.equal({ CRITICAL: 3, LOW: 5 });
      const err = thrown(() => assertBelowThreshold(report, "HIGH"));
      expect(err).to.be.instanceOf(GateError);
      expect(err!.message).to.contain("3 findings at or above HIGH (3 CRITICAL)").and.to.contain("CVE-1 (CRITICAL), and 2 more");
    });

    it("reports a failed scan as unsupported, with ECR's reason", async () => {
      ecr.on(DescribeImageScanFindingsCommand).resolves({ imageScanStatus: { status: "FAILED", description: "UnsupportedImageError: The operating system is not supported" } });
      const report = await scanner().findings(target);
      expect(report).to.deep.include({ status: "unsupported", findings: [] });
      expect(report.reason).to.contain("FAILED").and.to.contain("operating system is not supported");
    });

    it("reports an unsupported image type as unsupported", async () => {
      ecr.on(DescribeImageScanFindingsCommand).resolves({ imageScanStatus: { status: "UNSUPPORTED_IMAGE", description: "not a supported image" } });
      expect((await scanner().findings(target)).status).to.equal("unsupported");
    });

    it("reports an image outside ECR as unsupported without calling ECR", async () => {
      const report = await scanner().findings({ ...target, imageRef: "docker.io/library/nginx:1.27" });
      expect(report.status).to.equal("unsupported");
      expect(report.reason).to.contain("not in an ECR registry");
      expect(ecr.calls()).to.have.length(0);
    });

    it("gives up with TimedOutError when the scan never finishes", async () => {
      ecr.on(DescribeImageScanFindingsCommand).resolves({ imageScanStatus: { status: "IN_PROGRESS" } });
      const err = await rejection(scanner({ deadlineMs: 30 }).findings(target));
      expect(err).to.be.instanceOf(TimedOutError);
      expect(err.message).to.contain("did not finish").and.to.contain("IN_PROGRESS");
    });

    it("stops waiting with CanceledError as soon as the signal aborts", async () => {
      ecr.on(DescribeImageScanFindingsCommand).resolves({ imageScanStatus: { status: "IN_PROGRESS" } });
      const controller = new AbortController();
      const slow = new EcrImageScanner({ ecr: client, pollIntervalMs: 60_000 });
      const waiting = slow.findings(target, { signal: controller.signal });
      setImmediate(() => controller.abort());
      const started = Date.now();
      const err = await rejection(waiting);
      expect(err).to.be.instanceOf(CanceledError);
      expect(Date.now() - started).to.be.below(1000);
    });
  });

  describe("assertBelowThreshold", () => {
    const report = (...severities: string[]): ScanReport => ({ status: "complete", findings: severities.map((severity, i) => ({ name: `CVE-${i}`, severity })) });

    it("blocks a HIGH finding at threshold HIGH", () => {
      expect(thrown(() => assertBelowThreshold(report("LOW", "HIGH"), "HIGH"))).to.be.instanceOf(GateError);
    });

    it("blocks a CRITICAL finding at threshold HIGH", () => {
      expect(thrown(() => assertBelowThreshold(report("CRITICAL"), "HIGH"))).to.be.instanceOf(GateError);
    });

    it("lets MEDIUM and below through at threshold HIGH, UNDEFINED counting as INFORMATIONAL", () => {
      expect(thrown(() => assertBelowThreshold(report("MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"), "HIGH"))).to.equal(undefined);
    });

    it("blocks UNDEFINED only at threshold INFORMATIONAL", () => {
      expect(thrown(() => assertBelowThreshold(report("UNDEFINED"), "INFORMATIONAL"))).to.be.instanceOf(GateError);
      expect(thrown(() => assertBelowThreshold(report("UNDEFINED"), "LOW"))).to.equal(undefined);
    });

    it("passes an unsupported report, which has no findings", () => {
      expect(thrown(() => assertBelowThreshold({ status: "unsupported", findings: [], reason: "not ECR" }, "INFORMATIONAL"))).to.equal(undefined);
    });

    it("lists the blocking findings worst first, with their packages, and carries them in details", () => {
      const findings: Finding[] = [
        { name: "CVE-2024-0002", severity: "HIGH", package: "openssl@3.0.1" },
        { name: "CVE-2024-0003", severity: "MEDIUM" },
        { name: "CVE-2024-0001", severity: "CRITICAL" },
      ];
      const err = thrown(() => assertBelowThreshold({ status: "complete", findings }, "HIGH")) as GateError;
      expect(err.code).to.equal("blocked");
      expect(err.message).to.equal("image scan found 2 findings at or above HIGH (1 CRITICAL, 1 HIGH): CVE-2024-0001 (CRITICAL), CVE-2024-0002 (HIGH in openssl@3.0.1)");
      const details = err.details as { findings: Finding[]; maxSeverity: string };
      expect(details.maxSeverity).to.equal("HIGH");
      expect(details.findings.map((f) => f.name)).to.deep.equal(["CVE-2024-0001", "CVE-2024-0002"]);
    });

    it("lists at most 20 findings in the message, then says how many more", () => {
      const err = thrown(() => assertBelowThreshold(report(...Array.from({ length: 25 }, () => "CRITICAL")), "HIGH")) as GateError;
      expect(err.message).to.contain("25 findings").and.to.match(/, and 5 more$/);
      expect(err.message.match(/\(CRITICAL\)/g)).to.have.length(20);
      expect((err.details as { findings: Finding[] }).findings).to.have.length(25);
    });
  });

  describe("OfflineImageScanner", () => {
    function dataDirWith(findings: unknown): string {
      const dir = mkdtempSync(path.join(tmpdir(), "scan-"));
      mkdirSync(offlineStackDir("local", dir), { recursive: true });
      writeFileSync(path.join(offlineStackDir("local", dir), "scan-findings.json"), typeof findings === "string" ? findings : JSON.stringify(findings));
      return dir;
    }
    const local = { imageRef: "000000000000.dkr.ecr.us-east-1.amazonaws.com/web:2.0.0", stack: "local", version: "2.0.0" };

    it("reads the findings listed for the version", async () => {
      const dir = dataDirWith({ "2.0.0": [{ name: "CVE-2024-1111", severity: "critical", package: "zlib@1.2" }], "1.0.0": [] });
      const report = await new OfflineImageScanner(dir).findings(local);
      expect(report).to.deep.equal({ status: "complete", findings: [{ name: "CVE-2024-1111", severity: "CRITICAL", package: "zlib@1.2" }] });
      expect(thrown(() => assertBelowThreshold(report, "CRITICAL"))).to.be.instanceOf(GateError);
    });

    it("reads findings keyed by the image digest", async () => {
      const dir = dataDirWith({ [DIGEST]: [{ name: "CVE-2024-2222", severity: "HIGH" }] });
      const report = await new OfflineImageScanner(dir).findings({ ...local, imageRef: `000000000000.dkr.ecr.us-east-1.amazonaws.com/web@${DIGEST}`, version: "9.9.9" });
      expect(report.findings.map((f) => f.name)).to.deep.equal(["CVE-2024-2222"]);
    });

    it("reports a clean scan for a version the file does not list", async () => {
      const dir = dataDirWith({ "1.0.0": [{ name: "CVE-2024-1111", severity: "CRITICAL" }] });
      expect(await new OfflineImageScanner(dir).findings(local)).to.deep.equal({ status: "complete", findings: [] });
    });

    it("reports a clean scan when there is no findings file", async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "scan-"));
      expect(await new OfflineImageScanner(dir).findings(local)).to.deep.equal({ status: "complete", findings: [] });
    });

    it("refuses a misspelt severity instead of letting it pass as INFORMATIONAL", async () => {
      const dir = dataDirWith({ "2.0.0": [{ name: "CVE-1", severity: "HIHG" }] });
      const err = await rejection(new OfflineImageScanner(dir).findings(local));
      expect(err).to.be.instanceOf(ConfigError);
      expect(err.message).to.contain("scan-findings.json").and.to.contain("2.0.0.0.severity");
    });

    it("refuses a findings file that is not JSON", async () => {
      const err = await rejection(new OfflineImageScanner(dataDirWith("{nope")).findings(local));
      expect(err).to.be.instanceOf(ConfigError);
      expect(err.message).to.contain("not valid JSON");
    });
  });
});
