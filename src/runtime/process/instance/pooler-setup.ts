// What PgBouncer needs for one instance: the console's admin password
// (generated once, kept 0600 in the instance dir, never logged), the SCRAM
// verifiers of the admin and the app role in its userlist, and its config.
// The secrets are worked out before the instance's directory is ready, while
// the template is still being copied: deriving a verifier is the costliest
// computation of a new database, and a copy runs in another process.
import { randomBytes } from "node:crypto";
import type { InstancePaths } from "./instance-paths.js";
import type { RunAs } from "../host/os-user.js";
import { readableBy, readIfExists, SERVICE_ONLY, writeServiceFile, writeServiceFileIfChanged } from "../host/owned-files.js";
import { POOLER_ADMIN_USER, renderPgbouncerIni, renderUserlist, userlistSecret } from "../children/pgbouncer-config.js";
import { createScramVerifier, scramVerifierMatches } from "../../shared/scram-secret.js";

export interface PoolerAdmin {
  readonly password: string;
  readonly verifier: string;
}

export interface PoolerSecrets {
  readonly admin: PoolerAdmin;
  /** False when the admin password is new and not written yet (the directory may not exist yet). */
  readonly adminSaved: boolean;
  /** The app role's verifier for the wanted password: the one PgBouncer and PostgreSQL should both hold. */
  readonly appVerifier: string;
}

/** Reuses whatever on disk still matches; `known` is what a running instance already holds. */
export async function poolerSecrets(paths: InstancePaths, appRole: string, password: string, known?: PoolerAdmin): Promise<PoolerSecrets> {
  const userlist = await readIfExists(paths.pgbouncerUserlist);
  const recordedApp = userlistSecret(userlist, appRole);
  const appVerifier = recordedApp && scramVerifierMatches(password, recordedApp) ? recordedApp : createScramVerifier(password);
  if (known) return { admin: known, adminSaved: true, appVerifier };
  const saved = (await readIfExists(paths.poolerAdminPassword))?.trim();
  const adminSaved = saved !== undefined && /^[0-9a-f]{32}$/.test(saved);
  const adminPassword = adminSaved ? saved : randomBytes(16).toString("hex");
  const recordedAdmin = userlistSecret(userlist, POOLER_ADMIN_USER);
  const adminVerifier = recordedAdmin && scramVerifierMatches(adminPassword, recordedAdmin) ? recordedAdmin : createScramVerifier(adminPassword);
  return { admin: { password: adminPassword, verifier: adminVerifier }, adminSaved, appVerifier };
}

/** The service's alone: PgBouncer gets only its verifier. */
export async function saveAdminPassword(paths: InstancePaths, admin: PoolerAdmin): Promise<void> {
  await writeServiceFile(paths.poolerAdminPassword, `${admin.password}\n`, SERVICE_ONLY);
}

export interface PoolerFiles {
  readonly paths: InstancePaths;
  readonly slug: string;
  readonly appRole: string;
  readonly port: number;
  readonly admin: PoolerAdmin;
  readonly appVerifier: string;
  readonly preparedStatementsSupported: boolean;
  readonly runAs: RunAs;
}

/** Writes pgbouncer.ini and the userlist when they differ; returns whether either changed. */
export async function writePoolerFiles(files: PoolerFiles): Promise<boolean> {
  const { paths, runAs } = files;
  const ini = renderPgbouncerIni({
    slug: files.slug,
    port: files.port,
    socketDir: paths.socketDir,
    userlistFile: paths.pgbouncerUserlist,
    logFile: paths.pgbouncerLog,
    pidFile: paths.pgbouncerPid,
    preparedStatementsSupported: files.preparedStatementsSupported,
  });
  const userlist = renderUserlist([
    [files.appRole, files.appVerifier],
    [POOLER_ADMIN_USER, files.admin.verifier],
  ]);
  // Rendered afresh by every ensure before PgBouncer (re)starts; the service's
  // files, which PgBouncer (as the instance's user) may read but not change.
  const generated = { durable: false };
  const iniChanged = await writeServiceFileIfChanged(paths.pgbouncerIni, ini, readableBy(runAs), generated);
  const userlistChanged = await writeServiceFileIfChanged(paths.pgbouncerUserlist, userlist, readableBy(runAs), generated);
  return iniChanged || userlistChanged;
}
