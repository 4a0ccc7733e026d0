// pg_dump and psql against an instance's unix socket, as streams. Neither
// connects as the superuser (see socket-sessions.ts): what they read and
// replay is the tenant's SQL. psql loads as the app role, pg_dump reads as
// the dump role (see dump-role.ts). They are handed no password (`trust` on
// the private socket, see renderHba), so nothing they print can contain one;
// the server's ERROR line of their stderr (else its last line) goes into errors.
import { spawn } from "node:child_process";
import { PassThrough, pipeline, type Readable } from "node:stream";
import { RuntimeError } from "../../runtime.js";
import { socketConninfo } from "../../shared/socket-sessions.js";
import { POSTGRES_PORT } from "../children/postgres-settings.js";
import { childEnv } from "../children/run-command.js";

const STDERR_KEEP = 4096;

/** Who connects where: the app role (or the dump role), over the instance's socket, to one of its databases. */
export interface RoleSession {
  readonly socketDir: string;
  readonly role: string;
  readonly database: string;
}

function conninfo(session: RoleSession): string {
  return socketConninfo(session.socketDir, POSTGRES_PORT, session.role, session.database);
}

/**
 * A stream of what `start` returns once `ready` has settled: for a dump that
 * needs a step first. A failed step, or the started stream's error, ends it
 * with that error; a consumer that gives up first stops the started stream.
 */
export function streamAfter(ready: Promise<unknown>, start: () => Readable): Readable {
  const output = new PassThrough();
  ready.then(
    () => {
      if (!output.destroyed) pipeline(start(), output, () => undefined);
    },
    (error: unknown) => output.destroy(error instanceof Error ? error : new Error(String(error))),
  );
  return output;
}


/** pg_dump's plain SQL on stdout; the stream errors when pg_dump does not exit 0. */
export function dumpStream(pgDump: string, session: RoleSession): Readable {
  const { database } = session;
  const output = new PassThrough();
  const child = spawn(pgDump, ["--no-password", "--dbname", conninfo(session)], {
    cwd: "/",
    env: childEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr = new StderrTail();
  child.stderr.on("data", (chunk: Buffer) => stderr.add(chunk));
  // Not ended with stdout: only the exit status says whether the dump is whole.
  child.stdout.pipe(output, { end: false });
  child.on("error", (error) => output.destroy(new RuntimeError("failed", `pg_dump could not start: ${error.message}`)));
  child.on("close", (code, signal) => {
    if (code === 0) output.end();
    else output.destroy(new RuntimeError("failed", `pg_dump of ${database} failed (${exitText(code, signal)})${stderr.firstError()}`));
  });
  // A consumer that gives up early must not leave pg_dump holding a snapshot.
  output.on("close", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  });
  return output;
}

/**
 * Feeds `sql` to psql in one transaction that stops at the first error, so a
 * failed or interrupted restore leaves the database as it was.
 */
export async function restoreFromStream(psql: string, session: RoleSession, sql: Readable): Promise<void> {
  const { database } = session;
  const child = spawn(
    psql,
    ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password", "--dbname", conninfo(session)],
    { cwd: "/", env: childEnv(), stdio: ["pipe", "ignore", "pipe"] },
  );
  const stderr = new StderrTail();
  child.stderr.on("data", (chunk: Buffer) => stderr.add(chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal }));
  });
  let inputError: unknown;
  sql.on("error", (error) => {
    inputError = error;
    // Killed before its stdin closes, psql never reaches COMMIT.
    child.kill("SIGKILL");
    child.stdin.destroy();
  });
  // psql stopping at an error closes its stdin under us; the exit code tells.
  child.stdin.on("error", () => undefined);
  sql.pipe(child.stdin);
  const { code, signal } = await exited.catch((error: Error) => {
    throw new RuntimeError("failed", `psql could not start: ${error.message}`);
  });
  if (inputError !== undefined) {
    throw new RuntimeError("failed", `restore into ${database} failed: the SQL stream broke off; nothing was applied`, {
      cause: inputError,
    });
  }
  if (code !== 0) {
    throw new RuntimeError("failed", `restore into ${database} failed (psql ${exitText(code, signal)})${stderr.firstError()}`);
  }
}

function exitText(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exit code ${String(code)}`;
}

class StderrTail {
  private text = "";

  add(chunk: Buffer): void {
    this.text = (this.text + chunk.toString("utf8")).slice(-STDERR_KEEP);
  }

  lastLine(): string {
    const line = this.text.trim().split("\n").at(-1)?.trim();
    return line ? `: ${line.slice(0, 300)}` : "";
  }

  /** psql and pg_dump print the failing statement's text after the ERROR line; only the ERROR line is kept. */
  firstError(): string {
    const line = this.text.split("\n").find((candidate) => candidate.includes("ERROR:"))?.trim();
    return line ? `: ${line.slice(0, 300)}` : this.lastLine();
  }
}
