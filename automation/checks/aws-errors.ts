/**
 * Sorting errors the AWS SDK throws, by name (the SDK's service exceptions and the credential
 * providers' errors set `name`; not every one is an exported class, so `instanceof` cannot be used).
 */

/** The error's AWS name (`ThrottlingException`, `CredentialsProviderError`, …), else its JS name. */
export function awsErrorName(err: unknown): string {
  if (err !== null && typeof err === "object") {
    const e = err as { name?: unknown; Code?: unknown; code?: unknown };
    if (typeof e.name === "string" && e.name !== "Error") return e.name;
    if (typeof e.Code === "string") return e.Code;
    if (typeof e.code === "string") return e.code;
    if (typeof e.name === "string") return e.name;
  }
  return "Error";
}

/** Anything that looks like an access key id or a secret key, masked before a message leaves the process. */
export function redactCredentials(text: string): string {
  return text.replace(/\b(AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b/g, "[redacted]").replace(/(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g, "[redacted]");
}

/** "ThrottlingException: Rate exceeded", safe to put in a message or a check's detail. */
export function describeAwsError(err: unknown): string {
  const name = awsErrorName(err);
  const message = err instanceof Error ? err.message : String(err);
  const text = message && message !== name ? `${name}: ${message}` : name;
  return redactCredentials(text.split("\n")[0]);
}

const TRANSIENT = new Set(["ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded", "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "ServerException", "TimeoutError", "RequestTimeout", "RequestTimeoutException"]);

/** Worth retrying on the next poll: throttling, a 5xx, a dropped connection. */
export function isTransientAwsError(err: unknown): boolean {
  const name = awsErrorName(err);
  if (TRANSIENT.has(name)) return true;
  const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  if (typeof status === "number" && status >= 500) return true;
  return ["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE", "EAI_AGAIN"].includes(name);
}
