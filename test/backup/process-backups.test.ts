// The backup contract against the process driver: real PostgreSQL and
// PgBouncer child processes in a temp data dir.
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";
import { describeBackupContract } from "../support/backup-contract.js";
import { processTestBed, removeDataDir } from "../support/process-runtime-harness.js";

describeBackupContract("process", async () => {
  const bed = await processTestBed(7);
  const runtime = await bed.open();
  return {
    runtime,
    psqlCommand: (target, database) => [
      "psql",
      "-X",
      "-q",
      "-v",
      "ON_ERROR_STOP=1",
      "-h",
      instancePaths(bed.dataDir, target.slug).socketDir,
      "-U",
      "postgres",
      "-d",
      database,
    ],
    cleanup: async () => {
      await runtime.close();
      await removeDataDir(bed.dataDir);
    },
    logs: () => bed.logs.text(),
  };
});
