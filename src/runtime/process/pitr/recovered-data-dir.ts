// A new data directory made from a base backup and archived WAL, ready for
// PostgreSQL to replay. Everything written into it is written by the
// instance's OS user, never by root: a base backup's tar comes from a tenant's
// server and may hold links (its pg_wal itself may be one), so whatever it
// makes can only point where that user could write anyway. Root only reads
// the source archive (see WalArchive.open: plain files of the source's user,
// never through a link) and hands each file to the user's writer as its
// stdin; WAL from another host's copy (disaster recovery) is streamed into
// the same writer.
import { spawn, type StdioOptions } from "node:child_process";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { DomainError } from "../../../errors.js";
import { RuntimeError, type WalSource } from "../../runtime.js";
import { isWalFileName, SEGMENT_NAME } from "../../shared/wal-names.js";
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

/** One WAL file to copy: an open file of this host's archive (handed to the writer as its stdin), or a stream from elsewhere. */
type WalInput = { readonly fd: number; close(): Promise<void> } | { readonly stream: Readable };

/** Where a recovery's WAL comes from: the generation's files, oldest first, and each one's bytes. */
export interface WalFiles {
  files(): Promise<readonly { readonly name: string; readonly complete: boolean }[]>;
  open(name: string): Promise<WalInput>;
}

/** Generation `generation` of an archive on this host: root opens each file (never through a link), the user's writer reads the descriptor. */
export function archivedWal(source: WalArchive, generation: string): WalFiles {
  return {
    files: () => source.files(generation),
    open: async (name) => {
      const handle = await source.open(generation, name);
      return { fd: handle.fd, close: () => handle.close() };
    },
  };
}

/**
 * WAL from another host's copy (RecoveryTarget.wal). Its names become paths
 * in pg_wal, so each is checked against WAL file names first, and a name
 * given twice is taken once.
 */
export function streamedWal(source: WalSource): WalFiles {
  return {
    files: async () => {
      const seen = new Set<string>();
      const files = [];
      for (const file of await source.files()) {
        if (!isWalFileName(file.name)) throw new RuntimeError("failed", `${JSON.stringify(file.name.slice(0, 40))} is not the name of a WAL file`);
        if (seen.has(file.name)) continue;
        seen.add(file.name);
        files.push(file);
      }
      return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    },
    open: async (name) => ({ stream: await source.open(name) }),
  };
}

/**
 * Copies the WAL of `from` into `pgWal`, from segment `fromSegment` on
 * (history files whatever their timeline), the segment still being written
 * under its complete name. The archive's copy of a segment replaces the
 * backup's own: it holds as much WAL or more (a base backup ends only once
 * its WAL is archived, see base-backup.ts). Every file is written by `dd` run
 * as the database's user. A stream that fails fails the copy with its own
 * error (a damaged off-host copy stays data_loss).
 */
export async function copyArchivedWal(from: WalFiles, pgWal: string, runAs: RunAs, fromSegment: string, signal: AbortSignal | undefined): Promise<number> {
  const wanted = (await from.files()).filter((file) => !SEGMENT_NAME.test(file.name) || file.name >= fromSegment);
  let next = 0;
  const copyNext = async (): Promise<void> => {
    for (let file = wanted[next++]; file !== undefined; file = wanted[next++]) {
      signal?.throwIfAborted();
      const input = await from.open(file.name);
      try {
        const outcome = await runAsUser("dd", [`of=${join(pgWal, file.name)}`, "bs=1M", "status=none"], runAs, {
          ...("fd" in input ? { stdin: input.fd } : { input: input.stream }),
          signal,
        });
        if (outcome.inputError !== undefined) throw walInputFailed(file.name, outcome.inputError);
        if (outcome.code !== 0) throw new RuntimeError("failed", `copying WAL file ${file.name} into the new data directory failed (dd ${outcome.how})${outcome.reason}`);
      } finally {
        if ("fd" in input) await input.close();
        else input.stream.destroy();
      }
    }
  };
  await Promise.all(Array.from({ length: COPIES_AT_ONCE }, copyNext));
  return wanted.length;
}

/** A refusal of the source (DomainError: data_loss for a damaged copy, unavailable) as it is; anything else said plainly. */
function walInputFailed(name: string, error: unknown): Error {
  if (error instanceof DomainError) return error;
  return new RuntimeError("failed", `WAL file ${name} broke off while it was copied into the new data directory`, { cause: error });
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
