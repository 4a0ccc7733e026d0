// What the service asks the server about its WAL receiver, as the superuser
// over the private socket in the database "postgres": the receiver's slot, and
// how far the receiver has archived.
import type pg from "pg";
import { RuntimeError } from "../../runtime.js";
import { pollUntil } from "../../shared/settle.js";
import { POSTGRES_PORT, SUPERUSER, WAL_RECEIVER_NAME, WAL_SLOT } from "../children/postgres-settings.js";
import { queryRows, superuserClient } from "../sql/pg-clients.js";

const POLL_MS = 20;

/**
 * How pg_receivewal and pg_basebackup connect: over the instance's private
 * socket, as the superuser (replication connections are allowed to it only,
 * see renderHba), never prompting for a password (none is needed or given).
 */
export function replicationConnectionArgs(socketDir: string): string[] {
  return ["--host", socketDir, "--port", String(POSTGRES_PORT), "--username", SUPERUSER, "--no-password"];
}

export type SlotState = "missing" | "lost" | "kept";

/** The receiver's slot: missing, lost (max_slot_wal_keep_size passed, its WAL gone), or kept. */
export async function slotState(client: pg.Client): Promise<{ state: SlotState; activePid: number | undefined }> {
  const [row] = await queryRows(client, "SELECT wal_status, active_pid::text AS pid FROM pg_replication_slots WHERE slot_name = $1", [WAL_SLOT]);
  if (row === undefined) return { state: "missing", activePid: undefined };
  const pid = row["pid"] === null || row["pid"] === undefined ? undefined : Number(row["pid"]);
  return { state: row["wal_status"] === "lost" ? "lost" : "kept", activePid: pid };
}

/** Ends the session streaming from the slot (a receiver an earlier, killed run of the service left), waiting up to 5 s. */
export async function endSlotSession(client: pg.Client, pid: number): Promise<void> {
  await queryRows(client, "SELECT pg_terminate_backend($1, 5000)", [pid]);
}

export async function dropSlot(client: pg.Client): Promise<void> {
  await queryRows(client, "SELECT pg_drop_replication_slot($1)", [WAL_SLOT]);
}

/** A slot that keeps WAL from now on, whether or not a receiver streams yet. */
export async function createSlot(client: pg.Client): Promise<void> {
  await queryRows(client, "SELECT pg_create_physical_replication_slot($1, true)", [WAL_SLOT]);
}

/** Whether the receiver is connected and streaming. */
export async function receiverStreaming(client: pg.Client): Promise<boolean> {
  const rows = await queryRows(client, "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", [WAL_RECEIVER_NAME]);
  return rows.length > 0;
}

/**
 * Waits until the receiver reports WAL up to `lsn` flushed to the archive,
 * up to `timeoutMs` (RuntimeError "timeout", naming `what` and `slug`).
 */
export async function waitUntilArchived(socketDir: string, lsn: string, options: { timeoutMs: number; slug: string; what: string; signal?: AbortSignal }): Promise<void> {
  const client = superuserClient(socketDir, "postgres");
  await client.connect();
  try {
    await pollUntil({
      attempt: async () => {
        const rows = await queryRows(
          client,
          "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND flush_lsn >= $2::pg_lsn",
          [WAL_RECEIVER_NAME, lsn],
        );
        return rows.length > 0 ? true : undefined;
      },
      deadline: Date.now() + options.timeoutMs,
      signal: options.signal,
      intervalMs: () => POLL_MS,
      timedOut: () =>
        new RuntimeError("timeout", `the WAL receiver of ${options.slug} did not archive ${options.what} within ${options.timeoutMs / 1000} s; see its wal-receiver.log`),
    });
  } finally {
    await client.end().catch(() => undefined);
  }
}
