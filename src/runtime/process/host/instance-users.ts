// The OS user each instance runs as. With the service as root and no shared
// user configured, every instance (and every spare copy and warm instance, so
// that making the user stays off a new database's path) gets a fresh system
// user: no home, no login shell, a group of its own, a random name. So a
// tenant who becomes superuser of its own cluster, and runs programs as that
// user, still cannot read another instance's files, reach its socket or
// signal its processes. The user's name is recorded in the instance's
// directory (os-user, the service's own file), so it moves with the directory
// when a spare or warm instance becomes a project's, and the user is deleted
// with the instance.
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../../../log.js";
import { RuntimeError } from "../../runtime.js";
import { lookUpUser, type RunAs, type UserPolicy } from "./os-user.js";
import { readIfExists, SERVICE_ONLY, writeServiceFile } from "./owned-files.js";
import { pathExists } from "./path-checks.js";
import { CommandFailedError, runCommand } from "../children/run-command.js";

/** The record's file name in an instance's (or spare's, warm instance's, template build's) directory. */
export const USER_RECORD = "os-user";
const NAME = /^sota-[0-9a-f]{10}$/;
const ATTEMPTS = 5;
/** Where any user may leave files; the OS temp dir included when it is elsewhere. */
const SHARED_WRITABLE = [...new Set(["/tmp", "/var/tmp", "/dev/shm", tmpdir()])];
/** A system user with a group of its own, no home, no login. */
const USERADD_ARGS = ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment", "sota-db instance"];
const RETRY_MS = 100;

/** useradd and userdel lock /etc/passwd; one at a time from this process, retried when another holds the lock. */
let accountsQueue: Promise<unknown> = Promise.resolve();

/** Absolute paths: the service's PATH may lack /usr/sbin. */
export interface AccountTools {
  readonly useradd: string;
  readonly userdel: string;
}

export class InstanceUsers {
  /** `tools`: required when the policy is per instance. */
  constructor(
    readonly policy: UserPolicy,
    private readonly tools: AccountTools | undefined,
    private readonly logger: Logger,
  ) {}

  get perInstance(): boolean {
    return this.policy.perInstance;
  }

  /**
   * A user for the instance (spare, warm instance, template build) being made
   * in `dir`, a directory of the service: a fresh one, recorded there durably
   * before any of its files exist, or the shared one.
   */
  async assign(dir: string): Promise<RunAs> {
    if (!this.policy.perInstance) return this.policy.shared;
    const name = `sota-${randomBytes(5).toString("hex")}`;
    // Recorded first: after a crash the record names a user to delete, never the reverse.
    await writeServiceFile(join(dir, USER_RECORD), `${name}\n`, SERVICE_ONLY);
    const useradd = this.accountTool("useradd");
    try {
      await accounts(() => runCommand(useradd, USERADD_ARGS.concat(name), { timeoutMs: 30_000 }));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      // Most likely the system uids ran out (SYS_UID_MIN..SYS_UID_MAX in /etc/login.defs).
      throw new RuntimeError("unavailable", `could not create an OS user for a database (${reason}); widen SYS_UID_MAX in /etc/login.defs if the system uids ran out`, { cause: error });
    }
    const entry = await lookUpUser(name);
    if (!entry) throw new RuntimeError("failed", `OS user ${name} was created but cannot be looked up`);
    return { name, uid: entry.uid, gid: entry.gid, switchUser: true };
  }

  /** The user recorded in `dir`, or undefined (none recorded, or deleted since). */
  async recorded(dir: string): Promise<RunAs | undefined> {
    if (!this.policy.perInstance) return this.policy.shared;
    const name = await recordedName(dir);
    const entry = name === undefined ? undefined : await lookUpUser(name);
    return name === undefined || entry === undefined ? undefined : { name, uid: entry.uid, gid: entry.gid, switchUser: true };
  }

  /**
   * Ends every process of `dir`'s user (whatever a tenant left running in the
   * background) and deletes the user. Before its files are removed: no process
   * of it can race the removal. A no-op for the shared user.
   */
  async release(dir: string): Promise<void> {
    if (!this.policy.perInstance) return;
    const name = await recordedName(dir).catch(() => undefined);
    if (name === undefined) return;
    const entry = await lookUpUser(name);
    if (entry === undefined) return;
    const runAs: RunAs = { name, uid: entry.uid, gid: entry.gid, switchUser: true };
    // kill(-1) as that user reaches exactly its own processes: the kernel refuses the rest.
    await runCommand("kill", ["-s", "KILL", "--", "-1"], { runAs, timeoutMs: 10_000 }).catch(() => undefined);
    await removeLeftovers(runAs.uid);
    const userdel = this.accountTool("userdel");
    await accounts(() => runCommand(userdel, [name], { timeoutMs: 30_000 }));
    this.logger.debug({ user: name }, "OS user of an instance deleted");
  }

  private accountTool(name: keyof AccountTools): string {
    const path = this.tools?.[name];
    if (path === undefined) throw new RuntimeError("unavailable", `${name} is needed to manage the databases' OS users`);
    return path;
  }
}

/**
 * Files the user left where anyone may write: its uid is given to the next
 * user made, who must not inherit them (a set-uid program left in /tmp would
 * run as the next database's user). No process of the uid exists any more, so
 * none can race this; find deletes without following links.
 */
async function removeLeftovers(uid: number): Promise<void> {
  const places: string[] = [];
  for (const place of SHARED_WRITABLE) if (await pathExists(place)) places.push(place);
  if (places.length === 0) return;
  await runCommand("find", ["-P", ...places, "-xdev", "-uid", String(uid), "-delete"], { timeoutMs: 120_000 }).catch(() => undefined);
}

async function recordedName(dir: string): Promise<string | undefined> {
  const name = (await readIfExists(join(dir, USER_RECORD)))?.trim();
  if (name !== undefined && !NAME.test(name)) throw new RuntimeError("failed", `${join(dir, USER_RECORD)} does not name an OS user of sota-db`);
  return name;
}

/** Runs `work` (useradd, userdel) after the ones before it, retrying while another program holds the accounts' lock. */
function accounts<T>(work: () => Promise<T>): Promise<T> {
  const run = async (): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        // userdel also fails while a just-killed process is still exiting.
        if (!(error instanceof CommandFailedError) || attempt >= ATTEMPTS) throw error;
        await sleep(RETRY_MS * attempt);
      }
    }
  };
  const result = accountsQueue.then(run, run);
  accountsQueue = result.catch(() => undefined);
  return result;
}
