/**
 * The PostgreSQL store's connection layer: one `pg` pool, parameterized queries (every fixed SQL text
 * becomes a named prepared statement, prepared once per connection), transactions that are retried
 * on a serialization failure or deadlock, and the translation of connection failures into
 * `StoreUnavailableError` with a description of the server that never holds its password.
 */
import { createHash } from "crypto";
import { Client, Pool, type PoolClient, type PoolConfig, type QueryResultRow } from "pg";
import { parse as parseConnectionString } from "pg-connection-string";
import { ConfigError, DeployerError, StoreUnavailableError } from "../../errors";

export type SqlParam = string | number | boolean | null | readonly string[];

/** What runs a query: the pool (autocommit) or a transaction's client. */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(sql: string, params?: readonly SqlParam[]): Promise<{ rows: R[]; rowCount: number }>;
}

/** SQLSTATEs worth running the whole transaction again for. */
const RETRYABLE = new Set(["40001", "40P01"]); // serialization_failure, deadlock_detected
const TRANSACTION_ATTEMPTS = 5;

/** Socket-level failures node reports (the server is not there, or went away). */
const CONNECTION_ERRNOS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "ENOENT", // a unix socket that is not there
]);
/** Server answers meaning "not now": shutting down, starting, out of connections, auth refused, no such database. */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300", "28000", "28P01", "3D000"]);
const CONNECTION_MESSAGES = [
  /connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /not queryable/i,
  /connection (?:is )?closed/i,
];

/** Whether `err` says the server cannot be reached or talked to (rather than refusing one statement). */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  if (typeof err !== "object" || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") {
    if (CONNECTION_ERRNOS.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith("08")) return true;
  }
  const errors = (err as { errors?: unknown }).errors; // AggregateError (every address refused)
  if (Array.isArray(errors) && errors.some(isConnectionError)) return true;
  const message = (err as { message?: unknown }).message;
  return typeof message === "string" && CONNECTION_MESSAGES.some((re) => re.test(message));
}

/** The URL's parts as `pg` reads them (pg-connection-string, the driver's own parser); undefined for another scheme. */
function parseUrl(url: string): (ReturnType<typeof parseConnectionString> & { scheme: string }) | undefined {
  const scheme = /^(postgres(?:ql)?):\/\//i.exec(url)?.[1];
  if (scheme === undefined) return undefined;
  try {
    return { ...parseConnectionString(url), scheme };
  } catch {
    return undefined;
  }
}

/**
 * `postgresql://user@host:port/db` (or the socket directory in brackets) for messages: never the
 * password, nor any other query parameter.
 */
export function describeUrl(url: string): string {
  const u = parseUrl(url);
  if (u === undefined) return "the configured PostgreSQL server";
  const host = !u.host ? "localhost" : u.host.startsWith("/") ? `[${u.host}]` : u.host;
  return `${u.scheme}://${u.user ? u.user + "@" : ""}${host}${u.port ? ":" + u.port : ""}${u.database ? "/" + u.database : ""}`;
}

function passwordOf(url: string): string | undefined {
  return parseUrl(url)?.password || undefined;
}

export function checkUrl(url: string): void {
  if (typeof url !== "string" || parseUrl(url) === undefined) {
    throw new ConfigError("the PostgreSQL store URL must look like postgresql://user:password@host:port/database");
  }
}

/** Each fixed SQL text's statement name (a hash of the text), worked out once per text. */
const statementNames = new Map<string, string>();
/** Texts built from a query's shape (filters, placeholders) are few; past this many, a text is hashed each time. */
const MAX_NAMED = 1_000;

function statementName(sql: string): string {
  let name = statementNames.get(sql);
  if (name === undefined) {
    name = "d" + createHash("sha1").update(sql).digest("hex").slice(0, 20);
    if (statementNames.size < MAX_NAMED) statementNames.set(sql, name);
  }
  return name;
}

export class Db {
  private readonly pool: Pool;
  private ended = false;
  readonly description: string;
  private readonly password?: string;

