// PostgreSQL and PgBouncer refuse to run as root. A root service runs each
// instance as an OS user of its own (see instance-users.ts), or, when
// SOTA_RUN_AS_USER names one, every instance as that one shared user; a
// non-root service runs them as itself.
import { stat } from "node:fs/promises";
import { userInfo } from "node:os";
import { dirname } from "node:path";
import { RuntimeError } from "../../runtime.js";
import { CommandFailedError, runCommand } from "../children/run-command.js";

export interface RunAs {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  /** True when the service is root and children must switch to uid/gid. */
  readonly switchUser: boolean;
}

/**
 * How instances get their OS user: `perInstance` (the service is root and
 * SOTA_RUN_AS_USER is unset) makes a fresh user for each, else every instance
 * runs as `shared`.
 */
export type UserPolicy = { readonly perInstance: true } | { readonly perInstance: false; readonly shared: RunAs };

export async function resolveUserPolicy(runAsUser: string | undefined): Promise<UserPolicy> {
  const me = userInfo();
  if (process.getuid?.() !== 0) {
    if (runAsUser !== undefined && runAsUser !== me.username) {
      throw new RuntimeError(
        "unavailable",
        `cannot run PostgreSQL as OS user "${runAsUser}": the service runs as "${me.username}", not root; unset SOTA_RUN_AS_USER or start the service as root`,
      );
    }
    return { perInstance: false, shared: { name: me.username, uid: me.uid, gid: me.gid, switchUser: false } };
  }
  if (runAsUser === undefined) return { perInstance: true };
  const entry = await lookUpUser(runAsUser);
  if (!entry) throw new RuntimeError("unavailable", `OS user "${runAsUser}" (SOTA_RUN_AS_USER) does not exist`);
  if (entry.uid === 0) {
    throw new RuntimeError("unavailable", `OS user "${runAsUser}" (SOTA_RUN_AS_USER) is root; PostgreSQL needs an unprivileged user`);
  }
  return { perInstance: false, shared: { name: runAsUser, uid: entry.uid, gid: entry.gid, switchUser: true } };
}

/** The user's uid and gid, or undefined when there is no such user. */
export async function lookUpUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
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
 * Checks that an unprivileged user can pass through every directory above
 * `dirs` (they get their own directories below): a root service can create
 * them anywhere, but a parent without search permission for others (a 0700
 * home, say) would only show up later as an obscure PostgreSQL start failure.
 * A shared user is asked itself; fresh per-instance users belong to no group,
 * so every parent must let others search it.
 */
export async function assertUsersCanReach(policy: UserPolicy, dataDir: string, dirs: readonly string[]): Promise<void> {
  if (!policy.perInstance && !policy.shared.switchUser) return;
  let reachable: boolean;
  if (policy.perInstance) {
    reachable = (await Promise.all(dirs.map((dir) => othersCanSearchUpTo(dir)))).every(Boolean);
  } else {
    const args = dirs.flatMap((dir, i) => (i === 0 ? ["-x", dir] : ["-a", "-x", dir]));
    reachable = await runCommand("test", args, { runAs: policy.shared, timeoutMs: 10_000 }).then(
      () => true,
      (error: unknown) => {
        if (error instanceof CommandFailedError) return false;
        throw error;
      },
    );
  }
  if (!reachable) {
    const who = policy.perInstance ? "the OS users of the databases" : `OS user "${policy.shared.name}"`;
    throw new RuntimeError(
      "unavailable",
      `${who} cannot reach the data dir ${dataDir} (a parent directory is not searchable by them): set SOTA_DATA_DIR to a directory they can reach, e.g. /var/lib/sota-db, or chmod o+x its parents`,
    );
  }
}

async function othersCanSearchUpTo(dir: string): Promise<boolean> {
  for (let current = dir; ; current = dirname(current)) {
    if (((await stat(current)).mode & 0o001) === 0) return false;
    if (dirname(current) === current) return true;
  }
}
