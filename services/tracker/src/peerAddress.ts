import { isIP } from "node:net";
import { joinHostPort } from "@distribustream/pdtp";

/**
 * The peer's IP address from grpc-js `call.getPeer()`, which gives
 * "1.2.3.4:5678", "::1:5678" (IPv6 without brackets), "[::1]:5678" or
 * "::ffff:1.2.3.4:5678" (an IPv4 client on a dual-stack socket, returned as
 * plain IPv4). "" when it cannot be parsed.
 */
export function hostFromPeer(peer: string): string {
  let host = peer.replace(/^ipv[46]:/, "");
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(host);
  if (bracketed) host = bracketed[1]!;
  else {
    // grpc-js appends ":port" whenever the socket has one
    const m = /^(.*):\d+$/.exec(host);
    if (m && isIP(m[1]!)) host = m[1]!;
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) host = mapped[1]!;
  return isIP(host) ? host : "";
}

/** "http://host:port" with an IPv6 literal in brackets. */
export function httpBase(host: string, port: number): string {
  return `http://${joinHostPort(host, port)}`;
}
