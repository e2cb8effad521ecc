/**
 * The web dashboard's files, served at `/` by the same service: what `npm run build` (or `npm start`'s
 * compile step) built from dashboard/ into dist/dashboard/. The page talks to the public API only,
 * with the bearer token the user typed in; nothing here authenticates.
 *
 * Its own Content-Security-Policy replaces helmet's for these files: scripts and styles from this
 * origin only (no inline script or style), requests to this origin only (`connect-src 'self'`), no
 * frames, no plugins. The API keeps helmet's headers.
 */
import { existsSync } from "fs";
import * as path from "path";
import express, { Router } from "express";
import helmet from "helmet";

export const DASHBOARD_CSP: Readonly<Record<string, readonly string[]>> = {
  "default-src": ["'none'"],
  "script-src": ["'self'"],
  "style-src": ["'self'"],
  "img-src": ["'self'", "data:"],
  "font-src": ["'self'"],
  "connect-src": ["'self'"],
  "manifest-src": ["'self'"],
  "base-uri": ["'none'"],
  "form-action": ["'self'"],
  "frame-ancestors": ["'none'"],
  "object-src": ["'none'"],
};

/** dist/dashboard under the repository root, whether this file runs from api/ (ts) or dist/api/ (compiled). */
export function defaultDashboardDir(from: string = __dirname): string {
  let dir = from;
  while (!existsSync(path.join(dir, "package.json")) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, "dist", "dashboard");
}

/**
 * GET `/` and the built assets. Asset names carry a content hash, so they are cached for a year;
 * `index.html` is never cached. Without a build, `/` says how to make one.
 */
export function dashboardRouter(dir: string = defaultDashboardDir()): Router {
  const router = Router({ strict: true, caseSensitive: true });
  const csp = helmet.contentSecurityPolicy({ useDefaults: false, directives: DASHBOARD_CSP });
  const index = path.join(dir, "index.html");
  router.get("/", csp, (_req, res) => {
    res.setHeader("Cache-Control", "no-store");
    if (existsSync(index)) res.sendFile(index);
    else res.status(503).type("text/plain").send("The dashboard is not built: run `npm run build` (or `npm start`, which builds it).\n");
  });
  router.use("/assets", csp, express.static(path.join(dir, "assets"), { immutable: true, maxAge: "365d", index: false, fallthrough: true }));
  return router;
}
