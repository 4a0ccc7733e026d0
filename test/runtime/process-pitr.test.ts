// The process driver's point-in-time recovery against the host's real
// PostgreSQL, pg_receivewal, pg_basebackup and PgBouncer: the shared contract.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { processTestBed, removeDataDir } from "../support/process-runtime-harness.js";
import { describePitrContract } from "../support/pitr-contract.js";

describePitrContract("process", async () => {
  const bed = await processTestBed(52);
  const runtime = await bed.open();
  return {
    runtime,
    // As a lost disk would: the server is still running when its files go.
    destroyData: async (target) => {
      await rm(join(bed.dataDir, "instances", target.slug, "pgdata"), { recursive: true, force: true });
    },
    cleanup: async () => {
      await runtime.close();
      await removeDataDir(bed.dataDir);
    },
  };
});
