// The sample application the default environments deploy: answers /health and echoes its version.
const fs = require("fs");
const http = require("http");
const os = require("os");
const path = require("path");

/**
 * Keep idle connections open longer than the load balancer does (its idle timeout is 60 s by
 * default). Node's default is 5 s: the ALB would reuse a socket the app has just closed and answer
 * 502. The headers timeout must be longer still, or Node cuts a reused connection mid-request.
 */
const KEEP_ALIVE_TIMEOUT_MS = Number(process.env.KEEP_ALIVE_TIMEOUT_MS ?? 65_000);

function createServer(version = process.env.APP_VERSION ?? "dev") {
  const server = http.createServer((req, res) => {
    if (req.url === "/health") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", version }));
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`hello from web ${version}\n`);
  });
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1_000;
  return server;
}

/**
 * The root filesystem is read-only in the task; the temporary directory (/tmp, a task volume the
 * image declares) is the one writable place. Writing there at start makes a broken volume fail
 * the task at once, not at the first request that needs scratch space.
 */
function checkScratchSpace() {
  const file = path.join(os.tmpdir(), `.write-check-${process.pid}`);
  fs.writeFileSync(file, "ok");
  fs.rmSync(file);
  return os.tmpdir();
}

module.exports = { createServer, checkScratchSpace, KEEP_ALIVE_TIMEOUT_MS };

if (require.main === module) {
  const port = Number(process.env.PORT ?? 8080);
  const version = process.env.APP_VERSION ?? "dev";
  const scratch = checkScratchSpace();
  const server = createServer(version);
  server.listen(port, () => console.log(JSON.stringify({ msg: "listening", port: server.address().port, version, scratch })));
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}
