// A new data directory made from a base backup and archived WAL, ready for
// PostgreSQL to replay. Everything written into it is written by the
// instance's OS user, never by root: a base backup's tar comes from a tenant's
// server and may hold links (its pg_wal itself may be one), so whatever it
// makes can only point where that user could write anyway. Root only reads
// the source archive (see WalArchive.open: plain files of the source's user,
// never through a link) and hands each file to the user's writer as its stdin.
import { spawn, type StdioOptions } from "node:child_process";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { RuntimeError } from "../../runtime.js";
import { SEGMENT_NAME } from "../../shared/wal-names.js";
import { childEnv, runCommand, userSpawnOptions } from "../children/run-command.js";
import type { RunAs } from "../host/os-user.js";
import { readChildFile } from "../host/owned-files.js";
import type { WalArchive } from "./wal-archive.js";

const STDERR_KEEP = 4096;
/** Segments copied at a time: the copies are disk-bound, and the machine may have 2 cores. */
const COPIES_AT_ONCE = 2;
const BACKUP_START = /^START WAL LOCATION: [0-9A-F]+\/[0-9A-F]+ \(file ([0-9A-F]{24})\)$/m;

/** Unpacks `base` (a tar) into `pgdata` (empty, the user's) as `runAs`. */
export async function extractBase(base: Readable, pgdata: string, runAs: RunAs, signal: AbortSignal | undefined): Promise<void> {
  const outcome = await runAsUser("tar", ["--extract", "--file=-", `--directory=${pgdata}`, "--no-same-owner"], runAs, { input: base, signal });
  if (outcome.inputError !== undefined) {
    throw new RuntimeError("failed", "the base backup stream broke off while it was unpacked", { cause: outcome.inputError });
  }
  if (outcome.code !== 0) throw new RuntimeError("failed", `unpacking the base backup failed (tar ${outcome.how})${outcome.reason}`);
}

/**
 * The first segment the unpacked backup needs, from its backup_label (the
 * user's file, read as a plain file of the user's only). Its absence means
 * `base` was no base backup.
 */
export async function backupStartSegment(pgdata: string, runAs: RunAs): Promise<string> {
  const label = await readChildFile(join(pgdata, "backup_label"), runAs);
  const match = label === undefined ? null : BACKUP_START.exec(label);
  if (!match) throw new RuntimeError("failed", "the base backup holds no backup_label naming where its WAL starts: it is not a pg_basebackup of a running server");
  return match[1]!;
}

/**
 * Copies generation `generation` of `source` into `pgWal`, from segment
 * `fromSegment` on (history files whatever their timeline), the segment
 * still being written under its complete name. The archive's copy of a
 * segment replaces the backup's own: it holds as much WAL or more (a base
 * backup ends only once its WAL is archived, see base-backup.ts).
 */
export async function copyArchivedWal(source: WalArchive, generation: string, pgWal: string, runAs: RunAs, fromSegment: string, signal: AbortSignal | undefined): Promise<number> {
  const wanted = (await source.files(generation)).filter((file) => !SEGMENT_NAME.test(file.name) || file.name >= fromSegment);
  let next = 0;
  const copyNext = async (): Promise<void> => {
    for (let file = wanted[next++]; file !== undefined; file = wanted[next++]) {
      signal?.throwIfAborted();
      const handle = await source.open(generation, file.name);
      try {
        const outcome = await runAsUser("dd", [`of=${join(pgWal, file.name)}`, "bs=1M", "status=none"], runAs, { stdin: handle.fd, signal });
        if (outcome.code !== 0) throw new RuntimeError("failed", `copying WAL file ${file.name} into the new data directory failed (dd ${outcome.how})${outcome.reason}`);
      } finally {
        await handle.close();
      }
    }
  };
  await Promise.all(Array.from({ length: COPIES_AT_ONCE }, copyNext));
  return wanted.length;
}

/** recovery.signal in, standby.signal out (a standby would wait for more WAL for ever instead of promoting). */
export async function signalRecovery(pgdata: string, runAs: RunAs): Promise<void> {
  await runCommand("sh", ["-c", 'rm -f -- "$1/standby.signal" && : > "$1/recovery.signal"', "sh", pgdata], { runAs, timeoutMs: 30_000 });
}

interface Outcome {
  readonly code: number | null;
  /** "exit code 2" or "killed by SIGTERM". */
  readonly how: string;
  /** ": " and stderr's last line, or "". */
  readonly reason: string;
  readonly inputError: unknown;
}

/** Runs `command` as `runAs` (cwd /), its stdin a stream or an open descriptor. */
function runAsUser(command: string, args: readonly string[], runAs: RunAs, io: { input?: Readable; stdin?: number; signal: AbortSignal | undefined }): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const stdio: StdioOptions = [io.stdin ?? (io.input ? "pipe" : "ignore"), "ignore", "pipe"];
    const child = spawn(command, args, { ...userSpawnOptions(runAs), cwd: "/", env: childEnv(), stdio });
    let stderr = "";
    let inputError: unknown;
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-STDERR_KEEP);
    });
    const abort = (): void => {
      child.kill("SIGKILL");
    };
    io.signal?.addEventListener("abort", abort, { once: true });
    if (io.input && child.stdin) {
      const input = io.input;
      input.on("error", (error) => {
        inputError = error;
        child.kill("SIGKILL");
        child.stdin?.destroy();
      });
      // The child stopping early (tar refusing its input) closes its stdin under us; the exit code tells.
      child.stdin.on("error", () => undefined);
      input.pipe(child.stdin);
    }
    child.on("error", (error) => {
      io.signal?.removeEventListener("abort", abort);
      reject(new RuntimeError("failed", `${command} could not start: ${error.message}`));
    });
    child.on("close", (code, signal) => {
      io.signal?.removeEventListener("abort", abort);
      io.input?.unpipe();
      const line = stderr.trim().split("\n").at(-1)?.trim();
      resolve({
        code,
        how: signal ? `killed by ${signal}` : `exit code ${String(code)}`,
        reason: line ? `: ${line.slice(0, 300)}` : "",
        inputError: inputError ?? (io.signal?.aborted ? io.signal.reason : undefined),
      });
    });
  });
}
