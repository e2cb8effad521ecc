/**
 * Rate limits shared by replicas on PostgreSQL: two RateLimits (two replicas) on two stores of one
 * database count one principal's mutations against one budget; windows restart; a database error
 * lets the request through and is logged at error.
 */
import { expect } from "chai";
import express, { type NextFunction, type Request, type Response } from "express";
import type { Logger } from "pino";
import request from "supertest";
import { RateLimitedError } from "../../api/errors";
import { RateLimits } from "../../api/rate-limit";
import { openPostgresStore, type PostgresStore } from "../../automation/store";
import { createTestDatabase, requirePostgresOrSkip, type TestDatabase } from "../support/postgres";

/** One replica's mutation route: authenticated as `alice`, counted, 200 or 429. */
function replica(limits: RateLimits) {
  const app = express();
  app.post("/mutate", (req, res, next) => {
    res.locals.principal = { name: String(req.query.as ?? "alice"), roles: {} };
    limits.countMutation(req, res).then(() => res.sendStatus(200), next);
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    res.status(err instanceof RateLimitedError ? 429 : 500).end();
  });
  return app;
}

describe("api: rate limits shared by replicas (PostgreSQL)", function () {
  let db: TestDatabase;
  const stores: PostgresStore[] = [];
  /** The limiters' clock: real time (the headers count from it), moved on by `skew`. */
  let skew = 0;
  const clock = () => Date.now() + skew;

  const open = async () => {
    const store = await openPostgresStore(db.url);
    stores.push(store);
    return store;
  };
  const limitsOn = (store: PostgresStore, logger?: Logger) =>
    new RateLimits({ mutationsPerWindow: 3, windowMs: 60_000, logger, sharedStore: (name, windowMs) => store.rateLimitStore(`${name}:`, windowMs, clock) });

  before(function () {
    requirePostgresOrSkip(this);
  });

  beforeEach(async () => {
    skew = 0;
    db = await createTestDatabase();
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close().catch(() => undefined)));
    await db.drop();
  });

  it("counts one principal across replicas: 2 through one, the 3rd through the other passes, the 4th through either is 429", async () => {
    const [a, b] = [replica(limitsOn(await open())), replica(limitsOn(await open()))];
    expect((await request(a).post("/mutate")).status).to.equal(200);
    expect((await request(a).post("/mutate")).status).to.equal(200);
    const third = await request(b).post("/mutate");
    expect(third.status).to.equal(200);
    expect(third.headers.ratelimit).to.match(/^"mutations"; r=0; t=(59|60)$/);
    expect((await request(b).post("/mutate")).status).to.equal(429);
    expect((await request(a).post("/mutate")).status).to.equal(429);
    // Another principal has a budget of its own.
    expect((await request(b).post("/mutate?as=bob")).status).to.equal(200);
    // A new window starts again at 1.
    skew += 60_001;
    expect((await request(b).post("/mutate")).status).to.equal(200);
  });

  it("counts racing requests exactly (one atomic upsert each)", async () => {
    const [sa, sb] = [await open(), await open()];
    const [a, b] = [replica(new RateLimits({ mutationsPerWindow: 10, sharedStore: (n, w) => sa.rateLimitStore(`${n}:`, w) })), replica(new RateLimits({ mutationsPerWindow: 10, sharedStore: (n, w) => sb.rateLimitStore(`${n}:`, w) }))];
    const statuses = await Promise.all(Array.from({ length: 16 }, (_, i) => request(i % 2 ? a : b).post("/mutate").then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).to.have.length(10);
    expect(statuses.filter((s) => s === 429)).to.have.length(6);
  });

  it("lets a request through when the database fails, and logs it at error", async () => {
    const errors: unknown[][] = [];
    const logger = { error: (...args: unknown[]) => errors.push(args), warn: () => undefined } as unknown as Logger;
    const store = await open();
    const app = replica(limitsOn(store, logger));
    await store.close();
    expect((await request(app).post("/mutate")).status).to.equal(200);
    expect(errors).to.have.length(1);
    expect(String(errors[0][1])).to.match(/error from store/);
  });
});
