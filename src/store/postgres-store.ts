// PostgreSQL implementation of the Store and the PortRegistry, selected by
// SOTA_STATE_URL=postgres://…, so several services can share one state. Where
// SQLite could rely on a single writer, this store uses transactions: a slug is
// checked and inserted under the UNIQUE constraint, and a pooler port is
// picked with the port table locked against other writers.
import pg from "pg";
import { firstFreePort, type PortRange, type PortRegistry } from "./port-registry.js";
import { migratePostgres, STATE_SCHEMA as S } from "./postgres-migrations.js";
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
import { backupPatchColumns, databasePatchColumns, fromBackup, fromDatabase, toBackup, toDatabase, type BackupRow, type DatabaseRow } from "./rows.js";
import { slugTaken, type BackupPatch, type DatabasePatch, type Store } from "./store.js";

const UNIQUE_VIOLATION = "23505";

/**
 * BIGINT columns hold epoch milliseconds and byte counts, all well inside a
 * double: read as numbers, for this pool only (pg's default is strings).
 */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8 ? Number : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
};

const DATABASE_INSERT = `INSERT INTO ${S}.databases (project_id, slug, state, runtime, sealed_password, sealed_url, host, port, network,
  postgres_version, pooler_json, error, created_at, updated_at, limits_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`;
const BACKUP_INSERT = `INSERT INTO ${S}.backups (id, project_id, slug, kind, state, size_bytes, sha256, started_at, finished_at, expires_at,
  error, verification, verified_at, verification_error, format, wal_generation, wal_start_segment)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`;

export interface PostgresStoreOptions {
  readonly now?: () => Date;
  /** Connections the store may hold (default 10). */
  readonly maxConnections?: number;
}

