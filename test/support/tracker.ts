import { setTimeout as sleep } from "node:timers/promises";
import { credentials } from "@grpc/grpc-js";
import { TrackerClient, type StreamDescriptor } from "@distribustream/pdtp";

/** The stream as a tracker describes it to anyone (peers and seeders in its swarm). */
export function describeStream(target: string, name: string): Promise<StreamDescriptor> {
  const client = new TrackerClient(target, credentials.createInsecure());
  return new Promise<StreamDescriptor>((resolve, reject) =>
    client.describeStream({ name, streamId: "" }, (err, d) => (err ? reject(err) : resolve(d))),
  ).finally(() => client.close());
}

/** Waits until the tracker counts at least `peers` viewers in the stream's swarm. */
export async function untilPeers(target: string, name: string, peers: number, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const d = await describeStream(target, name).catch(() => undefined);
    if (d && d.peers >= peers) return;
    if (Date.now() > end)
      throw new Error(`${name} on ${target}: ${d?.peers ?? "no"} peers, not ${peers}, in ${timeoutMs} ms`);
    await sleep(50);
  }
}
