// The PostgreSQL state schema, as forward migrations, in its own schema
// ("sota") of the database SOTA_STATE_URL names. Applied versions are rows of
// sota.migrations; replicas starting together serialize on an advisory lock.
import type pg from "pg";
import { pendingMigrations, type Migration } from "./migrations.js";

export const STATE_SCHEMA = "sota";

/** Key of the transaction-scoped advisory lock that serializes migrations. */
const MIGRATION_LOCK = "sota.migrations";

export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    // Times are epoch milliseconds (BIGINT) as in SQLite, so both stores map rows the same way.
    description: "databases, pooler ports and backups",
    sql: `
CREATE TABLE sota.databases (
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
  created_at       BIGINT NOT NULL,
  updated_at       BIGINT NOT NULL
);
CREATE TABLE sota.pooler_ports (
  port       INTEGER PRIMARY KEY,
  project_id TEXT NOT NULL UNIQUE
);
CREATE TABLE sota.backups (
  id                 TEXT PRIMARY KEY,
  project_id         TEXT NOT NULL,
  slug               TEXT NOT NULL,
  kind               TEXT NOT NULL,
  state              TEXT NOT NULL,
  size_bytes         BIGINT,
  sha256             TEXT,
  started_at         BIGINT NOT NULL,
  finished_at        BIGINT,
  expires_at         BIGINT,
  error              TEXT,
  verification       TEXT,
  verified_at        BIGINT,
  verification_error TEXT
);
CREATE INDEX backups_by_project ON sota.backups (project_id, started_at DESC, id DESC);
CREATE INDEX backups_by_state ON sota.backups (state);
`,
  },
  {
    version: 2,
    description: "scheduled backup runs, one row per cron slot (claimed by the replica that leads the schedule)",
    sql: `
CREATE TABLE sota.scheduled_runs (
  slot_at    BIGINT PRIMARY KEY,
  replica    TEXT NOT NULL,
  claimed_at BIGINT NOT NULL
);
`,
  },
  {
    version: 3,
    description: "a project's resource limits override, as JSON",
    sql: "ALTER TABLE sota.databases ADD COLUMN limits_json TEXT;",
  },
  {
    version: 4,
    // Every backup written before is a dump: the default says so.
    description: "a backup's format (dump or base) and, for a base backup, its WAL generation and start segment",
    sql: `
ALTER TABLE sota.backups ADD COLUMN format TEXT NOT NULL DEFAULT 'dump';
ALTER TABLE sota.backups ADD COLUMN wal_generation TEXT;
ALTER TABLE sota.backups ADD COLUMN wal_start_segment TEXT;
`,
  },
  {
    version: 5,
    description: "off-host copies: each backup's copy state, and the WAL files copied",
    sql: `
CREATE TABLE sota.offsite_copies (
  backup_id       TEXT PRIMARY KEY,
  project_id      TEXT NOT NULL,
  state           TEXT NOT NULL,
  attempts        INTEGER NOT NULL,
  error           TEXT,
  object_key      TEXT,
  sha256          TEXT,
  size_bytes      BIGINT,
  copied_at       BIGINT,
  next_attempt_at BIGINT
);
CREATE INDEX offsite_copies_by_project ON sota.offsite_copies (project_id);
CREATE TABLE sota.offsite_wal (
  project_id TEXT NOT NULL,
  generation TEXT NOT NULL,
  file       TEXT NOT NULL,
  sha256     TEXT NOT NULL,
  size_bytes BIGINT NOT NULL,
  copied_at  BIGINT NOT NULL,
  PRIMARY KEY (project_id, generation, file)
);
`,
  },
];

/** Applies what is pending in one transaction (PostgreSQL DDL is transactional). Throws StateTooNewError. */
export async function migratePostgres(client: pg.ClientBase, migrations: readonly Migration[] = POSTGRES_MIGRATIONS): Promise<void> {
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [MIGRATION_LOCK]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${STATE_SCHEMA}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${STATE_SCHEMA}.migrations (
         version     INTEGER PRIMARY KEY,
         description TEXT NOT NULL,
         applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await client.query<{ version: number | null }>(`SELECT max(version) AS version FROM ${STATE_SCHEMA}.migrations`);
    const pending = pendingMigrations(rows[0]?.version ?? 0, migrations, "PostgreSQL state store (SOTA_STATE_URL)");
    for (const migration of pending) {
      await client.query(migration.sql);
      await client.query(`INSERT INTO ${STATE_SCHEMA}.migrations (version, description) VALUES ($1, $2)`, [migration.version, migration.description]);
    }
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
}
