// Ensure, step by step, under the project's lock: the instance directory
// (a warm instance's, or a copy of the template), a pooler port, then
// PostgreSQL and PgBouncer brought up side by side, a new copy flushed, and
// the whole checked end to end.
import type pg from "pg";
import { RuntimeError, type DatabaseSpec, type EnsureResult, type PoolerInfo } from "../runtime.js";
import { appRoleName } from "../shared/app-role.js";
import { ensureAppDatabase } from "./instance/app-database.js";
import { flushCopy } from "./instance/data-dir.js";
import type { DriverParts } from "./driver-parts.js";
import { holdsCluster, prepareInstanceDir } from "./instance/instance-dir.js";
import { instancePaths } from "./instance/instance-paths.js";
import { allocatePoolerPort, endpointFor } from "./instance/pooler-endpoint.js";
import { poolerSecrets, saveAdminPassword, writePoolerFiles } from "./instance/pooler-setup.js";
import { createInstance, stopInstance, type Instance } from "./instance/project-instance.js";
import { slugTaken } from "../shared/target-checks.js";
import { stopClaimed } from "./reserves/warm-claim.js";
import { applyInstanceLimits } from "./instance/instance-limits.js";
import { effectiveLimits, sameLimits } from "../shared/resource-limits.js";

export interface EnsureOptions {
  /** A recovery calls it on the data it recovered: its marker is its own, not a leftover to undo. */
  readonly recovering?: boolean;
}

export async function ensureInstance(parts: DriverParts, spec: DatabaseSpec, callerSignal: AbortSignal | undefined, options: EnsureOptions = {}): Promise<EnsureResult> {
  callerSignal?.throwIfAborted();
  const existing = parts.instances.get(spec.slug);
  if (existing && existing.projectId !== spec.projectId) throw slugTaken(spec.slug);
  const paths = instancePaths(parts.dataDir, spec.slug);
  if (existing?.result && isHealthy(parts, existing, spec.password) && (!spec.mustExist || (await holdsCluster(paths)))) {
    // A changed override (UpdateDatabase) is applied in place, to the running processes.
    if (!sameLimits(existing.limits, effectiveLimits(parts.defaultLimits, spec.limits))) {
      await applyInstanceLimits(existing, parts.defaultLimits, spec.limits, false);
    }
    existing.wal.keepRunning();
    return existing.result;
  }

  const signal = callerSignal ? AbortSignal.any([parts.closing, callerSignal]) : parts.closing;

  const started = Date.now();
  const template = await parts.template();
  const deadline = Date.now() + parts.readyTimeoutMs;
  const appRole = appRoleName(spec.slug);
  // Worked out while the directory is prepared (see pooler-setup.ts).
  const secrets = poolerSecrets(paths, appRole, spec.password, existing?.admin);
  secrets.catch(() => undefined);
  const { source, warm, runAs } = await prepareInstanceDir(parts, spec, paths, template, options.recovering === true).catch(async (error: unknown) => {
    // A server whose data directory was deleted under it still runs on the
    // unlinked files: stopped, so no app writes into data that is already gone.
    if (existing && error instanceof RuntimeError && error.reason === "lost") {
      existing.healthy = false;
      await stopInstance(existing);
    }
    throw error;
  });
  let port: number;
  try {
    signal.throwIfAborted();
    port = await allocatePoolerPort(parts.ports, parts.portRange, spec.projectId, spec.port);
    if (spec.port !== undefined && port !== spec.port) {
      // Its DATABASE_URL changes: the deploy engine's next GetConnection has the new one.
      parts.logger.warn({ projectId: spec.projectId, slug: spec.slug, wanted: spec.port, port }, "the pooler port the database had is taken or outside SOTA_POOLER_PORTS here: it gets another");
    }
  } catch (error) {
    // Not yet an instance that close() would stop.
    if (warm) await stopClaimed(warm);
    throw error;
  }
  const instance = existing ?? createInstance(parts, spec, paths, port, runAs, warm);
  parts.instances.set(spec.slug, instance);
  instance.healthy = false;
  // Before anything (re)starts: its processes are born inside the limits.
  await applyInstanceLimits(instance, parts.defaultLimits, spec.limits, existing === undefined);
  if (instance.pgbouncer.port !== port) {
    await instance.pgbouncer.stop();
    instance.pgbouncer.port = port;
  }

  const { admin, adminSaved, appVerifier } = await secrets;
  instance.admin = admin;
  // PostgreSQL and PgBouncer come up side by side: PgBouncer only connects to
  // the server once a client arrives, and the role gets the very verifier
  // PgBouncer is given (SCRAM pass-through needs the same salt on both). A new
  // copy is flushed once PostgreSQL is up (see flushCopy), while the role and
  // database are set up and checked through PgBouncer.
  const pooler = startPooler(parts, instance, appVerifier, adminSaved);
  const postgresUp = startPostgres(instance, deadline, signal);
  const flushed = source === "copy" ? postgresUp.then(() => flushOrStop(instance, parts)) : Promise.resolve();
  // Awaited in `finally`; this only keeps a failure meanwhile from counting as unhandled.
  flushed.catch(() => undefined);
  let postgresVersion: string;
  let poolerInfo: PoolerInfo;
  try {
    const [verifier] = await settleAll(
      postgresUp.then((admin) => setUpAppDatabase(instance, admin, spec, appVerifier)),
      pooler,
    );
    // The role kept an older verifier of the same password: PgBouncer must have that one.
    if (verifier !== appVerifier) await startPooler(parts, instance, verifier);
    [postgresVersion, poolerInfo] = await settleAll(
      instance.pgbouncer.waitForAppQuery(appRole, spec.password, spec.slug, deadline, signal),
      instance.pgbouncer.poolerInfo(admin.password, deadline, signal),
    );
  } finally {
    // Ensure never returns before a new copy is on disk, and a failed flush
    // (which stopped the instance) is the cause of whatever failed after it.
    await flushed;
  }
  instance.pgbouncer.process.supervise();
  // Archiving starts now, in the background: ensure does not wait for it.
  instance.wal.keepRunning();

  const result: EnsureResult = { endpoint: endpointFor(port), postgresVersion, pooler: poolerInfo };
  instance.result = result;
  instance.passwordDigest = parts.digests.of(spec.password);
  instance.healthy = true;
  instance.logger.info({ projectId: spec.projectId, port, source, ms: Date.now() - started }, "database ready");
  return result;
}

