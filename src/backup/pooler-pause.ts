// Holds a project's clients at PgBouncer while its database is swapped: PAUSE
// lets running transactions finish, closes the server connections and queues
// new queries instead of failing them; RESUME lets them through to whatever
// database now carries the name. Apps see a short wait, never a
// half-restored database and never a refused connection. Both of the
// project's pooler databases are paused: the transaction pool's ({slug}) and
// the session pool's ({slug}_session), which lead to the same database.
import { setTimeout as sleep } from "node:timers/promises";
import { loggableError, type Logger } from "../log.js";
import type { Runtime, RuntimeTarget } from "../runtime/runtime.js";
import { sessionDatabase } from "../runtime/shared/pgbouncer-settings.js";
import { BackupError } from "./backup-errors.js";
import { quoteIdent, quoteLiteral } from "./sql-text.js";

export interface PauseOptions {
  /** How long running transactions may take to finish before their sessions are ended. */
  readonly graceMs: number;
  /** How long PAUSE may take in all before the swap is given up. */
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/** Runs `work` while the project's database is paused in PgBouncer; RESUME runs whatever happens. */
export async function withPausedDatabase<T>(runtime: Runtime, target: RuntimeTarget, options: PauseOptions, work: () => Promise<T>): Promise<T> {
  try {
    await pause(runtime, target, options);
    return await work();
  } finally {
    await resume(runtime, target, options.logger);
  }
}

/** The names under which the project's PgBouncer leads to its database. */
export function poolerDatabases(slug: string): string[] {
  return [slug, sessionDatabase(slug)];
}

async function pause(runtime: Runtime, target: RuntimeTarget, options: PauseOptions): Promise<void> {
  // PgBouncer's console takes a bare word of [a-z0-9_] or a double-quoted name; slugs have '-'.
  // A session-pool PAUSE waits for its clients to leave: the grace period below ends them too.
  const pausing = Promise.all(poolerDatabases(target.slug).map((name) => runtime.poolerCommand(target, `PAUSE ${quoteIdent(name)}`)));
  pausing.catch(() => undefined);
  if ((await settledWithin(pausing, options.graceMs)) === "pending") {
    // A transaction left open would hold PAUSE forever; its data is about to be replaced anyway.
    options.logger.warn({ projectId: target.projectId, slug: target.slug }, "transactions still open after the grace period; ending their sessions");
    await terminateSessions(runtime, target, [target.slug]);
  }
  if ((await settledWithin(pausing, options.timeoutMs)) === "pending") {
    throw new BackupError(`PgBouncer did not pause "${target.slug}" within ${options.timeoutMs} ms`);
  }
  await pausing;
}

async function resume(runtime: Runtime, target: RuntimeTarget, logger: Logger): Promise<void> {
  for (const name of poolerDatabases(target.slug)) await resumeOne(runtime, target, name, logger);
}

async function resumeOne(runtime: Runtime, target: RuntimeTarget, name: string, logger: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await runtime.poolerCommand(target, `RESUME ${quoteIdent(name)}`);
      return;
    } catch (error) {
      // "not paused": PAUSE itself failed, nothing to undo.
      if (/not paused/i.test((error as Error)?.message ?? "")) return;
      if (attempt >= 5) {
        logger.error(
          { projectId: target.projectId, slug: target.slug, database: name, err: loggableError(error) },
          "could not RESUME the database in PgBouncer: its clients stay paused until the pooler restarts",
        );
        return;
      }
      await sleep(200 * attempt);
    }
  }
}

/** Ends every session on the named databases but the caller's own. */
export async function terminateSessions(runtime: Runtime, target: RuntimeTarget, databases: readonly string[]): Promise<void> {
  const names = databases.map(quoteLiteral).join(", ");
  await runtime.adminQuery(
    target,
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN (${names}) AND pid <> pg_backend_pid()`,
  );
}

async function settledWithin(promise: Promise<unknown>, ms: number): Promise<"settled" | "pending"> {
  const controller = new AbortController();
  try {
    return await Promise.race([
      promise.then(
        () => "settled" as const,
        () => "settled" as const,
      ),
      sleep(ms, "pending" as const, { signal: controller.signal }),
    ]);
  } finally {
    controller.abort();
  }
}
