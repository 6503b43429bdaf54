/**
 * Address checks for the webhook allowlist, on ipaddr.js: IPv4, IPv6 and
 * IPv4-mapped IPv6 ("::ffff:52.89.214.238") all compare as the sender meant.
 */
import ipaddr from "ipaddr.js";

export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses IPs and CIDRs ("52.89.214.238", "10.0.0.0/8", "2001:db8::/32"); a bare IP is a /32 or /128. */
export function parseCidrs(entries: readonly string[]): Cidr[] | { invalid: string } {
  const out: Cidr[] = [];
  for (const entry of entries) {
    const [addressText, bitsText, ...rest] = entry.split("/");
    const address = parseAddress(addressText);
    if (address === null || rest.length > 0) return { invalid: entry };
    const max = address.kind() === "ipv4" ? 32 : 128;
    let bits: number;
    if (bitsText === undefined) {
      bits = max;
    } else if (/^\d{1,3}$/.test(bitsText) && Number(bitsText) <= max) {
      bits = Number(bitsText);
    } else {
      return { invalid: entry };
    }
    // Senders are compared as IPv4 however they are written (ipInCidrs), so an entry
    // written IPv4-mapped ("::ffff:52.89.214.238") is its IPv4 range: kept as IPv6 it
    // matched no sender at all.
    if (address.kind() === "ipv6" && bits >= 96 && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
      out.push([(address as ipaddr.IPv6).toIPv4Address(), bits - 96]);
    } else {
      out.push([address, bits]);
    }
  }
  return out;
}

/** Whether `ip` lies in any of `cidrs`; false for anything that is not an address. */
export function ipInCidrs(ip: string | null | undefined, cidrs: readonly Cidr[]): boolean {
  let address = ip ? parseAddress(ip) : null;
  if (address === null) return false;
  if (address.kind() === "ipv6" && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    address = (address as ipaddr.IPv6).toIPv4Address();
  }
  const a = address;
  return cidrs.some(([range, bits]) => range.kind() === a.kind() && a.match(range as never, bits));
}

/**
 * IPv6, or IPv4 in four-part decimal only. ipaddr.js alone also reads hex,
 * octal and single-number IPv4 ("0x34.…", "878302958"), so an allowlist entry
 * "010.0.0.0/8" would silently mean 8.0.0.0/8.
 */
function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text);
  return null;
}

/**
 * Whom the refusal limit counts `ip` against: an IPv4 address (also written
 * IPv4-mapped) as itself, an IPv6 one by its /64, the least a subscriber or
 * server gets (2^64 addresses, one per request, would never reach the limit),
 * and anything that is not an address as one shared sender.
 */
export function rateLimitKey(ip: string | null | undefined): string {
  const address = ip ? parseAddress(ip) : null;
  if (address === null) return "unknown";
  if (address.kind() === "ipv4") return address.toString();
  const v6 = address as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
  return `${v6.parts.slice(0, 4).map((p) => p.toString(16)).join(":")}::/64`;
}
