/**
 * moto in the tests (tools/moto-server.ts starts it):
 *
 *   before(async function () {
 *     requireMotoOrSkip(this);        // skips locally when moto is not installed, fails in CI
 *     moto = await startMoto();
 *   });
 *   after(() => moto?.stop());
 */
import * as path from "path";
import { motoDir } from "../../automation/tools";
import { motoServerPath } from "../../tools/moto-server";

export { MOTO_ACCOUNT_ID, MOTO_REGION, motoServerPath, startMoto, type Moto, type StartMotoOptions } from "../../tools/moto-server";

/**
 * Call first in a suite's `before` (with `this`). Without moto: locally the suite is skipped with one
 * line saying how to install it; in CI (`CI=true`) the hook throws, so a missing install fails the run
 * instead of passing it silently.
 */
export function requireMotoOrSkip(ctx: Mocha.Context): void {
  if (motoServerPath() !== undefined) return;
  const message = `moto is not installed at ${path.join(motoDir(), "bin", "moto_server")}: run \`npm run moto:install\``;
  if (process.env.CI === "true") throw new Error(`${message} (CI runs every moto suite)`);
  console.log(`      skipped: ${message}`);
  ctx.skip();
}


/** An image manifest as `docker push` sends it (for moto's PutImage); its config digest makes each image distinct. */
export function imageManifest(seed: string): string {
  const hex = (seed.repeat(64).replace(/[^a-f0-9]/g, "a") + "0".repeat(64)).slice(0, 64);
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.docker.distribution.manifest.v2+json",
    config: { mediaType: "application/vnd.docker.container.image.v1+json", size: 1469, digest: `sha256:${hex}` },
    layers: [{ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", size: 3623807, digest: `sha256:${hex.split("").reverse().join("")}` }],
  });
}