export class PostgresStore implements Store, PortRegistry {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly now: () => Date,
  ) {}

  /**
   * Connects and migrates. The URL is a secret: no error from here carries it
   * or its password, only what went wrong.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({
      connectionString: url,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: 10_000,
      application_name: "sota-db",
      types,
    });
    // An idle connection dropped by the server: the next query reconnects or fails with its own error.
    pool.on("error", () => undefined);
    try {
      const client = await pool.connect().catch((error: unknown) => {
        throw new Error(`cannot connect to the PostgreSQL state store (SOTA_STATE_URL): ${redacted(error, url)}`);
      });
      try {
        await migratePostgres(client);
      } finally {
        client.release();
      }
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw error;
    }
    return new PostgresStore(pool, options.now ?? (() => new Date()));
  }

  private async rows<R>(sql: string, values: unknown[] = []): Promise<R[]> {
    return (await this.pool.query(sql, values)).rows as R[];
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async getDatabase(projectId: string): Promise<DatabaseRecord | undefined> {
    const [row] = await this.rows<DatabaseRow>(`SELECT * FROM ${S}.databases WHERE project_id = $1`, [projectId]);
    return row && toDatabase(row);
  }

  async getDatabaseBySlug(slug: string): Promise<DatabaseRecord | undefined> {
    const [row] = await this.rows<DatabaseRow>(`SELECT * FROM ${S}.databases WHERE slug = $1`, [slug]);
    return row && toDatabase(row);
  }

  async listDatabases(): Promise<DatabaseRecord[]> {
    return (await this.rows<DatabaseRow>(`SELECT * FROM ${S}.databases ORDER BY created_at, project_id`)).map(toDatabase);
  }

  async insertDatabase(record: DatabaseRecord): Promise<void> {
    const row = fromDatabase(record);
    try {
      await this.transaction(async (client) => {
        const owner = await client.query<{ project_id: string }>(`SELECT project_id FROM ${S}.databases WHERE slug = $1`, [record.slug]);
        if (owner.rows[0] && owner.rows[0].project_id !== record.projectId) throw slugTaken(record.slug);
        await client.query(DATABASE_INSERT, [
          row.project_id, row.slug, row.state, row.runtime, row.sealed_password, row.sealed_url, row.host, row.port, row.network,
          row.postgres_version, row.pooler_json, row.error, row.created_at, row.updated_at, row.limits_json,
        ]);
      });
    } catch (error) {
      // Two services inserting one slug at once: both pass the check, the UNIQUE constraint stops the second.
      if (isUniqueViolation(error, "databases_slug_key")) throw slugTaken(record.slug);
      throw error;
    }
  }

  async updateDatabase(projectId: string, patch: DatabasePatch): Promise<DatabaseRecord> {
    const values: unknown[] = [projectId, this.now().getTime()];
    const sets = ["updated_at = $2"];
    for (const [column, value] of databasePatchColumns(patch)) {
      values.push(value);
      sets.push(`${column} = $${values.length}`);
    }
    const [row] = await this.rows<DatabaseRow>(`UPDATE ${S}.databases SET ${sets.join(", ")} WHERE project_id = $1 RETURNING *`, values);
    if (!row) throw new Error(`no database recorded for project ${projectId}`);
    return toDatabase(row);
  }

  async deleteDatabase(projectId: string, options: { onlyIfState?: DatabaseState } = {}): Promise<boolean> {
    const result = options.onlyIfState
      ? await this.pool.query(`DELETE FROM ${S}.databases WHERE project_id = $1 AND state = $2`, [projectId, options.onlyIfState])
      : await this.pool.query(`DELETE FROM ${S}.databases WHERE project_id = $1`, [projectId]);
    return (result.rowCount ?? 0) > 0;
  }

  async countDatabasesByState(): Promise<Record<string, number>> {
    const rows = await this.rows<{ state: string; n: number }>(`SELECT state, COUNT(*) AS n FROM ${S}.databases GROUP BY state`);
    return Object.fromEntries(rows.map((row) => [row.state, row.n]));
  }

  async allocate(projectId: string, range: PortRange, isUsable: (port: number) => boolean = () => true, preferred?: number): Promise<number> {
    return this.transaction(async (client) => {
      // EXCLUSIVE: other allocations wait here, readers do not; held to COMMIT.
      await client.query(`LOCK TABLE ${S}.pooler_ports IN EXCLUSIVE MODE`);
      const existing = await client.query<{ port: number }>(`SELECT port FROM ${S}.pooler_ports WHERE project_id = $1`, [projectId]);
      if (existing.rows[0]) return existing.rows[0].port;
      const taken = await client.query<{ port: number }>(`SELECT port FROM ${S}.pooler_ports WHERE port BETWEEN $1 AND $2`, [range.min, range.max]);
      const port = firstFreePort(range, new Set(taken.rows.map((row) => row.port)), isUsable, preferred);
      await client.query(`INSERT INTO ${S}.pooler_ports (port, project_id) VALUES ($1, $2)`, [port, projectId]);
      return port;
    });
  }

  async release(projectId: string): Promise<void> {
    await this.pool.query(`DELETE FROM ${S}.pooler_ports WHERE project_id = $1`, [projectId]);
  }

  async insertBackup(record: BackupRecord): Promise<void> {
    const row = fromBackup(record);
    await this.pool.query(BACKUP_INSERT, [
      row.id, row.project_id, row.slug, row.kind, row.state, row.size_bytes, row.sha256, row.started_at, row.finished_at, row.expires_at,
      row.error, row.verification, row.verified_at, row.verification_error, row.format, row.wal_generation, row.wal_start_segment,
    ]);
  }

  async updateBackup(id: string, patch: BackupPatch): Promise<BackupRecord> {
    const values: unknown[] = [id];
    const sets: string[] = [];
    for (const [column, value] of backupPatchColumns(patch)) {
      values.push(value);
      sets.push(`${column} = $${values.length}`);
    }
    const sql = sets.length > 0 ? `UPDATE ${S}.backups SET ${sets.join(", ")} WHERE id = $1 RETURNING *` : `SELECT * FROM ${S}.backups WHERE id = $1`;
    const [row] = await this.rows<BackupRow>(sql, values);
    if (!row) throw new Error(`no backup ${id}`);
    return toBackup(row);
  }

  async getBackup(projectId: string, id: string): Promise<BackupRecord | undefined> {
    const [row] = await this.rows<BackupRow>(`SELECT * FROM ${S}.backups WHERE project_id = $1 AND id = $2`, [projectId, id]);
    return row && toBackup(row);
  }

  async listBackups(projectId: string): Promise<BackupRecord[]> {
    const rows = await this.rows<BackupRow>(`SELECT * FROM ${S}.backups WHERE project_id = $1 ORDER BY started_at DESC, id DESC`, [projectId]);
    return rows.map(toBackup);
  }

  async listBackupsByState(state: BackupRecord["state"]): Promise<BackupRecord[]> {
    const rows = await this.rows<BackupRow>(`SELECT * FROM ${S}.backups WHERE state = $1 ORDER BY started_at, id`, [state]);
    return rows.map(toBackup);
  }

  async deleteBackup(id: string): Promise<void> {
    await this.pool.query(`DELETE FROM ${S}.backups WHERE id = $1`, [id]);
  }

  async claimScheduledRuns(slots: readonly Date[], replica: string): Promise<Date[]> {
    if (slots.length === 0) return [];
    // One statement: the primary key decides, so two replicas claiming one slot at once get it once between them.
    // Slots in ascending order: two claims of overlapping slots lock their keys in one order, never in a deadlock.
    const times = [...new Set(slots.map((slot) => slot.getTime()))].sort((a, b) => a - b);
    const rows = await this.rows<{ slot_at: number }>(
      `INSERT INTO ${S}.scheduled_runs (slot_at, replica, claimed_at) SELECT unnest($1::bigint[]), $2, $3
       ON CONFLICT (slot_at) DO NOTHING RETURNING slot_at`,
      [times, replica, this.now().getTime()],
    );
    return rows.map((row) => new Date(row.slot_at)).sort((a, b) => a.getTime() - b.getTime());
  }

  async forgetScheduledRunsBefore(before: Date): Promise<void> {
    await this.pool.query(`DELETE FROM ${S}.scheduled_runs WHERE slot_at < $1 AND slot_at < (SELECT max(slot_at) FROM ${S}.scheduled_runs)`, [before.getTime()]);
  }

  async lastScheduledRun(): Promise<Date | undefined> {
    const [row] = await this.rows<{ slot_at: number | null }>(`SELECT max(slot_at) AS slot_at FROM ${S}.scheduled_runs`);
    return row?.slot_at == null ? undefined : new Date(row.slot_at);
  }

  async putOffsiteCopy(record: OffsiteCopyRecord): Promise<void> {
    const row = fromOffsiteCopy(record);
    await this.pool.query(upsert("offsite_copies", OFFSITE_COPY_COLUMNS, ["backup_id"]), OFFSITE_COPY_COLUMNS.map((column) => row[column]));
  }

  async listOffsiteCopies(projectId?: string): Promise<OffsiteCopyRecord[]> {
    const rows = projectId
      ? await this.rows<OffsiteCopyRow>(`SELECT * FROM ${S}.offsite_copies WHERE project_id = $1 ORDER BY backup_id`, [projectId])
      : await this.rows<OffsiteCopyRow>(`SELECT * FROM ${S}.offsite_copies ORDER BY backup_id`);
    return rows.map(toOffsiteCopy);
  }

  async deleteOffsiteCopy(backupId: string): Promise<void> {
    await this.pool.query(`DELETE FROM ${S}.offsite_copies WHERE backup_id = $1`, [backupId]);
  }

  async putOffsiteWal(record: OffsiteWalRecord): Promise<void> {
    const row = fromOffsiteWal(record);
    await this.pool.query(upsert("offsite_wal", OFFSITE_WAL_COLUMNS, ["project_id", "generation", "file"]), OFFSITE_WAL_COLUMNS.map((column) => row[column]));
  }

  async listOffsiteWal(projectId?: string): Promise<OffsiteWalRecord[]> {
    const rows = projectId
      ? await this.rows<OffsiteWalRow>(`SELECT * FROM ${S}.offsite_wal WHERE project_id = $1 ORDER BY generation, file`, [projectId])
      : await this.rows<OffsiteWalRow>(`SELECT * FROM ${S}.offsite_wal ORDER BY project_id, generation, file`);
    return rows.map(toOffsiteWal);
  }

  async deleteOffsiteWal(projectId: string, generation: string, file: string): Promise<void> {
    await this.pool.query(`DELETE FROM ${S}.offsite_wal WHERE project_id = $1 AND generation = $2 AND file = $3`, [projectId, generation, file]);
  }

  /** Readiness shows the message to anyone who asks: it names the store, not where it is or who logs in. */
  async ping(): Promise<void> {
    try {
      await this.pool.query("SELECT 1");
    } catch (error) {
      throw new Error("the PostgreSQL state store does not answer", { cause: error });
    }
  }

  async close(): Promise<void> {
    if (!this.pool.ended) await this.pool.end();
  }
}

/** INSERT … ON CONFLICT (key) DO UPDATE of every other column. */
function upsert(table: string, columns: readonly string[], key: readonly string[]): string {
  const updates = columns.filter((column) => !key.includes(column)).map((column) => `${column} = EXCLUDED.${column}`);
  return `INSERT INTO ${S}.${table} (${columns.join(", ")}) VALUES (${columns.map((_, index) => `$${index + 1}`).join(", ")})
    ON CONFLICT (${key.join(", ")}) DO UPDATE SET ${updates.join(", ")}`;
}

function isUniqueViolation(error: unknown, constraint: string): boolean {
  const fields = error as { code?: string; constraint?: string };
  return fields?.code === UNIQUE_VIOLATION && fields.constraint === constraint;
}

/** The error's message with the URL and its password blanked, should a driver ever echo them. */
function redacted(error: unknown, url: string): string {
  let message = error instanceof Error ? error.message : String(error);
  const secrets = [url];
  try {
    const password = decodeURIComponent(new URL(url).password);
    if (password) secrets.push(password);
  } catch {
    // Not a URL the WHATWG parser reads: the whole string is already listed.
  }
  for (const secret of secrets) message = message.split(secret).join("***");
  return message;
}
