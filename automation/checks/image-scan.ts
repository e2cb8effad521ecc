/**
 * The image scan gate: the SOP's "scan the pushed image" step. ECR scans on push; before the ECS
 * service changes, the deployer waits for that scan and stops the deployment when a finding is at or
 * above the environment's `deploy.maxScanSeverity`.
 *
 * Two scanners behind one interface: `EcrImageScanner` reads ECR's results (basic and enhanced
 * scanning), `OfflineImageScanner` reads a findings file from the offline engine's data directory, so
 * a vulnerable image can be simulated on a machine with no AWS account.
 */
import type { DescribeImageScanFindingsResponse, ECRClient, EnhancedImageScanFinding, ImageScanFinding } from "@aws-sdk/client-ecr";
import { existsSync, readFileSync } from "fs";
import * as path from "path";
import { z } from "zod";
import { assertStackName, SEVERITIES, type Severity } from "../environment";
import { CanceledError, ConfigError, GateError, OperationFailedError, TimedOutError } from "../errors";
import { dataDir as defaultDataDir, offlineStackDir } from "../paths";
import { awsClientConfig } from "./aws-config";
import { awsErrorName, describeAwsError, isTransientAwsError } from "./aws-errors";
import { canceled, delay, formatDuration, throwIfAborted } from "./wait";


/** The ECR client, loaded when a real scan runs: the offline path and the service's startup never need it. */
function ecrSdk(): typeof import("@aws-sdk/client-ecr") {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require("@aws-sdk/client-ecr");
}

export interface Finding {
  /** The vulnerability id (`CVE-2024-1234`) or the scanner's title. */
  readonly name: string;
  /** As the scanner reports it, upper case: one of SEVERITIES, or UNDEFINED / UNTRIAGED. */
  readonly severity: string;
  /** Where the vulnerability is described. */
  readonly uri?: string;
  /** The affected package, `name@version` when the version is known. */
  readonly package?: string;
}

export interface ScanReport {
  /** `unsupported`: there is no scan result to judge (not an ECR image, scan failed, image type unsupported). */
  readonly status: "complete" | "unsupported";
  readonly findings: readonly Finding[];
  /** Why the status is `unsupported`. */
  readonly reason?: string;
  /**
   * Findings per severity as the scanner counted them. ECR's counts can exceed the findings it lists;
   * the gate counts the larger number.
   */
  readonly severityCounts?: Readonly<Record<string, number>>;
}

/** The image to judge, and which deployment it belongs to (the offline scanner keys findings by stack and version). */
export interface ScanTarget {
  /** `<registry>/<repo>@sha256:…` or `<registry>/<repo>:<tag>`. */
  readonly imageRef: string;
  readonly stack: string;
  /** The deploy version (the image tag). */
  readonly version: string;
}

export interface ScanOptions {
  readonly signal?: AbortSignal;
}

export interface ImageScanner {
  /** The scan result for the image; waits while the scan is still running. */
  findings(target: ScanTarget, options?: ScanOptions): Promise<ScanReport>;
}

/** A severity's place in SEVERITIES; UNDEFINED, UNTRIAGED and anything unknown rank as INFORMATIONAL. */
export function severityRank(severity: string): number {
  const i = (SEVERITIES as readonly string[]).indexOf(severity.toUpperCase());
  return i < 0 ? 0 : i;
}

const MAX_LISTED = 20;

/**
 * Throws `GateError` when the report has findings at or above `maxSeverity`, listing them (the worst
 * first, at most 20 in the message, all of them in `details.findings`). An `unsupported` report has no
 * findings and passes: whether to deploy an unscanned image is the caller's decision.
 */
