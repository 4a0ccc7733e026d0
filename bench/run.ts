// `npm run bench [-- --quick]`: sets up what each row needs, measures, and
// prints one markdown table. Benchmarks are not tests: a goal not met is
// reported, not failed on; the exit code is non-zero only when a measurement
// itself crashed. Progress goes to stderr, the table alone to stdout.
import { discoverBinaries } from "../src/runtime/process/index.js";
import { newDatabaseThroughApi } from "./api-calls.js";
import { describeMachine } from "./machine.js";
import { planFor } from "./plan.js";
import { backupRows } from "./rows/backups.js";
import { offsiteRows } from "./rows/offsite.js";
import { densityRows } from "./rows/density.js";
import { dockerEnsureRows } from "./rows/ensure-docker.js";
import { ensureExistingRows } from "./rows/ensure-existing.js";
import { ensureNewRows } from "./rows/ensure-new.js";
import { getConnectionRows } from "./rows/get-connection.js";
import { deleteRows, rotateRows } from "./rows/lifecycle.js";
import { poolingRows } from "./rows/pooling.js";
import { poolResetRows } from "./rows/pool-reset.js";
import { pitrRows } from "./rows/pitr.js";
import { startService } from "./service-process.js";
import { POSTGRES_STATE } from "./state-store.js";
import { startStatePostgres } from "../test/support/state-postgres.js";
import { errorRow, renderTable, type Row } from "./table.js";

const MAIN_SERVICE_PORTS = "31000-31099";
const POSTGRES_STATE_SERVICE_PORTS = "31900-31999";

const plan = planFor(process.argv.slice(2));
const started = Date.now();
const binaries = await discoverBinaries();
const rows: Row[] = [];
let crashed = false;

/** Runs one section; a crash becomes an error row instead of ending the run. */
async function section(id: string, name: string, measure: () => Promise<Row[]>): Promise<void> {
  const begun = Date.now();
  process.stderr.write(`bench: ${id} ${name}...\n`);
  try {
    rows.push(...(await measure()));
  } catch (error) {
    crashed = true;
    rows.push(errorRow(id, name, error));
  }
  process.stderr.write(`bench: ${id} took ${((Date.now() - begun) / 1000).toFixed(0)} s\n`);
}

// One service for the rows that share a running database; density and
// backups start their own, so that their many or large databases weigh on no other row.
let floorMedianMs = Number.NaN;
await section("1-5", "the main service", async () => {
  const service = await startService({ poolerPorts: MAIN_SERVICE_PORTS });
  try {
    await section("1", "Ensure new database, process driver", async () => {
      const result = await ensureNewRows(plan, service);
      floorMedianMs = result.floorMedianMs;
      return result.rows;
    });
    const projectId = await newDatabaseThroughApi(service);
    await section("2", "Ensure on an existing database", () => ensureExistingRows(plan, service, projectId));
    await section("3", "GetConnection throughput", () => getConnectionRows(plan, service, projectId));
    await section("5", "Pooling", () => poolingRows(plan, service, projectId));
    return [];
  } finally {
    await service.stop();
  }
});
// Rows 2 and 3 again on the PostgreSQL state store (SOTA_STATE_URL), a
// throwaway cluster on this machine: what a networked store adds per call.
await section("2p-3p", "the service on the PostgreSQL state store", async () => {
  const cluster = await startStatePostgres();
  try {
    const service = await startService({ poolerPorts: POSTGRES_STATE_SERVICE_PORTS, env: { SOTA_STATE_URL: await cluster.createDatabase() } });
    try {
      const projectId = await newDatabaseThroughApi(service);
      await section("2p", "Ensure on an existing database, PostgreSQL state store", () => ensureExistingRows(plan, service, projectId, POSTGRES_STATE));
      await section("3p", "GetConnection throughput, PostgreSQL state store", () => getConnectionRows(plan, service, projectId, POSTGRES_STATE));
      return [];
    } finally {
      await service.stop();
    }
  } finally {
    await cluster.stop();
  }
});
await section("5d-5e", "Pool reset cost", () => poolResetRows(plan));
await section("1g", "Ensure new database, Docker driver", () => dockerEnsureRows(plan, floorMedianMs));
await section("4", "Density", () => densityRows(plan));
await section("6", "Backups", () => backupRows(plan, binaries));
await section("6s-6t", "Off-host upload throughput", () => offsiteRows(plan));
await section("7", "Delete", () => deleteRows(plan));
await section("8", "Rotate", () => rotateRows(plan));
await section("9", "Point-in-time recovery", () => pitrRows(plan, binaries));

const byId = (a: Row, b: Row): number => a.id.localeCompare(b.id, "en", { numeric: true });
process.stdout.write(`${renderTable(rows.sort(byId), describeMachine(binaries), plan.mode)}\n`);
process.stderr.write(`bench: ${plan.mode} run took ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
process.exitCode = crashed ? 1 : 0;
