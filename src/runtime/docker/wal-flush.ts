// flushWal: a commit of the service's own, then a wait until the receiver has
// flushed the WAL past it. The receiver (--synchronous) reports each flush at
// once, and a physical slot's restart_lsn is exactly the position it last
// reported flushed: once that passes the commit, everything committed before
// it is in the archive. One psql session does all of it as the superuser.
import pg from "pg";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import type { DockerEngine } from "./docker-engine.js";
import { projectNames } from "./docker-names.js";
import { superuserQuery } from "./postgres-container.js";
import { WAL_SLOT } from "./wal-names.js";

const POLL_SECONDS = 0.02;
export const FLUSH_TIMEOUT_MS = 15_000;
const NO_SLOT = "sota: no WAL receiver slot";
const TIMED_OUT = "sota: WAL not archived in time";

/**
 * The time is read inside the commit's own statement, so it falls before the
 * commit record's timestamp: a recovery to it replays everything committed
 * before the call, and stops at this commit, which is after it.
 */
function flushScript(timeoutMs: number): string {
  const slot = pg.escapeLiteral(WAL_SLOT);
  const rounds = Math.max(1, Math.ceil(timeoutMs / 1000 / POLL_SECONDS));
  return `SELECT extract(epoch FROM clock_timestamp())::text AS at, pg_current_xact_id()::text AS xid \\gset
SELECT set_config('sota.flush_lsn', pg_current_wal_insert_lsn()::text, false) AS lsn \\gset
DO $sota$
DECLARE
  wanted pg_lsn := current_setting('sota.flush_lsn')::pg_lsn;
  flushed pg_lsn;
BEGIN
  FOR round IN 1..${rounds} LOOP
    SELECT restart_lsn INTO flushed FROM pg_replication_slots WHERE slot_name = ${slot};
    IF NOT FOUND THEN RAISE EXCEPTION '${NO_SLOT}'; END IF;
    IF flushed >= wanted THEN RETURN; END IF;
    PERFORM pg_sleep(${POLL_SECONDS});
  END LOOP;
  RAISE EXCEPTION '${TIMED_OUT}';
END
$sota$;
SELECT :'at' AS at;`;
}

export async function flushWal(engine: DockerEngine, target: RuntimeTarget, timeoutMs = FLUSH_TIMEOUT_MS): Promise<Date> {
  const names = projectNames(target);
  const container = await engine.runningContainer(target, names.postgres, "postgres");
  let rows;
  try {
    rows = await superuserQuery(engine, container, flushScript(timeoutMs), "postgres");
  } catch (error) {
    const message = error instanceof Error ? error.message : "";
    if (message.includes(NO_SLOT)) {
      throw new RuntimeError("unavailable", `the WAL of ${target.slug} is not being archived; ensure the database first`, { cause: error });
    }
    if (message.includes(TIMED_OUT)) {
      throw new RuntimeError("timeout", `the WAL receiver of ${target.slug} did not archive a commit within ${timeoutMs / 1000}s`, { cause: error });
    }
    throw error;
  }
  const seconds = Number(rows.at(-1)?.["at"]);
  if (!Number.isFinite(seconds)) throw new RuntimeError("failed", `flushing the WAL of ${target.slug} returned no time`);
  return new Date(Math.floor(seconds * 1000));
}
