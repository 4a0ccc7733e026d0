// Files and directories of an instance, and who may touch them. The service
// (root, in production) writes and reads only files in directories it owns
// and no child can write: an unprivileged child (PostgreSQL, PgBouncer, or a
// tenant that became superuser of its cluster and runs programs as that OS
// user) could otherwise plant a symlink, a FIFO or a hard link where root
// looks. Every open here refuses to follow a link at the last component
// (O_NOFOLLOW), never blocks on a FIFO (O_NONBLOCK), and changes owners and
// modes through the open handle, never through the path again.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, rename, rm, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { RuntimeError } from "../../runtime.js";
import type { RunAs } from "./os-user.js";

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;
/** Nothing the service reads back this way (pids, markers, configs it wrote) is larger. */
const MAX_READ_BYTES = 1024 * 1024;

/** The service's own uid and gid: root's in production. */
export const SERVICE_USER: { readonly uid: number; readonly gid: number } = {
  uid: process.getuid?.() ?? 0,
  gid: process.getgid?.() ?? 0,
};

/** Who owns a file or directory the service makes, and its mode. */
export interface Access {
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
}

/** The service's own: nobody else reads it (markers, the pooler's admin password, user records). */
export const SERVICE_ONLY: Access = { ...SERVICE_USER, mode: 0o600 };

/** The service's, readable by `child`'s group (the configs PostgreSQL and PgBouncer read), never writable by it. */
export function readableBy(child: RunAs): Access {
  return { uid: SERVICE_USER.uid, gid: child.switchUser ? child.gid : SERVICE_USER.gid, mode: 0o640 };
}

/** A directory of the service that `child` may pass through (0710) to reach its own files by name, but not list or change. */
export function passableBy(child: RunAs): Access {
  return { uid: SERVICE_USER.uid, gid: child.switchUser ? child.gid : SERVICE_USER.gid, mode: 0o710 };
}

/** `child`'s own: its data directory, its socket and log directories (0700). */
export function ownedBy(child: RunAs, mode = 0o700): Access {
  return { uid: child.uid, gid: child.gid, mode };
}

/**
 * Creates `dir` if missing and gives it `access`. The owner and mode are set
 * through a handle opened without following a link, so a directory swapped
 * for a symlink meanwhile (in a shared place like /tmp) is refused, not followed.
 */
export async function ensureDir(dir: string, access: Access): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await setAccess(dir, access, "directory");
}

/** Gives an existing file or directory `access` through a handle opened without following a link. */
export async function setAccess(path: string, access: Access, kind: "file" | "directory"): Promise<void> {
  const handle = await openNoFollow(path, kind === "directory" ? O_DIRECTORY : 0);
  try {
    const stats = await handle.stat();
    if (kind === "directory" ? !stats.isDirectory() : !stats.isFile() || stats.nlink !== 1) throw notPlain(path, kind);
    if (stats.uid !== access.uid || stats.gid !== access.gid) await handle.chown(access.uid, access.gid);
    if ((stats.mode & 0o7777) !== access.mode) await handle.chmod(access.mode);
  } finally {
    await handle.close();
  }
}

/**
 * For directories in a shared place (the OS temp dir): refuses one that is a
 * symlink or that someone else created first, rather than put a socket where
 * another user controls it.
 */
export async function ensurePrivateDir(dir: string, runAs: RunAs): Promise<void> {
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const stats = await lstat(dir);
  const ownedBySomeoneElse = stats.uid !== runAs.uid && stats.uid !== SERVICE_USER.uid;
  if (!stats.isDirectory() || ownedBySomeoneElse) {
    throw new RuntimeError("failed", `socket directory ${dir} exists but is not a directory owned by "${runAs.name}"; remove it`);
  }
  await setAccess(dir, ownedBy(runAs), "directory");
}

/**
 * Reads a file the service wrote in a directory of its own, or undefined when
 * it does not exist. Anything but a plain file (a symlink, a FIFO, a hard link
 * to another file) is refused with an error: it was planted.
 */
export async function readIfExists(path: string): Promise<string | undefined> {
  const handle = await openNoFollow(path, 0).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    if (error.code === "ELOOP") throw notPlain(path, "file");
    throw error;
  });
  if (handle === undefined) return undefined;
  try {
    const stats = await handle.stat();
    if (!stats.isFile() || stats.nlink !== 1) throw notPlain(path, "file");
    return await readBounded(handle, stats.size);
  } finally {
    await handle.close();
  }
}

/**
 * Reads a file a child wrote in a directory of its own (postmaster.pid,
 * PG_VERSION): undefined unless it is a plain file owned by `owner`. Its
 * content is a child's word, to be checked by the caller.
 */
export async function readChildFile(path: string, owner: { readonly uid: number }): Promise<string | undefined> {
  const handle = await openNoFollow(path, 0).catch(() => undefined);
  if (handle === undefined) return undefined;
  try {
    const stats = await handle.stat();
    if (!stats.isFile() || stats.uid !== owner.uid) return undefined;
    return await readBounded(handle, stats.size);
  } finally {
    await handle.close();
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
 * Writes a file of the service in a directory of its own, through a temporary
 * name (created exclusively) and a rename, so a crash leaves either the old or
 * the new content, never half of one; durable (the default) also fsyncs the
 * file and its directory.
 */
export async function writeServiceFile(path: string, content: string, access: Access, options: WriteOptions = {}): Promise<void> {
  const durable = options.durable ?? true;
  const temporary = `${path}.tmp-${randomBytes(6).toString("hex")}`;
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW, 0o600);
  try {
    await handle.writeFile(content, "utf8");
    if (access.uid !== SERVICE_USER.uid || access.gid !== SERVICE_USER.gid) await handle.chown(access.uid, access.gid);
    await handle.chmod(access.mode);
    if (durable) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
  if (durable) await syncDir(dirname(path));
}

/** Writes only when the content differs; returns whether it did. */
export async function writeServiceFileIfChanged(path: string, content: string, access: Access, options: WriteOptions = {}): Promise<boolean> {
  if ((await readIfExists(path).catch(() => undefined)) === content) {
    await setAccess(path, access, "file");
    return false;
  }
  await writeServiceFile(path, content, access, options);
  return true;
}

/**
 * Removes a tree a child owned (a data directory, an instance's directory),
 * missing or not. Deleting recursively, root could be sent elsewhere by a
 * process of the child that swaps a directory for a symlink mid-way; so the
 * tree is first moved into a new directory of root's alone (0700), where no
 * other user can reach it by any path, and removed there.
 */
export async function removeTree(path: string): Promise<void> {
  const stats = await lstat(path).catch(() => undefined);
  if (stats === undefined) return;
  if (!stats.isDirectory()) {
    await rm(path, { force: true });
    return;
  }
  const holder = join(dirname(path), `.removing-${randomBytes(6).toString("hex")}`);
  await mkdir(holder, { mode: 0o700 });
  await rename(path, join(holder, basename(path)));
  await rm(holder, { recursive: true, force: true });
}

/** Makes a rename in `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await openNoFollow(dir, O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function openNoFollow(path: string, flags: number): Promise<FileHandle> {
  return open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | flags);
}

async function readBounded(handle: FileHandle, size: number): Promise<string> {
  const length = Math.min(size, MAX_READ_BYTES);
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, 0);
  return buffer.subarray(0, bytesRead).toString("utf8");
}

function notPlain(path: string, kind: "file" | "directory"): RuntimeError {
  return new RuntimeError("failed", `${path} is not a plain ${kind} of the service (a link or another kind of file was put there); remove it`);
}
