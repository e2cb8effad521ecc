/**
 * The express application: request id, request log, helmet, the routes of the table, and the one
 * error middleware. No listening, no state of its own: `createApp(ctx)` is what server.ts serves and
 * what a test could mount.
 *
 * The JSON body (at most 100 kB) is read by the router, after authentication and authorization: a
 * caller without a valid token gets 401 whatever it sends, and no body of theirs is parsed.
 */
import express, { type Express } from "express";
import helmet from "helmet";
import type { ApiContext } from "./context";
import { dashboardRouter } from "./dashboard";
import { errorHandler, notFoundHandler } from "./errors";
import { requestId, requestLogger } from "./logging";
import { buildRouter } from "./routes/router";
import { ROUTES } from "./routes/table";

export { BODY_LIMIT } from "./routes/router";

export interface AppOptions {
  /** Proxy hops whose X-Forwarded-For is trusted for the client address (rate limits, audit). Default 0. */
  readonly trustProxyHops?: number;
  /** The built dashboard (api/dashboard.ts); default dist/dashboard. */
  readonly dashboardDir?: string;
}

export function createApp(ctx: ApiContext, options: AppOptions = {}): Express {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.set("query parser", "simple");
  app.set("trust proxy", options.trustProxyHops ?? 0);
  app.use(requestId);
  app.use(requestLogger(ctx.logger));
  app.use(helmet());
  app.use(dashboardRouter(options.dashboardDir));
  app.use(buildRouter(ROUTES, ctx));
  app.use(notFoundHandler);
  app.use(errorHandler(ctx.logger));
  return app;
}
