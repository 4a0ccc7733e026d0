// One service per data dir: two would each stop and restart the other's
// PostgreSQL and PgBouncer. The lock is SQLite's own file lock, taken
// exclusively and held for the life of the process, on {dataDir}/sota.lock:
// - it is a POSIX record lock (fcntl), which the kernel drops when the holder
//   dies, kill -9 included, and which child processes do not inherit: an
//   orphaned postmaster never keeps the data dir locked;
// - the file is 0600 in a root-owned data dir, so another OS user can neither
//   open it nor take the lock first to keep the service from starting (an
//   abstract unix socket or a lock in /tmp could be squatted that way);
// - better-sqlite3 is already here and SQLite knows the traps of POSIX locks
//   (a second connection in the same process is refused too, and closing it
//   does not drop the first one's lock).
// Nothing else may open this file in the service's process: closing any
// descriptor of it would drop a POSIX lock. The lock file is left in place;
// its presence means nothing, only the lock on it does.
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";

export const LOCK_FILE = "sota.lock";

export class DataDirInUseError extends Error {
  override readonly name = "DataDirInUseError";
}

export interface DataDirLock {
  release(): void;
}

/** Takes the data dir's lock or throws DataDirInUseError at once (it never waits). */
export function lockDataDir(dataDir: string): DataDirLock {
  const path = join(dataDir, LOCK_FILE);
  mkdirSync(dataDir, { recursive: true });
  // SQLite opens (or creates) the file: opening it by hand here could drop a
  // lock this process already holds on it.
  const db = new Database(path, { timeout: 0 });
  try {
    chmodSync(path, 0o600);
    // EXCLUSIVE locking mode: the lock taken by the write below is kept until the connection closes.
    db.pragma("locking_mode = EXCLUSIVE");
    db.pragma(`user_version = ${process.pid}`);
  } catch (error) {
    db.close();
    if ((error as { code?: string }).code === "SQLITE_BUSY") {
      throw new DataDirInUseError(`data dir ${dataDir} is in use by another sota-db (it holds the lock on ${path}); stop that one first`);
    }
    throw error;
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      db.close();
    },
  };
}
