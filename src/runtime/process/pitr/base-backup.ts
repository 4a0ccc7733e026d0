// A base backup of one instance: pg_basebackup as a tar stream on stdout,
// with the WAL it needs fetched into it (-X fetch: consistent on its own),
// connected over the private socket as the superuser (a role no tenant can
// log in as: the socket is reachable only by root and the instance's user).
// It runs as the service and writes nothing but its stdout, which is only
// bytes to the caller, whatever a tenant put in its data directory.
//
// The stream ends only once the WAL receiver has archived the WAL up to the
// backup's end: the archive then holds everything the backup's own pg_wal
// does, and more, so a recovery can take each segment from the archive.
import { spawn } from "node:child_process";
import { PassThrough, type Readable } from "node:stream";
import { RuntimeError, type BaseBackupInfo } from "../../runtime.js";
import { segmentNameOf } from "../../shared/wal-names.js";
import { childEnv } from "../children/run-command.js";
import type { Instance } from "../instance/project-instance.js";
import { queryOnce, superuserClient } from "../sql/pg-clients.js";
import { replicationConnectionArgs, waitUntilArchived } from "./replication-slot.js";

/** How long the receiver gets to archive a finished backup's WAL. */
const ARCHIVE_TIMEOUT_MS = 30_000;
const STDERR_KEEP = 8192;
const START = /write-ahead log start point: ([0-9A-F]+\/[0-9A-F]+) on timeline (\d+)/;
const END = /write-ahead log end point: ([0-9A-F]+\/[0-9A-F]+)/;

export function baseBackupStream(instance: Instance, pgBasebackup: string): { stream: Readable; info: Promise<BaseBackupInfo> } {
  const output = new PassThrough();
  let stopChild: (() => void) | undefined;
  // A consumer that gives up early must not leave pg_basebackup holding a backup open.
  output.on("close", () => stopChild?.());
  const info = takeBackup(instance, pgBasebackup, output, (stop) => {
    stopChild = stop;
  });
  info.then(
    () => output.end(),
    (error: unknown) => output.destroy(error instanceof Error ? error : new Error(String(error))),
  );
  return { stream: output, info };
}

async function takeBackup(instance: Instance, pgBasebackup: string, output: PassThrough, onChild: (stop: () => void) => void): Promise<BaseBackupInfo> {
  const { slug } = instance;
  const { socketDir } = instance.paths;
  // The slot first: from here on the server keeps the WAL the backup needs until it is archived.
  const generation = await instance.wal.prepareArchive();
  instance.wal.keepRunning();
  const [setting] = await queryOnce(superuserClient(socketDir, "postgres"), "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'");
  const segmentBytes = Number(setting?.["setting"]);
  if (output.destroyed) throw new RuntimeError("failed", `the base backup of ${slug} was abandoned by its reader`);

  const child = spawn(
    pgBasebackup,
    [
      "--pgdata=-",
      "--format=tar",
      "--wal-method=fetch",
      "--checkpoint=fast",
      "--no-sync",
      "--verbose",
      ...replicationConnectionArgs(socketDir),
    ],
    { cwd: "/", env: childEnv(), stdio: ["ignore", "pipe", "pipe"] },
  );
  onChild(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-STDERR_KEEP);
  });
  // Not ended with stdout: only the exit status and the archive say whether it is whole.
  child.stdout.pipe(output, { end: false });
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on("error", (error) => reject(new RuntimeError("failed", `pg_basebackup could not start: ${error.message}`)));
    child.on("close", (exitCode, exitSignal) => resolve({ code: exitCode, signal: exitSignal }));
  });
  if (code !== 0) {
    const how = signal ? `killed by ${signal}` : `exit code ${String(code)}`;
    throw new RuntimeError("failed", `the base backup of ${slug} failed (pg_basebackup ${how})${errorLine(stderr)}`);
  }
  const start = START.exec(stderr);
  const end = END.exec(stderr);
  if (!start || !end) throw new RuntimeError("failed", `pg_basebackup of ${slug} did not report where its WAL starts and ends`);
  await waitUntilArchived(socketDir, end[1]!, { timeoutMs: ARCHIVE_TIMEOUT_MS, slug, what: "the WAL of its base backup" });
  if ((await instance.wal.archive.current()) !== generation) {
    throw new RuntimeError("failed", `a new WAL generation of ${slug} began during its base backup; take another`);
  }
  return { generation, startSegment: segmentNameOf(start[1]!, Number(start[2]), segmentBytes) };
}

/** pg_basebackup's error line (else its last line): the server's reason, never a secret (none is handed to it). */
function errorLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  const line = lines.find((candidate) => candidate.includes("error:")) ?? lines.at(-1);
  return line ? `: ${line.trim().slice(0, 300)}` : "";
}
