/**
 * The real collaborators of the operations, chosen per environment: the offline engine with its
 * simulated scan and verification for `engine: offline`, the Automation API with ECR, ECS, ELB and
 * STS for `engine: pulumi`. Engines are kept per data dir so `cancel` reaches the running operation.
 */
import { EcrImageCatalog, OfflineImageCatalog } from "./checks/image-exists";
import { EcrImageScanner, OfflineImageScanner } from "./checks/image-scan";
import { awsClientConfig } from "./checks/aws-config";
import { checkAccount } from "./checks/preflight";
import { AwsVerifier, OfflineVerifier, type SmokeTestOptions } from "./checks/verify";
import { evaluateInChild, OfflineEngine } from "./engine/offline";
import { cachedEvaluator } from "./program/cache";
import type { Engine } from "./engine/port";
import { PulumiEngine } from "./engine/pulumi";
import { programEntry, type Environment } from "./environment";
import type { OperationDeps } from "./operations/context";
import { dataDir as defaultDataDir } from "./paths";
import type { Store } from "./store";

export interface DepsOptions {
  readonly store: Store;
  readonly dataDir?: string;
  readonly env?: NodeJS.ProcessEnv;
  /**
   * The program the offline engine and the policy gate evaluate, instead of infra/ (a test program;
   * the service's DEPLOYER_OFFLINE_PROGRAM). Both must evaluate the same program.
   */
  readonly programPath?: string;
  /** Replace an engine (tests). */
  readonly engines?: Partial<Record<Environment["engine"], Engine>>;
  /** Smoke test timing: attempts, deadline, request timeout (tests shorten the 2-minute retry deadline). */
  readonly smoke?: Pick<SmokeTestOptions, "smokeIntervalMs" | "smokeDeadlineMs" | "requestTimeoutMs">;
}

/** An ECR client on the caller's endpoints and credentials (loaded on first use, like the SDK elsewhere). */
function ecrClient(env: NodeJS.ProcessEnv, region: string): import("@aws-sdk/client-ecr").ECRClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { ECRClient } = require("@aws-sdk/client-ecr") as typeof import("@aws-sdk/client-ecr");
  return new ECRClient(awsClientConfig(env, "ECR", region));
}

export function createDeps(options: DepsOptions): OperationDeps {
  const dir = options.dataDir ?? defaultDataDir(options.env);
  const processEnv = options.env ?? process.env;
  // One memo for the engine and the policy gate: a deployment evaluates the same config several times.
  const evaluate = cachedEvaluator(evaluateInChild);
  const programPath = options.programPath;
  const engines: Record<Environment["engine"], Engine> = {
    offline: options.engines?.offline ?? new OfflineEngine({ dataDir: dir, evaluate, programPath }),
    // The caller's environment, not necessarily this process's: PATH (where the CLI is), the passphrase.
    pulumi: options.engines?.pulumi ?? new PulumiEngine({ env: processEnv }),
  };
  // Smoke tests may be pointed at another address, e.g. a port-forward or a local run of the app.
  const smokeBaseUrl = processEnv.DEPLOYER_SMOKE_BASE_URL || undefined;
  return {
    store: options.store,
    engineFor: (env) => engines[env.engine],
    scannerFor: (env) => (env.engine === "offline" ? new OfflineImageScanner(dir) : new EcrImageScanner({ awsEnv: processEnv })),
    imagesFor: (env) => (env.engine === "offline" ? new OfflineImageCatalog(dir) : new EcrImageCatalog((region) => ecrClient(processEnv, region))),
    verifierFor: (env) =>
      env.engine === "offline"
        ? new OfflineVerifier({ ...options.smoke, baseUrl: smokeBaseUrl })
        : new AwsVerifier({ ...options.smoke, region: env.settings.aws.region, baseUrl: smokeBaseUrl, awsEnv: processEnv }),
    preflight: async (env, engine) => {
      if (engine.kind === "pulumi") await checkAccount(env, { awsEnv: processEnv });
    },
    evaluate: (config, signal, program) => evaluate(config, { signal, programPath: programPath ?? (program === undefined ? undefined : programEntry(program)) }),
  };
}
