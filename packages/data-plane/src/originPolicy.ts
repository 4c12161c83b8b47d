import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import { BlockList, isIP } from "node:net";

/**
 * Which addresses an HTTP origin may be fetched from. Origins are named by
 * seeders, and the checksum service fetches them too, so without a policy an
 * authenticated seeder could make a service inside the cluster read from
 * anything it can reach (its own metrics, the cloud's metadata address, a
 * Redis). By default every address in a loopback, private, link-local,
 * shared (carrier-grade NAT, often a cluster's pods), multicast or otherwise
 * reserved range is denied; the operator allows ranges explicitly. The
 * check is made on the address a connection goes to, after the name is
 * resolved, so a name that resolves to a denied address (DNS rebinding) is
 * refused as well as a literal one.
 */
export interface OriginPolicy {
  /** Why `ip` may not be fetched from ("loopback", "private", ...), or undefined when it may. */
  denies(ip: string): string | undefined;
  /** The Node `lookup` for agents: resolves a name to its allowed addresses only, and fails naming the denied ones. */
  readonly lookup: typeof dnsLookup;
}

/** Denied unless allowed, by the name an error gives. */
const DENIED: readonly (readonly [string, readonly string[]])[] = [
  ["loopback", ["127.0.0.0/8", "::1/128"]],
  ["unspecified or IPv4-compatible", ["0.0.0.0/8", "::/96"]],
  ["private", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]],
  ["link-local", ["169.254.0.0/16", "fe80::/10"]],
  ["shared (carrier-grade NAT, cluster)", ["100.64.0.0/10"]],
  ["multicast", ["224.0.0.0/4", "ff00::/8"]],
  [
    "reserved",
    [
      "192.0.0.0/24",
      "192.0.2.0/24",
      "198.18.0.0/15",
      "198.51.100.0/24",
      "203.0.113.0/24",
      "240.0.0.0/4",
      "64:ff9b:1::/48",
      "2001:db8::/32",
    ],
  ],
];

let deniedLists: (readonly [string, BlockList])[] | undefined;

/** The denied ranges as lists, made on first use (15 ms that a process fetching no origin need not spend at start). */
function denied(): readonly (readonly [string, BlockList])[] {
  return (deniedLists ??= DENIED.map(([name, cidrs]) => {
    const list = new BlockList();
    for (const c of cidrs) addCidr(list, c);
    return [name, list] as const;
  }));
}

/** The policy that denies the default ranges except those in `allow` (CIDRs or single addresses). Throws on a bad entry. */
export function originPolicy(allow: readonly string[] = []): OriginPolicy {
  const allowed = new BlockList();
  for (const entry of allow) {
    try {
      addCidr(allowed, entry.trim());
    } catch {
      throw new Error(
        `origin allow entry "${entry.slice(0, 100)}" is not an address or CIDR range (e.g. 10.0.0.0/8, 127.0.0.1, fd00::/8)`,
      );
    }
  }
  const denies = (raw: string): string | undefined => {
    const ip = unmapped(raw);
    const type = isIP(ip) === 6 ? "ipv6" : "ipv4";
    if (allow.length > 0 && allowed.check(ip, type)) return undefined;
    for (const [name, list] of denied()) if (list.check(ip, type)) return name;
    return undefined;
  };
  const lookup = ((hostname: string, options: LookupOptions, callback: LookupCallback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, "", 0);
      const ok = addresses.filter((a) => denies(a.address) === undefined);
      if (ok.length === 0) {
        const why = addresses.map((a) => `${a.address} (${denies(a.address)})`).join(", ");
        return callback(originDenied(`${hostname} resolves only to addresses the origin policy denies: ${why}`), "", 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, ok);
      callback(null, ok[0]!.address, ok[0]!.family);
    });
  }) as typeof dnsLookup;
  return { denies, lookup };
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/** The refusal of a denied address: its message names the setting that allows it. */
export function originDenied(what: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${what}; allow its range with --origin-allow CIDR`);
  err.code = "EORIGINDENIED";
  return err;
}

function addCidr(list: BlockList, entry: string): void {
  const [addr = "", bits] = entry.split("/");
  const ip = unmapped(addr);
  const version = isIP(ip);
  if (version === 0) throw new Error("not an address");
  const type = version === 6 ? "ipv6" : "ipv4";
  if (bits === undefined) return list.addAddress(ip, type);
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > (version === 6 ? 128 : 32)) throw new Error("bad prefix");
  list.addSubnet(ip, Number(bits), type);
}

/** An IPv4-mapped IPv6 address (::ffff:10.0.0.1, or ::ffff:a00:1 as a URL writes it) as the IPv4 address it is. */
function unmapped(ip: string): string {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (dotted) return dotted[1]!;
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(ip);
  if (!hex) return ip;
  const hi = parseInt(hex[1]!, 16);
  const lo = parseInt(hex[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}
