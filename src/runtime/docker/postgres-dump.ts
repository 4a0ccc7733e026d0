// Dumps and restores through `docker exec` in the PostgreSQL container: pg_dump
// streamed out with backpressure, psql fed the SQL on stdin in one
// transaction, so a restore either applies whole or not at all. Neither
// connects as the superuser: what they read and replay is the tenant's SQL
// (see socket-sessions.ts). psql loads as the app role, pg_dump reads as the
// dump role (see dump-role.ts).
import { randomBytes } from "node:crypto";
import { PassThrough, type Readable } from "node:stream";
import type Docker from "dockerode";
import { loggableError } from "../../log.js";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import { DUMP_ROLE, dumpRoleSql } from "../shared/dump-role.js";
import { failedStream } from "../shared/failed-stream.js";
import { roleConninfo } from "./app-role-sql.js";
import type { DockerEngine } from "./docker-engine.js";
import { toRuntimeError } from "./docker-errors.js";
import { execReadable } from "./docker-exec.js";
import { projectNames, type ProjectNames } from "./docker-names.js";
import { CONNECT_TIMEOUT_ENV, PG_OS_USER, superuserQuery } from "./postgres-container.js";
import { firstError } from "./psql-messages.js";

export function dumpDatabase(engine: DockerEngine, target: RuntimeTarget): Readable {
  let names: ProjectNames;
  try {
    names = projectNames(target);
  } catch (error) {
    return failedStream(error);
  }
  const ready = (async () => {
    const container = await engine.runningContainer(target, names.postgres, "postgres");
    await superuserQuery(engine, container, dumpRoleSql(names.role), "postgres");
    return container;
  })();
  return execReadable(
    engine.docker,
    ready,
    {
      cmd: ["pg_dump", "--no-password", "--dbname", roleConninfo(DUMP_ROLE, names.database)],
      user: PG_OS_USER,
      env: [CONNECT_TIMEOUT_ENV],
    },
    (outcome) =>
      outcome.exitCode === 0
        ? undefined
        : new RuntimeError(
            "failed",
            `pg_dump of ${names.database} in ${names.postgres} failed (exit code ${outcome.exitCode})${firstError(outcome.stderr)}`,
          ),
    (error) => toRuntimeError(error, `dumping ${names.database} from ${names.postgres}`, engine.endpoint),
  );
}

export async function restoreDatabase(
  engine: DockerEngine,
  target: RuntimeTarget,
  sql: Readable,
  database: string | undefined,
): Promise<void> {
  const names = projectNames(target);
  const dbName = database ?? names.database;
  const container = await engine.runningContainer(target, names.postgres, "postgres");
  // The session is found by this name if the input breaks: it is ended on the
  // server before stdin closes, so psql can never COMMIT a partial restore.
  const session = `sota-restore-${randomBytes(8).toString("hex")}`;
  const input = new PassThrough();
  let inputError: unknown;
  sql.on("error", (error) => {
    inputError = error;
    sql.unpipe(input);
    void terminateSession(engine, container, session).finally(() => input.destroy(error));
  });
  sql.pipe(input);
  // `-f -` reads stdin as a script, so --single-transaction wraps all of it.
  const psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password", "-f", "-"];
  const outcome = await engine.exec(
    container,
    `restoring into ${dbName}`,
    {
      cmd: [...psql, "--dbname", roleConninfo(names.role, dbName)],
      user: PG_OS_USER,
      env: [CONNECT_TIMEOUT_ENV, `PGAPPNAME=${session}`],
      stdin: input,
    },
    { discardStdout: true },
  );
  if (inputError !== undefined) {
    throw new RuntimeError("failed", `restore into ${dbName} failed: the SQL stream broke off; nothing was applied`, {
      cause: inputError,
    });
  }
  if (outcome.exitCode !== 0) {
    throw new RuntimeError(
      "failed",
      `restore into ${dbName} failed (psql exit code ${outcome.exitCode})${firstError(outcome.stderr)}`,
    );
  }
}

async function terminateSession(engine: DockerEngine, container: Docker.Container, applicationName: string): Promise<void> {
  await superuserQuery(
    engine,
    container,
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '${applicationName}'`,
    "postgres",
  ).catch((error: unknown) => {
    engine.logger.warn({ err: loggableError(error) }, "could not end a broken-off restore session");
  });
}
