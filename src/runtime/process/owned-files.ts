// Files and directories the run-as user must own: PostgreSQL insists on owning
// its data directory, and PgBouncer reads its config as that user.
import { randomBytes } from "node:crypto";
import { chmod, chown, lstat, mkdir, open, readFile, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { RuntimeError } from "../runtime.js";
import type { RunAs } from "./os-user.js";

/** Creates `dir` (and missing parents) and gives it to the run-as user with `mode`. */
export async function ensureOwnedDir(dir: string, runAs: RunAs, mode: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
  await chown(dir, runAs.uid, runAs.gid);
  await chmod(dir, mode);
}

/**
 * For directories in a shared place (the OS temp dir): refuses one that is a
 * symlink or that someone else created first, rather than put a socket where
 * another user controls it.
 */
export async function ensurePrivateDir(dir: string, runAs: RunAs): Promise<void> {
  try {
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, runAs.uid, runAs.gid);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const stats = await lstat(dir);
  const ownedBySomeoneElse = stats.uid !== runAs.uid && !(stats.uid === process.getuid?.() && runAs.switchUser);
  if (!stats.isDirectory() || ownedBySomeoneElse) {
    throw new RuntimeError("failed", `socket directory ${dir} exists but is not a directory owned by "${runAs.name}"; remove it`);
  }
  await chown(dir, runAs.uid, runAs.gid);
  await chmod(dir, 0o700);
}

/** Reads a file, or undefined when it does not exist. */
export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

export interface WriteOptions {
  /**
   * False for files rendered afresh before every start of their server (its
   * settings, PgBouncer's config and userlist): they need to be whole, not to
   * outlive a crash, and an fsync would wait behind a new copy's syncfs, on
   * the path to a new database's first query.
   */
  readonly durable?: boolean;
}

/**
 * Writes through a temporary name and rename, so a crash leaves either the old
 * or the new content, never half of one; durable (the default) also fsyncs
 * the file and its directory.
 */
export async function writeOwnedFile(path: string, content: string, runAs: RunAs, mode: number, options: WriteOptions = {}): Promise<void> {
  const durable = options.durable ?? true;
  const temporary = `${path}.tmp-${randomBytes(6).toString("hex")}`;
  const handle = await open(temporary, "wx", mode);
  try {
    await handle.writeFile(content, "utf8");
    await handle.chown(runAs.uid, runAs.gid);
    await handle.chmod(mode);
    if (durable) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
  if (durable) await syncDir(dirname(path));
}

/** Writes only when the content differs; returns whether it did. */
export async function writeOwnedFileIfChanged(
  path: string,
  content: string,
  runAs: RunAs,
  mode: number,
  options: WriteOptions = {},
): Promise<boolean> {
  if ((await readIfExists(path)) === content) return false;
  await writeOwnedFile(path, content, runAs, mode, options);
  return true;
}

/** Makes a rename in `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
