// Finds the host's PostgreSQL and PgBouncer. The service refuses to start
// without them, so every failure is one line that says what to install.
import { readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { supportsPreparedStatements } from "../../shared/pgbouncer-settings.js";
import { RuntimeError } from "../../runtime.js";
import { runCommand } from "../children/run-command.js";
import { findProgram, isExecutable } from "./path-checks.js";

const POSTGRES_ROOT = "/usr/lib/postgresql";
const PGBOUNCER_FALLBACK = "/usr/sbin/pgbouncer";
const SERVER_PROGRAMS = ["postgres", "initdb", "pg_dump", "psql", "pg_basebackup", "pg_receivewal"] as const;

export type Version = readonly [number, number, number];

export interface PostgresBinaries {
  readonly binDir: string;
  readonly postgres: string;
  readonly initdb: string;
  readonly pgDump: string;
  readonly psql: string;
  /** Base backups and the WAL receiver of point-in-time recovery. */
  readonly pgBasebackup: string;
  readonly pgReceivewal: string;
  /** e.g. 15 */
  readonly major: number;
  /** e.g. "15.18" */
  readonly version: string;
}

export interface PgbouncerBinary {
  readonly path: string;
  /** e.g. "1.18.0" */
  readonly version: string;
  readonly preparedStatementsSupported: boolean;
}

export interface Binaries {
  readonly postgres: PostgresBinaries;
  readonly pgbouncer: PgbouncerBinary;
}

export interface BinaryOverrides {
  /** A PostgreSQL bin directory (SOTA_PG_BIN_DIR); default: the highest major under /usr/lib/postgresql. */
  readonly pgBinDir?: string | undefined;
  /** The pgbouncer executable (SOTA_PGBOUNCER_BIN); default: PATH, then /usr/sbin/pgbouncer. */
  readonly pgbouncerBin?: string | undefined;
}

export async function discoverBinaries(overrides: BinaryOverrides = {}): Promise<Binaries> {
  const [postgres, pgbouncer] = await Promise.all([
    findPostgres(overrides.pgBinDir),
    findPgbouncer(overrides.pgbouncerBin),
  ]);
  return { postgres, pgbouncer };
}

/** For ping: the programs found at start are still there (a package upgrade or removal may take them away). */
export async function assertBinariesPresent(binaries: Binaries): Promise<void> {
  const { postgres, pgbouncer } = binaries;
  for (const path of [postgres.postgres, postgres.initdb, postgres.pgDump, postgres.psql, postgres.pgBasebackup, postgres.pgReceivewal]) {
    if (!(await isExecutable(path))) {
      throw new RuntimeError(
        "unavailable",
        `PostgreSQL program ${path} is missing: reinstall the postgresql package (apt-get install postgresql) or set SOTA_PG_BIN_DIR`,
      );
    }
  }
  if (!(await isExecutable(pgbouncer.path))) {
    throw new RuntimeError(
      "unavailable",
      `PgBouncer ${pgbouncer.path} is missing: reinstall the pgbouncer package (apt-get install pgbouncer) or set SOTA_PGBOUNCER_BIN`,
    );
  }
}

async function findPostgres(pgBinDir: string | undefined): Promise<PostgresBinaries> {
  if (pgBinDir !== undefined) {
    if (!(await hasServerPrograms(pgBinDir))) {
      throw new RuntimeError(
        "unavailable",
        `PostgreSQL server binaries (${SERVER_PROGRAMS.join(", ")}) not found in ${pgBinDir} (SOTA_PG_BIN_DIR): install the postgresql package (apt-get install postgresql) and point SOTA_PG_BIN_DIR at its bin directory, or unset it`,
      );
    }
    return describePostgres(pgBinDir);
  }
  for (const major of await installedMajors()) {
    const binDir = join(POSTGRES_ROOT, String(major), "bin");
    if (await hasServerPrograms(binDir)) return describePostgres(binDir);
  }
  throw new RuntimeError(
    "unavailable",
    `PostgreSQL server binaries not found under ${POSTGRES_ROOT}/*/bin: install the postgresql package (apt-get install postgresql) or set SOTA_PG_BIN_DIR`,
  );
}

/** Majors present under /usr/lib/postgresql, highest first. */
async function installedMajors(): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(POSTGRES_ROOT);
  } catch {
    return [];
  }
  return names
    .filter((name) => /^\d+(\.\d+)?$/.test(name))
    .map(Number)
    .sort((a, b) => b - a);
}

