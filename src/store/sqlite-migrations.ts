// The SQLite state schema, as forward migrations; the version lives in
// PRAGMA user_version (0 for a state.db written before versions existed).
import type Database from "better-sqlite3";
import { pendingMigrations, type Migration } from "./migrations.js";

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    // Exactly the schema the unversioned release created, with IF NOT EXISTS
    // kept: on its state.db (user_version 0) this changes nothing but the version.
    description: "databases, pooler ports and backups",
    sql: `
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
`,
  },
  {
    version: 2,
    description: "scheduled backup runs, one row per cron slot",
    sql: `
CREATE TABLE scheduled_runs (
  slot_at    INTEGER PRIMARY KEY,
  replica    TEXT NOT NULL,
  claimed_at INTEGER NOT NULL
);
`,
  },
  {
    version: 3,
    description: "a project's resource limits override, as JSON",
    sql: "ALTER TABLE databases ADD COLUMN limits_json TEXT;",
  },
  {
    version: 4,
    // Every backup written before is a dump: the default says so.
    description: "a backup's format (dump or base) and, for a base backup, its WAL generation and start segment",
    sql: `
ALTER TABLE backups ADD COLUMN format TEXT NOT NULL DEFAULT 'dump';
ALTER TABLE backups ADD COLUMN wal_generation TEXT;
ALTER TABLE backups ADD COLUMN wal_start_segment TEXT;
`,
  },
  {
    version: 5,
    description: "off-host copies: each backup's copy state, and the WAL files copied",
    sql: `
CREATE TABLE offsite_copies (
  backup_id       TEXT PRIMARY KEY,
  project_id      TEXT NOT NULL,
  state           TEXT NOT NULL,
  attempts        INTEGER NOT NULL,
  error           TEXT,
  object_key      TEXT,
  sha256          TEXT,
  size_bytes      INTEGER,
  copied_at       INTEGER,
  next_attempt_at INTEGER
);
CREATE INDEX offsite_copies_by_project ON offsite_copies (project_id);
CREATE TABLE offsite_wal (
  project_id TEXT NOT NULL,
  generation TEXT NOT NULL,
  file       TEXT NOT NULL,
  sha256     TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  copied_at  INTEGER NOT NULL,
  PRIMARY KEY (project_id, generation, file)
);
`,
  },
];

export function sqliteSchemaVersion(db: Database.Database): number {
  return db.pragma("user_version", { simple: true }) as number;
}

/** Applies what is pending, all or nothing. Throws StateTooNewError. */
export function migrateSqlite(db: Database.Database, migrations: readonly Migration[] = SQLITE_MIGRATIONS): void {
  // IMMEDIATE: takes the write lock before reading the version, so two opens cannot both migrate.
  db.transaction(() => {
    const pending = pendingMigrations(sqliteSchemaVersion(db), migrations, "SQLite state (state.db)");
    for (const migration of pending) {
      db.exec(migration.sql);
      db.pragma(`user_version = ${migration.version}`);
    }
  }).immediate();
}
