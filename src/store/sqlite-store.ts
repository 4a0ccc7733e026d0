// SQLite (better-sqlite3) implementation of the Store. Synchronous calls on one
// connection make every method atomic within this process; WAL keeps readers
// (metrics, readiness) from waiting on writers.
import Database from "better-sqlite3";
import { chmodSync, existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { PortRange } from "../runtime/port-registry.js";
import type { BackupRecord, DatabaseRecord } from "./records.js";
import { createPrivateFile } from "./private-files.js";
import { SlugTakenError, type BackupPatch, type DatabasePatch, type Store } from "./store.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS databases (
  project_id       TEXT PRIMARY KEY,
  slug             TEXT NOT NULL UNIQUE,
  state            TEXT NOT NULL,
  runtime          TEXT NOT NULL,
  sealed_password  TEXT NOT NULL,
  sealed_url       TEXT,
  host             TEXT,
  port             INTEGER,
  network          TEXT,
  postgres_version TEXT,
  pooler_json      TEXT,
  error            TEXT,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pooler_ports (
  port       INTEGER PRIMARY KEY,
  project_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS backups (
  id                 TEXT PRIMARY KEY,
  project_id         TEXT NOT NULL,
  slug               TEXT NOT NULL,
  kind               TEXT NOT NULL,
  state              TEXT NOT NULL,
  size_bytes         INTEGER,
  sha256             TEXT,
  started_at         INTEGER NOT NULL,
  finished_at        INTEGER,
  expires_at         INTEGER,
  error              TEXT,
  verification       TEXT,
  verified_at        INTEGER,
  verification_error TEXT
);
CREATE INDEX IF NOT EXISTS backups_by_project ON backups (project_id, started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS backups_by_state ON backups (state);
`;

interface DatabaseRow {
  project_id: string;
  slug: string;
  state: string;
  runtime: string;
  sealed_password: string;
  sealed_url: string | null;
  host: string | null;
  port: number | null;
  network: string | null;
  postgres_version: string | null;
  pooler_json: string | null;
  error: string | null;
  created_at: number;
  updated_at: number;
}

interface BackupRow {
  id: string;
  project_id: string;
  slug: string;
  kind: string;
  state: string;
  size_bytes: number | null;
  sha256: string | null;
  started_at: number;
  finished_at: number | null;
  expires_at: number | null;
  error: string | null;
  verification: string | null;
  verified_at: number | null;
  verification_error: string | null;
}

const DATABASE_COLUMNS: Record<keyof DatabasePatch, keyof DatabaseRow> = {
  state: "state",
  runtime: "runtime",
  sealedPassword: "sealed_password",
  sealedUrl: "sealed_url",
  host: "host",
  port: "port",
  network: "network",
  postgresVersion: "postgres_version",
  pooler: "pooler_json",
  error: "error",
};

const BACKUP_COLUMNS: Record<keyof BackupPatch, keyof BackupRow> = {
  state: "state",
  sizeBytes: "size_bytes",
  sha256: "sha256",
  finishedAt: "finished_at",
  expiresAt: "expires_at",
  error: "error",
  verification: "verification",
  verifiedAt: "verified_at",
  verificationError: "verification_error",
};

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  /** Prepared once per SQL text: Ensure reads its record on every deploy, and preparing costs more than the read. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(path: string, private readonly now: () => Date = () => new Date()) {
    if (path !== ":memory:") {
      mkdirSync(dirname(path), { recursive: true });
      // Sealed secrets, ids, ports: 0600. SQLite gives -wal and -shm the
      // database file's mode, so a private file before the first open makes
      // all three private; older ones are made so here.
      createPrivateFile(path);
      for (const suffix of ["-wal", "-shm"]) if (existsSync(path + suffix)) chmodSync(path + suffix, 0o600);
    }
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    // FULL: a database record must survive a power cut once Ensure has answered.
    this.db.pragma("synchronous = FULL");
    this.db.pragma("busy_timeout = 5000");
    this.db.exec(SCHEMA);
  }

  private statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  getDatabase(projectId: string): DatabaseRecord | undefined {
    const row = this.statement("SELECT * FROM databases WHERE project_id = ?").get(projectId) as DatabaseRow | undefined;
    return row && toDatabase(row);
  }

  getDatabaseBySlug(slug: string): DatabaseRecord | undefined {
    const row = this.statement("SELECT * FROM databases WHERE slug = ?").get(slug) as DatabaseRow | undefined;
    return row && toDatabase(row);
  }

  listDatabases(): DatabaseRecord[] {
    const rows = this.statement("SELECT * FROM databases ORDER BY created_at, project_id").all() as DatabaseRow[];
    return rows.map(toDatabase);
  }

  insertDatabase(record: DatabaseRecord): void {
    try {
      this.db
        .prepare(
          `INSERT INTO databases (project_id, slug, state, runtime, sealed_password, sealed_url, host, port, network,
             postgres_version, pooler_json, error, created_at, updated_at)
           VALUES (@project_id, @slug, @state, @runtime, @sealed_password, @sealed_url, @host, @port, @network,
             @postgres_version, @pooler_json, @error, @created_at, @updated_at)`,
        )
        .run(fromDatabase(record));
    } catch (error) {
      if (isUniqueViolation(error, "databases.slug")) {
        throw new SlugTakenError(`slug "${record.slug}" belongs to another project`);
      }
      throw error;
    }
  }

  updateDatabase(projectId: string, patch: DatabasePatch): DatabaseRecord {
    const values: Record<string, unknown> = { project_id: projectId, updated_at: this.now().getTime() };
    const sets = ["updated_at = @updated_at"];
    for (const [field, column] of Object.entries(DATABASE_COLUMNS) as [keyof DatabasePatch, keyof DatabaseRow][]) {
      if (!(field in patch)) continue;
      const value = patch[field];
      values[column] = field === "pooler" ? (value == null ? null : JSON.stringify(value)) : value;
      sets.push(`${column} = @${column}`);
    }
    const result = this.statement(`UPDATE databases SET ${sets.join(", ")} WHERE project_id = @project_id`).run(values);
    if (result.changes === 0) throw new Error(`no database recorded for project ${projectId}`);
    return this.getDatabase(projectId)!;
  }

  deleteDatabase(projectId: string): void {
    this.statement("DELETE FROM databases WHERE project_id = ?").run(projectId);
  }

  countDatabasesByState(): Record<string, number> {
    const rows = this.statement("SELECT state, COUNT(*) AS n FROM databases GROUP BY state").all() as { state: string; n: number }[];
    return Object.fromEntries(rows.map((row) => [row.state, row.n]));
  }

  allocate(projectId: string, range: PortRange, isUsable: (port: number) => boolean = () => true): number {
    return this.db.transaction(() => {
      const existing = this.statement("SELECT port FROM pooler_ports WHERE project_id = ?").get(projectId) as { port: number } | undefined;
      if (existing) return existing.port;
      const taken = new Set(
        (this.statement("SELECT port FROM pooler_ports WHERE port BETWEEN ? AND ?").all(range.min, range.max) as { port: number }[]).map(
          (row) => row.port,
        ),
      );
      for (let port = range.min; port <= range.max; port++) {
        if (taken.has(port) || !isUsable(port)) continue;
        this.statement("INSERT INTO pooler_ports (port, project_id) VALUES (?, ?)").run(port, projectId);
        return port;
      }
      throw new Error(`no free pooler port left in ${range.min}-${range.max}`);
    })();
  }

  release(projectId: string): void {
    this.statement("DELETE FROM pooler_ports WHERE project_id = ?").run(projectId);
  }

  insertBackup(record: BackupRecord): void {
    this.db
      .prepare(
        `INSERT INTO backups (id, project_id, slug, kind, state, size_bytes, sha256, started_at, finished_at, expires_at,
           error, verification, verified_at, verification_error)
         VALUES (@id, @project_id, @slug, @kind, @state, @size_bytes, @sha256, @started_at, @finished_at, @expires_at,
           @error, @verification, @verified_at, @verification_error)`,
      )
      .run(fromBackup(record));
  }

  updateBackup(id: string, patch: BackupPatch): BackupRecord {
    const values: Record<string, unknown> = { id };
    const sets: string[] = [];
    for (const [field, column] of Object.entries(BACKUP_COLUMNS) as [keyof BackupPatch, keyof BackupRow][]) {
      if (!(field in patch)) continue;
      const value = patch[field];
      values[column] = value instanceof Date ? value.getTime() : value;
      sets.push(`${column} = @${column}`);
    }
    if (sets.length > 0) {
      const result = this.statement(`UPDATE backups SET ${sets.join(", ")} WHERE id = @id`).run(values);
      if (result.changes === 0) throw new Error(`no backup ${id}`);
    }
    const row = this.statement("SELECT * FROM backups WHERE id = ?").get(id) as BackupRow | undefined;
    if (!row) throw new Error(`no backup ${id}`);
    return toBackup(row);
  }

  getBackup(projectId: string, id: string): BackupRecord | undefined {
    const row = this.statement("SELECT * FROM backups WHERE project_id = ? AND id = ?").get(projectId, id) as BackupRow | undefined;
    return row && toBackup(row);
  }

  listBackups(projectId: string): BackupRecord[] {
    const rows = this.db
      .prepare("SELECT * FROM backups WHERE project_id = ? ORDER BY started_at DESC, id DESC")
      .all(projectId) as BackupRow[];
    return rows.map(toBackup);
  }

  listBackupsByState(state: BackupRecord["state"]): BackupRecord[] {
    const rows = this.statement("SELECT * FROM backups WHERE state = ? ORDER BY started_at, id").all(state) as BackupRow[];
    return rows.map(toBackup);
  }

  deleteBackup(id: string): void {
    this.statement("DELETE FROM backups WHERE id = ?").run(id);
  }

  ping(): void {
    this.statement("SELECT 1").get();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function isUniqueViolation(error: unknown, column: string): boolean {
  return (
    error instanceof Error &&
    (error as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE" &&
    error.message.includes(column)
  );
}

function date(ms: number | null): Date | null {
  return ms == null ? null : new Date(ms);
}

function toDatabase(row: DatabaseRow): DatabaseRecord {
  return {
    projectId: row.project_id,
    slug: row.slug,
    state: row.state as DatabaseRecord["state"],
    runtime: row.runtime,
    sealedPassword: row.sealed_password,
    sealedUrl: row.sealed_url,
    host: row.host,
    port: row.port,
    network: row.network,
    postgresVersion: row.postgres_version,
    pooler: row.pooler_json ? JSON.parse(row.pooler_json) : null,
    error: row.error,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function fromDatabase(record: DatabaseRecord): DatabaseRow {
  return {
    project_id: record.projectId,
    slug: record.slug,
    state: record.state,
    runtime: record.runtime,
    sealed_password: record.sealedPassword,
    sealed_url: record.sealedUrl,
    host: record.host,
    port: record.port,
    network: record.network,
    postgres_version: record.postgresVersion,
    pooler_json: record.pooler ? JSON.stringify(record.pooler) : null,
    error: record.error,
    created_at: record.createdAt.getTime(),
    updated_at: record.updatedAt.getTime(),
  };
}

function toBackup(row: BackupRow): BackupRecord {
  return {
    id: row.id,
    projectId: row.project_id,
    slug: row.slug,
    kind: row.kind as BackupRecord["kind"],
    state: row.state as BackupRecord["state"],
    sizeBytes: row.size_bytes,
    sha256: row.sha256,
    startedAt: new Date(row.started_at),
    finishedAt: date(row.finished_at),
    expiresAt: date(row.expires_at),
    error: row.error,
    verification: row.verification as BackupRecord["verification"],
    verifiedAt: date(row.verified_at),
    verificationError: row.verification_error,
  };
}

function fromBackup(record: BackupRecord): BackupRow {
  return {
    id: record.id,
    project_id: record.projectId,
    slug: record.slug,
    kind: record.kind,
    state: record.state,
    size_bytes: record.sizeBytes,
    sha256: record.sha256,
    started_at: record.startedAt.getTime(),
    finished_at: record.finishedAt?.getTime() ?? null,
    expires_at: record.expiresAt?.getTime() ?? null,
    error: record.error,
    verification: record.verification,
    verified_at: record.verifiedAt?.getTime() ?? null,
    verification_error: record.verificationError,
  };
}