/**
 * The deploy engine calls ensure on every deploy: when nothing has died since
 * the last end-to-end check and the password is the one verified then, there
 * is nothing to redo.
 */
function isHealthy(parts: DriverParts, instance: Instance, password: string): boolean {
  return (
    instance.healthy &&
    instance.postgres.running &&
    instance.pgbouncer.running &&
    parts.digests.matches(instance.passwordDigest, password)
  );
}

/** PostgreSQL running and accepting a superuser session, which is returned. */
async function startPostgres(instance: Instance, deadline: number, signal: AbortSignal): Promise<pg.Client> {
  if (!instance.postgres.running && !instance.postgres.process.supervising) await instance.postgres.start();
  return instance.postgres.connect("postgres", deadline, signal);
}

/** The app role and database as `spec` wants them, through `admin` (ended after); returns the role's verifier. */
async function setUpAppDatabase(instance: Instance, admin: pg.Client, spec: DatabaseSpec, verifier: string): Promise<string> {
  try {
    const current = await ensureAppDatabase(admin, spec.slug, spec.password, verifier);
    instance.postgres.process.supervise();
    return current;
  } finally {
    await admin.end().catch(() => undefined);
  }
}

/** A copy that cannot be flushed must not serve: stopped, it is copied again by the next ensure. */
async function flushOrStop(instance: Instance, parts: DriverParts): Promise<void> {
  try {
    await flushCopy(instance.paths);
  } catch (error) {
    await stopInstance(instance);
    throw error;
  }
}

/** PgBouncer running with a config and userlist that give the app role `appVerifier`. */
async function startPooler(parts: DriverParts, instance: Instance, appVerifier: string, adminSaved = true): Promise<void> {
  const admin = instance.admin!;
  if (!adminSaved) await saveAdminPassword(instance.paths, admin);
  const changed = await writePoolerFiles({
    paths: instance.paths,
    slug: instance.slug,
    appRole: appRoleName(instance.slug),
    port: instance.pgbouncer.port,
    admin,
    appVerifier,
    preparedStatementsSupported: parts.binaries.pgbouncer.preparedStatementsSupported,
    runAs: instance.runAs,
  });
  if (!instance.pgbouncer.running && !instance.pgbouncer.process.supervising) await instance.pgbouncer.start();
  else if (changed && instance.pgbouncer.running) await instance.pgbouncer.reload(admin.password);
}

/** Waits for all, then fails with the first failure: none is left running unawaited. */
async function settleAll<T extends readonly unknown[]>(...work: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const outcomes = await Promise.allSettled(work);
  const failed = outcomes.find((outcome) => outcome.status === "rejected");
  if (failed) throw failed.reason;
  return outcomes.map((outcome) => (outcome as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
