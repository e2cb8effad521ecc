/**
 * The express application: request id, request log, helmet, a 100 kB JSON body limit, the routes of
 * the table, and the one error middleware. No listening, no state of its own: `createApp(ctx)` is
 * what server.ts serves and what a test could mount.
 */
import express, { type Express } from "express";
import helmet from "helmet";
import type { ApiContext } from "./context";
import { errorHandler, notFoundHandler } from "./errors";
import { requestId, requestLogger } from "./logging";
import { buildRouter } from "./routes/router";
import { ROUTES } from "./routes/table";

export const BODY_LIMIT = "100kb";

export function createApp(ctx: ApiContext): Express {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.set("query parser", "simple");
  app.use(requestId);
  app.use(requestLogger(ctx.logger));
  app.use(helmet());
  app.use(express.json({ limit: BODY_LIMIT, strict: true }));
  app.use(buildRouter(ROUTES, ctx));
  app.use(notFoundHandler);
  app.use(errorHandler(ctx.logger));
  return app;
}
