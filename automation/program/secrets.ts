/** Secret values as Pulumi's wire format carries them, and their masking. */
import { SECRET_MASK } from "../engine/port";

/** Pulumi's wire marker for a secret value (`specialSigKey` / `specialSecretSig` in the SDK's rpc.ts). */
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** Whether a value is a secret in Pulumi's wire form (`{<sig>: <secret sig>, value}`). */
export function isWireSecret(value: unknown): boolean {
  return value !== null && typeof value === "object" && (value as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/**
 * The mock monitor hands resources their inputs deserialized, which unwraps a secret at the top level
 * but leaves an object that contained one (Pulumi pushes secretness up to it) in the wire form. Such a
 * value is secret as a whole: replaced by the mask, at any depth.
 */
export function maskWireSecrets<T>(value: T): T {
  const walk = (v: unknown): unknown => {
    if (isWireSecret(v)) return SECRET_MASK;
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== "object") return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x);
    return out;
  };
  return walk(value) as T;
}
