// Picks the state store: PostgreSQL when SOTA_STATE_URL names one (shared by
// services), else SQLite in the data dir (the embedded default). Both hold the
// pooler port registry too.
import { join } from "node:path";
import type { PortRegistry } from "./port-registry.js";
import type { Store } from "./store.js";

export type StateStore = Store & PortRegistry;

export interface StateStoreOptions {
  readonly dataDir: string;
  /** A postgres:// URL; a secret, never logged. */
  readonly stateUrl?: string;
}

/** The PostgreSQL driver is loaded only when chosen. */
export async function openStateStore(options: StateStoreOptions): Promise<StateStore> {
  if (options.stateUrl) {
    const { PostgresStore } = await import("./postgres-store.js");
    return PostgresStore.open(options.stateUrl);
  }
  const { SqliteStore } = await import("./sqlite-store.js");
  return new SqliteStore(join(options.dataDir, "state.db"));
}