  constructor(
    private readonly url: string,
    private readonly config: Omit<PoolConfig, "connectionString"> = {},
  ) {
    checkUrl(url);
    this.description = describeUrl(url);
    this.password = passwordOf(url);
    this.pool = new Pool({ connectionString: url, ...config });
    // An idle connection the server drops (restart, admin shutdown) is reported here; without a
    // listener it would crash the process. The next query finds out and throws StoreUnavailableError.
    this.pool.on("error", () => undefined);
  }

  /** Runs one statement on any pooled connection (autocommit). */
  query<R extends QueryResultRow = QueryResultRow>(sql: string, params: readonly SqlParam[] = []): Promise<{ rows: R[]; rowCount: number }> {
    return this.run(this.pool, sql, params);
  }

  /**
   * Runs `fn` in one transaction (READ COMMITTED; `fn` takes the row locks it needs with `FOR
   * UPDATE`), committed when it returns, rolled back when it throws; run again from the start on a
   * serialization failure or deadlock (a few times).
   */
  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: PoolClient;
      try {
        client = await this.pool.connect();
      } catch (err) {
        throw this.translate(err);
      }
      const tx: Queryable = { query: (sql, params = []) => this.run(client, sql, params) };
      let broken = false;
      // A connection that dies between two statements is reported here (unheard, it would crash the
      // process); the next statement then fails, and the client is discarded.
      const onError = () => (broken = true);
      client.on("error", onError);
      try {
        await this.run(client, "BEGIN", []);
        const result = await fn(tx);
        await this.run(client, "COMMIT", []);
        return result;
      } catch (err) {
        broken ||= isConnectionError(err);
        if (!broken) await client.query("ROLLBACK").catch(() => (broken = true));
        const code = (err as { code?: unknown }).code;
        if (!broken && typeof code === "string" && RETRYABLE.has(code) && attempt < TRANSACTION_ATTEMPTS) {
          await new Promise((resolve) => setTimeout(resolve, 5 * attempt + Math.random() * 20));
          continue;
        }
        throw this.translate(err);
      } finally {
        if (!broken) client.removeListener("error", onError); // a discarded client keeps it: it may still report its end
        client.release(broken ? true : undefined);
      }
    }
  }

  /**
   * A connection of its own, outside the pool (LISTEN holds one for as long as it listens), with
   * the pool's settings and TCP keepalive; the caller connects it and ends it.
   */
  dedicatedClient(applicationName: string): Client {
    return new Client({
      connectionString: this.url,
      connectionTimeoutMillis: this.config.connectionTimeoutMillis,
      application_name: applicationName,
      keepAlive: true,
    });
  }

  async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.pool.end();
  }

  private async run<R extends QueryResultRow>(
    on: Pool | PoolClient,
    sql: string,
    params: readonly SqlParam[],
  ): Promise<{ rows: R[]; rowCount: number }> {
    try {
      const result =
        params.length === 0 && !sql.includes("$1")
          ? await on.query<R>(sql)
          : await on.query<R>({ name: statementName(sql), text: sql, values: params as unknown[] });
      return { rows: result.rows, rowCount: result.rowCount ?? 0 };
    } catch (err) {
      throw this.translate(err);
    }
  }

  /** Connection failures become StoreUnavailableError; the rest pass through (their messages scrubbed of the password). */
  translate(err: unknown): unknown {
    if (err instanceof DeployerError) return err;
    if (this.password !== undefined && err instanceof Error && err.message.includes(this.password)) {
      err.message = err.message.split(this.password).join("***");
    }
    if (!isConnectionError(err)) return err;
    const code = (err as { code?: unknown }).code;
    const nested = (err as { errors?: unknown }).errors;
    const why =
      err instanceof Error && err.message !== ""
        ? err.message
        : Array.isArray(nested) && nested.length > 0
          ? nested.map((e) => (e instanceof Error ? e.message : String(e))).join("; ")
          : String(err);
    return new StoreUnavailableError(
      `the PostgreSQL store at ${this.description} is unavailable${typeof code === "string" ? ` (${code})` : ""}: ${why}`,
      { cause: err },
    );
  }
}
