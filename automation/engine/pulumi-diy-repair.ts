/**
 * What a pulumi CLI killed mid-write leaves in a file:// backend, and its repair.
 *
 * The CLI writes the backend through gocloud's fileblob: each object to a temporary file next to it,
 * renamed into place, so a checkpoint is never cut short. But beside each object fileblob keeps a
 * metadata sidecar, `<object>.attrs` (content type and MD5), which it writes in place *before* the
 * rename: `os.Create` (truncating), then the JSON. A kill between the two leaves an empty sidecar
 * beside a whole checkpoint, and from then on every read of the object fails: the CLI says
 * `failed to load checkpoint: EOF` for the stack, and nothing but removing the sidecar mends it.
 * A missing sidecar is what fileblob expects of a file written by something else (it then assumes
 * `application/octet-stream`, and the CLI finds the format from the bytes), so removing one that does
 * not parse loses nothing.
 */
import { promises as fsp } from "fs";
import * as path from "path";

/** The directories of a file:// backend that hold the stack's objects (project layout and legacy). */
function stackDirs(root: string, project: string, stack: string): { dir: string; only?: (name: string) => boolean }[] {
  const p = path.join(root, ".pulumi");
  // The checkpoint (`<stack>.json`, maybe compressed) and its backup (`.bak`), not another stack's.
  const checkpoint = (name: string) => name.startsWith(`${stack}.json`) && /^\.json(\.gz|\.zst)?(\.bak)?\.attrs$/.test(name.slice(stack.length));
  return [
    // The backend's own metadata, written when a CLI first uses it.
    { dir: p, only: (name) => name === "meta.yaml.attrs" },
    { dir: path.join(p, "stacks", project), only: checkpoint },
    { dir: path.join(p, "stacks"), only: checkpoint },
    { dir: path.join(p, "history", project, stack) },
    { dir: path.join(p, "history", stack) },
    { dir: path.join(p, "backups", project, stack) },
    { dir: path.join(p, "backups", stack) },
    { dir: path.join(p, "locks", "organization", project, stack) },
    { dir: path.join(p, "locks", stack) },
  ];
}

/**
 * Removes the stack's metadata sidecars that do not parse (see above) from the file:// backend at
 * `root`. Returns the paths removed; none when every sidecar is whole.
 */
export async function removeBrokenSidecars(root: string, project: string, stack: string): Promise<string[]> {
  const removed: string[] = [];
  for (const { dir, only } of stackDirs(root, project, stack)) {
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") continue;
      throw err;
    }
    for (const name of names) {
      if (!name.endsWith(".attrs") || (only !== undefined && !only(name))) continue;
      const file = path.join(dir, name);
      if (await parses(file)) continue;
      await fsp.rm(file, { force: true });
      removed.push(file);
    }
  }
  return removed;
}

async function parses(file: string): Promise<boolean> {
  try {
    JSON.parse(await fsp.readFile(file, "utf8"));
    return true;
  } catch {
    return false;
  }
}
