// Readiness: the store answers and the runtime can work (binaries present,
// Docker engine reachable). Shared by GET /readyz and grpc.health.v1.
import type { Runtime } from "../runtime/runtime.js";
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
      store.ping();
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
    return { ready: Object.values(checks).every((check) => check.ok), checks };
  };
}