export function assertBelowThreshold(report: ScanReport, maxSeverity: Severity): void {
  const threshold = severityRank(maxSeverity);
  const blocking = report.findings
    .filter((f) => severityRank(f.severity) >= threshold)
    .sort((a, b) => severityRank(b.severity) - severityRank(a.severity) || a.name.localeCompare(b.name));

  const counts: Record<string, number> = {};
  for (const f of blocking) counts[f.severity] = (counts[f.severity] ?? 0) + 1;
  let unlisted = 0;
  for (const [severity, reported] of Object.entries(report.severityCounts ?? {})) {
    if (severityRank(severity) < threshold) continue;
    const listed = counts[severity] ?? 0;
    if (reported > listed) {
      unlisted += reported - listed;
      counts[severity] = reported;
    }
  }
  const total = blocking.length + unlisted;
  if (total === 0) return;

  const bySeverity = Object.entries(counts)
    .sort(([a], [b]) => severityRank(b) - severityRank(a))
    .map(([s, n]) => `${n} ${s}`)
    .join(", ");
  const shown = blocking.slice(0, MAX_LISTED).map((f) => `${f.name} (${f.severity}${f.package ? ` in ${f.package}` : ""})`);
  const more = total - shown.length;
  const list = shown.length === 0 ? `${more} not listed by the scanner` : `${shown.join(", ")}${more > 0 ? `, and ${more} more` : ""}`;
  throw new GateError(`image scan found ${total} finding${total === 1 ? "" : "s"} at or above ${maxSeverity} (${bySeverity}): ${list}`, {
    details: { gate: "image-scan", maxSeverity, total, counts, findings: blocking },
  });
}

// ---------------------------------------------------------------------------------------------------
// ECR

export interface EcrImageRef {
  readonly registryId: string;
  readonly region: string;
  readonly repositoryName: string;
  readonly imageTag?: string;
  readonly imageDigest?: string;
}

const ECR_REGISTRY_RE = /^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/;

/** Splits an ECR image reference, or says why it is not one. */
export function parseEcrImageRef(ref: string): EcrImageRef | string {
  const slash = ref.indexOf("/");
  const registry = slash < 0 ? "" : ref.slice(0, slash);
  const m = ECR_REGISTRY_RE.exec(registry);
  if (!m) return `${ref} is not in an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com)`;
  let rest = ref.slice(slash + 1);
  let imageDigest: string | undefined;
  let imageTag: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    imageDigest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^sha256:[a-f0-9]{64}$/.test(imageDigest)) return `${ref} has a malformed digest`;
  }
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    imageTag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  if (rest === "") return `${ref} names no repository`;
  if (imageDigest === undefined && imageTag === undefined) return `${ref} has neither a tag nor a digest`;
  // A digest identifies the image exactly; the tag beside it is informational.
  return imageDigest !== undefined ? { registryId: m[1], region: m[2], repositoryName: rest, imageDigest } : { registryId: m[1], region: m[2], repositoryName: rest, imageTag };
}

export interface EcrImageScannerOptions {
  /**
   * The ECR client, or a factory by region. Default: a client for the region in the image reference,
   * configured from `awsEnv` (endpoint, credentials, profile; see aws-config.ts).
   */
  readonly ecr?: ECRClient | ((region: string) => ECRClient);
  /** The environment variables the default client is configured from. Default: `process.env`. */
  readonly awsEnv?: NodeJS.ProcessEnv;
  /**
   * The deployment's region, accepted so callers can configure every AWS check alike. The default
   * client is always made for the region the image reference names: an image is scanned where it lives.
   */
  readonly region?: string;
  /** Time between polls while the scan is pending or running. Default 5 s. */
  readonly pollIntervalMs?: number;
  /** How long to wait for the scan to finish before giving up with `TimedOutError`. Default 10 min. */
  readonly deadlineMs?: number;
}

/** Scan statuses that mean "not finished yet": keep polling. */
const WAITING = new Set(["IN_PROGRESS", "PENDING"]);
/** Statuses with findings to read: COMPLETE (basic scanning), ACTIVE (enhanced, continuous scanning). */
const DONE = new Set(["COMPLETE", "ACTIVE"]);

export class EcrImageScanner implements ImageScanner {
  private readonly pollIntervalMs: number;
  private readonly deadlineMs: number;

