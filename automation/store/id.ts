/**
 * Time-ordered ids (ULID layout, lower-case Crockford base32): 10 characters of milliseconds, then
 * 16 of randomness. Ids made in one process strictly increase, even within one millisecond or when
 * the clock steps back (the random part is incremented instead), so "newest first" is "largest id
 * first" and an id works as a pagination cursor.
 */
import { randomBytes } from "crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const TIME_CHARS = 10;
const RANDOM_BYTES = 10; // 80 bits = 16 characters

let lastTime = -1;
let lastRandom = Buffer.alloc(RANDOM_BYTES);

function encodeTime(ms: number): string {
  let out = "";
  let t = ms;
  for (let i = 0; i < TIME_CHARS; i++) {
    out = ALPHABET[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return out;
}

function encodeRandom(bytes: Buffer): string {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const byte of bytes) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return out;
}

/** Adds one to a big-endian number in place; false when it overflowed. */
function increment(bytes: Buffer): boolean {
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] < 255) {
      bytes[i]++;
      return true;
    }
    bytes[i] = 0;
  }
  return false;
}

/** A new id `<prefix><26 characters>` for time `nowMs`. */
export function newId(prefix: string, nowMs: number = Date.now()): string {
  let time = Math.max(0, Math.floor(nowMs));
  if (time > lastTime) {
    lastTime = time;
    lastRandom = randomBytes(RANDOM_BYTES);
  } else {
    time = lastTime;
    if (!increment(lastRandom)) {
      lastTime = time = time + 1;
      lastRandom = randomBytes(RANDOM_BYTES);
    }
  }
  return prefix + encodeTime(time) + encodeRandom(lastRandom);
}

export function newJobId(nowMs?: number): string {
  return newId("job_", nowMs);
}
