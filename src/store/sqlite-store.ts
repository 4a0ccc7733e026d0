// SQLite (better-sqlite3) implementation of the Store and the PortRegistry: the
// embedded default. Calls are synchronous underneath on one connection; the
// interface is asynchronous so a networked store can stand in. Reads and
// writes that must see each other run in explicit transactions, not on the
// strength of a single writer. WAL keeps readers (metrics, readiness) from
// waiting on writers.
import Database from "better-sqlite3";
import { chmodSync, existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { firstFreePort, type PortRange, type PortRegistry } from "./port-registry.js";
import {
  fromOffsiteCopy,
  fromOffsiteWal,
  OFFSITE_COPY_COLUMNS,
  OFFSITE_WAL_COLUMNS,
  toOffsiteCopy,
  toOffsiteWal,
  type OffsiteCopyRow,
  type OffsiteWalRow,
} from "./offsite-rows.js";
import type { BackupRecord, DatabaseRecord, DatabaseState, OffsiteCopyRecord, OffsiteWalRecord } from "./records.js";
import { createPrivateFile } from "./private-files.js";
import { backupPatchColumns, databasePatchColumns, fromBackup, fromDatabase, toBackup, toDatabase, type BackupRow, type DatabaseRow } from "./rows.js";
import { migrateSqlite } from "./sqlite-migrations.js";
import { slugTaken, type BackupPatch, type DatabasePatch, type Store } from "./store.js";

export class SqliteStore implements Store, PortRegistry {
  private readonly db: Database.Database;
  /** Prepared once per SQL text: Ensure reads its record on every deploy, and preparing costs more than the read. */
  private readonly statements = new Map<string, Database.Statement>();

  /** Opens (creating when missing) and migrates the state; throws StateTooNewError for a newer one. */
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
    try {
      this.db.pragma("journal_mode = WAL");
      // FULL: a database record must survive a power cut once Ensure has answered.
      this.db.pragma("synchronous = FULL");
      this.db.pragma("busy_timeout = 5000");
      migrateSqlite(this.db);
    } catch (error) {
      this.db.close();
      throw error;
    }
  }

  private statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private databaseRow(projectId: string): DatabaseRow | undefined {
    return this.statement("SELECT * FROM databases WHERE project_id = ?").get(projectId) as DatabaseRow | undefined;
  }

  async getDatabase(projectId: string): Promise<DatabaseRecord | undefined> {
    const row = this.databaseRow(projectId);
    return row && toDatabase(row);
  }

  async getDatabaseBySlug(slug: string): Promise<DatabaseRecord | undefined> {
    const row = this.statement("SELECT * FROM databases WHERE slug = ?").get(slug) as DatabaseRow | undefined;
    return row && toDatabase(row);
  }

  async listDatabases(): Promise<DatabaseRecord[]> {
    const rows = this.statement("SELECT * FROM databases ORDER BY created_at, project_id").all() as DatabaseRow[];
    return rows.map(toDatabase);
  }

  async insertDatabase(record: DatabaseRecord): Promise<void> {
    this.db
      .transaction(() => {
        const owner = this.statement("SELECT project_id FROM databases WHERE slug = ?").get(record.slug) as { project_id: string } | undefined;
        if (owner && owner.project_id !== record.projectId) throw slugTaken(record.slug);
        this.statement(
          `INSERT INTO databases (project_id, slug, state, runtime, sealed_password, sealed_url, host, port, network,
             postgres_version, pooler_json, error, limits_json, created_at, updated_at)
           VALUES (@project_id, @slug, @state, @runtime, @sealed_password, @sealed_url, @host, @port, @network,
             @postgres_version, @pooler_json, @error, @limits_json, @created_at, @updated_at)`,
        ).run(fromDatabase(record));
      })
      .immediate();
  }

  async updateDatabase(projectId: string, patch: DatabasePatch): Promise<DatabaseRecord> {
    const values: Record<string, unknown> = { project_id: projectId, updated_at: this.now().getTime() };
    const sets = ["updated_at = @updated_at"];
    for (const [column, value] of databasePatchColumns(patch)) {
      values[column] = value;
      sets.push(`${column} = @${column}`);
    }
    const row = this.db
      .transaction(() => {
        const result = this.statement(`UPDATE databases SET ${sets.join(", ")} WHERE project_id = @project_id`).run(values);
        return result.changes === 0 ? undefined : this.databaseRow(projectId);
      })
      .immediate();
    if (!row) throw new Error(`no database recorded for project ${projectId}`);
    return toDatabase(row);
  }

  async deleteDatabase(projectId: string, options: { onlyIfState?: DatabaseState } = {}): Promise<boolean> {
    const result = options.onlyIfState
      ? this.statement("DELETE FROM databases WHERE project_id = ? AND state = ?").run(projectId, options.onlyIfState)
      : this.statement("DELETE FROM databases WHERE project_id = ?").run(projectId);
    return result.changes > 0;
  }

  async countDatabasesByState(): Promise<Record<string, number>> {
    const rows = this.statement("SELECT state, COUNT(*) AS n FROM databases GROUP BY state").all() as { state: string; n: number }[];
    return Object.fromEntries(rows.map((row) => [row.state, row.n]));
  }

  async allocate(projectId: string, range: PortRange, isUsable: (port: number) => boolean = () => true, preferred?: number): Promise<number> {
    // IMMEDIATE: the write lock is taken before the read, so a second
    // connection to the same file cannot pick the same free port meanwhile.
    return this.db
      .transaction(() => {
        const existing = this.statement("SELECT port FROM pooler_ports WHERE project_id = ?").get(projectId) as { port: number } | undefined;
        if (existing) return existing.port;
        const rows = this.statement("SELECT port FROM pooler_ports WHERE port BETWEEN ? AND ?").all(range.min, range.max) as { port: number }[];
        const port = firstFreePort(range, new Set(rows.map((row) => row.port)), isUsable, preferred);
        this.statement("INSERT INTO pooler_ports (port, project_id) VALUES (?, ?)").run(port, projectId);
        return port;
      })
      .immediate();
  }

  async release(projectId: string): Promise<void> {
    this.statement("DELETE FROM pooler_ports WHERE project_id = ?").run(projectId);
  }

  async insertBackup(record: BackupRecord): Promise<void> {
    this.statement(
      `INSERT INTO backups (id, project_id, slug, kind, state, size_bytes, sha256, started_at, finished_at, expires_at,
         error, verification, verified_at, verification_error, format, wal_generation, wal_start_segment)
       VALUES (@id, @project_id, @slug, @kind, @state, @size_bytes, @sha256, @started_at, @finished_at, @expires_at,
         @error, @verification, @verified_at, @verification_error, @format, @wal_generation, @wal_start_segment)`,
    ).run(fromBackup(record));
  }

  async updateBackup(id: string, patch: BackupPatch): Promise<BackupRecord> {
    const values: Record<string, unknown> = { id };
    const sets: string[] = [];
    for (const [column, value] of backupPatchColumns(patch)) {
      values[column] = value;
      sets.push(`${column} = @${column}`);
    }
    const row = this.db
      .transaction(() => {
        if (sets.length > 0) this.statement(`UPDATE backups SET ${sets.join(", ")} WHERE id = @id`).run(values);
        return this.statement("SELECT * FROM backups WHERE id = ?").get(id) as BackupRow | undefined;
      })
      .immediate();
    if (!row) throw new Error(`no backup ${id}`);
    return toBackup(row);
  }

  async getBackup(projectId: string, id: string): Promise<BackupRecord | undefined> {
    const row = this.statement("SELECT * FROM backups WHERE project_id = ? AND id = ?").get(projectId, id) as BackupRow | undefined;
    return row && toBackup(row);
  }

  async listBackups(projectId: string): Promise<BackupRecord[]> {
    const rows = this.statement("SELECT * FROM backups WHERE project_id = ? ORDER BY started_at DESC, id DESC").all(projectId) as BackupRow[];
    return rows.map(toBackup);
  }

  async listBackupsByState(state: BackupRecord["state"]): Promise<BackupRecord[]> {
    const rows = this.statement("SELECT * FROM backups WHERE state = ? ORDER BY started_at, id").all(state) as BackupRow[];
    return rows.map(toBackup);
  }

  async deleteBackup(id: string): Promise<void> {
    this.statement("DELETE FROM backups WHERE id = ?").run(id);
  }

  async claimScheduledRuns(slots: readonly Date[], replica: string): Promise<Date[]> {
    const claimedAt = this.now().getTime();
    return this.db.transaction(() =>
      slots.filter(
        (slot) =>
          this.statement("INSERT OR IGNORE INTO scheduled_runs (slot_at, replica, claimed_at) VALUES (?, ?, ?)").run(slot.getTime(), replica, claimedAt)
            .changes === 1,
      ),
    )();
  }

  async forgetScheduledRunsBefore(before: Date): Promise<void> {
    this.statement("DELETE FROM scheduled_runs WHERE slot_at < ? AND slot_at < (SELECT max(slot_at) FROM scheduled_runs)").run(before.getTime());
  }

  async lastScheduledRun(): Promise<Date | undefined> {
    const row = this.statement("SELECT max(slot_at) AS slot_at FROM scheduled_runs").get() as { slot_at: number | null };
    return row.slot_at === null ? undefined : new Date(row.slot_at);
  }

  async putOffsiteCopy(record: OffsiteCopyRecord): Promise<void> {
    this.statement(replaceInto("offsite_copies", OFFSITE_COPY_COLUMNS)).run(fromOffsiteCopy(record));
  }

  async listOffsiteCopies(projectId?: string): Promise<OffsiteCopyRecord[]> {
    const rows = (
      projectId
        ? this.statement("SELECT * FROM offsite_copies WHERE project_id = ? ORDER BY backup_id").all(projectId)
        : this.statement("SELECT * FROM offsite_copies ORDER BY backup_id").all()
    ) as OffsiteCopyRow[];
    return rows.map(toOffsiteCopy);
  }

  async deleteOffsiteCopy(backupId: string): Promise<void> {
    this.statement("DELETE FROM offsite_copies WHERE backup_id = ?").run(backupId);
  }

  async putOffsiteWal(record: OffsiteWalRecord): Promise<void> {
    this.statement(replaceInto("offsite_wal", OFFSITE_WAL_COLUMNS)).run(fromOffsiteWal(record));
  }

  async listOffsiteWal(projectId?: string): Promise<OffsiteWalRecord[]> {
    const rows = (
      projectId
        ? this.statement("SELECT * FROM offsite_wal WHERE project_id = ? ORDER BY generation, file").all(projectId)
        : this.statement("SELECT * FROM offsite_wal ORDER BY project_id, generation, file").all()
    ) as OffsiteWalRow[];
    return rows.map(toOffsiteWal);
  }

  async deleteOffsiteWal(projectId: string, generation: string, file: string): Promise<void> {
    this.statement("DELETE FROM offsite_wal WHERE project_id = ? AND generation = ? AND file = ?").run(projectId, generation, file);
  }

  async ping(): Promise<void> {
    this.statement("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

/** INSERT OR REPLACE of a whole row, named parameters. */
function replaceInto(table: string, columns: readonly string[]): string {
  return `INSERT OR REPLACE INTO ${table} (${columns.join(", ")}) VALUES (${columns.map((column) => `@${column}`).join(", ")})`;
}
