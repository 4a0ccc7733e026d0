// Base backups: pg_basebackup run by `docker exec` in the PostgreSQL
// container, as the postgres OS user over the unix socket (the image's
// `local replication all trust`) and the cluster's superuser, which no tenant
// can log in as. Tar format on stdout, WAL fetched into it (-X fetch) so the
// backup is consistent on its own, checkpoint fast. The stream carries only
// stdout; stderr says (-v) where the backup's WAL starts, which names its
// first segment once the command has ended.
import type { Readable } from "node:stream";
import { RuntimeError, type BaseBackupInfo, type RuntimeTarget } from "../runtime.js";
import { failedStream } from "../shared/failed-stream.js";
import { socketConninfo } from "../shared/socket-sessions.js";
import { POSTGRES_SOCKET_DIR, SUPERUSER } from "./app-role-sql.js";
import type { DockerEngine } from "./docker-engine.js";
import { toRuntimeError } from "./docker-errors.js";
import { execReadable } from "./docker-exec.js";
import { CONTAINER_PORT, projectNames } from "./docker-names.js";
import { CONNECT_TIMEOUT_ENV, PG_OS_USER, superuserQuery } from "./postgres-container.js";
import { firstError } from "./psql-messages.js";
import { segmentOf, WAL_SLOT } from "./wal-names.js";
import { inspectReceiver, receiverGeneration } from "./wal-receiver.js";

const START_POINT = /write-ahead log start point: ([0-9A-F]+\/[0-9A-F]+) on timeline (\d+)/;

export interface BaseBackup {
  readonly stream: Readable;
  readonly info: Promise<BaseBackupInfo>;
}

/** `ready`: the project's WAL set-up has ended, so the receiver ensure made is there to be found. */
export function takeBaseBackup(engine: DockerEngine, target: RuntimeTarget, ready: Promise<void>): BaseBackup {
  let resolveInfo: (info: BaseBackupInfo) => void = () => undefined;
  let rejectInfo: (error: Error) => void = () => undefined;
  const info = new Promise<BaseBackupInfo>((resolve, reject) => {
    resolveInfo = resolve;
    rejectInfo = reject;
  });
  // A caller that only reads the stream hears of a failure there.
  info.catch(() => undefined);
  let names: ReturnType<typeof projectNames>;
  try {
    names = projectNames(target);
  } catch (error) {
    rejectInfo(error as Error);
    return { stream: failedStream(error), info };
  }
  const facts = (async () => {
    await ready;
    const container = await engine.runningContainer(target, names.postgres, "postgres");
    const generation = receiverGeneration(await inspectReceiver(engine, target, names));
    const [row] = await superuserQuery(
      engine,
      container,
      `SELECT (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS segment_bytes,
  (SELECT wal_status FROM pg_replication_slots WHERE slot_name = '${WAL_SLOT}') AS slot`,
      "postgres",
    );
    // A backup whose WAL is not being archived could not be replayed past its end.
    if (!generation || !row?.["slot"] || row["slot"] === "lost") {
      throw new RuntimeError("unavailable", `the WAL of ${target.slug} is not being archived; ensure the database first`);
    }
    return { container, generation, segmentBytes: Number(row["segment_bytes"]) };
  })();
  let startPoint: { lsn: string; timeline: number } | undefined;
  const stream = execReadable(
    engine.docker,
    facts.then((found) => found.container),
    {
      cmd: [
        ...["pg_basebackup", "--pgdata=-", "--format=tar", "--wal-method=fetch", "--checkpoint=fast", "--verbose", "--no-password"],
        `--dbname=${socketConninfo(POSTGRES_SOCKET_DIR, CONTAINER_PORT, SUPERUSER, "postgres")}`,
      ],
      user: PG_OS_USER,
      env: [CONNECT_TIMEOUT_ENV],
    },
    (outcome) => {
      if (outcome.exitCode !== 0) {
        return new RuntimeError("failed", `pg_basebackup of ${target.slug} failed (exit code ${outcome.exitCode})${firstError(outcome.stderr)}`);
      }
      const start = START_POINT.exec(outcome.stderr);
      if (!start?.[1]) return new RuntimeError("failed", `pg_basebackup of ${target.slug} did not say where its WAL starts`);
      startPoint = { lsn: start[1], timeline: Number(start[2]) };
      return undefined;
    },
    (error) => toRuntimeError(error, `taking a base backup of ${target.slug}`, engine.endpoint),
  );
  // The outcome is known once the stream has ended; `info` follows it.
  stream.once("end", () => {
    void facts.then(({ generation, segmentBytes }) => {
      if (!startPoint) return rejectInfo(new RuntimeError("failed", `pg_basebackup of ${target.slug} did not say where its WAL starts`));
      try {
        resolveInfo({ generation, startSegment: segmentOf(startPoint.lsn, startPoint.timeline, segmentBytes) });
      } catch (error) {
        rejectInfo(error as Error);
      }
    }, rejectInfo);
  });
  stream.once("error", (error) => rejectInfo(error));
  stream.once("close", () => {
    if (!stream.readableEnded) rejectInfo(new RuntimeError("failed", `the base backup of ${target.slug} was abandoned before it ended`));
  });
  return { stream, info };
}
