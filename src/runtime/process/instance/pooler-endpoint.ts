// Where apps reach a project's PgBouncer: a loopback port from SOTA_POOLER_PORTS,
// kept per project in the port registry so a database keeps its URL across restarts.
import type { PortRange, PortRegistry } from "../../port-registry.js";
import { RuntimeError, type Endpoint } from "../../runtime.js";
import { listeningPorts } from "../host/port-probe.js";

const LOOPBACK = "127.0.0.1";

export function endpointFor(port: number): Endpoint {
  return { host: LOOPBACK, port, loopback: { host: LOOPBACK, port } };
}

/**
 * The project's port, or a new one that nothing on the host listens on:
 * `preferred` (the port it had on the host it is recovered from) when free.
 */
export async function allocatePoolerPort(ports: PortRegistry, portRange: PortRange, projectId: string, preferred?: number): Promise<number> {
  const busy = listeningPorts();
  try {
    return await ports.allocate(projectId, portRange, (port) => !busy.has(port), preferred);
  } catch (error) {
    throw new RuntimeError(
      "unavailable",
      `no free pooler port left in ${portRange.min}-${portRange.max} on ${LOOPBACK} (SOTA_POOLER_PORTS)`,
      { cause: error },
    );
  }
}
