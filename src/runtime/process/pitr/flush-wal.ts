// flushWal: a commit of the service's own, waited for until the receiver has
// it on the archive's disk. Everything committed before the call is then
// archived too (WAL is streamed in order), and a recovery to any time up to
// the returned one finds a commit after its target, as PostgreSQL requires to
// reach it.
import { RuntimeError } from "../../runtime.js";
import type { Instance } from "../instance/project-instance.js";
import { queryRows, superuserClient } from "../sql/pg-clients.js";
import { waitUntilArchived } from "./replication-slot.js";

const ARCHIVE_TIMEOUT_MS = 10_000;

export async function flushWal(instance: Instance): Promise<Date> {
  const { slug } = instance;
  const client = superuserClient(instance.paths.socketDir, "postgres");
  let committedBefore: number;
  let lsn: string;
  await client.connect();
  try {
    // An xid makes the commit write a commit record (with its time), writing no row anywhere.
    await queryRows(client, "BEGIN");
    await queryRows(client, "SELECT pg_current_xact_id()");
    // Read before COMMIT, in milliseconds rounded down: never later than the commit record's own time.
    const [clock] = await queryRows(client, "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS ms");
    await queryRows(client, "COMMIT");
    const [position] = await queryRows(client, "SELECT pg_current_wal_lsn()::text AS lsn");
    committedBefore = Number(clock?.["ms"]);
    lsn = position?.["lsn"] ?? "";
  } finally {
    await client.end().catch(() => undefined);
  }
  if (!Number.isSafeInteger(committedBefore) || lsn === "") throw new RuntimeError("failed", `the server of ${slug} did not report its commit`);
  await waitUntilArchived(instance.paths.socketDir, lsn, { timeoutMs: ARCHIVE_TIMEOUT_MS, slug, what: "its latest commit" });
  return new Date(committedBefore);
}