async function hasServerPrograms(binDir: string): Promise<boolean> {
  const found = await Promise.all(SERVER_PROGRAMS.map((name) => isExecutable(join(binDir, name))));
  return found.every(Boolean);
}

async function describePostgres(binDir: string): Promise<PostgresBinaries> {
  const postgres = join(binDir, "postgres");
  const { stdout } = await runCommand(postgres, ["--version"], { timeoutMs: 10_000 });
  // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(stdout);
  if (!match) {
    throw new RuntimeError("unavailable", `${postgres} --version printed no PostgreSQL version; check SOTA_PG_BIN_DIR`);
  }
  const major = Number(match[1]);
  return {
    binDir,
    postgres,
    initdb: join(binDir, "initdb"),
    pgDump: join(binDir, "pg_dump"),
    psql: join(binDir, "psql"),
    pgBasebackup: join(binDir, "pg_basebackup"),
    pgReceivewal: join(binDir, "pg_receivewal"),
    major,
    version: match[2] === undefined ? String(major) : `${major}.${match[2]}`,
  };
}

async function findPgbouncer(pgbouncerBin: string | undefined): Promise<PgbouncerBinary> {
  if (pgbouncerBin !== undefined) {
    if (!(await isExecutable(pgbouncerBin))) {
      throw new RuntimeError(
        "unavailable",
        `PgBouncer not found at ${pgbouncerBin} (SOTA_PGBOUNCER_BIN): install the pgbouncer package (apt-get install pgbouncer) or fix the path`,
      );
    }
    return describePgbouncer(pgbouncerBin);
  }
  const found = await findProgram("pgbouncer", [dirname(PGBOUNCER_FALLBACK)]);
  if (found !== undefined) return describePgbouncer(found);
  throw new RuntimeError(
    "unavailable",
    `PgBouncer not found on PATH or at ${PGBOUNCER_FALLBACK}: install the pgbouncer package (apt-get install pgbouncer) or set SOTA_PGBOUNCER_BIN`,
  );
}

async function describePgbouncer(path: string): Promise<PgbouncerBinary> {
  const { stdout } = await runCommand(path, ["--version"], { timeoutMs: 10_000 });
  const version = parsePgbouncerVersion(stdout);
  if (!version) {
    throw new RuntimeError("unavailable", `${path} --version printed no PgBouncer version; check SOTA_PGBOUNCER_BIN`);
  }
  // The service hands PgBouncer the port it holds through systemd socket
  // activation (see pgbouncer-server.ts); a build without it would bind nothing.
  if (!/^systemd:\s*yes\b/im.test(stdout)) {
    throw new RuntimeError(
      "unavailable",
      `PgBouncer ${path} was built without systemd support (its --version says so), which the service needs to hand it its port: install a build with it (Debian's and Ubuntu's pgbouncer package) or set SOTA_PGBOUNCER_BIN`,
    );
  }
  return {
    path,
    version: version.join("."),
    preparedStatementsSupported: supportsPreparedStatements(version.join(".")),
  };
}

/** "PgBouncer 1.18.0\nlibevent ..." → [1, 18, 0] */
export function parsePgbouncerVersion(text: string): Version | undefined {
  const match = /PgBouncer\s+(\d+)\.(\d+)(?:\.(\d+))?/i.exec(text);
  if (!match) return undefined;
  return [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
}
