/** A real HTTP server on 127.0.0.1:0 for smoke tests: answers `status` on every path, counts requests. */
import { createServer } from "http";
import type { AddressInfo } from "net";

export interface SmokeServer {
  readonly url: string;
  /** What the next requests get. */
  status: number;
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startSmokeServer(status = 200): Promise<SmokeServer> {
  const requests: string[] = [];
  const state = { status };
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(state.status, { "content-type": "text/plain" });
    res.end(state.status < 400 ? "ok" : "broken");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get status() {
      return state.status;
    },
    set status(value: number) {
      state.status = value;
    },
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
