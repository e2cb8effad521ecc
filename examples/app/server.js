// The sample application the default environments deploy: answers /health and echoes its version.
const http = require("http");

const port = Number(process.env.PORT ?? 8080);
const version = process.env.APP_VERSION ?? "dev";

const server = http.createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: "ok", version }));
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(`hello from web ${version}\n`);
});

server.listen(port, () => console.log(JSON.stringify({ msg: "listening", port, version })));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
