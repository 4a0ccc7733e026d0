// Picks the coordination that matches the state store: advisory locks in the
// PostgreSQL state replicas share, in-process locks for the embedded SQLite.
import { hostname } from "node:os";
import type { Logger } from "../log.js";
import { LocalCoordination, type Coordination } from "./coordination.js";

export interface CoordinationOptions {
  /** SOTA_STATE_URL, when the state is PostgreSQL; a secret, never logged. */
  readonly stateUrl?: string;
  readonly logger: Logger;
}

/** The PostgreSQL driver is loaded only when chosen. */
export async function openCoordination(options: CoordinationOptions): Promise<Coordination> {
  // Names the replica in the schedule's record of slots: which host and process ran one.
  const replica = `${hostname()}:${process.pid}`;
  if (!options.stateUrl) return new LocalCoordination(replica);
  const { PostgresCoordination } = await import("./postgres-coordination.js");
  return new PostgresCoordination({ url: options.stateUrl, replica, logger: options.logger.child({ component: "coordination" }) });
}
