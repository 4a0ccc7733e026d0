// initdb takes seconds; copying an initialised cluster takes a fraction of
// that. So initdb runs once per PostgreSQL major into a template cluster that
// every new database is copied from. The template also holds a placeholder role
// and database that a copy only has to rename (no CREATE DATABASE per project).
import { randomBytes } from "node:crypto";
import { lstat, mkdtemp, readdir, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { loggableError, type Logger } from "../../../log.js";
import { RuntimeError } from "../../runtime.js";
import { PLACEHOLDER_NAME, quoteIdent } from "../instance/app-database.js";
import type { InstanceUsers } from "../host/instance-users.js";
import type { RunAs } from "../host/os-user.js";
import { ensureDir, ensurePrivateDir, ownedBy, passableBy, removeTree, SERVICE_ONLY, SERVICE_USER, setAccess, syncDir } from "../host/owned-files.js";
import { pathExists } from "../host/path-checks.js";
import { queryRows } from "../sql/pg-clients.js";
import type { PostgresBinaries } from "../host/postgres-binaries.js";
import { PostgresServer } from "../children/postgres-server.js";
import { SUPERUSER } from "../children/postgres-settings.js";
import { runCommand } from "../children/run-command.js";
import { stopStalePostmaster } from "../children/stale-process.js";

export interface TemplateOptions {
  readonly templatesDir: string;
  readonly binaries: PostgresBinaries;
  /** Who builds it: a user made for the build (deleted after), or the shared user. */
  readonly users: InstanceUsers;
  readonly logger: Logger;
  readonly timeoutMs: number;
}

/** Next to a build's directory: the service's, holding the build's config files and its user's record. */
const CONF_SUFFIX = ".conf";
const SERVICE_ONLY_DIR = { ...SERVICE_ONLY, mode: 0o700 };

export function templateDir(templatesDir: string, major: number): string {
  return join(templatesDir, `pg${major}`);
}

/**
 * The template's path, building it first when missing. It is built under a
 * temporary name and renamed into place, so a crash never leaves a half template
 * where a complete one is expected. The template is the service's (root's)
 * once built: no instance's user can change what later copies start from.
 */
export async function ensureTemplateCluster(options: TemplateOptions): Promise<string> {
  const { templatesDir, binaries, users, logger } = options;
  const finalDir = templateDir(templatesDir, binaries.major);
  const found = await lstat(finalDir).catch(() => undefined);
  if (found && (await pathExists(join(finalDir, "PG_VERSION")))) {
    if (found.isDirectory() && found.uid === SERVICE_USER.uid) return finalDir;
    // An earlier release's, owned by the user every instance shared: rebuilt, not trusted.
    logger.info({ template: finalDir }, "rebuilding the template cluster: it belongs to another OS user");
  }
  await removeTree(finalDir);

  const prefix = `pg${binaries.major}.tmp-`;
  // Sorted: a build's directory before its .conf directory, which names the build's user.
  for (const name of (await readdir(templatesDir)).sort()) {
    if (!name.startsWith(prefix)) continue;
    // A service killed mid-build may have left the build's postmaster running in it.
    if (name.endsWith(CONF_SUFFIX)) await users.release(join(templatesDir, name));
    else await stopStalePostmaster(join(templatesDir, name), logger);
    await removeTree(join(templatesDir, name));
  }
  const started = Date.now();
  const buildDir = join(templatesDir, `${prefix}${randomBytes(6).toString("hex")}`);
  const confDir = `${buildDir}${CONF_SUFFIX}`;
  await ensureDir(confDir, SERVICE_ONLY_DIR);
  try {
    const runAs = await users.assign(confDir);
    await setAccess(confDir, passableBy(runAs), "directory");
    await ensureDir(buildDir, ownedBy(runAs));
    await runCommand(
      binaries.initdb,
      ["-D", buildDir, "-U", SUPERUSER, "-E", "UTF8", "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=reject"],
      { runAs, cwd: templatesDir, timeoutMs: options.timeoutMs },
    );
    await addPlaceholder(options, buildDir, confDir, runAs);
    if (runAs.switchUser) await runCommand("chown", ["-R", "-h", `${SERVICE_USER.uid}:${SERVICE_USER.gid}`, buildDir]);
  } catch (error) {
    if (error instanceof RuntimeError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new RuntimeError("failed", `building the PostgreSQL ${binaries.major} template cluster failed: ${message}`, { cause: error });
  } finally {
    await users.release(confDir).catch((error: unknown) => logger.warn({ err: loggableError(error) }, "deleting the template build's OS user failed"));
    await rm(confDir, { recursive: true, force: true });
  }
  await rename(buildDir, finalDir);
  await syncDir(templatesDir);
  logger.info({ template: finalDir, postgresVersion: binaries.version, ms: Date.now() - started }, "template cluster built");
  return finalDir;
}

/**
 * ensureTemplateCluster, built once and shared by all who ask meanwhile (the
 * warm pool and concurrent ensures). A failed build is not kept: the next call
 * tries again.
 */
export function sharedTemplateCluster(options: TemplateOptions): () => Promise<string> {
  let template: Promise<string> | undefined;
  return () => {
    template ??= ensureTemplateCluster(options).catch((error: unknown) => {
      template = undefined;
      throw error;
    });
    return template;
  };
}

/**
 * Copies the template cluster to `dest`, which must not exist yet and lies in
 * a directory of the service's that no other process uses, and gives the copy
 * to `runAs`. The service copies (the template may be root's) and hands the
 * copy over before any process of that user runs on it.
 */
export async function copyTemplate(template: string, dest: string, runAs: RunAs): Promise<void> {
  await runCommand("cp", ["-a", template, dest], { cwd: dirname(dest) });
  // -h: a symlink in the copy is changed itself, never what it points to.
  if (runAs.switchUser) await runCommand("chown", ["-R", "-h", `${runAs.uid}:${runAs.gid}`, dest]);
}

/**
 * Flushes a copy to disk before its name may be trusted: one syncfs(2) of the
 * file system (coreutils `sync -f`) instead of an fsync per file (initdb
 * --sync-only), whose thousand journal commits cost several times the copy
 * itself. PostgreSQL offers the same choice for its own start-up sync
 * (recovery_init_sync_method = syncfs). It also writes out whatever else is
 * dirty on that file system, which is due to be written anyway.
 */
export async function syncFileSystem(path: string): Promise<void> {
  await runCommand("sync", ["-f", path], { cwd: dirname(path) });
}

async function addPlaceholder(options: TemplateOptions, pgdata: string, confDir: string, runAs: RunAs): Promise<void> {
  const socketDir = await mkdtemp(join(tmpdir(), "sota-template-"));
  const server = new PostgresServer({
    name: "the template cluster",
    binaries: options.binaries,
    runAs,
    pgdata,
    configFile: join(confDir, "postgresql.conf"),
    hbaFile: join(confDir, "pg_hba.conf"),
    socketDir,
    socketDirShared: true,
    logFile: join(options.templatesDir, "template-build.log"),
    logger: options.logger,
  });
  try {
    await ensurePrivateDir(socketDir, runAs);
    await server.start();
    const client = await server.connect("postgres", Date.now() + options.timeoutMs, AbortSignal.timeout(options.timeoutMs));
    try {
      const name = quoteIdent(PLACEHOLDER_NAME);
      await queryRows(client, `CREATE ROLE ${name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`);
      await queryRows(client, `CREATE DATABASE ${name} OWNER ${name}`);
    } finally {
      await client.end().catch(() => undefined);
    }
    // Vacuumed, frozen and analysed here, once: otherwise autovacuum does it
    // in every copy within its first minutes (the catalogs of a fresh initdb
    // were never analysed), writing WAL that each database's archive keeps.
    for (const database of ["template1", "postgres", PLACEHOLDER_NAME]) {
      const each = await server.connect(database, Date.now() + options.timeoutMs, AbortSignal.timeout(options.timeoutMs));
      try {
        await queryRows(each, "VACUUM (FREEZE, ANALYZE)");
      } finally {
        await each.end().catch(() => undefined);
      }
    }
  } finally {
    // A clean (fast) shutdown checkpoints, so copies start without recovery.
    await server.stop();
    await rm(socketDir, { recursive: true, force: true });
  }
}
