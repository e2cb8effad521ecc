/** The child side of `IpcChild`: answers `{id, cmd, args}` requests with the named handler's result. */

export type Handlers = Record<string, (args: any) => unknown>;

export function serve(handlers: Handlers): void {
  if (!process.send) throw new Error("this module runs as a bench child (forked with an IPC channel)");
  const send = (msg: unknown) => {
    try {
      process.send!(msg);
    } catch {
      // the parent is gone; disconnect below ends us
    }
  };
  const answer = async (raw: unknown) => {
    const { id, cmd, args } = raw as { id: number; cmd: string; args: unknown };
    const handler = handlers[cmd];
    try {
      if (!handler) throw new Error(`unknown command ${cmd}`);
      send({ id, ok: true, result: await handler(args) });
    } catch (err) {
      send({ id, ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  };
  // A handler's failure is sent to the parent (and `send` swallows its own), never left unhandled.
  process.on("message", (raw: unknown) => void answer(raw));
  // Never outlive the bench.
  process.on("disconnect", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
  send({ ready: true });
}
