/** Hash routes (`#/stacks/local`): the server serves one page, and nothing secret is ever in the URL. */
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "stacks" }
  | { page: "stack"; name: string }
  | { page: "job"; id: string }
  | { page: "audit" }
  | { page: "unknown"; path: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "") || "/";
  let m: RegExpMatchArray | null;
  if (path === "/" || path === "/stacks") return { page: "stacks" };
  if ((m = path.match(/^\/stacks\/([a-z0-9-]{1,63})$/))) return { page: "stack", name: m[1] };
  if ((m = path.match(/^\/jobs\/(job_[0-9a-z]{26})$/))) return { page: "job", id: m[1] };
  if (path === "/audit") return { page: "audit" };
  return { page: "unknown", path };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function go(path: string): void {
  location.hash = path;
}
