/**
 * The baseline: a bare Express app, compiled and started the same way as the service (plain node on
 * dist/), with one handler that returns a job-sized JSON document (the service's own
 * answer for the job, read from BENCH_BODY_FILE) and a /readyz that answers 200. No middleware,
 * no store, no authentication: what any Express handler costs.
 */
import express from "express";
import { readFileSync } from "fs";

const port = Number(process.env.BENCH_PORT);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("bare-server: BENCH_PORT is required\n");
  process.exit(2);
}
const body: unknown = process.env.BENCH_BODY_FILE ? JSON.parse(readFileSync(process.env.BENCH_BODY_FILE, "utf8")) : { id: "job", status: "succeeded" };

const app = express();
app.get("/readyz", (_req, res) => {
  res.json({ ready: true });
});
app.get("/v1/jobs/:id", (_req, res) => {
  res.json(body);
});
const server = app.listen(port, "127.0.0.1");
server.on("error", (err) => {
  process.stderr.write(`bare-server: ${err.message}\n`);
  process.exit(1);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
