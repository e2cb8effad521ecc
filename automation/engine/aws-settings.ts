/**
 * Settings for an AWS SDK client taken from a given environment (the caller's, which may not be
 * this process's): region, credentials and the SDKs' standard endpoint variables
 * (`AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`).
 */
export interface AwsClientSettings {
  region?: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Path-style S3 addressing: needed by a local endpoint (moto, MinIO) that has no bucket subdomains. */
  forcePathStyle?: boolean;
}

export function awsClientSettings(env: NodeJS.ProcessEnv, service: string): AwsClientSettings {
  const out: AwsClientSettings = {};
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (region) out.region = region;
  const endpoint = env[`AWS_ENDPOINT_URL_${service.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`] ?? env.AWS_ENDPOINT_URL;
  if (endpoint) {
    out.endpoint = endpoint;
    out.forcePathStyle = true;
  }
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    out.credentials = { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
  }
  return out;
}
