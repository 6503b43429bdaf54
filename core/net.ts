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
    try {
      if (entry.includes("/")) {
        out.push(ipaddr.parseCIDR(entry) as Cidr);
      } else {
        const address = ipaddr.parse(entry);
        out.push([address, address.kind() === "ipv4" ? 32 : 128]);
      }
    } catch {
      return { invalid: entry };
    }
  }
  return out;
}

/** Whether `ip` lies in any of `cidrs`; false for anything that is not an address. */
export function ipInCidrs(ip: string | null | undefined, cidrs: readonly Cidr[]): boolean {
  if (!ip || !ipaddr.isValid(ip)) return false;
  let address = ipaddr.parse(ip);
  if (address.kind() === "ipv6" && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    address = (address as ipaddr.IPv6).toIPv4Address();
  }
  return cidrs.some(([range, bits]) =>
    range.kind() === address.kind() && address.match(range as never, bits)
  );
}
