// PostgreSQL and PgBouncer refuse to run as root, so a root service runs them as
// an unprivileged OS user; a non-root service runs them as itself.
import { userInfo } from "node:os";
import { RuntimeError } from "../runtime.js";
import { CommandFailedError, runCommand } from "./run-command.js";

export interface RunAs {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  /** True when the service is root and children must switch to uid/gid. */
  readonly switchUser: boolean;
}

const DEFAULT_USER = "postgres";

export async function resolveRunAs(runAsUser: string | undefined): Promise<RunAs> {
  const me = userInfo();
  if (process.getuid?.() !== 0) {
    if (runAsUser !== undefined && runAsUser !== me.username) {
      throw new RuntimeError(
        "unavailable",
        `cannot run PostgreSQL as OS user "${runAsUser}": the service runs as "${me.username}", not root; unset SOTA_RUN_AS_USER or start the service as root`,
      );
    }
    return { name: me.username, uid: me.uid, gid: me.gid, switchUser: false };
  }
  const name = runAsUser ?? DEFAULT_USER;
  const entry = await lookUpUser(name);
  if (!entry) {
    throw new RuntimeError(
      "unavailable",
      runAsUser === undefined
        ? `the service runs as root but OS user "${DEFAULT_USER}" does not exist to run PostgreSQL: install the postgresql package (it creates that user) or set SOTA_RUN_AS_USER to an unprivileged user`
        : `OS user "${name}" (SOTA_RUN_AS_USER) does not exist`,
    );
  }
  if (entry.uid === 0) {
    throw new RuntimeError("unavailable", `OS user "${name}" (SOTA_RUN_AS_USER) is root; PostgreSQL needs an unprivileged user`);
  }
  return { name, uid: entry.uid, gid: entry.gid, switchUser: true };
}

async function lookUpUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  try {
    // getent rather than /etc/passwd so NSS-provided users (LDAP, sssd) work too.
    const { stdout } = await runCommand("getent", ["passwd", name], { timeoutMs: 10_000 });
    const fields = stdout.trim().split(":");
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch (error) {
    if (error instanceof CommandFailedError) return undefined;
    throw error;
  }
}

/**
 * Checks, as the run-as user itself, that it can write every given directory:
 * a root service can create them anywhere, but a parent without search
 * permission for that user (a 0700 home, say) would only show up later as an
 * obscure PostgreSQL start failure.
 */
export async function assertUserCanWrite(runAs: RunAs, dataDir: string, dirs: readonly string[]): Promise<void> {
  if (!runAs.switchUser) return;
  const args = dirs.flatMap((dir, i) => (i === 0 ? ["-w", dir] : ["-a", "-w", dir]));
  try {
    await runCommand("test", args, { runAs, timeoutMs: 10_000 });
  } catch (error) {
    if (!(error instanceof CommandFailedError)) throw error;
    throw new RuntimeError(
      "unavailable",
      `OS user "${runAs.name}" cannot write under the data dir ${dataDir} (a parent directory is not searchable by it): set SOTA_DATA_DIR to a directory it can reach, e.g. /var/lib/sota-db, or chmod o+x its parents`,
    );
  }
}
