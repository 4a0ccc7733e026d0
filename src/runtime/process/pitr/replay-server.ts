// The server that replays a recovered data directory: a one-off PostgreSQL,
// unsupervised, listening only on a private socket directory of its own (no
// app reaches it through PgBouncer while it replays, nor writes to it before
// the archive's new generation exists), with the recovery settings on its
// command line, where they beat anything in the backup's postgresql.auto.conf.
// It replays up to the target (or to the end of the WAL it was given),
// promotes, gets its clone renames if any, and is shut down cleanly; the
// instance's own, supervised server then starts on the data directory as usual.
import { mkdtemp, open, rm } from "node:fs/promises";
import { constants } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../../../log.js";
import { RuntimeError } from "../../runtime.js";
import { appRoleName } from "../../shared/app-role.js";
import { pollUntil } from "../../shared/settle.js";
import { PostgresServer } from "../children/postgres-server.js";
import type { RunAs } from "../host/os-user.js";
import type { PostgresBinaries } from "../host/postgres-binaries.js";
import { quoteIdent } from "../instance/app-database.js";
import type { InstancePaths } from "../instance/instance-paths.js";
import { queryOnce, queryRows, superuserClient } from "../sql/pg-clients.js";

/** Bound on one replay: WAL of a busy day takes minutes; the caller's signal ends it sooner. */
const REPLAY_TIMEOUT_MS = 6 * 60 * 60 * 1000;
const POLL_MS = 100;
const CONNECT_MS = 2_000;
const LOG_TAIL_BYTES = 64 * 1024;

export interface ReplayOptions {
  readonly slug: string;
  readonly paths: InstancePaths;
  /** The data directory to replay: the instance's pgdata.recovering. */
  readonly pgdata: string;
  readonly runAs: RunAs;
  readonly binaries: PostgresBinaries;
  readonly logger: Logger;
  /** Replay up to this time; absent: all the WAL given. */
  readonly time?: Date | undefined;
  /** A clone's: the source's slug, whose role and database are renamed to `slug`'s once promoted. */
  readonly renameFrom?: string | undefined;
  readonly onSpawn?: (pid: number) => Promise<void>;
  readonly signal?: AbortSignal | undefined;
}

export async function replayAndPromote(options: ReplayOptions): Promise<void> {
  const { paths, slug } = options;
  const socketDir = await mkdtemp(join(tmpdir(), "sota-recovery-"));
  const server = new PostgresServer({
    name: `${slug} (recovery)`,
    binaries: options.binaries,
    runAs: options.runAs,
    pgdata: options.pgdata,
    configFile: paths.recoveryConf,
    hbaFile: paths.hbaConf,
    socketDir,
    socketDirShared: true,
    logFile: paths.postgresLog,
    logger: options.logger,
    ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
    commandLineSettings: recoverySettings(options.time),
  });
  const logStart = await logSize(paths.postgresLog);
  try {
    await server.start();
    await waitUntilPromoted(server, socketDir, options, logStart);
    if (options.renameFrom !== undefined && options.renameFrom !== slug) await renameApp(socketDir, options.renameFrom, slug);
    // A clean shutdown: the instance's own server starts without recovery.
    await server.stop();
  } finally {
    await server.stop();
    await rm(socketDir, { recursive: true, force: true });
    await rm(paths.recoveryConf, { force: true });
  }
}

/**
 * restore_command `false`: all the WAL is in pg_wal already, which PostgreSQL
 * reads once the command fails. The target's own timeline: a generation holds
 * one. Promote once the target is reached; with no target, once the WAL ends.
 */
function recoverySettings(time: Date | undefined): Record<string, string> {
  return {
    restore_command: "false",
    recovery_target_timeline: "current",
    recovery_target_action: "promote",
    // "2026-11-30 12:00:00.123+00": its checker takes no ISO "T...Z".
    ...(time ? { recovery_target_time: time.toISOString().replace("T", " ").replace("Z", "+00") } : {}),
    archive_mode: "off",
    hot_standby: "on",
  };
}

async function waitUntilPromoted(server: PostgresServer, socketDir: string, options: ReplayOptions, logStart: number): Promise<void> {
  const { slug, paths } = options;
  await pollUntil({
    attempt: async () => {
      if (!server.running) {
        const reason = await fatalLine(paths.postgresLog, logStart);
        throw new RuntimeError("failed", `PostgreSQL stopped while replaying the WAL of ${slug}${reason}; see ${paths.postgresLog}`);
      }
      const rows = await queryOnce(superuserClient(socketDir, "postgres", CONNECT_MS), "SELECT pg_is_in_recovery()::text AS recovering").catch(() => undefined);
      return rows?.[0]?.["recovering"] === "false" ? true : undefined;
    },
    deadline: Date.now() + REPLAY_TIMEOUT_MS,
    signal: options.signal,
    intervalMs: () => POLL_MS,
    timedOut: () => new RuntimeError("timeout", `replaying the WAL of ${slug} took longer than ${REPLAY_TIMEOUT_MS / 3_600_000} h; see ${paths.postgresLog}`),
  });
}

/**
 * A clone's server holds the source's role and database: both take the
 * clone's names, as the superuser in "postgres" (renames keep owners, grants
 * and SCRAM verifiers; ensure sets the clone's password next). A clone's
 * names already taken in the source's cluster are refused rather than merged.
 */
async function renameApp(socketDir: string, from: string, to: string): Promise<void> {
  const client = superuserClient(socketDir, "postgres");
  await client.connect();
  try {
    const taken = await queryRows(
      client,
      "SELECT datname AS name FROM pg_database WHERE datname = $1 UNION ALL SELECT rolname FROM pg_roles WHERE rolname = $2",
      [to, appRoleName(to)],
    );
    if (taken.length > 0) throw new RuntimeError("failed", `the source's server already holds a role or database named after the clone (${taken[0]!["name"]})`);
    const [database] = await queryRows(client, "SELECT 1 FROM pg_database WHERE datname = $1", [from]);
    if (database) await queryRows(client, `ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`);
    const [role] = await queryRows(client, "SELECT 1 FROM pg_roles WHERE rolname = $1", [appRoleName(from)]);
    if (role) await queryRows(client, `ALTER ROLE ${quoteIdent(appRoleName(from))} RENAME TO ${quoteIdent(appRoleName(to))}`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function logSize(logFile: string): Promise<number> {
  const handle = await open(logFile, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (handle === undefined) return 0;
  try {
    return (await handle.stat()).size;
  } finally {
    await handle.close();
  }
}

/**
 * PostgreSQL's first FATAL (or PANIC) line since `from` in its log (the
 * service's file; PostgreSQL logs no statement, so no secret): why the
 * replay stopped, e.g. "recovery ended before configured recovery target was reached".
 */
async function fatalLine(logFile: string, from: number): Promise<string> {
  const handle = await open(logFile, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (handle === undefined) return "";
  try {
    const size = (await handle.stat()).size;
    // Rotated since (see rotateLogIfLarge): all of the new file is this start's.
    const start = Math.max(from > size ? 0 : from, size - LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(Math.max(0, size - start));
    await handle.read(buffer, 0, buffer.length, start);
    const line = buffer
      .toString("utf8")
      .split("\n")
      .find((candidate) => /\b(FATAL|PANIC):/.test(candidate));
    const message = line?.replace(/^.*?\b(FATAL|PANIC):\s*/, "").trim();
    return message ? `: ${message.slice(0, 300)}` : "";
  } finally {
    await handle.close();
  }
}
