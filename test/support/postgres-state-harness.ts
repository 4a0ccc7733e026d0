// The whole service in-process (app-harness.ts) on a PostgreSQL state store of
// its own (state-postgres.ts), with the process runtime on the file's pooler ports.
import { startHarness, type Harness } from "./app-harness.js";
import { poolerPortsSetting } from "./process-runtime-harness.js";
import { startStatePostgres, type StatePostgres } from "./state-postgres.js";

export interface PostgresStateHarness {
  readonly cluster: StatePostgres;
  /** SOTA_STATE_URL: a secret, with the password in it. */
  readonly stateUrl: string;
  readonly h: Harness;
  stop(): Promise<void>;
}

export async function startPostgresStateHarness(portOffset: number): Promise<PostgresStateHarness> {
  const cluster = await startStatePostgres();
  try {
    const stateUrl = await cluster.createDatabase();
    const h = await startHarness({ SOTA_STATE_URL: stateUrl, SOTA_POOLER_PORTS: poolerPortsSetting(portOffset), SOTA_SPARE_COPIES: "0" });
    return {
      cluster,
      stateUrl,
      h,
      async stop() {
        await h.stop();
        await cluster.stop();
      },
    };
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}