  constructor(private readonly options: EcrImageScannerOptions = {}) {
    this.pollIntervalMs = options.pollIntervalMs ?? 5_000;
    this.deadlineMs = options.deadlineMs ?? 10 * 60_000;
  }

  async findings(target: ScanTarget, options: ScanOptions = {}): Promise<ScanReport> {
    const { signal } = options;
    const what = `image scan wait for ${target.imageRef}`;
    throwIfAborted(what, signal);
    const ref = parseEcrImageRef(target.imageRef);
    if (typeof ref === "string") return { status: "unsupported", findings: [], reason: ref };
    const ecr = this.clientFor(ref.region);
    const request = {
      registryId: ref.registryId,
      repositoryName: ref.repositoryName,
      imageId: ref.imageDigest !== undefined ? { imageDigest: ref.imageDigest } : { imageTag: ref.imageTag },
    };
    const send = async (nextToken?: string): Promise<DescribeImageScanFindingsResponse> => {
      try {
        return await ecr.send(new (ecrSdk().DescribeImageScanFindingsCommand)({ ...request, nextToken, maxResults: 1000 }), { abortSignal: signal });
      } catch (err) {
        if (signal?.aborted) throw canceled(what, signal);
        throw err;
      }
    };

    const started = Date.now();
    let first: DescribeImageScanFindingsResponse | undefined;
    let lastState = "not started";
    for (;;) {
      try {
        first = await send();
        const status = first.imageScanStatus?.status;
        if (status === undefined || !WAITING.has(status)) break;
        lastState = status;
      } catch (err) {
        if (err instanceof CanceledError) throw err;
        const name = awsErrorName(err);
        // ECR answers ScanNotFoundException between the push and the start of the scan-on-push scan.
        if (name === "ScanNotFoundException") lastState = "not started";
        else if (isTransientAwsError(err)) lastState = `retrying after ${name}`;
        else throw new OperationFailedError(`could not read the image scan of ${target.imageRef}: ${describeAwsError(err)}`, { details: { check: "image-scan", reason: name } });
      }
      if (Date.now() - started + this.pollIntervalMs > this.deadlineMs) {
        throw new TimedOutError(`the image scan of ${target.imageRef} did not finish within ${formatDuration(this.deadlineMs)} (last status: ${lastState})`, {
          details: { check: "image-scan", lastState },
        });
      }
      await delay(this.pollIntervalMs, what, signal);
    }

    const status = first.imageScanStatus?.status;
    if (status === undefined || !DONE.has(status)) {
      const description = first.imageScanStatus?.description;
      return { status: "unsupported", findings: [], reason: `ECR scan status ${status ?? "missing"}${description ? `: ${description}` : ""}` };
    }

    const findings: Finding[] = [];
    let page: DescribeImageScanFindingsResponse = first;
    for (;;) {
      for (const f of page.imageScanFindings?.findings ?? []) findings.push(basicFinding(f));
      for (const f of page.imageScanFindings?.enhancedFindings ?? []) {
        // Suppressed (accepted by a suppression rule) and closed findings no longer apply to the image.
        if (f.status === undefined || f.status === "ACTIVE") findings.push(enhancedFinding(f));
      }
      if (!page.nextToken) break;
      page = await this.retryingPage(send, page.nextToken, what, signal);
    }
    const severityCounts: Record<string, number> = {};
    for (const [s, n] of Object.entries(first.imageScanFindings?.findingSeverityCounts ?? {})) {
      if (typeof n === "number" && n > 0) severityCounts[s.toUpperCase()] = n;
    }
    return { status: "complete", findings, severityCounts };
  }

  /** Pages after the first are read with the same patience for throttling as the polls. */
  private async retryingPage(send: (token?: string) => Promise<DescribeImageScanFindingsResponse>, token: string, what: string, signal?: AbortSignal): Promise<DescribeImageScanFindingsResponse> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await send(token);
      } catch (err) {
        if (err instanceof CanceledError) throw err;
        if (!isTransientAwsError(err) || attempt >= 5) throw new OperationFailedError(`could not read the image scan findings: ${describeAwsError(err)}`, { details: { check: "image-scan", reason: awsErrorName(err) } });
        await delay(this.pollIntervalMs, what, signal);
      }
    }
  }

  private clientFor(region: string): ECRClient {
    const ecr = this.options.ecr;
    if (ecr === undefined) return new (ecrSdk().ECRClient)(awsClientConfig(this.options.awsEnv ?? process.env, "ECR", region));
    return typeof ecr === "function" ? ecr(region) : ecr;
  }
}

