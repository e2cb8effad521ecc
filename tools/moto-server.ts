/**
 * moto, the AWS API server the tests and the bench point the deployer's own AWS calls at (and the
 * pulumi CLI's s3:// backend and awskms:// secrets provider). `npm run moto:install` puts it in the
 * tools directory. Each `startMoto()` is a fresh server with empty state on its own loopback port.
 * Tests use it through test/support/moto.ts.
 */
import { spawn, type ChildProcess } from "child_process";
import { existsSync } from "fs";
import { createServer } from "net";
import * as path from "path";
import { motoDir } from "../automation/tools";

export interface Moto {
  /** `http://127.0.0.1:<port>`: every service, path-style for S3. */
  readonly endpoint: string;
  /**
   * Environment variables that point an AWS SDK or the pulumi CLI at this server: AWS_ENDPOINT_URL,
   * AWS_ACCESS_KEY_ID=testing, AWS_SECRET_ACCESS_KEY=testing, AWS_REGION and AWS_DEFAULT_REGION=us-east-1.
   */
  readonly env: Readonly<Record<string, string>>;
  /** The account moto answers for with these credentials: its default, 123456789012. */
  readonly accountId: string;
  /** Stops the server and waits until its process has exited. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartMotoOptions {
  /** Extra environment of the server process, e.g. `MOTO_ECS_SERVICE_RUNNING` (moto reads some behaviour from it). */
  readonly serverEnv?: Readonly<Record<string, string>>;
  /** How long to wait for the server to answer. Default 30 s (a cold start on a busy 2-core machine takes a few seconds). */
  readonly readyTimeoutMs?: number;
}

export const MOTO_ACCOUNT_ID = "123456789012";
export const MOTO_REGION = "us-east-1";

/** `<motoDir>/bin/moto_server` when `npm run moto:install` has put it there, else undefined. */
export function motoServerPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const server = path.join(motoDir(env), "bin", "moto_server");
  return existsSync(server) ? server : undefined;
}

/** A port that was free a moment ago: moto_server cannot be given port 0. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/**
 * Starts moto_server on a free loopback port and resolves once it prints that it is listening.
 * Rejects (with the server's output) if it exits first or does not come up within the timeout.
 */
export async function startMoto(options: StartMotoOptions = {}): Promise<Moto> {
  const server = motoServerPath();
  if (server === undefined) throw new Error(`moto_server not found under ${motoDir()}: run \`npm run moto:install\``);
  // Another process may take the port between the probe and moto's bind: then moto exits and we try again.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await startOn(server, port, options);
    } catch (err) {
      if (attempt >= 3 || !(err instanceof PortTakenError)) throw err;
    }
  }
}

class PortTakenError extends Error {}

/** Servers still running: killed when the test process exits (mocha's `exit: true` ends it without `after` hooks of failed runs). */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  running.add(child);
  child.once("exit", () => running.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const c of running) c.kill("SIGKILL");
  });
}

async function startOn(server: string, port: number, options: StartMotoOptions): Promise<Moto> {
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn(server, ["-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "pipe", "pipe"],
    // PYTHONUNBUFFERED: werkzeug's "Running on" line must arrive as it is printed, not at exit.
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PYTHONUNBUFFERED: "1", ...options.serverEnv },
  });
  track(child);
  const gone = exited(child);
  let output = "";
  const timeoutMs = options.readyTimeoutMs ?? 30_000;

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`moto_server did not start within ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      // werkzeug prints this once the socket is bound and it serves requests.
      if (output.includes(`Running on ${endpoint}`)) done();
    };
    const onExit = () =>
      fail(/Address already in use|port .* is in use/i.test(output) ? new PortTakenError(output) : new Error(`moto_server exited before it was ready:\n${output}`));
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      child.off("error", fail);
    };
    function done() {
      cleanup();
      resolve();
    }
    function fail(err: Error) {
      cleanup();
      child.kill("SIGKILL");
      reject(err);
    }
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", fail);
  });
  // Request logs are not read; keep the pipes drained so the server never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();

  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    accountId: MOTO_ACCOUNT_ID,
    env: {
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
      AWS_REGION: MOTO_REGION,
      AWS_DEFAULT_REGION: MOTO_REGION,
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
        await gone;
      })();
      return stopping;
    },
  };
}
