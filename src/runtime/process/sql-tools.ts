// pg_dump and psql against an instance's unix socket, as streams. Both connect
// as the superuser with `trust` and are handed no password, so nothing they
// print can contain one; the last line of their stderr goes into errors.
import { spawn } from "node:child_process";
import { PassThrough, type Readable } from "node:stream";
import { RuntimeError } from "../runtime.js";
import { POSTGRES_PORT, SUPERUSER } from "./postgres-settings.js";
import { childEnv } from "./run-command.js";

const STDERR_KEEP = 4096;

/** A libpq connection string: values single-quoted, so any database name is taken literally. */
export function socketConninfo(socketDir: string, database: string): string {
  const value = (text: string): string => `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
  return `host=${value(socketDir)} port=${POSTGRES_PORT} user=${SUPERUSER} dbname=${value(database)}`;
}

/** Runtime.dump returns a stream, not a promise: a dump that cannot begin fails through it. */
export function failedStream(error: unknown): Readable {
  const stream = new PassThrough();
  process.nextTick(() => stream.destroy(error instanceof Error ? error : new Error(String(error))));
  return stream;
}

/** pg_dump's plain SQL on stdout; the stream errors when pg_dump does not exit 0. */
export function dumpStream(pgDump: string, socketDir: string, database: string): Readable {
  const output = new PassThrough();
  const child = spawn(pgDump, ["--no-password", "--dbname", socketConninfo(socketDir, database)], {
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
    else output.destroy(new RuntimeError("failed", `pg_dump of ${database} failed (${exitText(code, signal)})${stderr.lastLine()}`));
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
export async function restoreFromStream(psql: string, socketDir: string, database: string, sql: Readable): Promise<void> {
  const child = spawn(
    psql,
    ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password", "--dbname", socketConninfo(socketDir, database)],
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

  /** psql prints the failing statement's text after the ERROR line; only the ERROR line is kept. */
  firstError(): string {
    const line = this.text.split("\n").find((candidate) => candidate.includes("ERROR:"))?.trim();
    return line ? `: ${line.slice(0, 300)}` : this.lastLine();
  }
}
