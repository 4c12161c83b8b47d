import type { Server } from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";

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
