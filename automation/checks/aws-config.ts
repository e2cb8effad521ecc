/**
 * Configuration of the deployer's own AWS clients (STS, ECR, ECS, ELBv2, CloudWatch) from a given set
 * of environment variables: the caller's (`createDeps({env})`, `runCli(argv, {env})`), which need not
 * be this process's. The AWS SDK reads `process.env` by itself; a service or a test that hands the
 * deployer another environment gets that environment's endpoint, credentials and profile instead.
 *
 * The settings are the SDKs' standard ones:
 *   AWS_ENDPOINT_URL_<SERVICE>  one service's endpoint (STS, ECR, ECS, ELASTIC_LOAD_BALANCING_V2, CLOUDWATCH)
 *   AWS_ENDPOINT_URL            every service's endpoint (an AWS API server such as moto, a VPC endpoint proxy)
 *   AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true   ignore both
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; or AWS_PROFILE
 * Where none is set, the SDK's defaults apply (its own environment and config-file lookup, the default
 * credential chain). The region is always the environment file's `aws.region`: the deployment's region
 * is not a matter of the shell.
 */
/** The SDK service ids of the clients the deployer makes, as the SDK spells them. */
export type AwsServiceId = "STS" | "ECR" | "ECS" | "Elastic Load Balancing v2" | "CloudWatch" | "S3";

/** `Elastic Load Balancing v2` → `AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`, as the SDKs derive it. */
export function serviceEndpointVariable(service: AwsServiceId): string {
  return ["AWS_ENDPOINT_URL", ...service.split(" ").map((w) => w.toUpperCase())].join("_");
}

/** The endpoint `env` configures for `service`, or undefined for the SDK's default. */
export function awsEndpointFor(env: NodeJS.ProcessEnv, service: AwsServiceId): string | undefined {
  if ((env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS ?? "").toLowerCase() === "true") return undefined;
  const own = env[serviceEndpointVariable(service)];
  if (own !== undefined && own !== "") return own;
  const all = env.AWS_ENDPOINT_URL;
  return all !== undefined && all !== "" ? all : undefined;
}

/** Static credentials, the shape every client's `credentials` option takes. */
export interface AwsStaticCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface AwsClientConfig {
  readonly region: string;
  readonly endpoint?: string;
  readonly credentials?: AwsStaticCredentials;
  readonly profile?: string;
}

/**
 * The constructor options for a client of `service` in `region`, from `env`: its endpoint, its static
 * credentials (access key and secret both set), else its profile. Pass it as `new XClient(config)`.
 */
export function awsClientConfig(env: NodeJS.ProcessEnv, service: AwsServiceId, region: string): AwsClientConfig {
  const endpoint = awsEndpointFor(env, service);
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  const sessionToken = env.AWS_SESSION_TOKEN;
  const credentials =
    accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } : undefined;
  const profile = credentials === undefined && env.AWS_PROFILE ? env.AWS_PROFILE : undefined;
  return { region, ...(endpoint !== undefined ? { endpoint } : {}), ...(credentials ? { credentials } : {}), ...(profile ? { profile } : {}) };
}

/** Exact names passed on by `awsEndpointEnv`, besides every `AWS_ENDPOINT_URL*`. */
const PASSED_ON = [
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "AWS_PROFILE",
  "AWS_CONFIG_FILE",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_CA_BUNDLE",
  "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
] as const;

/**
 * The AWS settings of `env` that the engine's child processes (the pulumi CLI, its language host and
 * providers) need in order to reach the same AWS as the deployer's own clients: every
 * `AWS_ENDPOINT_URL*`, the credentials, the profile, the region and the config files. Only names that
 * are set and non-empty. The values include secrets: pass them to a child's environment, never to a
 * log or an error.
 */
export function awsEndpointEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || value === "") continue;
    if (name === "AWS_ENDPOINT_URL" || name.startsWith("AWS_ENDPOINT_URL_") || (PASSED_ON as readonly string[]).includes(name)) out[name] = value;
  }
  return out;
}
