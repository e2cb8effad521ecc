/**
 * Bearer tokens: the YAML file that names them (DEPLOYER_TOKENS_FILE, or `<dataDir>/tokens.yaml`),
 * validated with zod at load, and the constant-time lookup of a presented token.
 *
 *   tokens:
 *     - name: alice
 *       sha256: <64 hex characters: sha256 of the token>
 *       roles: { "*": [viewer], dev: [deployer], prod: [approver] }
 *
 * Only hashes are stored. A presented token is hashed and compared with every stored hash by
 * `crypto.timingSafeEqual`, all of them every time, so neither which entry matched nor how much of a
 * hash matched shows in the response time (Atlantis CVE-2022-24912 is what not doing this looks like).
 *
 * With no file configured, the first start writes `<dataDir>/tokens.yaml` with one admin token's hash
 * (mode 0600) and hands the token itself to the caller once, to print; later starts read the file.
 * Of processes starting together on one data directory, exactly one creates it.
 */
import { createHash, randomBytes, timingSafeEqual } from "crypto";
import { existsSync, linkSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as path from "path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { z } from "zod";
import { STACK_NAME_RE } from "../automation/environment";
import { typeIssueMessage } from "../automation/zod-issues";
import { ROLES, type Principal, type Role } from "./auth";

/** What a generated token starts with, so a leaked one is recognisable (secret scanners, logs). */
export const TOKEN_PREFIX = "dpl_";
/** The default tokens file inside the data directory. */
export const DEFAULT_TOKENS_FILE = "tokens.yaml";

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

const rolesSchema = z
  .record(
    z.string().refine((k) => k === "*" || STACK_NAME_RE.test(k), { message: 'must be "*" or a stack name (^[a-z][a-z0-9-]{0,39}$)' }),
    z.array(z.enum(ROLES, { message: `must be one of ${ROLES.join(", ")}` })).min(1, "must name at least one role"),
  )
  .refine((r) => Object.keys(r).length > 0, { message: "must grant at least one role on at least one stack (or \"*\")" });

const entrySchema = z.strictObject({
  name: z.string().regex(NAME_RE, "must be 1–64 characters: letters, digits, . _ @ -, starting with a letter or digit"),
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, "must be the SHA-256 of the token as 64 hex characters (printf %s \"$TOKEN\" | sha256sum)")
    .transform((s) => s.toLowerCase()),
  roles: rolesSchema,
});

export const tokensFileSchema = z
  .strictObject({ tokens: z.array(entrySchema) })
  .superRefine((file, ctx) => {
    const names = new Map<string, number>();
    const hashes = new Map<string, number>();
    file.tokens.forEach((t, i) => {
      if (names.has(t.name)) ctx.addIssue({ code: "custom", path: ["tokens", i, "name"], message: `"${t.name}" is already the name of tokens.${names.get(t.name)}` });
      else names.set(t.name, i);
      if (hashes.has(t.sha256)) ctx.addIssue({ code: "custom", path: ["tokens", i, "sha256"], message: `is the same hash as tokens.${hashes.get(t.sha256)} (one token, one principal)` });
      else hashes.set(t.sha256, i);
    });
  });

export type TokensFile = z.output<typeof tokensFileSchema>;

/** A tokens file that cannot be used: names the file and the field. */
export class TokensFileError extends Error {
  constructor(
    readonly file: string,
    readonly field: string | undefined,
    reason: string,
  ) {
    super(`${file}: ${field ? `${field}: ` : ""}${reason}`);
    this.name = "TokensFileError";
  }
}

interface Entry {
  readonly principal: Principal;
  readonly hash: Buffer;
}

/** One loaded set of tokens: immutable, replaced whole on reload. */
export class TokenSet {
  private readonly entries: readonly Entry[];

  constructor(file: TokensFile) {
    this.entries = file.tokens.map((t) => ({
      principal: Object.freeze({ name: t.name, roles: Object.freeze(Object.fromEntries(Object.entries(t.roles).map(([k, v]) => [k, Object.freeze([...new Set(v)])]))) as Readonly<Record<string, readonly Role[]>> }),
      hash: Buffer.from(t.sha256, "hex"),
    }));
  }

  get size(): number {
    return this.entries.length;
  }

  get names(): string[] {
    return this.entries.map((e) => e.principal.name);
  }

