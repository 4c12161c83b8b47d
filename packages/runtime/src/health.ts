import { Client, type Server } from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import { channelCredentials, type ClientTls } from "./tls.js";

/**
 * gRPC health checking (grpc.health.v1). The overall status ("") and each
 * named service start NOT_SERVING; the service sets SERVING when ready and
 * NOT_SERVING while draining.
 */
export class Health {
  private readonly impl: HealthImplementation;
  private state: ServingStatus = "NOT_SERVING";

  constructor(private readonly services: readonly string[]) {
    const map: Record<string, ServingStatus> = { "": "NOT_SERVING" };
    for (const s of services) map[s] = "NOT_SERVING";
    this.impl = new HealthImplementation(map);
  }

  addTo(server: Server): void {
    this.impl.addToServer(server);
  }

  /** The overall status is SERVING (for HTTP /healthz beside gRPC health). */
  get serving(): boolean {
    return this.state === "SERVING";
  }

  set(state: ServingStatus): void {
    this.state = state;
    this.impl.setStatus("", state);
    for (const s of this.services) this.impl.setStatus(s, state);
  }
}

/**
 * Asks a gRPC server's health service about the whole server (service ""):
 * resolves "SERVING", "NOT_SERVING", another "status N", or the error's
 * message when it does not answer within `timeoutMs`. With `tls`, over TLS
 * (its CA, or the system's roots). For probes and tests.
 */
export async function checkHealth(target: string, timeoutMs = 2000, tls?: ClientTls): Promise<string> {
  const client = new Client(target, channelCredentials(tls));
  try {
    return await new Promise<string>((resolve) =>
      client.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        () => Buffer.alloc(0), // HealthCheckRequest{service: ""}
        (b: Buffer) => b,
        {},
        { deadline: Date.now() + timeoutMs },
        (err, res) => {
          if (err || !res) return resolve(err?.message ?? "no answer");
          // HealthCheckResponse{status}: field 1, varint
          const status = res.length >= 2 && res[0] === 0x08 ? res[1] : 0;
          resolve(status === 1 ? "SERVING" : status === 2 ? "NOT_SERVING" : `status ${status}`);
        },
      ),
    );
  } finally {
    client.close();
  }
}