function basicFinding(f: ImageScanFinding): Finding {
  const attr = (key: string) => f.attributes?.find((a) => a.key === key)?.value;
  const name = attr("package_name");
  const version = attr("package_version");
  return {
    name: f.name ?? "(unnamed finding)",
    severity: (f.severity ?? "UNDEFINED").toUpperCase(),
    ...(f.uri ? { uri: f.uri } : {}),
    ...(name ? { package: version ? `${name}@${version}` : name } : {}),
  };
}

function enhancedFinding(f: EnhancedImageScanFinding): Finding {
  const details = f.packageVulnerabilityDetails;
  const pkg = details?.vulnerablePackages?.[0];
  const uri = details?.sourceUrl ?? details?.referenceUrls?.[0];
  return {
    name: details?.vulnerabilityId ?? f.title ?? f.findingArn ?? "(unnamed finding)",
    severity: (f.severity ?? "UNDEFINED").toUpperCase(),
    ...(uri ? { uri } : {}),
    ...(pkg?.name ? { package: pkg.version ? `${pkg.name}@${pkg.version}` : pkg.name } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------
// Offline

export const SCAN_FINDINGS_FILE = "scan-findings.json";

const KNOWN_SEVERITIES = [...SEVERITIES, "UNDEFINED", "UNTRIAGED"] as const;

const findingsFileSchema = z.record(
  z.string(),
  z.array(
    z.looseObject({
      name: z.string().min(1),
      // A typo ("HIHG") must not quietly rank as INFORMATIONAL and pass the gate.
      severity: z
        .string()
        .transform((s) => s.toUpperCase())
        .pipe(z.enum(KNOWN_SEVERITIES, { message: `must be one of ${KNOWN_SEVERITIES.join(", ")}` })),
      uri: z.string().optional(),
      package: z.string().optional(),
    }),
  ),
);

/**
 * For the offline engine, which pushes no image: findings come from
 * `<dataDir>/offline/<stack>/scan-findings.json`, `{ "<version or sha256:digest>": [{name, severity, uri?, package?}] }`.
 * No file, or no entry for the image: a clean, complete scan.
 */
export class OfflineImageScanner implements ImageScanner {
  constructor(private readonly dataDir: string = defaultDataDir()) {}

  async findings(target: ScanTarget, options: ScanOptions = {}): Promise<ScanReport> {
    throwIfAborted(`image scan for ${target.imageRef}`, options.signal);
    assertStackName(target.stack);
    const file = path.join(offlineStackDir(target.stack, this.dataDir), SCAN_FINDINGS_FILE);
    if (!existsSync(file)) return { status: "complete", findings: [] };

    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new ConfigError(`${file}: is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { details: { file } });
    }
    const parsed = findingsFileSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue.path.map(String).join(".") || "(file)";
      throw new ConfigError(`${file}: ${field}: ${issue.message}`, { details: { file, field } });
    }
    const digest = /@(sha256:[a-f0-9]{64})$/.exec(target.imageRef)?.[1];
    const keys = [target.version, digest, target.imageRef].filter((k): k is string => k !== undefined);
    const key = keys.find((k) => Object.prototype.hasOwnProperty.call(parsed.data, k));
    const entries = key === undefined ? [] : parsed.data[key];
    const findings = entries.map(
      (f): Finding => ({
        name: f.name,
        severity: f.severity,
        ...(f.uri !== undefined ? { uri: f.uri } : {}),
        ...(f.package !== undefined ? { package: f.package } : {}),
      }),
    );
    return { status: "complete", findings };
  }
}
