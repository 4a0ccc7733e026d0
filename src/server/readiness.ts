// Readiness: the store answers and the runtime can work (binaries present,
// Docker engine reachable). A database whose pooler port another process holds
// is named here too, without making the whole service unready: any local user
// can squat one port while the service is down, and that must not take the API
// away from every other tenant. The metric sota_pooler_port_lost and an
// error-level log line are what alert. Shared by GET /readyz and grpc.health.v1.
import type { LostPoolerPort, Runtime } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: Record<string, { ok: boolean; error?: string }>;
}

export type Readiness = () => Promise<ReadinessReport>;

export function readiness(store: Store, runtime: Runtime): Readiness {
  return async () => {
    const checks: ReadinessReport["checks"] = {};
    try {
      await store.ping();
      checks.store = { ok: true };
    } catch (error) {
      checks.store = { ok: false, error: (error as Error).message };
    }
    try {
      await runtime.ping();
      checks.runtime = { ok: true };
    } catch (error) {
      checks.runtime = { ok: false, error: (error as Error).message };
    }
    const ready = Object.values(checks).every((check) => check.ok);
    const lost = runtime.lostPoolerPorts?.();
    if (lost) checks.pooler_ports = lostPortsCheck(lost);
    return { ready, checks };
  };
}

/** Apps of such a database may be sending their passwords to whoever holds the port. */
function lostPortsCheck(lost: readonly LostPoolerPort[]): { ok: boolean; error?: string } {
  if (lost.length === 0) return { ok: true };
  const which = lost.map(({ slug, port }) => `${slug} (port ${port})`).join(", ");
  return { ok: false, error: `pooler port held by another process on 127.0.0.1, databases not ready: ${which}` };
}
