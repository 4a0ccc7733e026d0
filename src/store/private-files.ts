// Modes of what the service keeps under its data dir and backup dir: state,
// keys, tokens and backups are readable by the service's user only; the data
// dir itself may be passed through (the runtime's children, another OS user,
// live below it) but not listed. Applied at every start, so that a data dir
// an older version left with 0644/0755 modes is fixed.
import { chmodSync, closeSync, existsSync, lstatSync, openSync, readdirSync, type Stats } from "node:fs";
import { join } from "node:path";

/** Most the data dir may allow: others may only traverse it. */
const DATA_DIR_MAX_MODE = 0o711;
const PRIVATE_FILE = 0o600;
const PRIVATE_DIR = 0o700;

/**
 * Creates `path` empty with mode 0600 if it does not exist, else makes it 0600.
 * Never opens an existing file (a descriptor closed in this process would
 * drop SQLite's locks on it).
 */
export function createPrivateFile(path: string): void {
  if (existsSync(path)) {
    chmodSync(path, PRIVATE_FILE);
    return;
  }
  try {
    closeSync(openSync(path, "wx", PRIVATE_FILE));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  // The umask may have taken bits away, never added: this only makes it exact.
  chmodSync(path, PRIVATE_FILE);
}

/**
 * The data dir: no more than 0711; every regular file directly in it (state,
 * keys, tokens, the lock) 0600. Subdirectories are their owners' business
 * (the runtime's, the backup dir's).
 */
export function securePrivateFiles(dataDir: string): void {
  const dirStat = lstatSync(dataDir);
  if ((dirStat.mode & 0o777 & ~DATA_DIR_MAX_MODE) !== 0) chmodSync(dataDir, dirStat.mode & DATA_DIR_MAX_MODE);
  for (const name of readdirSync(dataDir)) {
    const path = join(dataDir, name);
    // lstat: a symlink is left alone (chmod would follow it).
    if (lstatSync(path).isFile()) tighten(path, lstatSync(path), PRIVATE_FILE);
  }
}

/** The backup dir and everything in it: directories 0700, files 0600. Absent: nothing to do. */
export function securePrivateTree(dir: string): void {
  if (!existsSync(dir)) return;
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) return;
  tighten(dir, stat, PRIVATE_DIR);
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const entry = lstatSync(path);
    if (entry.isDirectory()) securePrivateTree(path);
    else if (entry.isFile()) tighten(path, entry, PRIVATE_FILE);
  }
}

/** True when a group or other may read or write the file. */
export function openToOthers(path: string): boolean {
  return existsSync(path) && (lstatSync(path).mode & 0o066) !== 0;
}

function tighten(path: string, stat: Stats, mode: number): void {
  if ((stat.mode & 0o777 & ~mode) !== 0) chmodSync(path, stat.mode & mode);
}
