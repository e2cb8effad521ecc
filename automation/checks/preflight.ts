/**
 * Preflight: the SOP's `aws sts get-caller-identity`. The caller's account must be the environment's
 * `aws.accountId`, or nothing runs: deploying prod's program with dev's credentials (or the reverse)
 * is the mistake this check exists for. Messages name accounts and the caller's ARN, never a
 * credential value.
 */
import type { STSClient } from "@aws-sdk/client-sts";
import type { Environment } from "../environment";
import { OperationFailedError } from "../errors";
import { awsClientConfig } from "./aws-config";
import { awsErrorName, describeAwsError } from "./aws-errors";
import { canceled, throwIfAborted } from "./wait";

export interface CallerIdentity {
  readonly accountId: string;
  readonly arn: string;
}

export interface CheckAccountOptions {
  /**
   * The STS client to ask. Default: one for the environment's `aws.region`, configured from `awsEnv`
   * (endpoint, credentials, profile; see aws-config.ts), else the SDK's default credential chain.
   */
  readonly sts?: STSClient;
  /** The environment variables the default client is configured from. Default: `process.env`. */
  readonly awsEnv?: NodeJS.ProcessEnv;
  readonly signal?: AbortSignal;
}

/**
 * Errors that mean "no usable credentials": the provider chain found none, or STS refused the ones it
 * found (expired session, deleted key, bad signature).
 */
const CREDENTIAL_ERRORS = new Set([
  "CredentialsProviderError",
  "TokenProviderError",
  "ExpiredToken",
  "ExpiredTokenException",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "InvalidSignatureException",
  "InvalidAccessKeyId",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "AuthFailure",
]);

/** True when `err` says the AWS credentials are missing, expired or invalid. */
export function isCredentialError(err: unknown): boolean {
  return CREDENTIAL_ERRORS.has(awsErrorName(err));
}

/** Asks STS who the caller is and checks the account; throws `OperationFailedError` when it is not the environment's. */
export async function checkAccount(env: Environment, options: CheckAccountOptions = {}): Promise<CallerIdentity> {
  const expected = env.settings.aws.accountId;
  const what = `account check for ${env.name}`;
  throwIfAborted(what, options.signal);
  // Loaded here: only a real (pulumi engine) deployment asks STS anything.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sdk = require("@aws-sdk/client-sts") as typeof import("@aws-sdk/client-sts");
  const sts = options.sts ?? new sdk.STSClient(awsClientConfig(options.awsEnv ?? process.env, "STS", env.settings.aws.region));

  let identity: { Account?: string; Arn?: string };
  try {
    identity = await sts.send(new sdk.GetCallerIdentityCommand({}), { abortSignal: options.signal });
  } catch (err) {
    if (options.signal?.aborted) throw canceled(what, options.signal);
    const reason = awsErrorName(err);
    if (isCredentialError(err)) {
      // The original error stays out of `cause`: some credential providers put profile or process
      // output in their messages, and a cause ends up in logs.
      throw new OperationFailedError(
        `the AWS credentials are missing or expired (${reason}); ${env.name} deploys to account ${expected}: ` +
          "set AWS_PROFILE to a profile for that account (run `aws sso login` first if it uses SSO), " +
          "or export AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, " +
          "then check with `aws sts get-caller-identity`",
        { details: { check: "account", reason, expectedAccount: expected } },
      );
    }
    throw new OperationFailedError(`could not confirm the AWS account for ${env.name}: STS GetCallerIdentity failed (${describeAwsError(err)})`, {
      details: { check: "account", reason, expectedAccount: expected },
    });
  }

  const accountId = identity.Account;
  const arn = identity.Arn ?? "(unknown caller)";
  if (accountId === undefined || accountId === "") {
    throw new OperationFailedError(`could not confirm the AWS account for ${env.name}: STS GetCallerIdentity returned no account`, {
      details: { check: "account", expectedAccount: expected },
    });
  }
  if (accountId !== expected) {
    throw new OperationFailedError(
      `caller is ${arn} in account ${accountId}, but ${env.name} deploys to account ${expected} (aws.accountId in ${env.file}); ` +
        `switch credentials (AWS_PROFILE) to a principal in account ${expected} and run again, or, if ${expected} is the shipped example value, set aws.accountId to your account first`,
      { details: { check: "account", callerAccount: accountId, expectedAccount: expected, arn, field: "aws.accountId", file: env.file } },
    );
  }
  return { accountId, arn };
}
