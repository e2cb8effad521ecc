/** IPv4 CIDR arithmetic for the network component and the environment loader. Pure functions. */

export interface Cidr {
  readonly base: number; // network address as an unsigned 32-bit integer
  readonly prefix: number;
}

const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** Parses `a.b.c.d/n`; returns a reason string when it is not a valid network CIDR. */
export function parseCidr(text: string): Cidr | string {
  const m = CIDR_RE.exec(text);
  if (!m) return `"${text}" is not an IPv4 CIDR like 10.0.0.0/16`;
  const octets = m.slice(1, 5).map(Number);
  if (octets.some((o) => o > 255)) return `"${text}" has an octet above 255`;
  const prefix = Number(m[5]);
  if (prefix > 32) return `"${text}" has a prefix above /32`;
  const base = ((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]) >>> 0;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((base & mask) >>> 0 !== base) return `"${text}" has host bits set; the network address is ${formatCidr({ base: (base & mask) >>> 0, prefix })}`;
  return { base, prefix };
}

export function formatCidr(c: Cidr): string {
  const b = c.base;
  return `${b >>> 24}.${(b >>> 16) & 255}.${(b >>> 8) & 255}.${b & 255}/${c.prefix}`;
}

/** True when the two blocks share any address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const size = (c: Cidr) => 2 ** (32 - c.prefix);
  return a.base < b.base + size(b) && b.base < a.base + size(a);
}

/** The `index`-th block of prefix `prefix` inside `parent`. */
export function subnetCidr(parent: string, prefix: number, index: number): string {
  const p = parseCidr(parent);
  if (typeof p === "string") throw new Error(p);
  if (prefix < p.prefix) throw new Error(`/${prefix} does not fit inside ${parent}`);
  const count = 2 ** (prefix - p.prefix);
  if (index < 0 || index >= count) throw new Error(`${parent} holds ${count} /${prefix} blocks, index ${index} asked`);
  return formatCidr({ base: (p.base + index * 2 ** (32 - prefix)) >>> 0, prefix });
}