  /**
   * The principal whose token this is, or undefined. Constant time in the token and in which entry
   * matches: the presented token is hashed (fixed length), and every entry is compared, without an
   * early exit.
   */
  find(token: string): Principal | undefined {
    const presented = sha256(token);
    let found: Principal | undefined;
    for (const entry of this.entries) {
      const equal = timingSafeEqual(presented, entry.hash);
      found = equal ? entry.principal : found;
    }
    return found;
  }
}

export function sha256(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

export function sha256Hex(token: string): string {
  return sha256(token).toString("hex");
}

/** A new token: `dpl_` + 32 random bytes, base64url. */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString("base64url");
}

/** Reads and validates a tokens file; throws `TokensFileError` naming the file and the first bad field. */
export function loadTokensFile(file: string): TokenSet {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TokensFileError(file, undefined, code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? (err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: false });
  } catch (err) {
    // The YAML parser's message can quote the line, and a line can hold a token pasted by mistake.
    const line = (err as { linePos?: { line: number }[] }).linePos?.[0]?.line;
    throw new TokensFileError(file, undefined, `is not valid YAML${line ? ` (line ${line})` : ""}`);
  }
  const result = tokensFileSchema.safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0]].join(".") : issue.path.join(".");
    const message =
      issue.code === "unrecognized_keys"
        ? "unknown field"
        : issue.code === "invalid_type"
          ? (typeIssueMessage(issue, raw ?? {}) as string)
          : issue.code === "invalid_key"
            ? (issue.issues[0]?.message ?? issue.message)
            : issue.message;
    throw new TokensFileError(file, field || undefined, message);
  }
  return new TokenSet(result.data);
}

export interface BootstrapResult {
  readonly tokens: TokenSet;
  /** The file the tokens come from (what SIGHUP re-reads). */
  readonly file: string;
  /** Set only on the start that created the file: the admin token, to print once. */
  readonly createdToken?: string;
}

/**
 * The tokens the service starts with: `configuredFile` when given (it must exist and be valid),
 * else `<dataDir>/tokens.yaml`, created with one admin token when it does not exist yet.
 */
export function bootstrapTokens(options: { readonly configuredFile?: string; readonly dataDir: string }): BootstrapResult {
  if (options.configuredFile !== undefined) {
    const file = path.resolve(options.configuredFile);
    return { tokens: loadTokensFile(file), file };
  }
  const file = path.join(options.dataDir, DEFAULT_TOKENS_FILE);
  if (existsSync(file)) return { tokens: loadTokensFile(file), file };
  return createTokensFile(file);
}

/**
 * Creates `file` with one new admin token, unless another process creates it first: then its file
 * is loaded, and no token is returned (the winner prints its own). The file is written under a
 * temporary name and published with a hard link, which fails when the name exists: a crash never
 * leaves half a file, and a file another process published is never replaced.
 */
export function createTokensFile(file: string): BootstrapResult {
  const token = generateToken();
  const content: TokensFile = { tokens: [{ name: "admin", sha256: sha256Hex(token), roles: { "*": ["admin"] } }] };
  const text =
    "# Bearer tokens of the deployer service: names, SHA-256 hashes of the tokens, roles per stack (\"*\": all).\n" +
    "# Created on first start with one admin token; add tokens here and send the service SIGHUP to reload.\n" +
    stringifyYaml(content);
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600, flag: "wx" });
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return { tokens: loadTokensFile(file), file }; // another process won
  } finally {
    rmSync(tmp, { force: true });
  }
  return { tokens: new TokenSet(tokensFileSchema.parse(content)), file, createdToken: token };
}

/** The tokens in force, replaced whole on reload; a bad file on reload keeps the old ones. */
export class TokenRegistry {
  private current: TokenSet;

  constructor(
    readonly file: string,
    tokens: TokenSet,
  ) {
    this.current = tokens;
  }

  get tokens(): TokenSet {
    return this.current;
  }

  /** Re-reads the file; on failure keeps the tokens in force and returns the reason. */
  reload(): { ok: true; count: number } | { ok: false; error: TokensFileError } {
    try {
      this.current = loadTokensFile(this.file);
      return { ok: true, count: this.current.size };
    } catch (err) {
      if (err instanceof TokensFileError) return { ok: false, error: err };
      return { ok: false, error: new TokensFileError(this.file, undefined, err instanceof Error ? err.message : String(err)) };
    }
  }
}
