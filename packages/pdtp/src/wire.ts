import type { ServiceDefinition } from "@grpc/grpc-js";

/**
 * A request that failed to decode. grpc-js answers a throwing deserializer
 * with INTERNAL; PDTP promises INVALID_ARGUMENT for bad input, so the server
 * side decodes through `tolerantService` and handlers reject these values.
 */
export class MalformedMessage {
  constructor(readonly reason: string) {}
}

/** Copy of a service definition whose request decoders never throw. */
export function tolerantService<T extends ServiceDefinition>(def: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(def)) {
    out[name] = {
      ...method,
      requestDeserialize: (buf: Buffer) => {
        try {
          return method.requestDeserialize(buf);
        } catch (err) {
          return new MalformedMessage((err as Error).message);
        }
      },
    };
  }
  return out as T;
}
